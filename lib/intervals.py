"""Intervals over what is random: prompts (seeds) and examples. Every interval in the book is computed here.

Kept apart from `lib.verdicts` (the wording of conclusions) because cached chapter tables use them:
this module is inside `lib.store.code_version()`'s closure, the verdicts are not.

**Two random sources.** A prompt is a random draw (its seed), and the evaluation examples are a sample.
A column of per-example correctness c_{s,i} (seeds s = 1..S, examples i = 1..N; the seeds' prompts are
evaluated on the *same* examples) has the grand mean m = (1/SN) sum_{s,i} c_{s,i}, whose error has two
independent parts: the examples' (shared by all seeds) and the prompts' (the seed means m_s around m).
`bootstrap_interval` resamples each:

- examples: the seed-averaged values c_i = (1/S) sum_s c_{s,i} are resampled, E*_b = (1/N) sum_i c_{I_bi},
  I_bi ~ U{1..N}; pooling S x N predictions as independent draws would make the interval about
  sqrt(S)-fold too narrow when the seeds agree;
- prompts: the seeds are resampled, P*_b = (1/S) sum_j m_{J_bj}, J_bj ~ U{1..S}. The seed means carry the
  prompts' effect and the prompt x example noise; the example part is then taken over values from which
  that noise is removed (`example_values`), so that it is counted once;
- a replicate of the statistic T is T* = T(E*) + se_P t*_b, the two parts drawn independently: se_P is
  the bootstrap standard deviation of T(P*) times sqrt(S / (S - 1)) (the standard error of T over
  prompts), t*_b a Student-t draw with S - 1 degrees of freedom. Why not the percentile of T(P*)
  itself: over a handful of seeds it under-covers (its variance is (S-1)/S of the sample's, and
  S = 5 values need Student's t, not the normal quantile); simulated coverage of the 95 % interval
  (S = 5, N = 300) is in `tests/test_intervals.py`. With identical
  seeds the prompt part is zero and the interval is exactly the example bootstrap; with one seed it
  cannot be estimated (`Interval.n_seeds` says how many there were).

The percentile interval of T* is reported. Quantities measured on the same examples (suppressed vs
intact, skill vs random neurons) are resampled with the same example indices (paired), and every column
with S > 1 rows is resampled with the same seed indices (row s of every column is seed s's prompt);
different example sets are resampled independently. `p` is the two-sided bootstrap p-value of a
stated null, p = min(1, 2 min(#{T* <= null} + 1, #{T* >= null} + 1) / (B + 1)), for the Holm correction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from scipy import stats

from .errors import ConfigError

UNITS = ("prompts", "examples")  # what an interval resamples: prompts and examples, or examples only


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval (level 1 - alpha); `n_seeds` prompts entered
    it (1: examples only), `p` is the two-sided bootstrap p-value of the null it was asked about."""

    estimate: float
    lo: float
    hi: float
    n_seeds: int = 1
    p: float | None = None

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.lo:.3f}, {self.hi:.3f}]"



def seed_average(correct: np.ndarray | Sequence) -> np.ndarray:
    """Per-example mean over seeds: (S, N) or (N,) correctness -> (N,) values in [0, 1]."""
    arr = np.asarray(correct, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ConfigError(f"correctness must be (seeds, examples) or (examples,), non-empty; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("correctness contains non-finite values")
    return arr.mean(axis=0)


def _as_rows(col: np.ndarray | Sequence) -> np.ndarray:
    """(S, N) correctness, seeds x examples (a single row for (N,))."""
    arr = np.asarray(col, dtype=float)
    seed_average(arr)  # validates shape and values
    return arr[None, :] if arr.ndim == 1 else arr


def interaction_noise(rows: np.ndarray) -> float:
    """Prompt x example noise s2_e of (S, N) correctness, from a two-way decomposition (method of moments):
    residuals r_si = c_si - m_s - c_i + m, s2_e = sum r^2 / ((S-1)(N-1)). Zero for identical seeds."""
    s, n = rows.shape
    if s < 2 or n < 2:
        return 0.0
    resid = rows - rows.mean(axis=1, keepdims=True) - rows.mean(axis=0, keepdims=True) + rows.mean()
    return float((resid ** 2).sum() / ((s - 1) * (n - 1)))


def example_values(rows: np.ndarray) -> np.ndarray:
    """Per-example values whose resampling carries the examples' share of the error and not the prompts'.

    The seed-averaged values c_i have variance s2_b + s2_e / S (the examples' spread and the prompt x
    example noise); the prompt part of the bootstrap (seed means) already carries s2_e / (S N), so the
    deviations are shrunk: c'_i = m + mu (c_i - m), mu = sqrt(max(0, 1 - (s2_e / S) / var(c_i))).
    One seed or identical seeds: mu = 1 (c'_i = c_i).
    """
    values = rows.mean(axis=0)
    spread = float(values.var(ddof=1)) if len(values) > 1 else 0.0
    noise = interaction_noise(rows) / rows.shape[0]
    if rows.shape[0] < 2 or spread <= 0 or noise <= 0:
        return values
    grand = float(values.mean())
    return grand + np.sqrt(max(0.0, 1.0 - noise / spread)) * (values - grand)


def bootstrap_p(replicates: np.ndarray, null: float) -> float:
    """Two-sided bootstrap p-value of `null`: min(1, 2 min(#{T* <= null} + 1, #{T* >= null} + 1) / (B + 1))."""
    reps = np.asarray(replicates, dtype=float)
    below, above = int((reps <= null).sum()), int((reps >= null).sum())
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(reps) + 1)))


