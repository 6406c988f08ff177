"""Known answers for the run- and seed-level verdicts of the transfer-method and neuron chapters."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lib.chapter_verdicts import (gain_verdict, indicator_verdict, mean_interval, percentile_verdict,
                                  pretrained_vs_random, specificity_verdict)


def test_mean_interval_is_students_t():
    iv = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert iv.estimate == 2.5 and iv.lo == pytest.approx(2.5 - half) and iv.hi == pytest.approx(2.5 + half)
    assert mean_interval([1.0]) is None and mean_interval([1.0, float("nan")]) is None


def test_gain_verdict_needs_the_interval_above_zero():
    assert gain_verdict([0.05, 0.06, 0.04, 0.05])[1].label == "supported"
    assert gain_verdict([0.05, -0.04, 0.03, -0.02])[1].label == "not supported"
    assert gain_verdict([0.05])[1].label == "untestable"


def test_indicator_verdict_uses_learned_pairs_and_seeds():
    rng = np.random.default_rng(0)
    rows = []
    tasks = ["a", "b", "c", "d"]
    for seed in (0, 1, 2):
        for s in tasks:
            for t in tasks:
                if s != t:
                    rel = rng.random()
                    rows.append({"source": s, "target": t, "seed": seed, "relative_transfer": rel,
                                 "on_all": rel + 0.01 * rng.random(), "cosine_flat": rng.random()})
    table = pd.DataFrame(rows)
    iv, v = indicator_verdict(table, "on_all", ["cosine_flat"], {"a", "b", "c", "d"})
    assert v.label == "supported" and iv.estimate > 0.5
    assert indicator_verdict(table, "on_all", ["cosine_flat"], {"a"})[1].label == "untestable"


def test_specificity_and_percentile_verdicts():
    per_seed = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "same_type": [True, False] * 3,
                             "spearman": [0.6, 0.2, 0.62, 0.25, 0.58, 0.21]})
    iv, v = specificity_verdict(per_seed)
    assert v.label == "supported" and iv.estimate == pytest.approx((0.4 + 0.37 + 0.37) / 3)
    assert specificity_verdict(per_seed[per_seed.same_type])[1].label == "untestable"
    adv = pd.DataFrame({"task": ["sst2"] * 6 + ["qnli"] * 2, "seed": [0, 0, 1, 1, 2, 2, 0, 1],
                        "adv_percentile": [80, 90, 85, 95, 70, 90, 10, 10]})
    iv, v = percentile_verdict(adv, {"sst2"})
    assert iv.estimate == pytest.approx(85) and v.label == "supported"
    assert percentile_verdict(adv, {"rte"})[1].label == "untestable"


def test_pretrained_vs_random_is_paired_over_examples():
    pre = np.array([[1, 1, 1, 0] * 50], dtype=float)
    rnd = np.array([[1, 0, 0, 0] * 50], dtype=float)
    iv, v = pretrained_vs_random(pre, rnd)
    assert iv.estimate == pytest.approx(0.5) and v.label == "supported"
    same = pretrained_vs_random(pre, pre)[0]
    assert same.lo == same.hi == 0.0, "paired: identical predictions give a zero-width interval"


def test_the_transfer_method_verdicts_count_only_runs_of_learned_tasks():
    """Known answers for the selections the init-transfer, PANDA and projector chapters' verdicts use."""
    from lib.chapter_verdicts import learned_pair_runs, learned_same_type_runs, projector_gains

    runs = pd.DataFrame({"source": ["sst2", "sst2", "imdb", "mrpc", "sst2"],
                         "target": ["imdb", "mrpc", "sst2", "rte", "newsgroups"], "test_gain": [1, 2, 3, 4, 5]})
    types = {"sst2": "sentiment", "imdb": "sentiment", "mrpc": "paraphrase", "rte": "nli", "newsgroups": "topic"}
    labels = {t: ("negative", "positive") for t in types} | {"newsgroups": tuple("abcd")}
    learned = {"sst2", "imdb", "mrpc", "newsgroups"}
    assert learned_same_type_runs(runs, learned, types, labels).test_gain.tolist() == [1, 3]
    same_type_other_labels = dict(labels, imdb=("bad", "good"))
    assert learned_same_type_runs(runs, learned, types, same_type_other_labels).empty

    comp = pd.DataFrame({"panda - transfer": [0.1, 0.2, 0.3]},
                        index=pd.MultiIndex.from_tuples([("sst2", "imdb", 0), ("sst2", "rte", 0), ("imdb", "sst2", 1)],
                                                        names=["source", "target", "seed"]))
    assert learned_pair_runs(comp, learned)["panda - transfer"].tolist() == [0.1, 0.3]

    proj = pd.DataFrame({"task": ["sst2"] * 4 + ["rte"] * 2, "seed": [0, 0, 1, 1, 0, 0],
                         "method": ["B task projector", "B init"] * 3, "accuracy": [0.8, 0.5, 0.7, 0.6, 0.9, 0.1]})
    gains = projector_gains(proj, learned)
    assert gains.task.tolist() == ["sst2", "sst2"] and gains.seed.tolist() == [0, 1]
    assert gains.gain.round(6).tolist() == [0.3, 0.1]
