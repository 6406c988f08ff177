"""Example-resampling intervals: the statistics every interval in the book is computed with.

Kept apart from `lib.verdicts` (the wording of conclusions) because cached chapter tables use them:
this module is inside `lib.store.code_version()`'s closure, the verdicts are not.

**Intervals resample examples.** A prompt's accuracy is a mean over test examples; the seeds'
prompts are evaluated on the *same* examples, so the seeds are averaged per example first,
c_i = (1/S) sum_s 1[yhat_{s,i} = y_i], and the percentile bootstrap resamples the examples i:
Acc* = (1/N) sum_i c_{I_i}, I_i ~ U{1..N}. Pooling S x N predictions as independent draws makes the
interval about sqrt(S)-fold too narrow when the seeds agree (`bootstrap_interval`). Quantities
measured on the same examples (suppressed vs intact, skill vs random neurons) are resampled with the
same indices (paired); different example sets independently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval (level 1 - alpha)."""

    estimate: float
    lo: float
    hi: float

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


def bootstrap_interval(columns: Mapping[str, np.ndarray | Sequence], statistic: Callable[[Mapping], object],
                       *, groups: Mapping[str, str] | None = None, n_boot: int = 2000, alpha: float = 0.05,
                       seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of `statistic` over example resamples.

    `columns` maps a name to per-example correctness, (seeds, examples) or (examples,). `groups` maps a
    name to the example set it was measured on (default: each column its own set); columns of one
    group must have the same examples in the same order and are resampled with the same indices
    (paired). `statistic` receives a mapping name -> accuracy (a float for the estimate, an array of
    `n_boot` resampled accuracies for the interval) and must work elementwise on both.
    """
    if not columns:
        raise ConfigError("bootstrap_interval needs at least one column")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be at least 100, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    groups = dict(groups or {})
    unknown_names = set(groups) - set(columns)
    if unknown_names:
        raise ConfigError(f"groups name columns that do not exist: {sorted(unknown_names)}")
    values = {name: seed_average(col) for name, col in columns.items()}
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
            resampled[n] = values[n][idx].mean(axis=1)
    estimate = float(statistic({n: float(v.mean()) for n, v in values.items()}))
    boots = np.asarray(statistic(resampled), dtype=float)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(lo), float(hi))


def accuracy_interval(correct: np.ndarray | Sequence, **kwargs) -> Interval:
    """Accuracy of (seeds, examples) correctness with its example-resampling interval."""
    return bootstrap_interval({"acc": correct}, lambda a: a["acc"], **kwargs)


def majority_rate(labels: np.ndarray | Sequence) -> float:
    """Accuracy of always predicting the most frequent label: max_c (1/N) sum_i 1[y_i = c]."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ConfigError("majority_rate needs at least one label")
    return float(np.unique(labels, return_counts=True)[1].max() / labels.size)


__all__ = ["Interval", "seed_average", "bootstrap_interval", "accuracy_interval", "majority_rate"]
