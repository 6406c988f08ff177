"""The papermill route refuses parameters a notebook does not declare.

papermill only logs "Passed unknown parameter" for `-p top_fraction 0.05`, injects the assignment and
exits 0 after running the committed configuration. `lib.notebook.setup` (the first call of every
chapter) checks the kernel's input history: the injected cell may set only names the template's
`parameters` cell sets (`check_parameters`), else the cell fails and papermill exits non-zero.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib.errors import ConfigError
from lib.notebook import check_parameters
from lib.paths import REPO

PARAMETERS = 'profile = "smoke"\nresults_dir = "results"\noverrides = {}\n'


def _papermill(tmp_path: Path, notebook: Path, *params: str) -> subprocess.CompletedProcess:
    papermill = Path(sys.executable).parent / "papermill"
    return subprocess.run([str(papermill), str(notebook), str(tmp_path / "out.ipynb"), *params, "--no-progress-bar"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def _tiny_notebook(tmp_path: Path) -> Path:
    """A parameters cell and the check, as a chapter's set-up cell runs it (without a profile's work)."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import sys", metadata={"tags": ["remove-cell"]}),
                nbformat.v4.new_code_cell('threshold = 0.5\nname = "x"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"sys.path.insert(0, {str(REPO)!r})\n"
                                          "from lib.notebook import check_parameters\ncheck_parameters()")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow  # executes a notebook in a kernel; make test-fast leaves it out
def test_an_undeclared_parameter_fails_the_chapter_before_any_work(tmp_path):
    proc = _papermill(tmp_path, REPO / "notebooks" / "suppression.ipynb", "-p", "top_fraction", "0.05")
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "ConfigError: notebook parameter(s) ['top_fraction'] are not declared by this notebook" in text, text[-3000:]
    assert """-p overrides '{"top_fraction": 0.05}'""" in text
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    failed = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "setup(profile, results_dir, overrides)" in failed[0].source


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_declared_parameters_pass_and_undeclared_ones_fail(tmp_path):
    notebook = _tiny_notebook(tmp_path)
    ok = _papermill(tmp_path, notebook, "-p", "threshold", "0.7", "-p", "name", "y")
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = _papermill(tmp_path, notebook, "-p", "threshold", "0.7", "-p", "treshold", "0.9")
    assert bad.returncode != 0 and "['treshold'] are not declared by this notebook (its parameters: name, threshold)" \
        in bad.stdout + bad.stderr, bad.stderr[-3000:]


def test_no_papermill_cell_means_nothing_to_check():
    check_parameters([])  # a plain Python process, or a notebook opened and run by hand
    check_parameters(["", "import os", PARAMETERS, "x = 1"])


def test_cells_run_out_of_order_by_hand_are_not_judged():
    """The cell before the injected one is not a cell of plain assignments: nothing can be told, nothing is refused."""
    check_parameters(["", "import os", '# Parameters\nprofile = "smoke"\ntop_fraction = 0.05\n'])


def test_papermills_own_path_parameters_are_allowed():
    check_parameters(["", PARAMETERS, '# Parameters\nprofile = "mini"\nPAPERMILL_INPUT_PATH = "a.ipynb"\n'])


def test_a_template_without_a_parameters_cell_declares_nothing():
    with pytest.raises(ConfigError, match=r"\['profile'\] are not declared by this notebook \(its parameters: none\)"):
        check_parameters(["", '# Parameters\nprofile = "mini"\n'])
