"""Notebooks run where they are opened and carry no machine's paths.

- the executed notebooks of the book hold no absolute path of the machine that ran them;
- `lib.notebook.setup` takes `results_dir` and a relative data root from the repository root;
- a template's first code cell makes `lib` importable inside a checkout and explains itself outside;
- the documented papermill route (JSON text for `overrides` / `study_overrides`) works from any folder.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from lib.errors import ConfigError
from lib.notebook import setup
from lib.paths import REPO
from lib.runner import NOTEBOOKS, STUDY_NOTEBOOKS

TEMPLATES = sorted((REPO / "notebooks").glob("*.ipynb"))
# the book's executed notebooks; not the runner's in-progress / failed copies (git-ignored, never published)
EXECUTED = [p for p in sorted((REPO / "book" / "experiments").glob("*.ipynb")) + sorted((REPO / "book").glob("*.ipynb"))
            if not p.name.endswith((".running.ipynb", ".failed.ipynb", ".interrupted.ipynb"))]
ABSOLUTE = re.compile(r"(?<![\w.-])(?:/work/|/tmp/|/home/|/root/|/Users/|/private/|/mnt/|/var/folders/)"
                      r"|(?<![\w\\$])[A-Z]:\\[\w .-]+\\")


def _strings(obj, key=""):
    """Every string in a notebook's JSON except embedded images (base64 may spell anything)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not k.startswith("image/"):
                yield from _strings(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, key)
    elif isinstance(obj, str):
        yield obj


def _absolute_paths(paths, root: Path) -> dict[str, list[str]]:
    offenders = {}
    for path in paths:
        hits = sorted({m.group(0) + s[m.end():m.end() + 40].split("\n")[0]
                       for s in _strings(json.loads(path.read_text(encoding="utf-8"))) for m in ABSOLUTE.finditer(s)})
        if hits:
            offenders[str(path.relative_to(root))] = hits[:3]
    return offenders


def test_no_absolute_paths_in_executed_notebooks():
    assert EXECUTED, "no executed notebooks found"
    offenders = _absolute_paths(EXECUTED, REPO)
    assert not offenders, ("executed notebooks hold absolute paths of the machine that ran them (re-execute them "
                           f"with `make run`): {json.dumps(offenders, indent=1)}")


def test_no_path_object_is_shown_in_the_freshly_executed_smoke_book(smoke_run):
    """A cell whose last value is a Path shows the machine's absolute path (the mini re-run printed
    `PosixPath('/work/.../verdicts/x.csv')` after `ledger.record(...)`); the committed-book check above sees
    that only after the next mini run, this one in the smoke book. (The smoke book's parameters name its
    results folder, outside the repository, by its absolute path: that is where it ran, not a leak.)"""
    root, _ = smoke_run
    executed = sorted((root / "book" / "experiments").glob("*.ipynb"))
    assert executed, "the smoke run wrote no notebooks"
    shown = {str(p.relative_to(root)): [s[:80] for c in json.loads(p.read_text(encoding="utf-8"))["cells"]
                                        for s in _strings(c.get("outputs", [])) if re.search(r"\b(?:Posix|Windows)Path\(", s)]
             for p in executed}
    assert not {k: v for k, v in shown.items() if v}, shown


def test_executed_notebooks_show_the_parameters_that_ran_in_their_visible_cell():
    """No hidden injected cell that would re-assign a reader's edit; the folded parameters cell names the
    profile the chapter ran with (its .runinfo record)."""
    wrong = []
    for name in NOTEBOOKS:
        nb = nbformat.read(REPO / "book" / "experiments" / f"{name}.ipynb", as_version=4)
        ran = json.loads((REPO / "book" / "experiments" / ".runinfo" / f"{name}.json").read_text())["profile"]
        if [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]:
            wrong.append(f"{name} (a hidden injected-parameters cell)")
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(params) != 1 or f'profile = "{ran}"' not in params[0].source:
            wrong.append(f"{name} (its parameters cell does not show profile {ran!r})")
        elif "hide-cell" not in params[0].metadata.get("tags", []):
            wrong.append(f"{name} (parameters cell not folded)")
    assert not wrong, f"re-execute with `make run` (or fold with lib.runner.fold_parameters): {wrong}"


# --- templates ---------------------------------------------------------------------------------
def _install_cell(nb) -> nbformat.NotebookNode:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return code[0]


def test_every_template_starts_with_the_same_hidden_install_cell():
    sources = set()
    for path in TEMPLATES:
        nb = nbformat.read(path, as_version=4)
        first = _install_cell(nb)
        assert first.metadata.get("tags") == ["remove-cell"], path.name
        assert "find_spec(\"lib\")" in first.source and "COMPENDIUM_REPO_URL" in first.source, path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[1].metadata.get("tags", []), f"{path.name}: the parameters cell comes second"
        assert "hide-cell" in code[1].metadata.get("tags", []), path.name
        sources.add(first.source)
    assert len(sources) == 1, "one install cell for every template"


def test_study_overrides_go_through_the_parser():
    for name in STUDY_NOTEBOOKS:
        source = "\n".join(c.source for c in nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4).cells)
        assert 'get_study(prof.name, parse_overrides(study_overrides, "study_overrides"))' in source, name


