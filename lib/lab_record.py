"""The class run's record for the teaching page: what `make run PROFILE=class` took and found, per lab block.

The teaching page's plan (book/teaching.md) sends students to the class run's chapters; a teacher needs to
know beforehand how long that run takes and which verdict each block will show. Typed by hand, those numbers
went stale (one of them no longer reproduced). The runner therefore writes `book/class_run.md` at the end of
every class run into its own folders (`lab_record_markdown`), and the teaching page includes that file: every
class-run number on the page comes from the last run that happened.

Read from the run's own outputs only: the task statuses (`<results>/class/main/tables/task_status.csv`), the
claims table (`<results>/class/claims.csv`) and the runner's records (seconds per notebook).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .paths import REPO

PAGE = REPO / "book" / "class_run.md"
# lab block of book/teaching.md -> the claims whose verdicts it shows
BLOCK_CLAIMS = {
    "C. Skill neurons": ("RN3",),
    "D. Do they matter?": ("SN1",),
    "E. Robustness and uncertainty": ("RN2a", "RN2b"),
    "F. Wrap-up (transfer)": ("RN1",),
}


def _minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _timed(record: dict[str, Any]) -> str:
    return f"{record['notebook']} {float(record['seconds']):.0f} s"


def _status_line(row: Any) -> str:
    return (f"{row.task} {row.status} (test accuracy {row.accuracy:.3f} [{row.lo:.3f}, {row.hi:.3f}], macro-F1 "
            f"{row.macro_f1:.3f}, majority rate {row.majority:.3f})")


def _claim_line(row: Any) -> str:
    if pd.isna(row.estimate):
        return f"{row.claim_id}: {row.verdict} ({row.reason})"
    null = float(getattr(row, "null", 0.0) or 0.0)
    fmt = "+.3f" if null == 0 else ".3f"  # a difference carries its sign; a level (e.g. accuracy vs 0.5) does not
    return (f"{row.claim_id}: {row.verdict}, {row.estimate:{fmt}} [{row.lo:{fmt}}, {row.hi:{fmt}}]"
            + ("" if null == 0 else f" against {null:g}"))


def lab_record_markdown(results: Path, records: Sequence[dict[str, Any]], *, total_seconds: float,
                        units_seconds: float, machine: str, finished: str, profile: str = "class") -> str:
    """The page: when and where the run happened, how long it took, and each lab block's verdict."""
    results = Path(results)
    status = pd.read_csv(results / profile / "main" / "tables" / "task_status.csv")
    claims = pd.read_csv(results / profile / "claims.csv").set_index("claim_id", drop=False)
    ran = [r for r in records if r.get("status") == "ran"]
    slowest = sorted(ran, key=lambda r: -float(r.get("seconds", 0)))[:3]
    lines = [
        "<!-- written by lib.lab_record at the end of `make run PROFILE=class`; do not edit by hand -->",
        f"The last class run finished {finished} on {machine}: `make run PROFILE=class` took "
        f"{_minutes(total_seconds)} in all ({_minutes(units_seconds)} tuning its prompts side by side, then "
        f"{len(records)} chapters, {len(ran)} executed"
        + (f"; the slowest {', '.join(_timed(r) for r in slowest)}" if slowest else "") + ").",
        "",
        "| lab block | what the class run shows |",
        "|---|---|",
        "| B. Prompt tuning | " + "; ".join(_status_line(r) for r in status.itertuples()) + " |",
    ]
    for block, ids in BLOCK_CLAIMS.items():
        shown = [_claim_line(claims.loc[c]) for c in ids if c in claims.index]
        lines.append(f"| {block} | {'; '.join(shown) or 'not computed in this run'} |")
    lines += ["", "Claims are those of the Claims chapter (estimate and 95 % interval over the run's prompts and "
                  "test examples; with one seed, over examples only). All-MiniLM-L6-v2, profile `class`."]
    return "\n".join(lines) + "\n"


def write_lab_record(results: Path, records: Sequence[dict[str, Any]], page: Path = PAGE, **kwargs: Any) -> Path:
    from .io import write_text

    write_text(page, lab_record_markdown(results, records, **kwargs))
    return page




def build_lab_html(notebooks: Path, dest: Path) -> Path:
    """The class run as HTML pages students can open: the whole book, its experiment chapters replaced by the
    class run's executed notebooks (`notebooks`), built by Jupyter Book into `dest` (nothing re-executed).
    Chapters the class run left out (the applications) are left out of its table of contents. Returns the
    front page, `dest/_build/html/index.html`."""
    import shutil
    import subprocess
    import sys

    import yaml

    src = Path(dest) / "source"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO / "book", src / "book", ignore=shutil.ignore_patterns("experiments", ".*"))
    (src / "book" / "experiments").mkdir()
    for nb in sorted(Path(notebooks).glob("*.ipynb")):
        if nb.stem.count(".") == 0:  # not <name>.failed / .running / .interrupted
            shutil.copy2(nb, src / "book" / "experiments" / nb.name)
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc.get("parts", []):
        part["chapters"] = [c for c in part["chapters"] if (src / f"{c['file']}.ipynb").is_file()
                            or (src / f"{c['file']}.md").is_file()]
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', 'The book')}: the class run"
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(src), "--path-output", str(dest), "--all", "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        from .errors import ConfigError

        raise ConfigError(f"building the class run's HTML failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return Path(dest) / "_build" / "html" / "index.html"


__all__ = ["lab_record_markdown", "write_lab_record", "build_lab_html", "PAGE", "BLOCK_CLAIMS"]
