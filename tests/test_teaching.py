"""The book as a reader and a teacher use it: formulas, the method figure, glossary, learning goals and
exercises, captioned figures and readable tables, credit (licence, citation, bibliography), and the
explorer that works in the static HTML with no kernel and no network.

The fast tests read the templates and the sources; the slow ones (`built_book`, from conftest.py, shared
with test_book.py) read the smoke build and open pages in headless Chromium.
"""
from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import yaml

from helpers import chromium, chromium_run
from lib.paths import REPO
from lib.runner import NOTEBOOKS, SELECTABLE, TEMPLATES

BOOK = REPO / "book"
HASHLIKE = re.compile(r"^[0-9a-f]{32,}(\.\w+)?$")
CITE = re.compile(r"\{cite:[pt]\}`([^`]+)`")
REQUIRED_BIB = ("ackermann2024robust", "wang2022skill", "su2022transferability", "zhong2022panda", "wang2018glue",
                "socher2013sst", "dolan2005mrpc", "rajpurkar2016squad", "dagan2006rte", "maas2011imdb",
                "wang2021adversarial", "hendrycks2021ethics", "warstadt2019cola", "liu2019roberta", "raffel2020t5",
                "devlin2019bert", "wang2020minilm", "reimers2019sbert", "minilm2021model", "mangrulkar2022peft",
                "vu2022spot", "lester2021power", "liu2022ptuning")
MATH_PAGES = ("skill_neurons", "indicators", "panda")


def templates() -> dict[str, nbformat.NotebookNode]:
    return {name: nbformat.read(TEMPLATES / f"{name}.ipynb", as_version=4) for name in SELECTABLE}


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def bib_entries() -> dict[str, str]:
    text = (BOOK / "references.bib").read_text(encoding="utf-8")
    parts = re.split(r"^@(?=\w+\{)", text, flags=re.MULTILINE)[1:]
    return {re.match(r"\w+\{([^,]+),", p).group(1).strip(): p for p in parts}


# --- credit ---------------------------------------------------------------------------------------------
def test_license_and_citation_metadata():
    lic = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert lic.startswith("MIT License") and "Copyright (c) 2026 The skill-neuron compendium authors" in lic
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "license", "version"):
        assert cff.get(key), key
    assert cff["license"] == "MIT" and cff["authors"][0]["name"] == "The skill-neuron compendium authors"
    assert {r["title"].split(":")[0] for r in cff["references"]} >= {
        "On the Relationship between Skill Neurons and Robustness in Prompt Tuning", "Panda"}
    intro = (BOOK / "intro.md").read_text(encoding="utf-8")
    assert "## How to cite" in intro and "CITATION.cff" in intro


def test_bibliography_has_the_data_sets_models_and_papers():
    entries = bib_entries()
    assert len(entries) >= 20
    assert not set(REQUIRED_BIB) - set(entries), sorted(set(REQUIRED_BIB) - set(entries))
    for key, body in entries.items():
        doi = re.search(r"\bdoi\s*=\s*\{([^}]*)\}", body)
        url = re.search(r"\burl\s*=\s*\{(https://[^}]+)\}", body)
        assert doi or url, f"{key} has neither DOI nor URL"
        if doi:
            assert re.fullmatch(r"10\.\d{4,9}/\S+", doi.group(1)), f"{key}: malformed DOI {doi.group(1)!r}"


def test_every_citation_key_exists_and_every_chapter_cites():
    keys = set(bib_entries())
    sources = {f"notebooks/{n}": markdown(nb) for n, nb in templates().items()}
    sources.update({f"book/{p.name}": p.read_text(encoding="utf-8") for p in BOOK.glob("*.md")})
    for where, text in sources.items():
        cited = {k.strip() for group in CITE.findall(text) for k in group.split(",")}
        assert not cited - keys, f"{where} cites unknown keys {sorted(cited - keys)}"
    for name, nb in templates().items():
        assert CITE.search(markdown(nb)), f"chapter {name} cites nothing"


