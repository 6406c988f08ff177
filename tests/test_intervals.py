"""Known-answer tests of the two-part bootstrap over prompts (seeds) and examples (lib.intervals)."""
from __future__ import annotations

import numpy as np
import pytest

from lib.errors import ConfigError
from lib.intervals import (Interval, bootstrap_interval, bootstrap_p, example_values, interaction_noise)


def _simulated(rng: np.random.Generator, prompt_sd: float, seeds: int = 5, examples: int = 300) -> np.ndarray:
    """Correctness of `seeds` prompts on `examples` examples: prompt s is right on example i with probability
    0.7 + a_s + b_i, a_s ~ N(0, prompt_sd), b_i ~ U(-0.2, 0.2); the population accuracy is 0.7."""
    a, b = rng.normal(0, prompt_sd, seeds), rng.uniform(-0.2, 0.2, examples)
    p = np.clip(0.7 + a[:, None] + b[None, :], 0, 1)
    return (rng.random((seeds, examples)) < p).astype(float)


def _coverage(prompt_sd: float, unit: str, sims: int = 500) -> float:
    rng = np.random.default_rng(11)
    hits = 0
    for k in range(sims):
        iv = bootstrap_interval({"x": _simulated(rng, prompt_sd)}, lambda m: m["x"], n_boot=1000, seed=k, unit=unit)
        hits += iv.lo <= 0.7 <= iv.hi
    return hits / sims


@pytest.mark.parametrize("prompt_sd", [0.03, 0.08])
def test_seeds_with_different_means_are_covered(prompt_sd):
    """5 prompts whose accuracies differ (SD 3 or 8 points) on 300 examples: the 95 % interval over prompts
    and examples covers the population accuracy in 92-98 % of 500 simulations; holding the prompts fixed
    (examples only) does not."""
    assert 0.92 <= _coverage(prompt_sd, "prompts") <= 0.98
    assert _coverage(prompt_sd, "examples") < 0.90


def test_identical_seeds_reduce_to_the_example_bootstrap():
    rng = np.random.default_rng(3)
    one = (rng.random(250) < 0.8).astype(float)
    both = bootstrap_interval({"x": np.stack([one] * 5)}, lambda m: m["x"], seed=4)
    examples = bootstrap_interval({"x": one}, lambda m: m["x"], seed=4)
    assert (both.lo, both.hi) == pytest.approx((examples.lo, examples.hi), abs=1e-12)
    assert both.n_seeds == 5 and examples.n_seeds == 1


def test_the_prompt_part_widens_with_the_spread_of_the_seeds():
    """Same examples, same per-example average, but seeds that disagree in their means: wider interval."""
    rng = np.random.default_rng(5)
    agree = np.stack([(rng.random(400) < 0.75).astype(float) for _ in range(5)])
    spread = agree.copy()
    spread[0, :60] = 1.0
    spread[4, :60] = 0.0  # seed 0 up, seed 4 down by about 0.04 each
    w = lambda c: (lambda iv: iv.hi - iv.lo)(bootstrap_interval({"x": c}, lambda m: m["x"], seed=1))  # noqa: E731
    assert w(spread) > w(agree)
    fixed = bootstrap_interval({"x": spread}, lambda m: m["x"], seed=1, unit="examples")
    assert fixed.n_seeds == 1 and fixed.hi - fixed.lo < w(spread)


def test_interaction_noise_and_example_values_known_answers():
    """Two seeds that disagree on every example: s2_e = sum r^2 / ((S-1)(N-1)) with r = +-0.5 everywhere."""
    a = np.tile([1.0, 0.0], 50)
    rows = np.stack([a, 1 - a])
    assert interaction_noise(rows) == pytest.approx(100 * 2 * 0.25 / 99)
    assert interaction_noise(np.stack([a, a])) == 0.0
    assert np.array_equal(example_values(np.stack([a, a])), a)  # identical seeds: nothing removed
    assert np.array_equal(example_values(a[None, :]), a)  # one seed: nothing removed


def test_bootstrap_p_known_answers():
    reps = np.arange(1, 1000) / 1000  # all above 0
    assert bootstrap_p(reps, 0.0) == pytest.approx(2 / 1000)
    assert bootstrap_p(reps, 0.5) == pytest.approx(1.0)
    iv = bootstrap_interval({"x": np.ones(50)}, lambda m: m["x"], null=0.5)
    assert iv.p == pytest.approx(2 / 2001)


def test_paired_columns_share_seed_and_example_draws():
    """skill and random measured with the same prompts on the same examples: a constant difference stays a point."""
    rng = np.random.default_rng(2)
    x = (rng.random((5, 200)) < np.linspace(0.6, 0.9, 5)[:, None]).astype(float)
    y = x.copy()
    iv = bootstrap_interval({"x": x, "y": y}, lambda m: m["x"] - m["y"], groups={"x": "g", "y": "g"})
    assert iv == Interval(0.0, 0.0, 0.0, n_seeds=5)


def test_columns_with_different_seed_counts_are_refused():
    with pytest.raises(ConfigError, match="same number of seeds"):
        bootstrap_interval({"x": np.ones((3, 10)), "y": np.ones((5, 10))}, lambda m: m["x"])
    with pytest.raises(ConfigError, match="unit must be one of"):
        bootstrap_interval({"x": np.ones(10)}, lambda m: m["x"], unit="seeds")


def test_bounds_cut_an_interval_to_the_values_the_statistic_can_take():
    """Two prompts, one always right and one always wrong: the Student-t prompt part (1 degree of freedom)
    reaches far past [0, 1]; an accuracy's interval is cut to [0, 1], a difference's to [-1, 1]."""
    from lib.intervals import accuracy_interval, bootstrap_interval

    correct = np.stack([np.ones(50), np.zeros(50)])
    wide = bootstrap_interval({"acc": correct}, lambda a: a["acc"], n_boot=500)
    assert wide.lo < 0 and wide.hi > 1 and wide.estimate == 0.5
    cut = accuracy_interval(correct, n_boot=500)
    assert (cut.lo, cut.hi, cut.estimate) == (0.0, 1.0, 0.5)
    diff = bootstrap_interval({"a": correct, "b": correct[::-1]}, lambda x: x["a"] - x["b"], n_boot=500,
                              bounds=(-1.0, 1.0))
    assert -1.0 <= diff.lo < 0 < diff.hi <= 1.0
