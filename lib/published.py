"""Published numbers the book compares against, each with the paper and table or figure it comes from.

One place for every published figure a page puts beside ours: the claims table (`claim_published`),
Su et al.'s zero-shot transfer matrix (`published_transfer`; rows source prompts, columns target tasks,
MNLI 3-class there) and the applications' anchors (`SKELETON_SPEEDUP`). Where a paper states a finding
in words only, `value` is None and the verdict cannot say "much smaller" (`lib.verdicts.verdict`).
Sources: ../shared/docs/reference.md and the papers' tables as cited.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Published:
    """A published figure: how a page states it, its value on our estimate's scale (None: stated in words
    only), and where it is printed."""

    text: str
    value: float | None
    source: str


SKELETON_SPEEDUP = Published("up to 1.73× inference speed-up at accuracy comparable to prompt tuning", 1.73,
                             "Yang et al. 2024 (Skeleton), arXiv v2 abstract")

_TARGETS = ("imdb", "sst2", "mnli", "qnli", "qqp", "mrpc")
_ROBERTA = {
    "imdb": (89.7, 86.1, 36.6, 55.5, 39.7, 68.0), "sst2": (73.6, 93.3, 35.8, 52.1, 56.8, 52.6),
    "mnli": (57.1, 58.5, 79.9, 75.5, 49.9, 65.9), "qnli": (50.3, 51.2, 47.5, 90.5, 36.9, 68.0),
    "qqp": (58.4, 51.2, 34.3, 43.5, 86.9, 70.0), "mrpc": (50.3, 50.4, 32.7, 50.5, 66.9, 84.4),
    "random prompt": (50.6, 50.8, 32.8, 50.5, 36.8, 68.0),
}
_T5 = {
    "imdb": (88.2, 88.6, 45.1, 72.8, 62.2, 51.3), "sst2": (85.0, 94.3, 80.0, 79.7, 62.9, 63.3),
    "mnli": (70.3, 75.4, 85.5, 78.3, 63.1, 31.5), "qnli": (50.0, 48.9, 61.1, 92.1, 62.9, 33.9),
    "qqp": (50.1, 50.7, 65.3, 59.9, 86.7, 63.5), "mrpc": (58.9, 53.2, 35.5, 49.5, 48.6, 73.2),
}


def published_transfer(model: str) -> pd.DataFrame:
    """Su et al.'s zero-shot transfer matrix (accuracy %) for 'roberta-base' or 't5-base'."""
    table = {"roberta-base": _ROBERTA, "t5-base": _T5}.get(model)
    if table is None:
        raise ValueError(f"no published transfer matrix for {model!r}; valid: roberta-base, t5-base")
    return pd.DataFrame.from_dict(table, orient="index", columns=list(_TARGETS)).rename_axis("source")


def published_transfer_gap(model: str = "roberta-base") -> float:
    """Within- minus across-type mean zero-shot transfer (%, off the diagonal) in Su et al.'s matrix."""
    from .claims import type_pairs
    from .tasks import get_task

    table = published_transfer(model)
    types = {t: get_task(t).task_type for t in table.columns}
    within, across = type_pairs(types)
    return float(sum(table.loc[a, b] for a, b in within) / len(within)
                 - sum(table.loc[a, b] for a, b in across) / len(across))


def claim_published(claim_id: str) -> Published:
    """The published figure each claim of `lib.claims` is compared with."""
    if claim_id == "RN1":
        gap = published_transfer_gap("roberta-base") / 100
        return Published(f"RoBERTa-base: {gap:+.3f} (off-diagonal means)", gap,
                         "Su et al. 2022, zero-shot transfer table")
    fixed = {
        "RN2a": Published("RoBERTa and T5 both lose accuracy on AdvGLUE", None, "Robust-Neurons, abstract"),
        "RN2b": Published("RoBERTa: below chance; T5: above chance on 2 of 3 tasks", None, "Robust-Neurons, abstract"),
        "RN3": Published("skill neurons exist in RoBERTa and in T5", None, "Robust-Neurons, abstract; Skill-Neuron"),
        "RN4": Published("T5: yes; RoBERTa: no", None, "Robust-Neurons, abstract"),
        "SN1": Published("RoBERTa: suppressing skill neurons hurts much more than random neurons", None,
                         "Skill-Neuron, perturbation test"),
    }
    try:
        return fixed[claim_id]
    except KeyError:
        raise KeyError(f"no published figure for claim {claim_id!r}; claims: RN1, {', '.join(fixed)}") from None


def transfer_vs_published(matrix: pd.DataFrame) -> pd.DataFrame:
    """Our zero-shot transfer accuracies (a source x target matrix of fractions) beside Su et al.'s, for the
    off-diagonal pairs both have: columns source, target, ours, roberta-base, t5-base (all %)."""
    rows = []
    published = {m: published_transfer(m) for m in ("roberta-base", "t5-base")}
    for source in matrix.index:
        for target in matrix.columns:
            if source == target or pd.isna(matrix.loc[source, target]):
                continue
            if all(source in p.index and target in p.columns for p in published.values()):
                rows.append({"source": source, "target": target, "ours": 100 * float(matrix.loc[source, target]),
                             **{m: float(p.loc[source, target]) for m, p in published.items()}})
    return pd.DataFrame(rows, columns=["source", "target", "ours", "roberta-base", "t5-base"])


def transfer_comparison_sentence(table: pd.DataFrame, backbone: str) -> str:
    """One computed sentence per shared pair: ours beside RoBERTa's and T5's, and how far below or above."""
    if table.empty:
        return ("None of this profile's source-target pairs is in Su et al.'s table, so no cell can be compared "
                "with a published one.")
    parts = [f"{r['source']}→{r['target']}: {r['ours']:.1f} % on {backbone} vs {r['roberta-base']:.1f} % (RoBERTa-base) "
             f"and {r['t5-base']:.1f} % (T5-base), {r['ours'] - r['roberta-base']:+.1f} and "
             f"{r['ours'] - r['t5-base']:+.1f} points" for r in table.to_dict("records")]
    return ("Cells shared with Su et al.'s zero-shot transfer table (source → target, test accuracy): "
            + "; ".join(parts) + ".")