# --- the method, visibly ----------------------------------------------------------------------------------
def test_method_page_glossary_and_teaching_are_in_the_book():
    toc = (REPO / "_toc.yml").read_text(encoding="utf-8")
    for page in ("book/method", "book/glossary", "book/teaching"):
        assert f"file: {page}\n" in toc and (REPO / f"{page}.md").is_file()
    method = (BOOK / "method.md").read_text(encoding="utf-8")
    assert "## Notation" in method and method.count("$$") >= 2 * 12, "the method page has its formulas"
    for label in ("eq-threshold", "eq-pred", "eq-aggregate", "eq-suppression", "eq-specificity", "eq-on",
                  "eq-panda", "eq-projector-distance", "eq-projector-task", "eq-bootstrap"):
        assert f"$$ ({label})" in method, label
    assert "figures/method.svg" in method and ":alt:" in method
    glossary = (BOOK / "glossary.md").read_text(encoding="utf-8")
    assert "```{glossary}" in glossary
    for term in ("verbalizer", "mask slot", "soft prompt", "predictivity", "skill neuron", "suppression", "ON",
                 "AdvGLUE", "majority baseline", "macro-F1", "bootstrap interval", "transfer", "PANDA",
                 "projector", "profile"):
        assert re.search(rf"^{re.escape(term)}$", glossary, re.MULTILINE), term


def test_method_figure_is_reproducible(tmp_path):
    from lib.figures import main

    assert main(["method", str(tmp_path / "method.svg")]) == 0
    fresh = (tmp_path / "method.svg").read_bytes()
    assert fresh == (BOOK / "figures" / "method.svg").read_bytes(), \
        "book/figures/method.svg is stale: run `python -m lib.figures method book/figures/method.svg`"


def test_method_figure_ignores_the_session_style(tmp_path):
    """A notebook or test that set seaborn's theme earlier in the process must not change the drawing
    (CI ran the test above after such a test and got another SVG)."""
    import matplotlib
    import seaborn as sns

    from lib.figures import draw_method

    with matplotlib.rc_context():
        sns.set_theme(style="whitegrid", context="notebook", font_scale=1.15)
        draw_method(tmp_path / "themed.svg")
        assert matplotlib.rcParams["font.size"] != matplotlib.rcParamsDefault["font.size"]  # the theme held
    assert (tmp_path / "themed.svg").read_bytes() == (BOOK / "figures" / "method.svg").read_bytes()


def test_chapters_state_formulas_where_first_used():
    nbs = templates()
    expect = {"prompt_tuning": r"\mathcal{L}_{\text{CE}}", "skill_neurons": r"\mathrm{pred}_{l,p,n}",
              "suppression": r"\Delta(q)", "task_specificity": r"\mathrm{spec}(A, B)", "adversarial": r"\mathrm{CI}_{95}",
              "adversarial_neurons": "O_l", "indicators": r"\mathrm{ON}_W", "panda": r"\mathcal{L}_{\text{PANDA}}",
              "projector": r"g_\phi", "init_transfer": "s_{90}"}
    for name, symbol in expect.items():
        first = nbs[name].cells[0].source
        assert symbol in first and "$$" in first, f"{name}: formula {symbol!r} missing from the chapter's opening"
        assert "{ref}`method-" in first, f"{name} links its formula to the method page"


# --- for a course ---------------------------------------------------------------------------------------
MAKE_RUN = re.compile(r"make run PROFILE=mini[^\n`]*")


def exercise_commands(text: str) -> list[str]:
    """The `make run PROFILE=mini ...` commands of a text, placeholders such as ONLY=<chapter> left out."""
    return [m.group(0).strip() for m in MAKE_RUN.finditer(text) if "<" not in m.group(0)]


def test_every_chapter_has_goals_and_exercises_with_hidden_solutions():
    for name, nb in templates().items():
        text = markdown(nb)
        assert "What you will learn" in nb.cells[0].source, name
        exercises = re.findall(r"^`{3,}\{exercise\}", text, re.MULTILINE)
        solutions = re.findall(r"^`{3,}\{solution\} (\S+)\n:class: dropdown", text, re.MULTILINE)
        assert 2 <= len(exercises) <= 3, f"{name}: {len(exercises)} exercises"
        assert len(solutions) == len(exercises), f"{name}: every solution folded (:class: dropdown)"
        assert any(f"ONLY={name} " in c for c in exercise_commands(text)), f"{name}: no re-run exercise"


