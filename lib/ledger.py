"""Every verdict of a profile in one family: the ledger the Claims page corrects with Holm.

Each chapter that prints a verdict also records it here (`record`): one CSV per chapter,
`results/<profile>/verdicts/<chapter>.csv`, with the estimate, interval, the p-value of its null and the
verdict. The Claims page runs last, reads every chapter's file whose `profile_key` is the profile it runs
(a chapter re-run with overrides is left out, and said so), adds the claims table's rows, and applies
Holm's step-down over all tested verdicts at once (`family`, `lib.verdicts.holm`): with m tested verdicts
and p sorted, p_holm(k) = max_{j <= k} min(1, (m - j + 1) p_(j)); a verdict survives where p_holm < 0.05.

Where does p come from (`p_value`):
- the interval's own p (two-sided: the bootstrap's, `lib.intervals`; Student's t over runs or seeds,
  `lib.chapter_verdicts`), when it carries one;
- otherwise the normal approximation from the 95 % interval: se = (hi - lo) / (2 * 1.96),
  p = 2 * (1 - Phi(|estimate - null| / se)), marked `p_source = "normal approximation"`.
Untestable verdicts stay out of the family. Outside `lib.store.code_version()`.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import pandas as pd

from . import chapter_table
from .errors import ConfigError
from .verdicts import UNTESTABLE, Interval, Verdict

if TYPE_CHECKING:
    from .experiments import Experiment

FOLDER = "verdicts"
# The chapters that print verdicts and record them, in reading order (lib.chapter_table; a test keeps it
# equal to the templates that do).
VERDICT_CHAPTERS = chapter_table.names(records_verdicts=True)
COLUMNS = ("chapter", "name", "estimate", "lo", "hi", "null", "p", "p_source", "verdict", "reason", "profile_key")
Z_975 = 1.959963984540054


@dataclass(frozen=True)
class Entry:
    """One printed verdict: which chapter, what it says, its numbers and the p-value of its null."""

    chapter: str
    name: str
    estimate: float | None
    lo: float | None
    hi: float | None
    null: float | None
    p: float | None
    p_source: str
    verdict: str
    reason: str


def p_value(interval: Interval | None, null: float = 0.0) -> tuple[float | None, str]:
    """(p, where it came from) of `interval`'s null (module docstring); (None, '') without an interval."""
    if interval is None:
        return None, ""
    if interval.p is not None and math.isfinite(interval.p):
        return float(interval.p), "interval"
    se = (interval.hi - interval.lo) / (2 * Z_975)
    if not se > 0:
        return (1.0 if interval.estimate == null else 0.0), "normal approximation (zero-width interval)"
    z = abs(interval.estimate - null) / se
    return float(math.erfc(z / math.sqrt(2))), "normal approximation"


def entry(chapter: str, name: str, interval: Interval | None, v: Verdict, null: float = 0.0) -> Entry:
    """The ledger row of a verdict a chapter printed (`lib.verdicts.describe(name, interval, v)`)."""
    p, source = p_value(interval, null) if v.label != UNTESTABLE else (None, "")
    iv = interval if v.label != UNTESTABLE else None
    return Entry(chapter, name, None if iv is None else iv.estimate, None if iv is None else iv.lo,
                 None if iv is None else iv.hi, null if iv is not None else None, p, source, v.label, v.reason)


def profile_key(exp: Experiment) -> str:
    """What a ledger row's verdict depends on beyond its chapter: the profile's settings (overrides included)."""
    from .store import fingerprint

    return fingerprint({"profile": exp.profile.as_dict()})


