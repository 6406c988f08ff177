"""The one table of chapters (`lib.chapter_table`): _toc.yml, the templates, the runner and the ledger agree with it."""
from __future__ import annotations

import pytest
import yaml

from lib import chapter_table, ledger, runner
from lib.paths import REPO


def _toc_chapters() -> list[tuple[str, str]]:
    """(name, part caption) of every executed chapter in _toc.yml, in reading order."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    return [(c["file"].removeprefix("book/experiments/"), part["caption"])
            for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("book/experiments/")]


def test_the_table_is_the_books_table_of_contents():
    assert _toc_chapters() == [(c.name, c.part) for c in chapter_table.CHAPTERS]


def test_every_chapter_has_a_template():
    """The one other template is the Performance page's (book/performance, executed by `make bench`)."""
    assert sorted(p.stem for p in runner.TEMPLATES.glob("*.ipynb")) == sorted([*chapter_table.names(), "performance"])


def test_the_run_order_runs_every_chapter_after_what_it_shows_and_the_claims_last():
    order = chapter_table.run_order()
    assert sorted(order) == sorted(chapter_table.names()) and order[-1] == "claims"
    for c in chapter_table.CHAPTERS:
        assert all(order.index(other) < order.index(c.name) for other in c.shows_results_of), c.name
    assert order == runner.NOTEBOOKS
    reading = [n for n in chapter_table.names() if n not in ("claims", "prompt_tuning", "panda")]
    assert [n for n in order if n in reading] == reading, "otherwise reading order"


def test_the_runner_and_the_ledger_read_their_lists_from_the_table():
    assert runner.APP_NOTEBOOKS == ("pruning", "other_tuning", "model_tuning")
    assert set(runner.STUDY_NOTEBOOKS) == {"indicators", "init_transfer", "panda", "projector"}
    assert runner.SHOWS_RESULTS_OF == {"prompt_tuning": ("model_tuning",), "panda": ("model_tuning",)}
    assert ledger.VERDICT_CHAPTERS == chapter_table.names(records_verdicts=True)
    assert "claims" not in ledger.VERDICT_CHAPTERS and "pruning" in ledger.VERDICT_CHAPTERS


def test_bad_flags_and_parts_are_one_clear_error():
    with pytest.raises(TypeError, match="no chapter flag takes_bus"):
        chapter_table.names(takes_bus=True)
    with pytest.raises(ValueError, match="part 'Extras' is not one of"):
        chapter_table.Chapter("x", "Extras")