def test_exercise_commands_name_real_chapters_and_valid_settings():
    from lib.profiles import get_profile
    from lib.transfer_study import get_study

    texts = [markdown(nb) for nb in templates().values()] + [(BOOK / "teaching.md").read_text(encoding="utf-8")]
    commands = [c for t in texts for c in exercise_commands(t)]
    assert len(commands) >= len(NOTEBOOKS)
    for command in commands:
        args = dict(a.split("=", 1) for a in shlex.split(command)[2:])
        assert args.pop("PROFILE") == "mini" and args.get("ONLY") in SELECTABLE, command
        prof = get_profile("mini").replace(**json.loads(args.get("OVERRIDES", "{}")))
        if "STUDY" in args:
            study = get_study("mini", json.loads(args["STUDY"]))
            study.check_against(SimpleNamespace(profile=prof))
        if "APPS" in args:
            from lib.applications import get_applications

            get_applications("mini", json.loads(args["APPS"]))
        assert not set(args) - {"ONLY", "OVERRIDES", "STUDY", "APPS"}, command


def dropped_tables(source: str) -> list[int]:
    """Lines where a cell builds a table (`lib.notebook.table` returns HTML) that is not the cell's last
    statement and not passed to `display`: Jupyter shows only the last expression, so it never appears."""
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body else None
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", None) == "table"
            and n is not last]


def test_dropped_table_detector_knows_the_difference():
    assert dropped_tables("x = 1\ntable(df)\nsay('hi')\n") == [2]
    assert dropped_tables("if ok:\n    table(df)\nelse:\n    say('no')\n") == [2]
    assert dropped_tables("display(table(df))\nsay('hi')\n") == []
    assert dropped_tables("x = 1\ntable(df)\n") == []


def test_every_code_cell_is_hidden_or_removed_in_the_book():
    """The book shows results; code sits behind 'Show code cell source' (or is removed), never in the way."""
    bare = [f"{name} cell {c.get('id', i)}" for name, nb in templates().items() for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not {"hide-input", "hide-cell", "remove-cell", "remove-input"}
            & set(c.metadata.get("tags", []))]
    assert bare == []


def test_every_table_a_chapter_builds_is_shown():
    dropped = {name: lines for name, nb in templates().items()
               for lines in [[f"cell {i} line {ln}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
                              for ln in dropped_tables(c.source)]] if lines}
    assert not dropped, f"tables built but never displayed (wrap them in display()): {dropped}"


def test_figure_cells_carry_caption_name_and_alt_text():
    names = set()
    for name, nb in templates().items():
        for cell in nb.cells:
            if cell.cell_type != "code" or not ("plt.show()" in cell.source or "explorer_html(" in cell.source):
                continue
            opts = cell.metadata.get("mystnb", {})
            fig, image = opts.get("figure", {}), opts.get("image", {})
            assert fig.get("caption") and fig.get("name", "").startswith("fig-"), f"{name}: uncaptioned figure"
            assert fig["name"] not in names, f"duplicate figure name {fig['name']}"
            names.add(fig["name"])
            assert len(image.get("alt", "")) > 40 and not HASHLIKE.match(image["alt"]), f"{name}: alt text"
    assert len(names) >= len(NOTEBOOKS) + 1


# --- the static explorer -----------------------------------------------------------------------------------
def _selections():
    from lib.explorer_static import Selection

    rng = np.random.default_rng(0)
    out = []
    for task in ("a", "b"):
        for seed in (0, 1):
            scores = 0.5 + 0.5 * rng.random((3, 16))
            labels = ["neg", "pos"] * 10
            out.append(Selection(task, seed, scores, [(2, 3), (0, 1)], [0, 4], rng.normal(size=(20, 2)), labels,
                                 ["neg", "pos"]))
    return out


