"""No result is typed by hand: the prose of the book (its Markdown pages and the notebooks' Markdown
cells) may state definitions and settings, but every measured number must come from computed output
(a code cell, `glue`, or a file a chapter writes, such as results/<profile>/claims.md).

The scan looks for decimals, percentages and ×-factors outside code, math and links; each one found must
be a definition or setting named in `DEFINITIONS`, with the reason it is not a result."""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# value as written -> why it is a definition or setting, not a measured result
DEFINITIONS = {
    "95 %": "the interval level",
    "5 %": "the family-wise error of Holm's correction",
    "0.05": "Holm's threshold",
    "0.60": "the macro-F1 bar of the learned gate (lib.verdicts.MIN_MACRO_F1)",
    "0.5": "chance for a binary label / the floor of predictivity",
    "98 %": "the coverage band the interval tests require (92-98 %)",
    "90 %": "the speed-up threshold of transfer as initialisation (s_90)",
    "50 %": "a performance target (roofline share)",
    "40 %": "a performance target (MFU)",
    "20 %": "the share of train carved out as dev (Skill-Neuron's practice)",
    "1.5 ×": "a performance target",
    "5 ×": "a performance target",
    "3.10": "a Python version",
    "4.57": "a library version",
    "1.16": "a package version",
}
NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?×|\d+\.\d+)")


def prose(text: str) -> str:
    """Markdown with code (fenced, inline, directive options), math, links and citations removed."""
    text = re.sub(r"(`{3,})[^\n]*\n(?:.*?\n)??\1", " ", text, flags=re.S)  # fenced code of any fence length
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", " ", text)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"^:\w[\w-]*:.*$", " ", text, flags=re.M)  # directive options such as :width: 100%
    text = re.sub(r"\]\([^)]*\)|https?://\S+", " ", text)
    return text


GENERATED = "<!-- written by "  # first line of a page a run writes from its own tables (book/class_run.md)


def pages() -> dict[str, str]:
    """Every hand-written page: book/*.md (less the pages a run generates) and the templates' Markdown cells."""
    out = {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "book").glob("*.md"))
           if not p.read_text().startswith(GENERATED)}
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out[str(nb.relative_to(REPO))] = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return out


def typed_numbers(text: str) -> list[str]:
    return [m.group(0).replace("\u00a0", " ") for m in NUMBER.finditer(prose(text))]


def test_the_scan_finds_typed_results_and_skips_code_and_math():
    text = ("SST-2 reaches 0.885 against 60.5 % here, 1.47× faster.\n```bash\nmake run APPS='{\"x\": 0.3}'\n```\n"
            "$p = 0.73$ and `0.91` and [link](https://x.org/v1.2)\n:width: 100%\n")
    assert typed_numbers(text) == ["0.885", "60.5 %", "1.47×"]


def test_only_generated_pages_are_skipped():
    assert "book/teaching.md" in pages() and "book/class_run.md" not in pages()
    from lib.lab_record import PAGE

    assert PAGE.read_text().startswith(GENERATED), "the class-run record is written by lib.lab_record"


def test_no_page_types_a_result_by_hand():
    found = {page: [n for n in typed_numbers(text) if n not in DEFINITIONS] for page, text in pages().items()}
    found = {page: numbers for page, numbers in found.items() if numbers}
    assert not found, (f"numbers typed into prose (compute them in a code cell or glue them, or, if they are "
                       f"definitions, add them to DEFINITIONS with the reason): {found}")


def test_the_committed_mini_book_prints_each_named_quantity_once():
    """The book as committed (mini profile): every claim the chapters and the introduction's table print has
    the one value of results/mini/claims.csv, and each task's status sentence reads the same on every page.
    Fails on a half re-run book, whose pages would show two runs' values."""
    from helpers import assert_one_value_per_named_quantity, glued_values
    from lib.runner import NOTEBOOKS

    assert_one_value_per_named_quantity(REPO, "mini", NOTEBOOKS)

    shared = {k: v for k, v in glued_values(REPO, NOTEBOOKS).items() if len(v) > 1}
    assert all(len(set(v.values())) == 1 for v in shared.values()), shared
