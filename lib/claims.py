"""The claims table: each claim of the references, our estimate with its interval, the published
figure and a computed verdict (`lib.verdicts`), for one profile.

    statuses = task_statuses(exp)          # which prompts learned their task (accuracy vs majority)
    table = claims_table(exp, statuses)    # one row per claim
    write_claims(table, exp.shared)        # results/<profile>/claims.csv and claims.md

Only tasks whose prompts *learned* (mean test macro-F1 >= 0.60, accuracy interval above the majority
rate) enter a claim; a claim whose prerequisites are missing is *untestable*, with the reason.
Every interval resamples examples, seeds averaged per example. Neurons are selected on the test split
(the cached predictivity of `Experiment.neuron_scores`) and tested on the dev split, never on the
examples they were selected on; thresholds come from a label-balanced random sample of train.

This module is evaluation only (forward passes of finished prompts, a few minutes on the mini profile
on 2 CPU cores). `statuses_cached` and `claims_cached` keep its two tables in the results store, keyed
by the profile and by the code of this module and `lib.verdicts` (besides the store's own code version).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from .analyses import random_per_layer
from .evaluation import evaluate
from .hooks import intervene_ffn
from .skill_neurons import iter_activations, top_per_layer
from .verdicts import (Interval, TaskStatus, Verdict, bootstrap_interval, majority_rate, task_status, verdict)

if TYPE_CHECKING:
    from .experiments import Experiment

COLUMNS = ("claim_id", "claim", "paper", "backbone", "profile", "tasks", "estimate", "lo", "hi", "null", "published",
           "verdict", "reason")


@dataclass(frozen=True)
class Evaluated:
    """Per-seed predictions of prompts on one example set."""

    correct: np.ndarray  # (seeds, examples) 0/1
    labels: np.ndarray  # (examples,)
    macro_f1: tuple[float, ...]


def evaluated(exp: Experiment, task: str, split: str = "test", source: str | None = None) -> Evaluated:
    """The seeds' prompts of `source` (default `task`) on `task`'s `split`, with the target's verbalizer."""
    source = source or task
    results = [evaluate(exp.backbone, exp.prompt(source, s), exp.task(task), exp.encoded(task, split),
                        max_length=exp.max_length(task)) for s in exp.profile.seeds]
    correct = np.stack([(r.predictions == r.labels).astype(float) for r in results])
    return Evaluated(correct, results[0].labels, tuple(r.macro_f1 for r in results))


def task_statuses(exp: Experiment) -> dict[str, TaskStatus]:
    """Which of the profile's prompts learned their task, with the evidence (test split)."""
    out = {}
    for task in exp.profile.tasks:
        ev = evaluated(exp, task)
        out[task] = task_status(task, ev.correct, ev.labels, ev.macro_f1)
    return out


def status_table(exp: Experiment, statuses: dict[str, TaskStatus]) -> pd.DataFrame:
    rows = [{"task": s.task, "type": exp.task(s.task).task_type, "accuracy": s.accuracy.estimate, "lo": s.accuracy.lo,
             "hi": s.accuracy.hi, "macro_f1": s.macro_f1, "majority": s.majority,
             "status": "learned" if s.learned else "untestable", "reason": s.reason} for s in statuses.values()]
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
    """Within- minus across-type mean zero-shot transfer (%, off the diagonal) in Su et al.'s table."""
    from .published import published_transfer
    from .tasks import get_task

    table = published_transfer(model)
    types = {t: get_task(t).task_type for t in table.columns}
    within, across = type_pairs(types)
    return float(np.mean([table.loc[a, b] for a, b in within]) - np.mean([table.loc[a, b] for a, b in across]))


def transfer_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot) -> tuple[Interval | None, Verdict, str]:
    learned = learned_tasks(statuses)
    types = {t: exp.task(t).task_type for t in learned}
    within, across = type_pairs(types, {t: exp.task(t).label_names for t in learned})
    if not within or not across:
        kinds = ", ".join(f"{n} {k}" for k, n in pd.Series(types).value_counts().items()) if types else "none"
        return None, verdict(None, missing=f"needs learned tasks in two types, two of them in one type with the "
                                           f"same labels; learned: {kinds}"), ""
    columns, groups = {}, {}
    for a, b in within + across:
        columns[f"{a}->{b}"] = evaluated(exp, b, source=a).correct
        groups[f"{a}->{b}"] = b  # pairs with the same target share its test examples
    w, x = [f"{a}->{b}" for a, b in within], [f"{a}->{b}" for a, b in across]
    iv = bootstrap_interval(columns, lambda acc: sum(acc[k] for k in w) / len(w) - sum(acc[k] for k in x) / len(x),
                            groups=groups, **boot)
    return iv, verdict(iv), ", ".join(learned)


