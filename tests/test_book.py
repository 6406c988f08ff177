"""The smoke profile end to end: every notebook executed by papermill, then the book built with
warnings as errors, then opened in headless Chromium. The fixtures `smoke_run` and `built_book` live in
conftest.py (one build per session, shared with test_teaching.py)."""
from pathlib import Path

import nbformat
import pytest

from helpers import assert_one_value_per_named_quantity, chromium, chromium_run, glued_values
from lib.errors import ConfigError
from lib.runner import APP_NOTEBOOKS, NOTEBOOKS, TEMPLATES, NotebookFailed, run_profile

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_every_notebook_executes(smoke_run):
    root, records = smoke_run
    assert [r["notebook"] for r in records] == list(NOTEBOOKS)
    assert all(r["status"] == "ran" for r in records)
    for name in NOTEBOOKS:
        nb = nbformat.read(root / "book" / "experiments" / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        assert not [o for o in outputs if o.get("name") == "stderr"], f"{name} wrote to stderr"
        assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and 'profile = "smoke"' in params[0].source, "the visible cell shows what ran"
    figures = sum(any("image/png" in o.get("data", {}) for c in nbformat.read(
        root / "book" / "experiments" / f"{n}.ipynb", as_version=4).cells for o in c.get("outputs", []))
        for n in NOTEBOOKS)
    assert figures == len(NOTEBOOKS), "every notebook shows a figure"
    assert "| prompt_tuning | smoke |" in (root / "book" / "experiments" / "run_summary.md").read_text()
    for name in APP_NOTEBOOKS:  # their verdicts are computed even where the tiny tasks are not learned
        nb = nbformat.read(root / "book" / "experiments" / f"{name}.ipynb", as_version=4)
        text = " ".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []))
        assert "supported" in text or "untestable" in text, f"{name}: no computed verdict"


def test_unchanged_notebooks_are_skipped(smoke_run):
    root, _ = smoke_run
    again = run_profile("smoke", root / "book" / "experiments", results_dir=root / "results", progress=False,
                        only=["transfer", "explorer"])
    assert [r["status"] for r in again] == ["skipped", "skipped"]


def test_failure_stops_and_keeps_the_notebook(tmp_path):
    first = NOTEBOOKS[0]  # the first chapter the runner executes; the others' templates are absent here
    templates = tmp_path / "templates"
    templates.mkdir()
    nb = nbformat.read(TEMPLATES / f"{first}.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('planted failure')"))
    nbformat.write(nb, templates / f"{first}.ipynb")
    with pytest.raises(NotebookFailed, match=rf"'{first}' failed .*planted failure.*{first}\.failed\.ipynb"):
        run_profile("smoke", tmp_path / "out", results_dir=tmp_path / "results", templates=templates,
                    progress=False)
    assert (tmp_path / "out" / f"{first}.failed.ipynb").is_file()
    assert not (tmp_path / "out" / f"{first}.ipynb").exists()
    with pytest.raises(ConfigError, match="unknown notebook"):
        run_profile("smoke", tmp_path / "out", only=["nope"], progress=False)
    with pytest.raises(ConfigError, match=r"unknown profile field\(s\) \['sedes'\]"):
        run_profile("smoke", tmp_path / "out", overrides={"sedes": [1]}, progress=False)


def test_book_builds_with_warnings_as_errors(built_book):
    assert (built_book / "index.html").is_file()
    for name in NOTEBOOKS:
        assert (built_book / "book" / "experiments" / f"{name}.html").is_file()
    # without COMPENDIUM_REPO_URL: no launch or repository buttons, and never a placeholder that 404s
    pages = {p.name: p.read_text(encoding="utf-8") for p in built_book.rglob("*.html")}
    assert not [n for n, text in pages.items() if "OWNER/" in text or "mybinder.org" in text
                or "colab.research.google.com" in text], "launch buttons without a repository URL"
    transfer = pages["transfer.html"]
    assert "injected-parameters" not in transfer and "lib not found" not in transfer, "hidden cells stay hidden"


def _dump(browser, page, tmp_path, screenshot=None):
    if screenshot:
        chromium_run(browser, page, tmp_path, f"--screenshot={screenshot}")
    return chromium_run(browser, page, tmp_path, "--dump-dom").stdout


def test_pages_render_in_chromium(built_book, tmp_path):
    browser = chromium()
    index = _dump(browser, built_book / "index.html", tmp_path)
    assert "Skill neurons, robustness and transfer" in index
    shot = tmp_path / "skill_neurons.png"
    page = _dump(browser, built_book / "book" / "experiments" / "skill_neurons.html", tmp_path, shot)
    assert page.count("<img") >= 2, "the skill-neuron page shows its figures"
    assert "Traceback" not in page and "output_error" not in page and "stderr" not in page
    assert "Profile" in page and "smoke" in page, "the page names the profile its numbers come from"
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_each_named_quantity_has_one_value_across_pages(smoke_run):
    """A claim's estimate and interval, and a task's accuracy with its interval, are printed by the same
    tested functions on every page that shows them: one value each, equal to results/<profile>/claims.csv
    (tests/test_book_numbers.py asks the same of the committed mini book)."""
    root, _ = smoke_run
    assert_one_value_per_named_quantity(root, "smoke", NOTEBOOKS)


def test_a_quantity_glued_by_several_chapters_has_one_value(smoke_run):
    """The skill-neuron and control chapters both glue a task's highest predictivity (`max_pred_<task>`,
    lib.notebook.highest_predictivity); any key glued by two chapters carries one value."""
    root, _ = smoke_run
    glued = glued_values(root, NOTEBOOKS)
    shared = {k: v for k, v in glued.items() if len(v) > 1}
    assert any(k.startswith("max_pred_") and {"skill_neurons", "random_init_control"} <= set(v)
               for k, v in shared.items()), sorted(shared)
    assert all(len(set(v.values())) == 1 for v in shared.values()), shared


def test_the_claims_page_shows_an_html_table(built_book):
    html = (built_book / "book" / "experiments" / "claims.html").read_text()
    assert "| claim |" not in html and "<table" in html and "after Holm" in html
