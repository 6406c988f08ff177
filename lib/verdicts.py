"""Intervals and verdicts: what a chapter may conclude from its numbers and their uncertainty.

Three rules of the book live here, so that no chapter writes its conclusion in advance:

1. **Intervals resample what is random**: prompts (seeds) and examples (`lib.intervals.bootstrap_interval`,
   whose docstring gives the two-part bootstrap). Quantities measured on the same examples (suppressed
   vs intact, skill vs random neurons) are resampled with the same indices (paired).
2. **A prompt that does not beat its majority baseline carries no analysis.** A task counts as
   *learned* when its prompts' mean **dev** macro-F1 over seeds is >= 0.60 and the lower end of their dev
   accuracy interval lies above the dev majority rate max_c (1/N) sum_i 1[y_i = c] (`task_status`).
   The gate is a selection, so it reads dev; test is read once, for the reported accuracy.
3. **A verdict is computed and separates direction from size** (`verdict`). With the 95 % interval
   [lo, hi] of the estimate and the claim's null value and direction:
   - *supported*: the interval excludes the null on the claimed side;
   - *supported, much smaller than published*: supported, and the whole interval lies closer to the
     null than half the published effect (greater: hi < null + (published - null) / 2);
   - *contradicted*: the interval excludes the null on the other side;
   - *not supported*: the interval contains the null;
   - *untestable*: a prerequisite (learned tasks, the right backbone) is missing.
4. **Many verdicts, one error rate.** `holm` adjusts the p-values of all verdicts of a profile (Holm's
   step-down, family-wise error 5 %); `adjusted_verdict` keeps a verdict only where its adjusted p stays
   below 0.05 (it never upgrades one). Both are shown side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ConfigError
from .intervals import Interval, accuracy_interval, bootstrap_interval, majority_rate, seed_average

SUPPORTED, NOT_SUPPORTED, UNTESTABLE = "supported", "not supported", "untestable"
MUCH_SMALLER, CONTRADICTED = "supported, much smaller than published", "contradicted"
VERDICTS = (SUPPORTED, MUCH_SMALLER, NOT_SUPPORTED, CONTRADICTED, UNTESTABLE)
MUCH_SMALLER_SHARE = 0.5  # "much smaller": the whole interval within half the published effect of the null
MIN_MACRO_F1 = 0.60


@dataclass(frozen=True)
class Verdict:
    label: str  # one of VERDICTS
    reason: str


@dataclass(frozen=True)
class TaskStatus:
    """Whether a task's prompts learned it (`learned`, with the gate's evidence in `reason`) and the
    numbers reported for it (`accuracy`, `macro_f1`, `majority`, on the `reported` split)."""

    task: str
    accuracy: Interval
    macro_f1: float
    majority: float
    learned: bool
    reason: str
    gate: str = "dev"  # the split the learned gate read
    reported: str = "test"  # the split of accuracy, macro_f1 and majority


def _gate(correct: np.ndarray, labels: np.ndarray | Sequence, macro_f1_per_seed: Sequence[float],
          min_macro_f1: float, split: str, **kwargs) -> tuple[Interval, float, float, list[str], str]:
    acc = accuracy_interval(correct, **kwargs)
    f1 = float(np.mean(macro_f1_per_seed))
    majority = majority_rate(labels)
    problems = []
    if not f1 >= min_macro_f1:
        problems.append(f"mean {split} macro-F1 {f1:.3f} < {min_macro_f1:.2f}")
    if not acc.lo > majority:
        problems.append(f"{split} accuracy interval [{acc.lo:.3f}, {acc.hi:.3f}] does not lie above the "
                        f"majority rate {majority:.3f}")
    reason = "; ".join(problems) if problems else (f"{split} macro-F1 {f1:.3f} >= {min_macro_f1:.2f} and {split} "
                                                   f"accuracy interval above the majority rate {majority:.3f}")
    return acc, f1, majority, problems, reason


def task_status(task: str, correct: np.ndarray, labels: np.ndarray | Sequence, macro_f1_per_seed: Sequence[float],
                *, report: tuple | None = None, gate: str = "dev", min_macro_f1: float = MIN_MACRO_F1,
                **kwargs) -> TaskStatus:
    """Whether the prompts of `task` learned it (rule 2 of the module docstring), with the evidence.

    (`correct`, `labels`, `macro_f1_per_seed`) are the gate's split (`gate`, dev); `report` the same
    triple on the split whose numbers are reported (test), read only for those numbers. Without
    `report` the gate's numbers are reported (one split for both: say so where it is used).
    """
    acc, f1, majority, problems, reason = _gate(correct, labels, macro_f1_per_seed, min_macro_f1, gate, **kwargs)
    if report is None:
        return TaskStatus(task, acc, f1, majority, not problems, reason, gate, gate)
    r_correct, r_labels, r_f1 = report
    return TaskStatus(task, accuracy_interval(r_correct, **kwargs), float(np.mean(r_f1)), majority_rate(r_labels),
                      not problems, reason, gate, "test")


def verdict(interval: Interval | None, *, direction: str = "greater", null: float = 0.0,
            missing: str = "", published: float | None = None) -> Verdict:
    """The verdict of rule 3 (module docstring): supported (or much smaller than the `published` effect,
    given on the estimate's scale), contradicted, not supported, or untestable when `missing` names an
    unmet prerequisite (or there is no interval)."""
    if direction not in ("greater", "less"):
        raise ConfigError(f"direction must be 'greater' or 'less', got {direction!r}")
    if missing or interval is None:
        return Verdict(UNTESTABLE, missing or "no estimate")
    side, other = (">", "<") if direction == "greater" else ("<", ">")
    holds = interval.lo > null if direction == "greater" else interval.hi < null
    against = interval.hi < null if direction == "greater" else interval.lo > null
    where = f"[{interval.lo:.3f}, {interval.hi:.3f}]"
    if against:
        return Verdict(CONTRADICTED, f"95 % interval {where} lies entirely {other} {null:g}, against the claim")
    if not holds:
        return Verdict(NOT_SUPPORTED, f"95 % interval {where} does not lie entirely {side} {null:g}")
    if published is not None and (published - null) * (1 if direction == "greater" else -1) > 0:
        half = null + MUCH_SMALLER_SHARE * (published - null)
        far = interval.hi if direction == "greater" else interval.lo
        if (far < half) if direction == "greater" else (far > half):
            return Verdict(MUCH_SMALLER, f"95 % interval {where} lies entirely {side} {null:g}, but within half "
                                         f"the published effect ({published:g}: bound {half:g})")
    return Verdict(SUPPORTED, f"95 % interval {where} lies entirely {side} {null:g}")


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None, e.g. an untestable claim):
    with the m given p sorted, p_(1) <= ... <= p_(m), p_adj(k) = max_{j <= k} min(1, (m - j + 1) p_(j))."""
    given = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, _ in given:
        if not 0 <= p <= 1:
            raise ConfigError(f"p-values must lie in [0, 1], got {p}")
    out: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(given)
    for j, (p, i) in enumerate(sorted(given)):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


def adjusted_verdict(v: Verdict, p_adjusted: float | None, alpha: float = 0.05) -> Verdict:
    """`v` after a multiplicity correction: kept when its adjusted p stays below `alpha`, else *not
    supported*; never upgraded (a not-supported or untestable verdict stays what it is)."""
    if v.label in (UNTESTABLE, NOT_SUPPORTED) or p_adjusted is None:
        return v
    if p_adjusted < alpha:
        return Verdict(v.label, f"Holm-adjusted p = {p_adjusted:.3g} < {alpha:g}")
    return Verdict(NOT_SUPPORTED, f"Holm-adjusted p = {p_adjusted:.3g} >= {alpha:g} (unadjusted: {v.label})")


def describe(claim: str, interval: Interval | None, v: Verdict, unit: str = "") -> str:
    """One sentence stating a claim's computed verdict, for a chapter's conclusion."""
    if v.label == UNTESTABLE:
        return f"**{claim}: untestable here** ({v.reason})."
    est = f"{interval.estimate:.3f}{unit} (95 % interval {interval.lo:.3f} to {interval.hi:.3f}{unit})"
    return f"**{claim}: {v.label}.** Estimate {est}; {v.reason}."


__all__ = ["Interval", "Verdict", "TaskStatus", "SUPPORTED", "NOT_SUPPORTED", "UNTESTABLE", "VERDICTS",
           "MUCH_SMALLER", "CONTRADICTED", "MUCH_SMALLER_SHARE", "holm", "adjusted_verdict",
           "MIN_MACRO_F1", "seed_average", "bootstrap_interval", "accuracy_interval", "majority_rate",
           "task_status", "verdict", "describe"]