def record(exp: Experiment, chapter: str, entries: Iterable[Entry]) -> Path:
    """Write `chapter`'s verdicts to `results/<profile>/verdicts/<chapter>.csv` (replacing its earlier ones)."""
    from .io import write_text

    rows = [asdict(e) for e in entries]
    if any(r["chapter"] != chapter for r in rows):
        raise ConfigError(f"every entry recorded for {chapter!r} must name that chapter")
    frame = pd.DataFrame(rows, columns=list(COLUMNS[:-1]))
    frame["profile_key"] = profile_key(exp)
    path = Path(exp.shared) / FOLDER / f"{chapter}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, frame.to_csv(index=False))
    return path


def claim_entries(claims: pd.DataFrame) -> list[Entry]:
    """The claims table's rows as ledger entries (chapter 'claims')."""
    out = []
    for r in claims.itertuples():
        tested = r.verdict != UNTESTABLE
        num = lambda x: None if (not tested or pd.isna(x)) else float(x)  # noqa: E731
        out.append(Entry("claims", str(r.claim_id), num(r.estimate), num(r.lo), num(r.hi), num(r.null), num(r.p),
                         "interval" if tested and not pd.isna(r.p) else "", r.verdict, r.reason))
    return out


def read_chapters(exp: Experiment) -> tuple[pd.DataFrame, list[str]]:
    """(every recorded row of this profile's settings, the chapters left out because they ran with others).
    A chapter of `VERDICT_CHAPTERS` in neither has not run into this results folder (`unrecorded`)."""
    folder = Path(exp.shared) / FOLDER
    key, frames, other = profile_key(exp), [], []
    for csv in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        frame = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        if frame.empty:
            continue
        if (frame.profile_key == key).all():
            frames.append(frame)
        else:
            other.append(csv.stem)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    return rows, other


def family(entries: Sequence[Entry] | pd.DataFrame) -> pd.DataFrame:
    """All verdicts with Holm's correction over the tested ones: adds p_holm, verdict_holm and reason_holm
    (`lib.claims.with_holm`, which reads the same verdict, reason and p columns)."""
    from .claims import with_holm

    frame = entries.copy() if isinstance(entries, pd.DataFrame) else pd.DataFrame([asdict(e) for e in entries],
                                                                                  columns=list(COLUMNS[:-1]))
    return with_holm(frame.reset_index(drop=True))


def unrecorded(fam: pd.DataFrame, left_out: Sequence[str]) -> list[str]:
    """The verdict chapters with no record in the family and none left out: not run into this results folder."""
    return [c for c in VERDICT_CHAPTERS if c not in set(fam.chapter) and c not in left_out]


def coverage_sentence(fam: pd.DataFrame, left_out: Sequence[str]) -> str:
    """Which chapters' verdicts the family holds, so that a partial family is never read as the whole."""
    missing = unrecorded(fam, left_out)
    parts = []
    if left_out:
        parts.append(f"left out (recorded under other settings, e.g. a re-run with overrides): {', '.join(left_out)}")
    if missing:
        parts.append(f"not run into this results folder, so not in the family: {', '.join(missing)}")
    if not parts:
        return f"The family holds the verdicts of all {len(VERDICT_CHAPTERS)} chapters that print one, and the claims."
    return "The family is partial — " + "; ".join(parts) + "."


def profile_family(exp: Experiment, claims: pd.DataFrame, extra: Sequence[Entry] = ()) -> tuple[pd.DataFrame, list[str]]:
    """(the profile's family with Holm's columns, chapters left out): the chapters' recorded verdicts (the claims
    chapter's own file excepted: its rows are `claims` and `extra`, computed now)."""
    rows, other = read_chapters(exp)
    rows = rows[rows.chapter != "claims"].drop(columns=["profile_key"])
    own = pd.DataFrame([asdict(e) for e in [*claim_entries(claims), *extra]], columns=list(COLUMNS[:-1]))
    return family(pd.concat([own, rows], ignore_index=True)), other


