"""Helpers shared by several test modules (plain functions and constants, not fixtures)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# every unit of the smoke profile (lib.units.list_units), in the order the units list prints them
SMOKE_UNITS = [
    "tune/synthetic/seed0", "tune/synthetic/seed1", "tune/synthetic_pair/seed0", "tune/synthetic_pair/seed1",
    "control/synthetic/seed0",
    "baseline/synthetic/seed0", "baseline/synthetic/seed1", "baseline/synthetic_pair/seed0",
    "baseline/synthetic_pair/seed1",
    "transfer/synthetic_to_synthetic_pair/seed0", "panda/synthetic_to_synthetic_pair/seed0",
    "transfer/synthetic_to_synthetic_pair/seed1", "panda/synthetic_to_synthetic_pair/seed1",
    "transfer/synthetic_pair_to_synthetic/seed0", "panda/synthetic_pair_to_synthetic/seed0",
    "transfer/synthetic_pair_to_synthetic/seed1", "panda/synthetic_pair_to_synthetic/seed1",
]
SHORT_STUDY = {"seeds": [0], "steps": 10, "eval_every": 5}


def chromium() -> str:
    """The headless browser, or skip (the CI script installs Debian's 'chromium')."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)")


def chromium_run(browser: str, page: Path, tmp_path: Path, *extra: str, budget_ms: int = 5000,
                 timeout: int = 120) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium with no network services, a fresh profile and a 1280x1600 window."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600",
             f"--virtual-time-budget={budget_ms}", *extra, page.as_uri()]
    return subprocess.run([browser, *flags], capture_output=True, text=True, timeout=timeout)


# A claim as every page prints it (lib.claims.claim_sentence) and a task's status sentence (lib.verdicts).
CLAIM_SENTENCE = (r"\*\*((?:RN|SN)\d[ab]?), [^*]*?: [^*]*?\.\*\* Estimate (-?\d+\.\d+) \(95 % interval "
                  r"(-?\d+\.\d+) to (-?\d+\.\d+)\)")
STATUS_SENTENCE = r"(\w+) (\d+\.\d)% \[(\d+\.\d)%, (\d+\.\d)%\] vs majority (\d+\.\d)%"
# a row of results/<profile>/claims.md (the introduction includes it): claim id, then estimate [lo, hi]
CLAIMS_MD_ROW = (r"^\| (?:\*\*)?((?:RN|SN)\d[ab]?)(?:\*\*|:) [^|]*\| ([+-]?\d+\.\d+) \[([+-]?\d+\.\d+), "
                 r"([+-]?\d+\.\d+)\]")


def printed_markdown(root: Path, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Every executed chapter's computed Markdown output under root/book/experiments, one text per notebook."""
    import nbformat

    out = {}
    for name in names:
        nb = nbformat.read(root / "book" / "experiments" / f"{name}.ipynb", as_version=4)
        out[name] = " ".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells
                             if c.cell_type == "code" for o in c.get("outputs", []))
    return out


def values_of_named_quantities(root: Path, profile: str, names: list[str] | tuple[str, ...]) -> tuple[dict, dict, dict]:
    """(claims seen on pages, claims in results/<profile>/claims.csv, task statuses seen on pages):
    {claim_id: {(estimate, lo, hi) to 3 decimals}} from the chapters' output and results/<profile>/claims.md
    (which the introduction includes), {claim_id: (estimate, lo, hi) to 3 decimals},
    {task: {(acc, lo, hi, majority) as printed}}. One value per quantity means one entry per set."""
    import re

    import pandas as pd

    printed = printed_markdown(root, names)
    table = pd.read_csv(root / "results" / profile / "claims.csv").set_index("claim_id")
    seen_claims: dict[str, set] = {}
    seen_status: dict[str, set] = {}
    def three(*values: str) -> tuple[str, ...]:
        return tuple(f"{float(v):.3f}" for v in values)

    summary = (root / "results" / profile / "claims.md").read_text(encoding="utf-8")
    for cid, *values in re.findall(CLAIMS_MD_ROW, summary, flags=re.M):
        seen_claims.setdefault(cid, set()).add(three(*values))
    for text in printed.values():
        for cid, *values in re.findall(CLAIM_SENTENCE, text):
            seen_claims.setdefault(cid, set()).add(three(*values))
        for task, *values in re.findall(STATUS_SENTENCE, text):
            seen_status.setdefault(task, set()).add(tuple(values))
    in_table = {cid: three(r.estimate, r.lo, r.hi) for cid, r in table.iterrows()
                if pd.notna(r.estimate)}
    return seen_claims, in_table, seen_status


def glued_values(root: Path, names: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """{glue key: {chapter: the glued value as text}} over the executed chapters under root/book/experiments.
    A key glued by several chapters names one quantity (e.g. `max_pred_<task>`, lib.notebook.highest_predictivity)
    and must carry one value."""
    import nbformat

    out: dict[str, dict[str, str]] = {}
    for name in names:
        path = root / "book" / "experiments" / f"{name}.ipynb"
        if not path.is_file():
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            for o in cell.get("outputs", []) if cell.cell_type == "code" else ():
                key = o.get("metadata", {}).get("scrapbook", {}).get("name")
                if key:
                    data = o.get("data", {})
                    text = next((v for k, v in data.items() if k.endswith("text/plain")), "")
                    out.setdefault(key, {})[name] = "".join(text)
    return out


def assert_one_value_per_named_quantity(root: Path, profile: str, names: list[str] | tuple[str, ...]) -> None:
    """Every claim the pages print has the one value of results/<profile>/claims.csv, and each task's status
    sentence reads the same on every page (the smoke book and the committed mini book use this check)."""
    seen_claims, in_table, seen_status = values_of_named_quantities(root, profile, names)
    assert seen_claims and set(seen_claims) == set(in_table), (set(seen_claims), set(in_table))
    for cid, values in seen_claims.items():
        assert values == {in_table[cid]}, (cid, values, in_table[cid])
    assert seen_status, "the status sentence is printed somewhere"
    assert all(len(v) == 1 for v in seen_status.values()), seen_status
