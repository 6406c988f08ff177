"""RN3's second null: does the most predictive neuron, chosen on dev, carry label information on test at all?

RN3's verdict (`lib.claims.skill_neuron_claim`) compares the tuned prompts' best neuron with the untuned
prompts' one. This module adds the label-permutation test the issue asks for beside it. The neuron, its
prompt position and its sign are chosen on dev (`lib.claims.held_out_neuron`), so on test the rule
r(x) in {0, 1} is fixed; under the null "the rule is independent of the test label" every permutation of the
test labels is equally likely. With S seeds and learned binary tasks T,

    A = (1/|T|) sum_t (1/S) sum_s (1/N_t) sum_i 1[r_{t,s}(x_i) = y_i]              (observed)
    A_b = the same with each task's test labels permuted by pi_{t,b} (one permutation per task, shared by
          its seeds, because the seeds read the same examples), b = 1..B
    p = (1 + #{b : A_b >= A}) / (1 + B)                                             (one-sided, exact)

It cannot fail for a trivial reason: a rule that predicts one class scores the majority rate under every
permutation, so A_b does not sit at 0.5 but where a label-blind rule of the same class balance sits.

Outside `lib.store.code_version()`; its table is keyed by the profile, `lib.claims.evidence_version` (the
neuron choice) and this module's code.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from .code_identity import version
from .errors import ConfigError

if TYPE_CHECKING:
    from .experiments import Experiment
    from .verdicts import TaskStatus

N_PERMUTATIONS = 1000
COLUMNS = ("task", "observed", "null_mean", "null_q95", "p", "n_seeds", "n_examples", "permutations")


def permutation_null(predictions: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                     n_permutations: int = N_PERMUTATIONS, seed: int = 0) -> pd.DataFrame:
    """Observed held-out accuracy against the label-permutation null, per task and pooled ('all').

    `predictions[t]`: (seeds, examples) 0/1 predictions of the fixed rules; `labels[t]`: (examples,) labels.
    Rows: task, observed accuracy, mean and 95th percentile of the null, one-sided p (module docstring)."""
    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be >= 1, got {n_permutations}")
    if not predictions or set(predictions) != set(labels):
        raise ConfigError(f"predictions and labels must name the same tasks, got {sorted(predictions)} and {sorted(labels)}")
    rng = np.random.default_rng(seed)
    observed, null = {}, {}
    for task in sorted(predictions):
        pred = np.atleast_2d(np.asarray(predictions[task], dtype=int))
        y = np.asarray(labels[task], dtype=int)
        if pred.shape[1] != len(y) or len(y) == 0:
            raise ConfigError(f"{task}: predictions {pred.shape} do not match {len(y)} labels")
        observed[task] = float((pred == y).mean())
        perms = np.stack([y[rng.permutation(len(y))] for _ in range(n_permutations)])  # (B, N)
        # mean over seeds of each rule's accuracy under each permutation: (B,)
        null[task] = (pred[None, :, :] == perms[:, None, :]).mean(axis=(1, 2))
    rows = []
    n_seeds = min(np.atleast_2d(predictions[t]).shape[0] for t in predictions)
    for task in [*sorted(predictions), "all"]:
        obs = float(np.mean([observed[t] for t in predictions])) if task == "all" else observed[task]
        dist = np.mean([null[t] for t in predictions], axis=0) if task == "all" else null[task]
        n_examples = sum(len(labels[t]) for t in predictions) if task == "all" else len(labels[task])
        rows.append({"task": task, "observed": obs, "null_mean": float(dist.mean()),
                     "null_q95": float(np.quantile(dist, 0.95)), "p": float((1 + (dist >= obs).sum()) / (1 + len(dist))),
                     "n_seeds": int(n_seeds), "n_examples": int(n_examples), "permutations": int(n_permutations)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def rule_predictions(exp: Experiment, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, examples) test predictions of the tuned prompts' best dev neuron (RN3's tuned arm), and the labels.

    `held_out_neuron` returns correctness c = 1[r(x) = y]; the rule's prediction is y where c = 1, else 1 - y."""
    from .claims import best_neuron, held_out_neuron

    layer, neuron = best_neuron(exp.mean_scores(task, split="dev"))
    y = np.asarray(exp.encoded(task, "test").labels, dtype=int)
    correct = np.stack([held_out_neuron(exp, task, exp.prompt(task, s), layer, neuron) for s in exp.profile.seeds])
    return np.where(correct == 1, y[None, :], 1 - y[None, :]).astype(int), y


