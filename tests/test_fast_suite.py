"""`make test-fast` (pytest -m "not slow") must not execute the smoke book: every test whose arguments name
one of the book fixtures is slow, whether or not its module marks it (tests/conftest.py adds the mark)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BOOK_FIXTURES

TESTS = Path(__file__).resolve().parent


def _tests_using_the_book() -> set[str]:
    """node ids (file::function) of test functions with a book fixture among their arguments."""
    found = set()
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if BOOK_FIXTURES & {a.arg for a in node.args.args}:
                    found.add(f"tests/{path.name}::{node.name}")
    return found


@pytest.mark.slow  # collects the whole suite in a subprocess; the full suite runs it
def test_the_fast_suite_never_executes_the_smoke_book():
    book_tests = _tests_using_the_book()
    assert "tests/test_probe.py::test_probe_table_on_the_smoke_profile" in book_tests, "the scan finds them"
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow",
                          "-p", "no:cacheprovider", "tests"], cwd=TESTS.parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    fast = {line.split("[")[0] for line in out.stdout.splitlines() if "::" in line}
    assert len(fast) > 100, "the fast suite was collected"
    assert not fast & book_tests, sorted(fast & book_tests)
