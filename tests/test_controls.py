"""No-skill references: the label-permutation null, the untuned prompt, and the length artefact."""
import numpy as np
import pytest

from lib.controls import CONDITIONS, length_only_accuracy, permuted_labels, skill_neuron_controls
from lib.models import Encoded


def test_length_only_accuracy_known_answers():
    lengths = np.array([10, 12, 14, 30, 32, 34, 11, 33])
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    r = length_only_accuracy(lengths, labels)
    assert r["in-sample accuracy"] == 1.0 and r["leave-one-out accuracy"] == 1.0 and not r["longer means label 0"]
    assert r["threshold"] == 22 and r["majority rate"] == 0.5 and r["n"] == 8
    flipped = length_only_accuracy(lengths, 1 - labels)
    assert flipped["in-sample accuracy"] == 1.0 and flipped["longer means label 0"]
    # no relation: in sample a threshold still finds something, leave-one-out does not
    rng = np.random.default_rng(0)
    noise = length_only_accuracy(rng.integers(5, 50, 200), rng.integers(0, 2, 200))
    assert noise["leave-one-out accuracy"] < noise["in-sample accuracy"] and noise["leave-one-out accuracy"] < 0.6
    with pytest.raises(ValueError, match="at least 3"):
        length_only_accuracy(np.array([1, 2]), np.array([0, 1]))


def test_permuted_labels_keep_the_examples_and_the_label_counts():
    enc = Encoded([[1], [2], [3], [4], [5], [6]], None, np.array([0, 0, 0, 0, 1, 1]))
    p = permuted_labels(enc, seed=3)
    assert p.input_ids == enc.input_ids and sorted(p.labels) == sorted(enc.labels)
    assert np.array_equal(p.labels, permuted_labels(enc, seed=3).labels)


def test_controls_table_on_the_smoke_profile(smoke_run):
    from lib.experiments import Experiment

    root, _ = smoke_run
    exp = Experiment("smoke", root / "results", progress=False)
    table = skill_neuron_controls(exp, ("synthetic",))
    assert set(table["condition"]) == set(CONDITIONS) and len(table) == 3 * len(exp.profile.seeds)
    assert (table["no-skill reference"] >= 0.5).all() and (table["max predictivity"] >= 0.5).all()
    tuned = table[table.condition == "tuned prompt"]["top-fraction mean"].mean()
    null = table[table.condition == "labels permuted"]["top-fraction mean"].mean()
    assert tuned > null, "the synthetic task is separable: its tuned neurons beat the permutation null"
    assert table.equals(skill_neuron_controls(exp, ("synthetic",))), "cached"


def test_controls_sentence_is_computed_from_the_margins():
    import pandas as pd

    from lib.controls import controls_sentence

    rows = []
    for task, tuned in (("a", 0.80), ("b", 0.56)):
        for seed in (0, 1):
            for condition, value in (("tuned prompt", tuned + 0.01 * seed), ("labels permuted", 0.57),
                                     ("untuned prompt", 0.60)):
                rows.append({"task": task, "seed": seed, "condition": condition, "top-fraction mean": value})
    table = pd.DataFrame(rows)
    s = controls_sentence(table)
    assert "a: above both controls in every seed (margin over the null +0.230 to +0.240" in s
    assert "b: not above both controls in every seed" in s
    assert "b: untestable" in controls_sentence(table, learned={"a"})