def test_install_cell_finds_the_checkout_it_lies_in(tmp_path):
    cell = _install_cell(nbformat.read(TEMPLATES[0], as_version=4)).source
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMPENDIUM_REPO_URL")}
    # -S: no site-packages, so the installed project is invisible and only the walk up can find lib
    inside = subprocess.run([sys.executable, "-S", "-c", cell + "\nimport lib.paths\nprint(lib.paths.REPO)"],
                            cwd=REPO / "book" / "experiments", env=env, capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == str(REPO)
    outside = subprocess.run([sys.executable, "-S", "-c", cell], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
    assert outside.returncode != 0
    assert "RuntimeError: lib not found: set COMPENDIUM_REPO_URL" in outside.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir()), "nothing cloned without a repository address"


def test_install_cell_clones_the_published_address_outside_a_checkout(tmp_path):
    """With REPO_URL filled in (as `python -m lib.book_config --publish` does), the cell clones that address
    without any environment variable: here a missing local path, so git's failure shows what it tried."""
    cell = _install_cell(nbformat.read(TEMPLATES[0], as_version=4)).source
    missing = (tmp_path / "no-such-repo").as_uri()
    assert 'REPO_URL = ""' in cell.splitlines()
    cell = cell.replace('REPO_URL = ""', f'REPO_URL = "{missing}"')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMPENDIUM_REPO_URL")}
    work = tmp_path / "colab"
    work.mkdir()
    out = subprocess.run([sys.executable, "-S", "-c", cell], cwd=work, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "CalledProcessError" in out.stderr and missing in out.stderr and "'git', 'clone'" in out.stderr


# --- setup resolves paths from the repository ------------------------------------------------------
def test_setup_resolves_results_and_data_from_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prof, exp = setup("mini", "results", '{"seeds": [0]}')
    assert prof.seeds == (0,)
    assert exp.root == REPO / "results" / "mini" / "main"
    assert exp.store.reuse == (), "the committed results are the results, not a fallback"
    assert Path(exp.data_config.data_root) == (REPO / ".." / "shared" / "data").resolve()
    assert prof.data.data_root == "../shared/data", "the profile (a cache key) keeps the portable path"

    _, scratch = setup("mini", "_build_runs/elsewhere/results", {"data": {"data_root": "../shared/data"}})
    assert scratch.root == REPO / "_build_runs" / "elsewhere" / "results" / "mini" / "main"
    assert scratch.store.reuse == (REPO / "results" / "mini" / "main",), "a scratch run reads the committed results"
    assert not (REPO / "_build_runs" / "elsewhere").exists(), "opening an experiment writes nothing"
    assert not (tmp_path / "results").exists()
    with pytest.raises(ConfigError, match=r"^overrides must be a JSON object"):
        setup("mini", "results", "{'seeds': [0]}")


# --- the documented papermill route ------------------------------------------------------------
@contextlib.contextmanager
def _papermill_smoke(tmp_path: Path, name: str, study_overrides: str) -> Iterator[tuple[str, subprocess.CompletedProcess]]:
    """Run the `name` template with papermill from `tmp_path` on the smoke profile, one seed, a relative
    results_dir under _build_runs/ (yielded with the process); the scratch folders are removed afterwards."""
    rel = f"_build_runs/test-{name}-{os.getpid()}/results"
    papermill = Path(sys.executable).parent / "papermill"
    try:
        proc = subprocess.run(
            [str(papermill), str(REPO / "notebooks" / f"{name}.ipynb"), "out.ipynb", "-p", "profile", "smoke",
             "-p", "results_dir", rel, "-p", "overrides", '{"seeds": [0]}',
             "-p", "study_overrides", study_overrides, "--no-progress-bar"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)
        yield rel, proc
    finally:
        shutil.rmtree(REPO / rel.rsplit("/", 1)[0], ignore_errors=True)
        try:
            (REPO / "_build_runs").rmdir()  # only if this test made it and nothing else is there
        except OSError:
            pass


@pytest.mark.slow
def test_papermill_with_json_text_parameters_from_another_folder(tmp_path):
    """`papermill ... -p overrides '{...}' -p study_overrides '{...}'` passes JSON text; run from a
    temporary folder with a relative results_dir, which must land in the repository, not here."""
    with _papermill_smoke(tmp_path, "init_transfer", '{"seeds": [0], "steps": 10, "eval_every": 5}') as (rel, proc):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert (REPO / rel / "smoke" / "main" / "transfer_methods").is_dir()
        assert not (tmp_path / "_build_runs").exists() and not (tmp_path / "results").exists()
        nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
        injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert r'overrides = "{\"seeds\": [0]}"' in injected, "papermill -p passes the JSON as text"
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.slow
def test_indicators_chapter_with_fewer_than_three_pairs_says_so(tmp_path):
    """The class profile has two (pair, seed) rows: nothing can be rank-correlated, and the chapter must say
    so instead of failing (it raised AttributeError on the empty correlation table)."""
    study = '{"pairs": [["synthetic", "synthetic_pair"]], "seeds": [0], "steps": 10, "eval_every": 5}'
    with _papermill_smoke(tmp_path, "indicators", study) as (_, proc):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
        text = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells for o in c.get("outputs", []))
        assert "rank correlation with transfer is undefined on profile `smoke`" in text
        assert "there are 2." in text  # the 2 ordered pairs of the smoke tasks, one seed
