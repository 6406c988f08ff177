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