def bootstrap_interval(columns: Mapping[str, np.ndarray | Sequence], statistic: Callable[[Mapping], object],
                       *, groups: Mapping[str, str] | None = None, unit: str = "prompts", n_boot: int = 2000,
                       alpha: float = 0.05, seed: int = 0, null: float | None = None,
                       bounds: tuple[float, float] | None = None) -> Interval:
    """Percentile-bootstrap interval of `statistic` over prompts (seeds) and examples (module docstring).

    `columns` maps a name to per-example correctness, (seeds, examples) or (examples,). `groups` maps a
    name to the example set it was measured on (default: each column its own set); columns of one
    group must have the same examples in the same order and are resampled with the same indices
    (paired). Columns with more than one seed row must all have the same number S of seeds (row s is
    seed s's prompt in each) and share the seed indices. `unit='examples'` resamples examples only
    (the seeds held fixed). `statistic` receives a mapping name -> accuracy (a float for the estimate,
    an array of `n_boot` resampled accuracies for the interval) and must work elementwise on both.
    With `null`, the interval carries the two-sided bootstrap p-value of it. `bounds` (lo, hi) are the values the
    statistic can take (an accuracy [0, 1], a difference of accuracies [-1, 1]): the interval is cut to them,
    since with few seeds the Student-t prompt part can reach past them.
    """
    if not columns:
        raise ConfigError("bootstrap_interval needs at least one column")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be at least 100, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    groups = dict(groups or {})
    unknown_names = set(groups) - set(columns)
    if unknown_names:
        raise ConfigError(f"groups name columns that do not exist: {sorted(unknown_names)}")
    rows = {name: _as_rows(col) for name, col in columns.items()}
    seed_counts = sorted({r.shape[0] for r in rows.values() if r.shape[0] > 1})
    if len(seed_counts) > 1:
        raise ConfigError(f"columns with several seeds must have the same number of seeds, got {seed_counts}")
    n_seeds = seed_counts[0] if seed_counts else 1
    values = {name: r.mean(axis=0) for name, r in rows.items()}
    both = unit == "prompts" and n_seeds > 1
    resampled_values = {name: example_values(r) for name, r in rows.items()} if both else values
    group_of = {name: groups.get(name, f"__own__{name}") for name in values}
    rng = np.random.default_rng(seed)
    resampled: dict[str, np.ndarray] = {}
    for group in sorted(set(group_of.values())):
        members = [n for n in values if group_of[n] == group]
        sizes = {len(values[n]) for n in members}
        if len(sizes) != 1:
            raise ConfigError(f"columns {members} are paired (group {group!r}) but have {sorted(sizes)} examples")
        idx = rng.integers(0, sizes.pop(), size=(n_boot, len(values[members[0]])))
        for n in members:
            resampled[n] = resampled_values[n][idx].mean(axis=1)
    means = {n: float(v.mean()) for n, v in values.items()}
    estimate = float(statistic(means))
    boots = np.asarray(statistic(resampled), dtype=float)
    if both:
        sidx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        by_seed = {n: (r.mean(axis=1)[sidx].mean(axis=1) if r.shape[0] > 1 else np.full(n_boot, means[n]))
                   for n, r in rows.items()}
        spread = float(np.std(np.asarray(statistic(by_seed), dtype=float))) * np.sqrt(n_seeds / (n_seeds - 1))
        boots = boots + spread * rng.standard_t(n_seeds - 1, size=n_boot)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    if bounds is not None:
        lo, hi = max(float(lo), bounds[0]), min(float(hi), bounds[1])
    used_seeds = n_seeds if unit == "prompts" else 1
    return Interval(estimate, float(lo), float(hi), used_seeds, None if null is None else bootstrap_p(boots, null))


def accuracy_interval(correct: np.ndarray | Sequence, **kwargs) -> Interval:
    """Accuracy of (seeds, examples) correctness with its interval over prompts and examples, within [0, 1]."""
    return bootstrap_interval({"acc": correct}, lambda a: a["acc"], **{"bounds": (0.0, 1.0), **kwargs})


def majority_rate(labels: np.ndarray | Sequence) -> float:
    """Accuracy of always predicting the most frequent label: max_c (1/N) sum_i 1[y_i = c]."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ConfigError("majority_rate needs at least one label")
    return float(np.unique(labels, return_counts=True)[1].max() / labels.size)


__all__ = ["Interval", "UNITS", "seed_average", "bootstrap_interval", "accuracy_interval", "majority_rate",
           "interaction_noise", "example_values", "bootstrap_p"]
