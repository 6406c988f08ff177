"""The backbone probe: a logistic regression with known answers, and its table on the smoke profile."""
import numpy as np

from lib.probe import fit_logistic, predict_logistic, probe_table


def test_logistic_probe_separates_separable_data_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 2] - 0.5 * x[:, 4] > 0).astype(int)
    w, b, mu, sigma = fit_logistic(x, y)
    assert (predict_logistic(x, w, b, mu, sigma) == y).mean() > 0.97
    assert w[2] > 0 and w[4] < 0 and abs(w[2]) > abs(w[0])
    noise_y = rng.integers(0, 2, 400)
    fresh = rng.normal(size=(400, 5))
    w, b, mu, sigma = fit_logistic(x, noise_y)
    assert abs((predict_logistic(fresh, w, b, mu, sigma) == rng.integers(0, 2, 400)).mean() - 0.5) < 0.1


def test_probe_table_on_the_smoke_profile(smoke_run):
    from lib.experiments import Experiment

    root, _ = smoke_run
    exp = Experiment("smoke", root / "results", progress=False)
    table = probe_table(exp, n_train=200)
    assert set(table["task"]) == {"synthetic", "synthetic_pair"}
    assert ((table["lo"] <= table["probe accuracy"]) & (table["probe accuracy"] <= table["hi"])).all()
    assert (table["majority rate"] >= 0.5).all() and (table["train examples"] <= 200).all()


def test_probe_sentence_sorts_tasks_by_their_interval():
    import pandas as pd

    from lib.probe import probe_sentence

    t = pd.DataFrame({"task": ["sst2", "qnli"], "type": ["sentiment", "nli"], "probe accuracy": [0.75, 0.53],
                      "lo": [0.71, 0.49], "hi": [0.79, 0.57], "majority rate": [0.51, 0.50], "train examples": [1500, 1500]})
    s = probe_sentence(t)
    assert "above the majority rate: sst2 0.750 [0.710, 0.790] vs 0.510" in s
    assert "not above it: qnli 0.530 [0.490, 0.570] vs 0.500" in s
