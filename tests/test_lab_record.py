"""The class run's record on the teaching page: written from the run's own tables, included by the page."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lib import runner
from lib.lab_record import PAGE, lab_record_markdown
from lib.paths import REPO


def _results(tmp_path: Path) -> Path:
    tables = tmp_path / "class" / "main" / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame([{"task": "sst2", "accuracy": 0.765, "lo": 0.70, "hi": 0.82, "macro_f1": 0.764, "majority": 0.52,
                   "status": "learned"},
                  {"task": "newsgroups", "accuracy": 0.55, "lo": 0.48, "hi": 0.62, "macro_f1": 0.4, "majority": 0.53,
                   "status": "untestable"}]).to_csv(tables / "task_status.csv", index=False)
    pd.DataFrame([{"claim_id": "RN1", "estimate": None, "lo": None, "hi": None, "verdict": "untestable",
                   "reason": "needs two learned tasks of one type"},
                  {"claim_id": "SN1", "estimate": 0.031, "lo": 0.004, "hi": 0.06, "verdict": "supported",
                   "reason": "interval > 0", "null": 0.0},
                  {"claim_id": "RN2b", "estimate": 0.419, "lo": 0.338, "hi": 0.5, "verdict": "not supported",
                   "reason": "interval reaches 0.5", "null": 0.5}]).to_csv(tmp_path / "class" / "claims.csv", index=False)
    return tmp_path


def test_the_record_states_time_and_each_blocks_verdict(tmp_path):
    records = [{"notebook": "prompt_tuning", "status": "ran", "seconds": 23.6},
               {"notebook": "suppression", "status": "ran", "seconds": 61.0},
               {"notebook": "claims", "status": "skipped", "seconds": 4.0}]
    text = lab_record_markdown(_results(tmp_path), records, total_seconds=545.2, units_seconds=120.4,
                               machine="Linux x86_64, 2 CPU cores, no GPU", finished="2026-12-03 07:12")
    assert "finished 2026-12-03 07:12 on Linux x86_64, 2 CPU cores, no GPU" in text
    assert "took 9 min 5 s in all (2 min 0 s tuning its prompts side by side, then 3 chapters, 2 executed; the " \
           "slowest suppression 61 s, prompt_tuning 24 s)" in text
    assert ("| B. Prompt tuning | sst2 learned (test accuracy 0.765 [0.700, 0.820], macro-F1 0.764, majority rate "
            "0.520); newsgroups untestable") in text
    assert "| D. Do they matter? | SN1: supported, +0.031 [+0.004, +0.060] |" in text
    assert "| F. Wrap-up (transfer) | RN1: untestable (needs two learned tasks of one type) |" in text
    assert "| C. Skill neurons | not computed in this run |" in text
    assert "| E. Robustness and uncertainty | RN2b: not supported, 0.419 [0.338, 0.500] against 0.5 |" in text


def test_only_the_lab_run_writes_the_record():
    out, results = runner.destinations("class")
    chapters = runner.default_chapters("class")
    assert runner._is_the_lab_run("class", out, results, chapters, runner.TEMPLATES)
    assert not runner._is_the_lab_run("class", out, results, chapters[:1], runner.TEMPLATES), "one chapter only"
    assert not runner._is_the_lab_run("mini", *runner.destinations("mini"), runner.default_chapters("mini"),
                                      runner.TEMPLATES)
    assert not runner._is_the_lab_run("class", *runner.destinations("class", {"seeds": [0]}), chapters,
                                      runner.TEMPLATES), "a run with overrides is not the lab's"


def test_the_teaching_page_includes_the_committed_record():
    assert PAGE.is_file(), "run `make run PROFILE=class` to write book/class_run.md"
    text = PAGE.read_text(encoding="utf-8")
    assert text.startswith("<!-- written by lib.lab_record") and "| B. Prompt tuning |" in text
    assert "```{include} class_run.md" in (REPO / "book" / "teaching.md").read_text(encoding="utf-8")


@pytest.mark.slow  # builds HTML pages; make test-fast leaves it out
def test_the_class_run_becomes_html_pages_students_can_open(tmp_path):
    """The book with the run's chapters in place of its own; chapters the run left out are not listed."""
    import shutil

    from lib.lab_record import build_lab_html

    run = tmp_path / "experiments"
    run.mkdir()
    for name in ("claims", "prompt_tuning"):
        shutil.copy2(REPO / "book" / "experiments" / f"{name}.ipynb", run / f"{name}.ipynb")
    (run / "transfer.failed.ipynb").write_text("{}")  # a failed copy is not a chapter
    front = build_lab_html(run, tmp_path / "html")
    html = front.parent
    assert front.is_file() and (html / "book" / "experiments" / "claims.html").is_file()
    assert not (html / "book" / "experiments" / "pruning.html").exists()
    assert (html / "book" / "teaching.html").is_file()
    assert "the class run" in (html / "book" / "intro.html").read_text(encoding="utf-8")
