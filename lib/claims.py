"""The claims table: each claim of the references, our estimate with its interval, the published
figure and a computed verdict (`lib.verdicts`), for one profile.

    statuses = task_statuses(exp)          # which prompts learned their task (accuracy vs majority)
    table = claims_table(exp, statuses)    # one row per claim
    write_claims(table, exp.shared)        # results/<profile>/claims.csv and claims.md

Only tasks whose prompts *learned* (gate on **dev**: mean macro-F1 >= 0.60, accuracy interval above the
majority rate) enter a claim; a claim whose prerequisites are missing is *untestable*, with the reason.
Every interval resamples prompts (seeds) and examples (`lib.intervals.bootstrap_interval`); the table
also carries the examples-only interval (seeds held fixed) so that a reader sees what the prompts add.
**Select on dev, evaluate on test**: neurons are chosen on the dev split (predictivity averaged over
the seeds, `Experiment.mean_scores(split='dev')`) and tested on test, never on the examples they were
chosen on; thresholds come from a label-balanced random sample of train. Test is read for the
reported numbers only. A Holm correction over the table's tested claims stands beside each verdict
(`with_holm`).

This module is evaluation only (forward passes of finished prompts, a few minutes on the mini profile
on 2 CPU cores). `statuses_cached` and `claims_cached` keep its two tables in the results store, keyed
by the profile and by the code of this module and `lib.verdicts` (besides the store's own code version).
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from .analyses import random_per_layer
from .code_identity import version
from .evaluation import evaluate
from .hooks import intervene_ffn
from .skill_neurons import iter_activations, top_per_layer
from .verdicts import (UNTESTABLE, Interval, TaskStatus, Verdict, bootstrap_interval, task_status, verdict)

if TYPE_CHECKING:
    from .experiments import Experiment

COLUMNS = ("claim_id", "claim", "paper", "backbone", "profile", "tasks", "estimate", "lo", "hi", "n_seeds",
           "lo_examples", "hi_examples", "null", "p", "published", "published_value", "published_source", "verdict",
           "reason", "tasks_supported", "per_task", "p_holm", "verdict_holm", "reason_holm")


@dataclass(frozen=True)
class Evaluated:
    """Per-seed predictions of prompts on one example set."""

    correct: np.ndarray  # (seeds, examples) 0/1
    labels: np.ndarray  # (examples,)
    macro_f1: tuple[float, ...]


@dataclass(frozen=True)
class Estimate:
    """A claim's estimate: the interval over prompts and examples (with the p-value of the claim's null)
    and, for comparison, the interval over examples only (the seeds' prompts held fixed)."""

    interval: Interval
    examples_only: Interval
    per_task: tuple[tuple[str, Interval], ...] = ()  # the same statistic on each task alone


def estimate(columns: dict, statistic, *, null: float = 0.0, groups: dict | None = None,
             per_task: dict | None = None, **boot) -> Estimate:
    """Both intervals of one pooled statistic (`lib.intervals.bootstrap_interval`), drawn with the same seed,
    and, for `per_task` (task -> the statistic restricted to that task), each task's interval over prompts
    and examples: a pooled verdict is shown with the tasks it holds on."""
    # every claim's statistic is an accuracy or a difference of accuracies: its interval lies in [-1, 1]
    boot = {"bounds": (-1.0, 1.0), **{k: v for k, v in boot.items() if k != "unit"}}
    tasks = tuple((t, bootstrap_interval(columns, stat, groups=groups, null=null, **boot))
                  for t, stat in (per_task or {}).items())
    return Estimate(bootstrap_interval(columns, statistic, groups=groups, null=null, **boot),
                    bootstrap_interval(columns, statistic, groups=groups, unit="examples", **boot), tasks)


def evaluated(exp: Experiment, task: str, split: str = "test", source: str | None = None) -> Evaluated:
    """The seeds' prompts of `source` (default `task`) on `task`'s `split`, with the target's verbalizer."""
    source = source or task
    results = [evaluate(exp.backbone, exp.prompt(source, s), exp.task(task), exp.encoded(task, split),
                        max_length=exp.max_length(task)) for s in exp.profile.seeds]
    correct = np.stack([(r.predictions == r.labels).astype(float) for r in results])
    return Evaluated(correct, results[0].labels, tuple(r.macro_f1 for r in results))


def task_statuses(exp: Experiment) -> dict[str, TaskStatus]:
    """Which of the profile's prompts learned their task: the gate reads dev, the reported accuracy is test's."""
    out = {}
    for task in exp.profile.tasks:
        dev, test = evaluated(exp, task, "dev"), evaluated(exp, task)
        out[task] = task_status(task, dev.correct, dev.labels, dev.macro_f1,
                                report=(test.correct, test.labels, test.macro_f1))
    return out


def status_table(exp: Experiment, statuses: dict[str, TaskStatus]) -> pd.DataFrame:
    rows = [{"task": s.task, "type": exp.task(s.task).task_type, "accuracy": s.accuracy.estimate, "lo": s.accuracy.lo,
             "hi": s.accuracy.hi, "n_seeds": s.accuracy.n_seeds, "macro_f1": s.macro_f1, "majority": s.majority,
             "status": "learned" if s.learned else "untestable", "gate": s.gate, "reason": s.reason}
            for s in statuses.values()]
    return pd.DataFrame(rows)


def learned_tasks(statuses: dict[str, TaskStatus]) -> list[str]:
    return [t for t, s in statuses.items() if s.learned]


# --- claim 1: transfer within a type ---------------------------------------------------------------------
def type_pairs(types: dict[str, str], labels: dict[str, tuple] | None = None
               ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Ordered pairs (source, target) of distinct tasks: within a type, and across types.

    With `labels`, a within-type pair must also share its label names: zero-shot transfer reads the
    target's label words, so a prompt can only carry over where label i means the same thing
    (positive/positive), as in the references' types; two topic tasks with different topics are then
    neither within nor across, and are left out.
    """
    pairs = [(a, b) for a in types for b in types if a != b]
    same_labels = (lambda a, b: labels[a] == labels[b]) if labels is not None else (lambda a, b: True)
    within = [(a, b) for a, b in pairs if types[a] == types[b] and same_labels(a, b)]
    return within, [(a, b) for a, b in pairs if types[a] != types[b]]


def published_transfer_gap(model: str = "roberta-base") -> float:
    """Within- minus across-type mean zero-shot transfer in Su et al.'s matrix (`lib.published`)."""
    from .published import published_transfer_gap as gap

    return gap(model)


def transfer_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot) -> tuple[Estimate | None, str, str]:
    learned = learned_tasks(statuses)
    types = {t: exp.task(t).task_type for t in learned}
    within, across = type_pairs(types, {t: exp.task(t).label_names for t in learned})
    if not within or not across:
        kinds = ", ".join(f"{n} {k}" for k, n in pd.Series(types).value_counts().items()) if types else "none"
        return None, (f"needs learned tasks in two types, two of them in one type with the same labels; "
                      f"learned: {kinds}"), ""
    columns, groups = {}, {}
    for a, b in within + across:
        columns[f"{a}->{b}"] = evaluated(exp, b, source=a).correct
        groups[f"{a}->{b}"] = b  # pairs with the same target share its test examples
    w, x = [f"{a}->{b}" for a, b in within], [f"{a}->{b}" for a, b in across]
    def gap(src: str | None):
        ww = [f"{a}->{b}" for a, b in within if src in (None, a)]
        xx = [f"{a}->{b}" for a, b in across if src in (None, a)]
        return lambda acc: sum(acc[k] for k in ww) / len(ww) - sum(acc[k] for k in xx) / len(xx)

    sources = [t for t in learned if any(a == t for a, _ in within) and any(a == t for a, _ in across)]
    est = estimate(columns, gap(None), groups=groups, per_task={t: gap(t) for t in sources}, **boot)
    return est, "", ", ".join(learned)


# --- claim 2: adversarial accuracy ------------------------------------------------------------------------
def adversarial_claims(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    """(drop vs clean, below chance): adversarial minus clean accuracy, and adversarial accuracy vs 0.5."""
    tasks = [t for t in learned_tasks(statuses) if t in exp.profile.adversarial]
    if not tasks:
        missing = f"no learned task has an adversarial set (learned: {', '.join(learned_tasks(statuses)) or 'none'})"
        return (None, missing, ""), (None, missing, "")
    columns = {}
    for t in tasks:
        columns[f"clean:{t}"] = evaluated(exp, t).correct
        columns[f"adv:{t}"] = evaluated(exp, exp.profile.adversarial[t], split="test", source=t).correct
    clean = lambda acc: sum(acc[f"clean:{t}"] for t in tasks) / len(tasks)  # noqa: E731
    adv = lambda acc: sum(acc[f"adv:{t}"] for t in tasks) / len(tasks)  # noqa: E731
    names = ", ".join(tasks)
    drop_t = {t: (lambda acc, t=t: acc[f"adv:{t}"] - acc[f"clean:{t}"]) for t in tasks}
    level_t = {t: (lambda acc, t=t: acc[f"adv:{t}"]) for t in tasks}
    return ((estimate(columns, lambda acc: adv(acc) - clean(acc), per_task=drop_t, **boot), "", names),
            (estimate(columns, adv, null=0.5, per_task=level_t, **boot), "", names))


# --- claim 3: skill neurons exist (held out) ------------------------------------------------------------
def _neuron_values(exp: Experiment, task: str, prompt: torch.Tensor, split: str, layer: int,
                   neuron: int) -> tuple[np.ndarray, np.ndarray]:
    """(examples, prompt positions) activations of one neuron under `prompt`, and the labels; 'train' is
    the experiment's label-balanced random threshold sample (`Experiment.encoded`)."""
    enc = exp.encoded(task, split)
    values = np.zeros((len(enc), prompt.shape[0]), dtype=np.float64)
    for idx, acts in iter_activations(exp.backbone, prompt, enc):
        values[idx] = acts[:, layer, :, neuron].double().cpu().numpy()
    return values, enc.labels


def held_out_neuron(exp: Experiment, task: str, prompt: torch.Tensor, layer: int, neuron: int) -> np.ndarray:
    """Per-example correctness on test of one neuron whose position and sign were chosen on dev.

    Threshold: mean activation over a label-balanced random train sample. On dev, the prompt position
    p and the sign (fires for label 1, or for label 0) with the highest accuracy are chosen; on test
    the rule [a_p(x) > t_p] == y (or its negation) is then applied unchanged.
    """
    thr = _neuron_values(exp, task, prompt, "train", layer, neuron)[0].mean(axis=0)
    dev, y_dev = _neuron_values(exp, task, prompt, "dev", layer, neuron)
    acc = ((dev > thr) == y_dev[:, None]).mean(axis=0)
    p = int(np.argmax(np.maximum(acc, 1 - acc)))
    flip = acc[p] < 0.5
    test, y_test = _neuron_values(exp, task, prompt, "test", layer, neuron)
    return (((test[:, p] > thr[p]) == y_test) != flip).astype(float)


def untuned_prompt(exp: Experiment, task: str, seed: int) -> torch.Tensor:
    """The prompt the tuning of (task, seed) started from (`lib.prompt.init_prompt`): the control of RN3."""
    from .prompt import init_prompt

    cfg = exp.tune_config(seed, task)
    return init_prompt(exp.backbone, cfg.prompt_length, cfg.init, seed)


def best_neuron(scores: torch.Tensor) -> tuple[int, int]:
    """(layer, neuron) of the highest predictivity in a (layers, neurons) table."""
    layer, neuron = divmod(int(scores.argmax()), scores.shape[1])
    return layer, neuron


def skill_neuron_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    """RN3: held-out accuracy on test of the most predictive neuron chosen on dev, tuned prompts minus the
    untuned prompts they started from (each arm chooses its own neuron on dev). Why not against the
    majority rate: a frozen pretrained model already encodes the label, so any prompt's best neuron beats
    it; what tuning adds is the gap to the untuned prompt (the label-permutation null lies lower still)."""
    from .skill_neurons import compute_predictivity

    tasks = [t for t in learned_tasks(statuses) if exp.task(t).num_labels == 2]
    if not tasks:
        return None, "no learned binary task", ""
    columns, groups = {}, {}
    for t in tasks:
        layer, neuron = best_neuron(exp.mean_scores(t, split="dev"))
        columns[f"tuned:{t}"] = np.stack([held_out_neuron(exp, t, exp.prompt(t, s), layer, neuron)
                                          for s in exp.profile.seeds])
        starts = {s: untuned_prompt(exp, t, s) for s in exp.profile.seeds}
        untuned_scores = torch.stack([compute_predictivity(exp.backbone, starts[s], exp.task(t), exp.encoded(t, "train"),
                                                           exp.encoded(t, "dev"), progress=False).per_neuron()
                                      for s in exp.profile.seeds]).float().mean(dim=0)
        u_layer, u_neuron = best_neuron(untuned_scores)
        columns[f"untuned:{t}"] = np.stack([held_out_neuron(exp, t, starts[s], u_layer, u_neuron)
                                            for s in exp.profile.seeds])
        groups[f"tuned:{t}"] = groups[f"untuned:{t}"] = t  # same test examples: paired
    est = estimate(columns, lambda acc: sum(acc[f"tuned:{t}"] - acc[f"untuned:{t}"] for t in tasks) / len(tasks),
                   groups=groups, per_task={t: (lambda acc, t=t: acc[f"tuned:{t}"] - acc[f"untuned:{t}"]) for t in tasks},
                   **boot)
    return est, "", ", ".join(tasks)


# --- claim 5: suppression (Skill-Neuron) ------------------------------------------------------------------
def suppression_correct(exp: Experiment, task: str, seed: int, mask: torch.Tensor, draw_seed: int) -> np.ndarray:
    """Per-example correctness on test of the prompt (task, seed) with the `mask` neurons set to zero."""
    with intervene_ffn(exp.backbone, mask, "zero", seed=draw_seed):
        r = evaluate(exp.backbone, exp.prompt(task, seed), exp.task(task), exp.encoded(task, "test"),
                     max_length=exp.max_length(task))
    return (r.predictions == r.labels).astype(float)


def suppression_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    """SN1: test accuracy with `n_random_draws` random neuron sets suppressed (averaged per prompt) minus
    with the skill neurons suppressed (top fraction per layer of the dev predictivity)."""
    tasks = learned_tasks(statuses)
    fraction = max(exp.profile.suppression_fractions)
    if not tasks or fraction == 0:
        return None, "no learned task" if not tasks else "no suppression fraction > 0", ""
    columns, groups = {}, {}
    for t in tasks:
        skill = top_per_layer(exp.mean_scores(t, split="dev"), fraction=fraction)  # selected on dev
        n = int(skill[0].sum())
        gen = torch.Generator().manual_seed(0)
        s_rows, r_rows = [], []
        for seed in exp.profile.seeds:
            s_rows.append(suppression_correct(exp, t, seed, skill, seed))
            draws = [suppression_correct(exp, t, seed, random_per_layer(tuple(skill.shape), n, gen), seed + 1 + d)
                     for d in range(exp.profile.n_random_draws)]
            r_rows.append(np.mean(draws, axis=0))
        columns[f"skill:{t}"], columns[f"random:{t}"] = np.stack(s_rows), np.stack(r_rows)
        groups[f"skill:{t}"] = groups[f"random:{t}"] = t  # same test examples: paired
    est = estimate(columns, lambda acc: sum(acc[f"random:{t}"] - acc[f"skill:{t}"] for t in tasks) / len(tasks),
                   groups=groups, per_task={t: (lambda acc, t=t: acc[f"random:{t}"] - acc[f"skill:{t}"]) for t in tasks},
                   **boot)
    return est, "", ", ".join(tasks)


# --- sentences for the chapters ------------------------------------------------------------------------
def status_sentence(statuses: dict[str, TaskStatus]) -> str:
    """Which tasks were learned, each with its accuracy interval and majority rate; the others with why not."""
    learned = [s for s in statuses.values() if s.learned]
    parts = [f"{s.task} {s.accuracy.estimate:.1%} [{s.accuracy.lo:.1%}, {s.accuracy.hi:.1%}] vs majority "
             f"{s.majority:.1%}" for s in learned]
    lines = [f"**Learned ({len(learned)} of {len(statuses)}):** {'; '.join(parts) or 'none'}."]
    others = [s for s in statuses.values() if not s.learned]
    if others:
        lines.append("**Untestable** (no claim uses them): " + "; ".join(f"{s.task} ({s.reason})" for s in others) + ".")
    return " ".join(lines)


def claim_sentence(table: pd.DataFrame, claim_id: str) -> str:
    """The computed verdict of one claim of `claims_table`, as a sentence (`lib.verdicts.describe`): the
    interval over prompts and examples, the examples-only one beside it, the published figure with its
    source, and the Holm-adjusted verdict where the table has one (the full table: `claims_cached()`)."""
    from .verdicts import describe

    rows = table[table.claim_id == claim_id]
    if rows.empty:
        raise KeyError(f"no claim {claim_id!r}; the table has {', '.join(table.claim_id)}")
    r = rows.iloc[0]
    iv = None if pd.isna(r.estimate) else Interval(float(r.estimate), float(r.lo), float(r.hi))
    where = f" (tasks: {r.tasks}; {int(r.n_seeds)} prompts each)" if isinstance(r.tasks, str) and r.tasks else ""
    text = describe(f"{claim_id}, {r.claim}", iv, Verdict(r.verdict, r.reason)) + where
    if iv is not None:
        text += f" Over examples only (prompts held fixed): [{r.lo_examples:.3f}, {r.hi_examples:.3f}]."
    if isinstance(r.get("per_task"), str) and r.per_task:
        text += f" Per task: {r.per_task} (the claim holds on {r.tasks_supported} tasks on its own)."
    holm = r.get("verdict_holm")
    if isinstance(holm, str) and holm:
        text += f" After Holm's correction over the claims table: {holm}."
    source = f" ({r.published_source})" if isinstance(r.published_source, str) and r.published_source else ""
    return text + f" Published: {r.published}{source}. Backbone `{r.backbone}`, profile `{r.profile}`."


# --- cached tables -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def evidence_version() -> str:
    """The version of the code reachable from `statuses_cached` and `claims_cached` (`lib.code_identity`)."""
    return version("evidence")


def _key(exp: Experiment, **extra) -> dict:
    return {"profile": exp.profile.as_dict(), "control": exp.control, "evidence": evidence_version(), **extra}


def statuses_cached(exp: Experiment) -> dict[str, TaskStatus]:
    """`task_statuses`, read from `tables/task_status.csv` when its key matches."""
    frame = exp.store.table("task_status", _key(exp), lambda: status_table(exp, task_statuses(exp)))
    return {r.task: TaskStatus(r.task, Interval(r.accuracy, r.lo, r.hi, int(r.n_seeds)), r.macro_f1, r.majority,
                               r.status == "learned", r.reason, r.gate) for r in frame.itertuples()}


def claims_cached(exp: Experiment, statuses: dict[str, TaskStatus] | None = None,
                  only: Sequence[str] | None = None) -> pd.DataFrame:
    """`claims_table` (all claims, or `only` some), each claim cached on its own (`tables/claim-<id>.csv`),
    so that a chapter computes only its claims and the claims chapter reuses them."""
    wanted = list(only or CLAIM_IDS)
    unknown_ids = [c for c in wanted if c not in CLAIM_IDS]
    if unknown_ids:
        raise KeyError(f"unknown claim(s) {unknown_ids}; claims: {', '.join(CLAIM_IDS)}")
    units = list(dict.fromkeys(_UNIT[c] for c in wanted))  # RN2a and RN2b share one evaluation
    parts = [exp.store.table(f"claim-{u}", _key(exp, claims=list(_MEMBERS[u])),
                             lambda u=u: claims_table(exp, statuses, only=_MEMBERS[u])) for u in units]
    table = pd.concat(parts, ignore_index=True)
    if only is None:
        table = with_holm(table)
    # as read back from the CSV files, so that a fresh and a cached result are the same frame
    table = pd.read_csv(io.StringIO(table.to_csv(index=False)), keep_default_na=False, na_values=[""])
    return table.set_index("claim_id").loc[wanted].reset_index()


def with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """The table with Holm's correction over its tested claims (`lib.verdicts.holm`): p_holm, verdict_holm
    and reason_holm beside the unadjusted p and verdict (untestable claims stay out of the family)."""
    from .verdicts import adjusted_verdict, holm

    table = table.copy()
    ps = [None if (r.verdict == UNTESTABLE or pd.isna(r.p)) else float(r.p) for r in table.itertuples()]
    adjusted = holm(ps)
    holm_verdicts = [adjusted_verdict(Verdict(r.verdict, r.reason), q) for r, q in zip(table.itertuples(), adjusted)]
    table["p_holm"] = [np.nan if q is None else q for q in adjusted]
    table["verdict_holm"] = [v.label for v in holm_verdicts]
    table["reason_holm"] = [v.reason if q is not None else "" for v, q in zip(holm_verdicts, adjusted)]
    return table


# --- the table --------------------------------------------------------------------------------------------
CLAIM_IDS = ("RN1", "RN2a", "RN2b", "RN3", "RN4", "SN1")
_UNIT = {c: "RN2" if c.startswith("RN2") else c for c in CLAIM_IDS}  # claims computed together
_MEMBERS = {u: tuple(c for c in CLAIM_IDS if _UNIT[c] == u) for u in dict.fromkeys(_UNIT.values())}


@dataclass(frozen=True)
class ClaimSpec:
    """What a claim says and how its estimate is judged: text, source paper, direction and null value."""

    text: str
    paper: str
    direction: str = "greater"
    null: float = 0.0


def _specs(exp: Experiment) -> dict[str, ClaimSpec]:
    fraction = max(exp.profile.suppression_fractions)
    return {
        "RN1": ClaimSpec("Zero-shot transfer is higher within a task type than across types (within − across "
                         "accuracy)", "Robust-Neurons; Su et al. 2022"),
        "RN2a": ClaimSpec("Prompts lose accuracy on AdvGLUE (adversarial − clean accuracy)", "Robust-Neurons",
                          direction="less"),
        "RN2b": ClaimSpec("Prompts score below chance on AdvGLUE (adversarial accuracy vs 0.5)", "Robust-Neurons",
                          direction="less", null=0.5),
        "RN3": ClaimSpec("Skill neurons exist: the most predictive neuron of the tuned prompts beats that of the "
                         "untuned prompts they started from (held-out accuracy, tuned − untuned; chosen on dev, "
                         "tested on test)", "Robust-Neurons; Skill-Neuron"),
        "RN4": ClaimSpec("Clean-data skill neurons stay among the most predictive on adversarial data (T5 yes, "
                         "RoBERTa no)", "Robust-Neurons"),
        "SN1": ClaimSpec(f"Suppressing skill neurons hurts more than suppressing random ones (random − skill "
                         f"accuracy, {fraction:.0%} per layer, chosen on dev, suppressed on test)", "Skill-Neuron"),
    }


def _measure(exp: Experiment, statuses: dict[str, TaskStatus], cid: str, cache: dict,
             **boot) -> tuple[Estimate | None, str, str]:
    """(estimate, what is missing, tasks) of one claim."""
    if cid == "RN1":
        return transfer_claim(exp, statuses, **boot)
    if cid in ("RN2a", "RN2b"):
        if "adv" not in cache:
            cache["adv"] = adversarial_claims(exp, statuses, **boot)
        return cache["adv"][0 if cid == "RN2a" else 1]
    if cid == "RN3":
        return skill_neuron_claim(exp, statuses, **boot)
    if cid == "RN4":
        return None, f"contrasts T5 with RoBERTa; this profile's backbone is {exp.profile.model}", ""
    if cid == "SN1":
        return suppression_claim(exp, statuses, **boot)
    raise KeyError(f"unknown claim {cid!r}; claims: {', '.join(CLAIM_IDS)}")


def per_task_outcomes(est: Estimate | None, spec: ClaimSpec) -> dict[str, str]:
    """`tasks_supported` ("k of n": tasks whose own interval supports the claim) and `per_task` (each task's
    estimate, interval and verdict, in the pooled verdict's terms), so no pooled verdict hides its tasks."""
    if est is None or not est.per_task:
        return {"tasks_supported": "", "per_task": ""}
    parts, held = [], 0
    for task, iv in est.per_task:
        label = verdict(iv, direction=spec.direction, null=spec.null).label
        held += label == "supported"
        parts.append(f"{task} {iv.estimate:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}] {label}")
    return {"tasks_supported": f"{held} of {len(est.per_task)}", "per_task": "; ".join(parts)}


def claims_table(exp: Experiment, statuses: dict[str, TaskStatus] | None = None,
                 only: Sequence[str] | None = None, **boot) -> pd.DataFrame:
    """One row per claim (all of `CLAIM_IDS`, or `only` those): estimate, both intervals, the p-value of the
    null, the published figure (`lib.published.claim_published`) and the verdict (`lib.verdicts.verdict`)."""
    from .published import claim_published

    statuses = statuses if statuses is not None else task_statuses(exp)
    specs = _specs(exp)
    rows, cache = [], {}
    for cid in (only or CLAIM_IDS):
        spec = specs[cid]
        est, missing, tasks = _measure(exp, statuses, cid, cache, **boot)
        published = claim_published(cid)
        iv = None if est is None else est.interval
        v = verdict(iv, direction=spec.direction, null=spec.null, missing=missing, published=published.value)
        rows.append({"claim_id": cid, "claim": spec.text, "paper": spec.paper, "backbone": exp.profile.model,
                     "profile": exp.profile.name, "tasks": tasks,
                     "estimate": None if iv is None else iv.estimate, "lo": None if iv is None else iv.lo,
                     "hi": None if iv is None else iv.hi, "n_seeds": None if iv is None else iv.n_seeds,
                     "lo_examples": None if est is None else est.examples_only.lo,
                     "hi_examples": None if est is None else est.examples_only.hi,
                     "null": spec.null if est is not None else None, "p": None if iv is None else iv.p,
                     "published": published.text, "published_value": published.value,
                     "published_source": published.source, "verdict": v.label, "reason": v.reason,
                     **per_task_outcomes(est, spec), "p_holm": None, "verdict_holm": "", "reason_holm": ""})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def claims_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as a reader sees it (the Claims page and results/<profile>/claims.md): claim, our
    estimate with both intervals, the published figure with its source, the verdict and the Holm verdict."""
    rows = []
    for r in table.itertuples():
        if pd.isna(r.estimate):
            est = "—"
        else:
            fmt = "{:.3f}" if r.claim_id == "RN2b" else "{:+.3f}"
            f = lambda x: fmt.format(x)  # noqa: E731
            est = (f"{f(r.estimate)} [{f(r.lo)}, {f(r.hi)}] over {int(r.n_seeds)} prompts and the examples; "
                   f"examples only [{f(r.lo_examples)}, {f(r.hi_examples)}]")
        source = f" ({r.published_source})" if isinstance(r.published_source, str) and r.published_source else ""
        holm = r.verdict_holm if isinstance(r.verdict_holm, str) and r.verdict_holm else "—"
        if isinstance(r.per_task, str) and r.per_task:
            est += f"; per task: {r.per_task} (holds on {r.tasks_supported})"
        rows.append({"claim": f"{r.claim_id}: {r.claim}", "our estimate [95 % interval]": est,
                     "published": f"{r.published}{source}", "verdict": f"{r.verdict}: {r.reason}",
                     "after Holm": holm})
    return pd.DataFrame(rows)


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as Markdown (results/<profile>/claims.md, for readers of the repository)."""
    frame = claims_frame(table)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    b, p = table.backbone.iloc[0], table.profile.iloc[0]
    lines.append("")
    lines.append(f"Backbone `{b}`, profile `{p}`. {CLAIMS_NOTE}")
    return "\n".join(lines) + "\n"


CLAIMS_NOTE = ("95 % intervals resample the prompts (seeds) and the evaluation examples (`lib.intervals`); the "
               "examples-only interval holds the prompts fixed. Verdicts are computed by `lib.verdicts`: "
               "supported, supported but much smaller than published (the whole interval within half the "
               "published effect), not supported, contradicted (the interval excludes the null on the other "
               "side) or untestable. \"After Holm\" applies Holm's correction over the table's tested claims "
               "(family-wise error 5 %).")


def write_claims(table: pd.DataFrame, folder: str | Path) -> tuple[Path, Path]:
    from .io import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv, md = folder / "claims.csv", folder / "claims.md"
    write_text(csv, table.to_csv(index=False))
    write_text(md, claims_markdown(table))
    return csv, md


__all__ = ["Evaluated", "evaluated", "task_statuses", "status_table", "learned_tasks", "type_pairs",
           "published_transfer_gap", "held_out_neuron", "claims_table", "claims_markdown", "claims_frame",
           "with_holm", "Estimate", "estimate", "ClaimSpec", "per_task_outcomes", "CLAIMS_NOTE", "untuned_prompt", "best_neuron",
           "write_claims", "CLAIM_IDS", "status_sentence", "claim_sentence", "statuses_cached", "claims_cached", "evidence_version", "COLUMNS"]
