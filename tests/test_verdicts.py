"""Known-answer tests of the intervals and verdicts (lib.verdicts)."""
from __future__ import annotations

import numpy as np
import pytest

from lib.errors import ConfigError
from lib.verdicts import (NOT_SUPPORTED, SUPPORTED, UNTESTABLE, Interval, accuracy_interval, bootstrap_interval,
                          describe, majority_rate, seed_average, task_status, verdict)


def test_interval_of_a_constant_is_a_point():
    assert accuracy_interval(np.ones(50)) == Interval(1.0, 1.0, 1.0)
    assert accuracy_interval(np.zeros((3, 40))) == Interval(0.0, 0.0, 0.0, n_seeds=3)


def test_interval_matches_the_normal_approximation():
    """Bernoulli(0.3), N = 2000: the 95 % half-width is 1.96 sqrt(p(1-p)/N) = 0.0201."""
    x = np.zeros(2000)
    x[:600] = 1
    iv = accuracy_interval(x, n_boot=4000, seed=1)
    assert iv.estimate == pytest.approx(0.3)
    half = (iv.hi - iv.lo) / 2
    assert half == pytest.approx(1.96 * np.sqrt(0.3 * 0.7 / 2000), rel=0.1)
    assert iv.lo < 0.3 < iv.hi


def test_seeds_are_averaged_per_example_not_pooled():
    """Two seeds that disagree on every example: each example is right half the time, so the accuracy
    is exactly 0.5 whichever examples are drawn (zero width); pooling the 2 x N predictions as
    independent draws would give a width of about 2 * 1.96 * sqrt(0.25 / 2N)."""
    a = np.tile([1.0, 0.0], 100)
    correct = np.stack([a, 1 - a])
    assert list(seed_average(correct)) == [0.5] * 200
    assert accuracy_interval(correct) == Interval(0.5, 0.5, 0.5, n_seeds=2)
    pooled = accuracy_interval(correct.reshape(-1))
    assert pooled.hi - pooled.lo > 0.05
    # seeds that agree: the interval is that of one seed (resampling examples, not 3 x N draws)
    one = np.r_[np.ones(120), np.zeros(80)]
    three, single = accuracy_interval(np.stack([one] * 3), seed=3), accuracy_interval(one, seed=3)
    assert (three.estimate, three.lo, three.hi) == pytest.approx((single.estimate, single.lo, single.hi), abs=1e-12)


def test_paired_columns_share_their_resamples():
    x = np.r_[np.ones(70), np.zeros(30)]
    diff = lambda a: a["x"] - a["y"]  # noqa: E731
    paired = bootstrap_interval({"x": x, "y": x.copy()}, diff, groups={"x": "test", "y": "test"})
    assert paired == Interval(0.0, 0.0, 0.0)
    unpaired = bootstrap_interval({"x": x, "y": x.copy()}, diff)
    assert unpaired.estimate == 0.0 and unpaired.lo < -0.05 and unpaired.hi > 0.05


def test_paired_difference_known_answer():
    """y is right on the first 80 examples, x on the first 60: the difference is -0.2 and its paired
    interval is that of a proportion of 0.2 (the 20 examples where they differ)."""
    y = np.r_[np.ones(80), np.zeros(20)]
    x = np.r_[np.ones(60), np.zeros(40)]
    iv = bootstrap_interval({"x": x, "y": y}, lambda a: a["x"] - a["y"], groups={"x": "g", "y": "g"},
                            n_boot=4000, seed=2)
    assert iv.estimate == pytest.approx(-0.2)
    assert (iv.hi - iv.lo) / 2 == pytest.approx(1.96 * np.sqrt(0.2 * 0.8 / 100), rel=0.15)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ConfigError, match="paired"):
        bootstrap_interval({"x": np.ones(5), "y": np.ones(6)}, lambda a: a["x"], groups={"x": "g", "y": "g"})
    with pytest.raises(ConfigError, match="non-empty"):
        accuracy_interval(np.ones((2, 0)))
    with pytest.raises(ConfigError, match="do not exist"):
        bootstrap_interval({"x": np.ones(5)}, lambda a: a["x"], groups={"z": "g"})
    with pytest.raises(ConfigError, match="non-finite"):
        accuracy_interval(np.array([1.0, np.nan]))