# --- claim 2: adversarial accuracy ------------------------------------------------------------------------
def adversarial_claims(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    """(drop vs clean, below chance): adversarial minus clean accuracy, and adversarial accuracy vs 0.5."""
    tasks = [t for t in learned_tasks(statuses) if t in exp.profile.adversarial]
    if not tasks:
        missing = verdict(None, missing="no learned task has an adversarial set "
                                        f"(learned: {', '.join(learned_tasks(statuses)) or 'none'})")
        return (None, missing, ""), (None, missing, "")
    columns, groups = {}, {}
    for t in tasks:
        columns[f"clean:{t}"] = evaluated(exp, t).correct
        columns[f"adv:{t}"] = evaluated(exp, exp.profile.adversarial[t], split="test", source=t).correct
    clean = lambda acc: sum(acc[f"clean:{t}"] for t in tasks) / len(tasks)  # noqa: E731
    adv = lambda acc: sum(acc[f"adv:{t}"] for t in tasks) / len(tasks)  # noqa: E731
    drop = bootstrap_interval(columns, lambda acc: adv(acc) - clean(acc), groups=groups, **boot)
    level = bootstrap_interval(columns, adv, groups=groups, **boot)
    names = ", ".join(tasks)
    return (drop, verdict(drop, direction="less"), names), (level, verdict(level, direction="less", null=0.5), names)


# --- claim 3: skill neurons exist (held out) ------------------------------------------------------------
def _neuron_values(exp: Experiment, task: str, seed: int, split: str, layer: int,
                   neuron: int) -> tuple[np.ndarray, np.ndarray]:
    """(examples, prompt positions) activations of one neuron, and the labels; 'train' is the
    experiment's label-balanced random threshold sample (`Experiment.encoded`)."""
    enc = exp.encoded(task, split)
    prompt = exp.prompt(task, seed)
    values = np.zeros((len(enc), prompt.shape[0]), dtype=np.float64)
    for idx, acts in iter_activations(exp.backbone, prompt, enc):
        values[idx] = acts[:, layer, :, neuron].double().cpu().numpy()
    return values, enc.labels


def held_out_neuron(exp: Experiment, task: str, seed: int, layer: int, neuron: int) -> np.ndarray:
    """Per-example correctness on dev of one neuron whose position and sign were chosen on test.

    Threshold: mean activation over a label-balanced random train sample. On test, the prompt position
    p and the sign (fires for label 1, or for label 0) with the highest accuracy are chosen; on dev the
    rule [a_p(x) > t_p] == y (or its negation) is then applied unchanged.
    """
    thr = _neuron_values(exp, task, seed, "train", layer, neuron)[0].mean(axis=0)
    test, y_test = _neuron_values(exp, task, seed, "test", layer, neuron)
    acc = ((test > thr) == y_test[:, None]).mean(axis=0)
    p = int(np.argmax(np.maximum(acc, 1 - acc)))
    flip = acc[p] < 0.5
    dev, y_dev = _neuron_values(exp, task, seed, "dev", layer, neuron)
    return (((dev[:, p] > thr[p]) == y_dev) != flip).astype(float)


def skill_neuron_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    tasks = [t for t in learned_tasks(statuses) if exp.task(t).num_labels == 2]
    if not tasks:
        return None, verdict(None, missing="no learned binary task"), ""
    columns, majorities = {}, {}
    for t in tasks:
        scores = exp.mean_scores(t)
        layer, neuron = divmod(int(scores.argmax()), scores.shape[1])
        columns[t] = np.stack([held_out_neuron(exp, t, s, layer, neuron) for s in exp.profile.seeds])
        majorities[t] = majority_rate(exp.splits(t)["dev"]["label"].to_numpy())
    iv = bootstrap_interval(columns, lambda acc: sum(acc[t] - majorities[t] for t in tasks) / len(tasks), **boot)
    return iv, verdict(iv), ", ".join(tasks)


# --- claim 5: suppression (Skill-Neuron) ------------------------------------------------------------------
def suppression_correct(exp: Experiment, task: str, seed: int, mask: torch.Tensor, draw_seed: int) -> np.ndarray:
    with intervene_ffn(exp.backbone, mask, "zero", seed=draw_seed):
        r = evaluate(exp.backbone, exp.prompt(task, seed), exp.task(task), exp.encoded(task, "dev"),
                     max_length=exp.max_length(task))
    return (r.predictions == r.labels).astype(float)


def suppression_claim(exp: Experiment, statuses: dict[str, TaskStatus], **boot):
    tasks = learned_tasks(statuses)
    fraction = max(exp.profile.suppression_fractions)
    if not tasks or fraction == 0:
        return None, verdict(None, missing="no learned task" if not tasks else "no suppression fraction > 0"), ""
    columns, groups = {}, {}
    for t in tasks:
        skill = top_per_layer(exp.mean_scores(t), fraction=fraction)  # selected on test
        n = int(skill[0].sum())
        gen = torch.Generator().manual_seed(0)
        s_rows, r_rows = [], []
        for seed in exp.profile.seeds:
            s_rows.append(suppression_correct(exp, t, seed, skill, seed))
            draws = [suppression_correct(exp, t, seed, random_per_layer(tuple(skill.shape), n, gen), seed + 1 + d)
                     for d in range(exp.profile.n_random_draws)]
            r_rows.append(np.mean(draws, axis=0))
        columns[f"skill:{t}"], columns[f"random:{t}"] = np.stack(s_rows), np.stack(r_rows)
        groups[f"skill:{t}"] = groups[f"random:{t}"] = t  # same dev examples: paired
    iv = bootstrap_interval(columns, lambda acc: sum(acc[f"random:{t}"] - acc[f"skill:{t}"] for t in tasks) / len(tasks),
                            groups=groups, **boot)
    return iv, verdict(iv), ", ".join(tasks)


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
    """The computed verdict of one claim of `claims_table`, as a sentence (`lib.verdicts.describe`)."""
    from .verdicts import describe

    rows = table[table.claim_id == claim_id]
    if rows.empty:
        raise KeyError(f"no claim {claim_id!r}; the table has {', '.join(table.claim_id)}")
    r = rows.iloc[0]
    iv = None if pd.isna(r.estimate) else Interval(float(r.estimate), float(r.lo), float(r.hi))
    where = f" (tasks: {r.tasks})" if isinstance(r.tasks, str) and r.tasks else ""
    return describe(f"{claim_id}, {r.claim}", iv, Verdict(r.verdict, r.reason)) + where + \
        f" Published: {r.published}. Backbone `{r.backbone}`, profile `{r.profile}`."


# --- cached tables -----------------------------------------------------------------------------------------
def evidence_version() -> str:
    """Hash of the code of this module and `lib.verdicts` (not part of `lib.store.code_version`)."""
    from .store import source_version

    return source_version([Path(__file__).parent / f"{mod}.py" for mod in ("claims", "verdicts")])


def _key(exp: Experiment, **extra) -> dict:
    return {"profile": exp.profile.as_dict(), "control": exp.control, "evidence": evidence_version(), **extra}


def statuses_cached(exp: Experiment) -> dict[str, TaskStatus]:
    """`task_statuses`, read from `tables/task_status.csv` when its key matches."""
    frame = exp.store.table("task_status", _key(exp), lambda: status_table(exp, task_statuses(exp)))
    return {r.task: TaskStatus(r.task, Interval(r.accuracy, r.lo, r.hi), r.macro_f1, r.majority,
                               r.status == "learned", r.reason) for r in frame.itertuples()}


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
    # as read back from the CSV files, so that a fresh and a cached result are the same frame
    table = pd.read_csv(io.StringIO(table.to_csv(index=False)))
    return table.set_index("claim_id").loc[wanted].reset_index()


# --- the table --------------------------------------------------------------------------------------------
CLAIM_IDS = ("RN1", "RN2a", "RN2b", "RN3", "RN4", "SN1")
_UNIT = {c: "RN2" if c.startswith("RN2") else c for c in CLAIM_IDS}  # claims computed together
_MEMBERS = {u: tuple(c for c in CLAIM_IDS if _UNIT[c] == u) for u in dict.fromkeys(_UNIT.values())}


def _claim(exp: Experiment, statuses: dict[str, TaskStatus], cid: str, cache: dict, **boot) -> tuple:
    """(claim text, paper, (interval, verdict, tasks), published, null) of one claim."""
    model = exp.profile.model
    if cid == "RN1":
        gap = published_transfer_gap("roberta-base") / 100
        return ("Zero-shot transfer is higher within a task type than across types (within − across accuracy)",
                "Robust-Neurons; Su et al. 2022", transfer_claim(exp, statuses, **boot),
                f"RoBERTa-base: {gap:+.3f} (Su et al. table, off-diagonal means)", 0.0)
    if cid in ("RN2a", "RN2b"):
        if "adv" not in cache:
            cache["adv"] = adversarial_claims(exp, statuses, **boot)
        drop, below = cache["adv"]
        if cid == "RN2a":
            return ("Prompts lose accuracy on AdvGLUE (adversarial − clean accuracy)", "Robust-Neurons", drop,
                    "RoBERTa and T5 both lose accuracy", 0.0)
        return ("Prompts score below chance on AdvGLUE (adversarial accuracy vs 0.5)", "Robust-Neurons", below,
                "RoBERTa: below chance; T5: above chance on 2 of 3 tasks", 0.5)
    if cid == "RN3":
        return ("Skill neurons exist: the most predictive neuron, chosen on test, beats the majority rate on dev "
                "(held-out accuracy − majority)", "Robust-Neurons; Skill-Neuron",
                skill_neuron_claim(exp, statuses, **boot), "RoBERTa and T5: yes", 0.0)
    if cid == "RN4":
        missing = verdict(None, missing=f"contrasts T5 with RoBERTa; this profile's backbone is {model}")
        return ("Clean-data skill neurons stay among the most predictive on adversarial data (T5 yes, RoBERTa no)",
                "Robust-Neurons", (None, missing, ""), "T5: yes; RoBERTa: no", None)
    if cid == "SN1":
        return ("Suppressing skill neurons hurts more than suppressing random ones (random − skill accuracy, "
                f"{max(exp.profile.suppression_fractions):.0%} per layer, dev split)", "Skill-Neuron",
                suppression_claim(exp, statuses, **boot), "RoBERTa: much larger drops than random", 0.0)
    raise KeyError(f"unknown claim {cid!r}; claims: {', '.join(CLAIM_IDS)}")


def claims_table(exp: Experiment, statuses: dict[str, TaskStatus] | None = None,
                 only: Sequence[str] | None = None, **boot) -> pd.DataFrame:
    """One row per claim (all of `CLAIM_IDS`, or `only` those): estimate, interval, published, verdict."""
    statuses = statuses if statuses is not None else task_statuses(exp)
    rows, cache = [], {}
    for cid in (only or CLAIM_IDS):
        claim, paper, (iv, v, tasks), published, null = _claim(exp, statuses, cid, cache, **boot)
        rows.append({"claim_id": cid, "claim": claim, "paper": paper, "backbone": exp.profile.model,
                     "profile": exp.profile.name, "tasks": tasks, "estimate": None if iv is None else iv.estimate,
                     "lo": None if iv is None else iv.lo, "hi": None if iv is None else iv.hi, "null": null,
                     "published": published, "verdict": v.label, "reason": v.reason})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as Markdown, for the book's introduction (included from results/<profile>/claims.md)."""
    lines = ["| claim | our estimate [95 % CI] | published | verdict |", "|---|---|---|---|"]
    for r in table.itertuples():
        est = "—" if pd.isna(r.estimate) else f"{r.estimate:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]"
        if r.claim_id == "RN2b" and not pd.isna(r.estimate):
            est = f"{r.estimate:.3f} [{r.lo:.3f}, {r.hi:.3f}]"
        why = f"{r.verdict}: {r.reason}"
        lines.append(f"| **{r.claim_id}** {r.claim} | {est} | {r.published} | {why} |")
    b, p = table.backbone.iloc[0], table.profile.iloc[0]
    lines.append("")
    lines.append(f"Backbone `{b}`, profile `{p}`. 95 % intervals resample the evaluation examples (each example's "
                 "correctness averaged over the seeds' prompts first); verdicts are computed by `lib.verdicts`.")
    return "\n".join(lines) + "\n"


def write_claims(table: pd.DataFrame, folder: str | Path) -> tuple[Path, Path]:
    from .io import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv, md = folder / "claims.csv", folder / "claims.md"
    write_text(csv, table.to_csv(index=False))
    write_text(md, claims_markdown(table))
    return csv, md


__all__ = ["Evaluated", "evaluated", "task_statuses", "status_table", "learned_tasks", "type_pairs",
           "published_transfer_gap", "held_out_neuron", "claims_table", "claims_markdown",
           "write_claims", "CLAIM_IDS", "status_sentence", "claim_sentence", "statuses_cached", "claims_cached", "evidence_version", "COLUMNS"]
