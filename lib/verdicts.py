"""Intervals and verdicts: what a chapter may conclude from its numbers and their uncertainty.

Three rules of the book live here, so that no chapter writes its conclusion in advance:

1. **Intervals resample examples.** A prompt's accuracy is a mean over test examples; the seeds'
   prompts are evaluated on the *same* examples, so the seeds are averaged per example first,
   c_i = (1/S) sum_s 1[yhat_{s,i} = y_i], and the percentile bootstrap resamples the examples i:
   Acc* = (1/N) sum_i c_{I_i}, I_i ~ U{1..N}. Pooling S x N predictions as independent draws makes the
   interval about sqrt(S)-fold too narrow when the seeds agree (`lib.intervals.bootstrap_interval`).
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
from typing import Sequence

import numpy as np

from .errors import ConfigError
from .intervals import Interval, accuracy_interval, bootstrap_interval, majority_rate, seed_average

SUPPORTED, NOT_SUPPORTED, UNTESTABLE = "supported", "not supported", "untestable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, UNTESTABLE)
MIN_MACRO_F1 = 0.60


@dataclass(frozen=True)
class Verdict:
    label: str  # one of VERDICTS
    reason: str


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