def test_majority_rate():
    assert majority_rate([1, 1, 0, 1]) == 0.75
    assert majority_rate([0, 1]) == 0.5
    with pytest.raises(ConfigError):
        majority_rate([])


def test_a_prompt_at_its_majority_rate_has_not_learned():
    """MRPC-like: 68 % positive, a prompt that always says 'positive' scores 68 %: not learned."""
    labels = np.r_[np.ones(68), np.zeros(32)].astype(int)
    always_pos = np.stack([labels == 1] * 3).astype(float)
    status = task_status("mrpc", always_pos, labels, [0.40, 0.40, 0.40])
    assert not status.learned
    assert "majority rate 0.680" in status.reason and "macro-F1 0.400" in status.reason
    # a prompt right on 90 % of the examples with macro-F1 0.88: learned
    good = np.ones((3, 100))
    good[:, :10] = 0
    status = task_status("mrpc", good, labels, [0.88, 0.87, 0.89])
    assert status.learned and status.accuracy.lo > 0.68
    # macro-F1 just under the bar is enough to fail
    assert not task_status("mrpc", good, labels, [0.59, 0.59, 0.59]).learned


def test_verdicts():
    assert verdict(Interval(0.1, 0.02, 0.2)).label == SUPPORTED
    assert verdict(Interval(0.1, -0.01, 0.2)).label == NOT_SUPPORTED
    assert verdict(Interval(-0.1, -0.2, -0.02), direction="less").label == SUPPORTED
    assert verdict(Interval(0.45, 0.4, 0.49), direction="less", null=0.5).label == SUPPORTED
    assert verdict(Interval(0.45, 0.4, 0.52), direction="less", null=0.5).label == NOT_SUPPORTED
    v = verdict(Interval(0.3, 0.2, 0.4), missing="only 1 task learned")
    assert v == verdict(None, missing="only 1 task learned") and v.label == UNTESTABLE
    with pytest.raises(ConfigError):
        verdict(Interval(0, 0, 0), direction="up")
    text = describe("Within-type transfer is higher", Interval(0.05, 0.01, 0.09), verdict(Interval(0.05, 0.01, 0.09)))
    assert "supported" in text and "0.010 to 0.090" in text
    assert "untestable here" in describe("X", None, v)


def test_verdicts_separate_direction_from_size():
    from lib.verdicts import CONTRADICTED, MUCH_SMALLER

    # the interval lies on the other side of the null: contradicted, not merely unsupported
    assert verdict(Interval(-0.08, -0.14, -0.03)).label == CONTRADICTED
    assert verdict(Interval(0.6, 0.55, 0.65), direction="less", null=0.5).label == CONTRADICTED
    # published effect 0.20: an interval entirely below 0.10 is supported but much smaller
    assert verdict(Interval(0.03, 0.01, 0.05), published=0.20).label == MUCH_SMALLER
    assert verdict(Interval(0.08, 0.01, 0.12), published=0.20).label == SUPPORTED  # reaches past half
    assert verdict(Interval(0.03, 0.01, 0.05)).label == SUPPORTED  # no published number: no size judgement
    # below chance by much less than a published 0.30 (null 0.5, half-way bound 0.4)
    assert verdict(Interval(0.45, 0.42, 0.48), direction="less", null=0.5, published=0.30).label == MUCH_SMALLER


def test_holm_known_answer():
    from lib.verdicts import adjusted_verdict, holm

    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm([]) == [] and holm([None]) == [None]
    with pytest.raises(ConfigError):
        holm([1.5])
    kept = adjusted_verdict(verdict(Interval(0.1, 0.05, 0.2)), 0.03)
    assert kept.label == SUPPORTED and "0.03" in kept.reason
    dropped = adjusted_verdict(verdict(Interval(0.1, 0.05, 0.2)), 0.06)
    assert dropped.label == NOT_SUPPORTED and "unadjusted: supported" in dropped.reason
    # never upgraded
    assert adjusted_verdict(verdict(Interval(0.1, -0.05, 0.2)), 0.001).label == NOT_SUPPORTED