def with_family_holm(claims: pd.DataFrame, fam: pd.DataFrame) -> pd.DataFrame:
    """The claims table with its Holm columns taken from the whole family (`family`), not its six rows alone."""
    own = fam[fam.chapter == "claims"].set_index("name")
    out = claims.copy()
    for col in ("p_holm", "verdict_holm", "reason_holm"):
        out[col] = [own.loc[str(c), col] for c in out.claim_id]
    # as read back from the CSV file, so that a fresh and a cached result are the same frame
    return pd.read_csv(io.StringIO(out.to_csv(index=False)), keep_default_na=False, na_values=[""])


FAMILY_NOTE = ("\"After Holm\" applies Holm's correction over every tested verdict of this profile — the claims "
               "table's and each chapter's (`lib.ledger`), {m} in all — at a family-wise error of 5 %.")


_TABLE_HOLM = "\"After Holm\" applies Holm's correction over the table's tested claims (family-wise error 5 %)."


def _family_text(text: str, fam: pd.DataFrame) -> str:
    if _TABLE_HOLM not in text:
        raise ConfigError("lib.claims.CLAIMS_NOTE no longer ends with the Holm sentence lib.ledger replaces")
    return text.replace(_TABLE_HOLM, FAMILY_NOTE.format(m=int(fam.p_holm.notna().sum())))


def claims_note(fam: pd.DataFrame) -> str:
    """`lib.claims.CLAIMS_NOTE` with its Holm sentence naming the family Holm ran over."""
    from .claims import CLAIMS_NOTE

    return _family_text(CLAIMS_NOTE, fam)


def claims_markdown(claims: pd.DataFrame, fam: pd.DataFrame) -> str:
    """`lib.claims.claims_markdown` with its closing note naming the family Holm ran over."""
    from .claims import claims_markdown as table_markdown

    return _family_text(table_markdown(claims), fam)


def write_claims(claims: pd.DataFrame, fam: pd.DataFrame, folder: str | Path) -> tuple[Path, Path, Path]:
    """results/<profile>/claims.csv and claims.md (Holm over the family) and verdicts.csv (the family itself)."""
    from .io import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "claims.csv", folder / "claims.md", folder / "verdicts.csv"
    write_text(paths[0], claims.to_csv(index=False))
    write_text(paths[1], claims_markdown(claims, fam))
    write_text(paths[2], fam.drop(columns=["profile_key"], errors="ignore").to_csv(index=False))
    return paths


def family_frame(fam: pd.DataFrame) -> pd.DataFrame:
    """The family as a reader sees it, in four columns that fit a page: chapter, verdict of, estimate [interval]
    with p (and p after Holm), verdict (with the Holm verdict where it differs)."""
    def est(r) -> str:
        if pd.isna(r.estimate):
            return "—"
        text = f"{r.estimate:.3f}" + ("" if pd.isna(r.lo) else f" [{r.lo:.3f}, {r.hi:.3f}]")
        return text + ("" if pd.isna(r.p) else f"; p = {r.p:.3g} (after Holm {r.p_holm:.3g})")

    def outcome(r) -> str:
        return r.verdict if r.verdict == r.verdict_holm else f"{r.verdict}; after Holm: {r.verdict_holm}"

    return pd.DataFrame({"chapter": fam.chapter, "verdict of": fam.name,
                         "estimate [95 % interval]; p": [est(r) for r in fam.itertuples()],
                         "verdict": [outcome(r) for r in fam.itertuples()]})


def holm_changes(fam: pd.DataFrame) -> list[str]:
    """The verdicts Holm's correction changes, as 'chapter: name (verdict -> after Holm)'."""
    return [f"{r.chapter}: {r.name} ({r.verdict} → {r.verdict_holm})" for r in fam.itertuples()
            if r.verdict != r.verdict_holm]


__all__ = ["Entry", "entry", "p_value", "record", "claim_entries", "read_chapters", "family", "with_family_holm",
           "claims_markdown", "claims_note", "write_claims", "family_frame", "holm_changes", "profile_family", "unrecorded", "coverage_sentence", "VERDICT_CHAPTERS", "FAMILY_NOTE"]