def rn3_permutation_table(exp: Experiment, statuses: Mapping[str, TaskStatus],
                          n_permutations: int = N_PERMUTATIONS) -> pd.DataFrame:
    """`permutation_null` over RN3's tasks (learned, binary), cached in the results store; empty without them."""
    from .claims import evidence_version, learned_tasks

    tasks = [t for t in learned_tasks(dict(statuses)) if exp.task(t).num_labels == 2]
    key = {"profile": exp.profile.as_dict(), "control": exp.control, "evidence": evidence_version(),
           "module": version("label permutation"), "tasks": tasks, "permutations": n_permutations}

    def compute() -> pd.DataFrame:
        if not tasks:
            return pd.DataFrame(columns=list(COLUMNS))
        preds, labels = {}, {}
        for t in tasks:
            preds[t], labels[t] = rule_predictions(exp, t)
        return permutation_null(preds, labels, n_permutations)

    return exp.store.table("rn3-label-permutation", key, compute)


def permutation_sentence(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """The computed sentence for the Claims page: the pooled result and each task's, with the outcome."""
    if table.empty:
        return "RN3 against the label-permutation null: untestable here (no learned binary task)."
    pooled = table.set_index("task").loc["all"]
    holds = pooled.p < alpha and pooled.observed > pooled.null_q95
    per = "; ".join(f"{r.task} {r.observed:.3f} vs {r.null_q95:.3f} (p = {r.p:.3g})"
                    for r in table.itertuples() if r.task != "all")
    return (f"**RN3 against the label-permutation null: {'supported' if holds else 'not supported'}.** The held-out "
            f"accuracy of the tuned prompts' best dev neuron on test is {pooled.observed:.3f}; with the test labels "
            f"permuted {int(pooled.permutations):,} times the same rules score {pooled.null_mean:.3f} on average "
            f"(95th percentile {pooled.null_q95:.3f}), one-sided p = {pooled.p:.3g}. Per task (observed vs 95th "
            f"percentile): {per}.")


PERMUTATION_NAME = "RN3 against the label-permutation null"


def ledger_entry(table: pd.DataFrame, alpha: float = 0.05):
    """The permutation test as a row of the profile's verdict family (`lib.ledger`, chapter 'claims')."""
    from .ledger import Entry
    from .verdicts import NOT_SUPPORTED, SUPPORTED, UNTESTABLE

    if table.empty:
        return Entry("claims", PERMUTATION_NAME, None, None, None, None, None, "", UNTESTABLE, "no learned binary task")
    r = table.set_index("task").loc["all"]
    holds = r.p < alpha and r.observed > r.null_q95
    reason = (f"held-out accuracy {r.observed:.3f} against the permutation null's 95th percentile {r.null_q95:.3f} "
              f"(one-sided p = {r.p:.3g}, {int(r.permutations)} permutations)")
    return Entry("claims", PERMUTATION_NAME, float(r.observed), None, None, float(r.null_mean), float(r.p),
                 "label permutation (one-sided)", SUPPORTED if holds else NOT_SUPPORTED, reason)


__all__ = ["ledger_entry", "PERMUTATION_NAME", "permutation_null", "rule_predictions", "rn3_permutation_table", "permutation_sentence", "N_PERMUTATIONS",
           "COLUMNS"]