def test_static_explorer_figure_switches_traces_and_needs_no_network():
    from lib.explorer_static import BOOK_PLOTLY_JS, explorer_figure, explorer_html, top_neurons

    scores = np.array([[0.5, 0.9, 0.6], [0.95, 0.5, 0.7]])
    assert top_neurons(scores, 2) == [(1, 0), (0, 1)]
    sels = _selections()
    fig = explorer_figure(sels)
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == [s.key for s in sels]
    visible = [b.args[0]["visible"] for b in buttons]
    assert all(sum(v) == len(fig.data) // len(sels) for v in visible), "each choice shows one (task, seed)"
    assert len({tuple(v) for v in visible}) == len(sels)
    html = explorer_html(fig)
    assert len(html) > 1_000_000, "plotly.js is inlined"
    assert not re.search(r"<script[^>]+src=", html), "no external script"
    linked = explorer_html(fig, BOOK_PLOTLY_JS)
    assert len(linked) < 200_000, "the book's copy of plotly.js is linked, not inlined"
    assert re.findall(r'<script[^>]+src="([^"]+)"', linked) == [BOOK_PLOTLY_JS]
    for bad in ("https://cdn.plot.ly/plotly.min.js", "//cdn/x.js", "plotly.css"):
        with pytest.raises(ValueError, match="relative URL of a local .js"):
            explorer_html(fig, bad)


def test_book_serves_the_installed_plotly_js():
    from lib.explorer_static import BOOK_PLOTLY_JS

    """The vendored copy is the version plotly itself would inline (refresh it after upgrading plotly)."""
    import plotly.offline

    vendored = BOOK / "_static" / "plotly" / "plotly.min.js"
    assert vendored.read_text(encoding="utf-8") == plotly.offline.get_plotlyjs(), \
        "book/_static/plotly/plotly.min.js differs from the installed plotly's bundle"
    assert BOOK_PLOTLY_JS.endswith("_static/plotly/plotly.min.js")


def test_committed_notebooks_stay_small():
    for nb in sorted((BOOK / "experiments").glob("*.ipynb")):
        assert nb.stat().st_size < 5_000_000, f"{nb.name} is {nb.stat().st_size / 1e6:.1f} MB (limit 5 MB)"


# --- the built book (slow) ---------------------------------------------------------------------------------
def _article(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.find('<article class="bd-article"')
    return text[start:text.find("</article>", start)] if start >= 0 else text


def _dom(browser: str, page: Path, tmp_path: Path, budget_ms: int = 10000) -> str:
    return chromium_run(browser, page, tmp_path, "--dump-dom", budget_ms=budget_ms, timeout=180).stdout


@pytest.mark.slow
def test_math_is_rendered_offline(built_book, tmp_path):
    for name in MATH_PAGES:
        html = (built_book / "book" / "experiments" / f"{name}.html").read_text(encoding="utf-8")
        assert 'class="math' in html and "\\(" in html, f"{name}: no math markup"
        assert "_static/mathjax/tex-svg-full.js" in html and "cdn.jsdelivr.net/npm/mathjax" not in html, name
    assert (built_book / "_static" / "mathjax" / "tex-svg-full.js").is_file()
    assert (built_book / "book" / "method.html").read_text(encoding="utf-8").count('class="math') >= 20
    dom = _dom(chromium(), built_book / "book" / "experiments" / "skill_neurons.html", tmp_path)
    assert "<mjx-container" in dom and "<svg" in dom, "MathJax did not typeset the page offline"


@pytest.mark.slow
def test_glossary_method_and_teaching_pages(built_book):
    glossary = _article(built_book / "book" / "glossary.html")
    assert glossary.count('<dt id="term-') >= 20
    method = _article(built_book / "book" / "method.html")
    assert "method.svg" in method and "Fig. 1" in method and "<figcaption" in method
    teaching = _article(built_book / "book" / "teaching.html")
    assert "90-minute" in teaching and teaching.count('href="experiments/') >= 5


@pytest.mark.slow
def test_experiment_pages_have_exercises_captions_and_clean_tables(built_book):
    for name in NOTEBOOKS:
        page = _article(built_book / "book" / "experiments" / f"{name}.html")
        exercises = re.findall(r'<div class="exercise admonition"', page)
        solutions = re.findall(r'<div class="[^"]*solution[^"]*dropdown[^"]*"', page)
        assert len(exercises) >= 2 and len(solutions) == len(exercises), (name, len(exercises), len(solutions))
        assert "What you will learn" in page, name
        images = re.findall(r"<img [^>]*>", page)
        captions = re.findall(r'<span class="caption-number">Fig\. [\d.]+ </span>', page)
        assert images and len(captions) >= len(images), f"{name}: {len(images)} images, {len(captions)} captions"
        for img in images:
            alt = re.search(r'alt="([^"]*)"', img).group(1)
            assert len(alt) > 40 and not HASHLIKE.match(alt), f"{name}: alt {alt!r}"
        assert "row_heading" not in page, f"{name}: a table shows its index column"
        headers = [h.strip() for h in re.findall(r"<th[^>]*>([^<]*)</th>", page)]
        raw = [h for h in headers if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", h)]
        assert not raw, f"{name}: raw column names {raw}"


@pytest.mark.slow
def test_explorer_changes_with_the_selection_offline(built_book, tmp_path):
    """Open the built explorer page in headless Chromium (no network), pick another task/seed in the figure's
    own menu by clicking it, and see the visible traces, the panel titles and the drawn heatmap change."""
    browser = chromium()
    page = built_book / "book" / "experiments" / "explorer.html"
    html = page.read_text(encoding="utf-8")
    assert "skill-neuron-explorer" in html
    external = re.findall(r'<script[^>]+src="(https?:[^"]+)"', html)
    assert not external, f"the explorer page loads scripts from the network: {external}"
    probe = (Path(__file__).parent / "fixtures" / "explorer_probe.js").read_text(encoding="utf-8")
    probed = page.with_name("explorer_probe.html")
    probed.write_text(html.replace("</body>", f"<script>{probe}</script></body>"), encoding="utf-8")
    dom = _dom(browser, probed, tmp_path, budget_ms=15000)
    found = re.search(r"PROBE(\{.*\})PROBE", dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1))
    assert "error" not in result, result
    before, after = result["before"], result["after"]
    assert result["options"] >= 2
    assert before["visible"] and after["visible"] and before["visible"] != after["visible"]
    assert before["titles"] != after["titles"] and before["menu"] != after["menu"]
    assert before["heatmap"] and before["heatmap"] != after["heatmap"], "the drawn heatmap did not change"


def _solution_code(label: str) -> str:
    """The Python block of the solution to exercise `label` on the teaching page."""
    text = (REPO / "book" / "teaching.md").read_text(encoding="utf-8")
    block = text.split(f"````{{solution}} {label}", 1)[1].split("\n````", 1)[0]
    return block.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_teaching_pages_code_solutions_agree_with_the_library():
    """Both code exercises' solutions run and give what the page says and what lib computes."""
    import numpy as np

    from lib.intervals import accuracy_interval

    scope: dict = {}
    exec(_solution_code("ex-teaching-predictivity"), scope)
    given = {"train_acts": np.array([[0.0, 1.0], [2.0, 3.0]]), "eval_acts": np.array([[2.0, 0.0], [0.0, 3.0], [3.0, 1.0]]),
             "eval_labels": np.array([1, 0, 0])}
    assert scope["predictivity"](**given) == pytest.approx(2 / 3)
    perfect = scope["predictivity"](np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]), np.array([0, 1]))
    assert perfect == 1.0, "a neuron firing for the wrong class is as predictive"

    scope = {}
    exec(_solution_code("ex-teaching-bootstrap"), scope)
    assert (round(scope["lo"], 3), round(scope["hi"], 3)) == (0.69, 0.805), "the values the solution states"
    lib_iv = accuracy_interval(scope["correct"], unit="examples", n_boot=2000)
    assert abs(lib_iv.lo - scope["lo"]) < 0.01 and abs(lib_iv.hi - scope["hi"]) < 0.01
