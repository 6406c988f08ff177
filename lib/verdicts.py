"""Intervals and verdicts: what a chapter may conclude from its numbers and their uncertainty.

Three rules of the book live here, so that no chapter writes its conclusion in advance:

1. **Intervals resample examples.** A prompt's accuracy is a mean over test examples; the seeds'
   prompts are evaluated on the *same* examples, so the seeds are averaged per example first,
   c_i = (1/S) sum_s 1[yhat_{s,i} = y_i], and the percentile bootstrap resamples the examples i:
   Acc* = (1/N) sum_i c_{I_i}, I_i ~ U{1..N}. Pooling S x N predictions as independent draws makes the
   interval about sqrt(S)-fold too narrow when the seeds agree (`bootstrap_interval`).
   Quantities measured on the same examples (suppressed vs intact, skill vs random neurons) are
   resampled with the same indices (paired); different example sets independently.
2. **A prompt that does not beat its majority baseline carries no analysis.** A task counts as
   *learned* when its mean test macro-F1 over seeds is >= 0.60 and the lower end of its accuracy
   interval lies above the majority rate max_c (1/N) sum_i 1[y_i = c] (`task_status`).
3. **A verdict is computed.** A claim is *supported* when the interval of its estimate excludes the
   null value in the claimed direction, *not supported* when it does not, and *untestable* when its
   prerequisites (learned tasks, the right backbone) are missing (`verdict`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError

SUPPORTED, NOT_SUPPORTED, UNTESTABLE = "supported", "not supported", "untestable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, UNTESTABLE)
MIN_MACRO_F1 = 0.60


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval (level 1 - alpha)."""

    estimate: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


@dataclass(frozen=True)
class Verdict:
    label: str  # one of VERDICTS
    reason: str


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


@dataclass(frozen=True)
class TaskStatus:
    task: str
    accuracy: Interval
    macro_f1: float
    majority: float
    learned: bool
    reason: str


def task_status(task: str, correct: np.ndarray, labels: np.ndarray | Sequence, macro_f1_per_seed: Sequence[float],
                *, min_macro_f1: float = MIN_MACRO_F1, **kwargs) -> TaskStatus:
    """Whether the prompts of `task` learned it (rule 2 of the module docstring), with the evidence."""
    acc = accuracy_interval(correct, **kwargs)
    f1 = float(np.mean(macro_f1_per_seed))
    majority = majority_rate(labels)
    problems = []
    if not f1 >= min_macro_f1:
        problems.append(f"mean macro-F1 {f1:.3f} < {min_macro_f1:.2f}")
    if not acc.lo > majority:
        problems.append(f"accuracy interval [{acc.lo:.3f}, {acc.hi:.3f}] does not lie above the majority rate "
                        f"{majority:.3f}")
    reason = "; ".join(problems) if problems else (f"macro-F1 {f1:.3f} >= {min_macro_f1:.2f} and accuracy "
                                                   f"interval above the majority rate {majority:.3f}")
    return TaskStatus(task, acc, f1, majority, not problems, reason)


def verdict(interval: Interval | None, *, direction: str = "greater", null: float = 0.0,
            missing: str = "") -> Verdict:
    """Supported when the interval lies entirely on the claimed side of `null`; untestable when
    `missing` names an unmet prerequisite (or there is no interval)."""
    if direction not in ("greater", "less"):
        raise ConfigError(f"direction must be 'greater' or 'less', got {direction!r}")
    if missing or interval is None:
        return Verdict(UNTESTABLE, missing or "no estimate")
    side = ">" if direction == "greater" else "<"
    holds = interval.lo > null if direction == "greater" else interval.hi < null
    where = f"[{interval.lo:.3f}, {interval.hi:.3f}]"
    if holds:
        return Verdict(SUPPORTED, f"95 % interval {where} lies entirely {side} {null:g}")
    return Verdict(NOT_SUPPORTED, f"95 % interval {where} does not lie entirely {side} {null:g}")


def describe(claim: str, interval: Interval | None, v: Verdict, unit: str = "") -> str:
    """One sentence stating a claim's computed verdict, for a chapter's conclusion."""
    if v.label == UNTESTABLE:
        return f"**{claim}: untestable here** ({v.reason})."
    est = f"{interval.estimate:.3f}{unit} (95 % interval {interval.lo:.3f} to {interval.hi:.3f}{unit})"
    return f"**{claim}: {v.label}.** Estimate {est}; {v.reason}."


__all__ = ["Interval", "Verdict", "TaskStatus", "SUPPORTED", "NOT_SUPPORTED", "UNTESTABLE", "VERDICTS",
           "MIN_MACRO_F1", "seed_average", "bootstrap_interval", "accuracy_interval", "majority_rate",
           "task_status", "verdict", "describe"]
