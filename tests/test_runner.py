"""The runner without the science: where a run writes, what it records, what the console shows,
the overrides it accepts and the book configuration. Trivial stand-in templates keep it fast."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib import runner
from lib.book_config import REPO_URL_LINE, book_config, main as book_config_main, publish, write_book_config
from lib.errors import ConfigError
from lib.notebook import parse_overrides
from lib.paths import REPO

PARAMETERS = 'profile = "smoke"\nresults_dir = "results"\noverrides = {}\nstudy_overrides = {}'
BODY = ("from lib.notebook import parse_overrides\nfrom lib.progress import report\n"
        "report('step one of two')\nprint(parse_overrides(overrides), parse_overrides(study_overrides))")


def _template(folder: Path, name: str = "panda", body: str = BODY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    params = nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters", "hide-cell"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


# --- overrides ---------------------------------------------------------------------------------
def test_parse_overrides_accepts_dicts_and_json_text():
    assert parse_overrides({"seeds": [0]}) == {"seeds": [0]}
    assert parse_overrides('{"tasks": ["sst2"], "tune": {"lr": 0.1}}') == {"tasks": ["sst2"], "tune": {"lr": 0.1}}
    assert parse_overrides(None) == parse_overrides("") == parse_overrides("  ") == {}
    original = {"tune": {"lr": 0.1}}
    parse_overrides(original)["tune"]["lr"] = 1.0
    assert original == {"tune": {"lr": 0.1}}, "the caller's dict is never changed"


@pytest.mark.parametrize("value, message", [
    ("{seeds: [0]}", r"^overrides must be a JSON object, e\.g\. overrides='\{\"seeds\": \[0\]\}' \(Expecting"),
    ("[0, 1]", r"^overrides must be a JSON object.*got '\[0, 1\]'$"),
    (3, r"^overrides must be a dict or a JSON object string, got int$"),
])
def test_parse_overrides_rejects_anything_else_in_one_line(value, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_overrides(value)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^study_overrides must be"):
        parse_overrides(value, "study_overrides")


def test_cli_reports_bad_parameters_in_one_line(capsys):
    assert runner.main(["--profile", "smoke", "-p", "seeds=[0]"]) == 1
    assert runner.main(["--profile", "smoke", "--study", "beta=0.5"]) == 1
    assert runner.main(["--profile", "smoke", "--only", "transfer", "--study", '{"beta": 0.5}']) == 1
    assert runner.main(["--profile", "smoke", "--only", "panda", "--study", '{"betta": 0.5}']) == 1
    assert runner.main(["--profile", "smoke", "-p", 'overrides={"sedes": [0]}']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines), lines
    assert "study_overrides apply to the notebooks indicators" in lines[2]
    assert "unknown transfer-study field(s) ['betta']" in lines[3]
    assert runner.main(["--profile", "smoke", "--only", "transfer", "--apps", '{"steps": 5}']) == 1
    assert runner.main(["--profile", "smoke", "--only", "pruning", "--apps", '{"stepz": 5}']) == 1
    assert runner.main(["--profile", "smoke", "--only", "pruning", "--apps", '{"kept_fractions": [2.0]}']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    assert "app_overrides apply to the notebooks pruning, other_tuning, model_tuning only" in lines[0]
    assert "unknown ApplicationsConfig field(s) ['stepz']" in lines[1]
    assert "kept_fractions must be non-empty shares in (0, 1)" in lines[2]


# --- where a run writes ------------------------------------------------------------------------
def test_the_application_chapters_run_last_and_the_class_run_leaves_them_out():
    """Applications after every chapter whose results they read; then the claims chapter, whose Holm family
    holds every chapter's recorded verdicts (lib.ledger)."""
    book = runner.select(None, "mini")
    assert book == list(runner.NOTEBOOKS) and book[-1] == "claims"
    apps = [book.index(n) for n in runner.APP_NOTEBOOKS]
    assert apps == sorted(apps) and all(book.index(n) < min(apps) for n in book
                                        if n not in runner.APP_NOTEBOOKS and n not in runner.SHOWS_RESULTS_OF
                                        and n != "claims")
    assert runner.select(None, "smoke") == book, "the tests' smoke run covers every chapter"
    lesson = runner.select(None, "class")
    assert lesson == [n for n in book if n not in runner.APP_NOTEBOOKS] and "projector" in lesson
    assert runner.select(["model_tuning", "pruning"], "class") == ["pruning", "model_tuning"], "named, they run"
    with pytest.raises(ConfigError, match=r"unknown notebook\(s\) \['prunning'\]; valid: transfer, .*pruning, .*prompt_tuning"):
        runner.select(["prunning"], "class")


def test_a_chapter_that_shows_another_chapters_results_runs_after_it():
    """prompt_tuning and panda show the model-tuning chapter's results, read from the store only: in one pass
    of `make run` they must run after it, or the book would say "not computed yet" beside computed results.
    Every template that reads with `cached_only` declares what it reads in SHOWS_RESULTS_OF."""
    readers = {p.stem for p in runner.TEMPLATES.glob("*.ipynb") if "cached_only(" in p.read_text()}
    assert readers == set(runner.SHOWS_RESULTS_OF), readers
    for reader, sources in runner.SHOWS_RESULTS_OF.items():
        for source in sources:
            assert runner.NOTEBOOKS.index(reader) > runner.NOTEBOOKS.index(source), (reader, source)
            assert f"{source}_table" in (runner.TEMPLATES / f"{reader}.ipynb").read_text(), (reader, source)


def test_overrides_go_to_a_scratch_folder_unless_published():
    book = (REPO / "book" / "experiments", REPO / "results")
    assert runner.destinations("mini") == book
    assert runner.destinations("mini", {}, {}) == book
    assert runner.destinations("mini", {"seeds": [0]}, publish=True) == book
    out, results = runner.destinations("mini", {"seeds": [0]})
    assert out.parent == results.parent and out.parent.parent == REPO / "_build_runs"
    assert out.name == "experiments" and results.name == "results"
    assert out.parent.name.startswith("mini-") and len(out.parent.name) == len("mini-") + 8
    assert runner.destinations("mini", {"seeds": [0]}) == (out, results), "the same overrides, the same folder"
    assert runner.destinations("mini", {"seeds": [1]})[0] != out
    assert runner.destinations("mini", None, {"beta": 0.5})[0] != out
    apps = runner.destinations("mini", app_overrides={"steps": 5})
    assert apps[0].parent.name.startswith("mini-") and apps[0] not in (out, book[0])
    assert runner.destinations("mini", {"seeds": [0]}, {}, app_overrides={}) == (out, results), \
        "empty app_overrides keep the folder names of earlier runs"
    # another profile without overrides goes to its own scratch folder, never into the book
    assert runner.destinations("class") == (runner.SCRATCH / "class" / "experiments", runner.SCRATCH / "class" / "results")
    assert runner.destinations("class", publish=True) == book
    assert "_build_runs/" in (REPO / ".gitignore").read_text().splitlines()


@pytest.fixture(scope="module")
def trivial_run(tmp_path_factory):
    """One stand-in notebook run with overrides and no folders given: lands in the (redirected) scratch folder."""
    root = tmp_path_factory.mktemp("runner")
    templates = _template(root / "templates")
    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "SCRATCH", root / "scratch")
    try:
        yield root, templates, mp
    finally:
        mp.undo()


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_a_run_with_overrides_leaves_the_book_alone(trivial_run, capfd):
    root, templates, _ = trivial_run
    book = REPO / "book" / "experiments" / "panda.ipynb"
    before = book.stat().st_mtime_ns if book.exists() else None
    records = runner.run_profile("smoke", only=["panda"], overrides={"seeds": [0]}, study_overrides={"beta": 0.5},
                                 templates=templates)
    assert [r["status"] for r in records] == ["ran"]
    out, results = runner.destinations("smoke", {"seeds": [0]}, {"beta": 0.5})
    assert out.parent.parent == root / "scratch"
    nb = nbformat.read(out / "panda.ipynb", as_version=4)
    assert "{'seeds': [0]} {'beta': 0.5}" in nb.cells[-1].outputs[0]["text"]
    assert (book.stat().st_mtime_ns if book.exists() else None) == before

    # the console showed the notebook's progress line while it ran
    err = capfd.readouterr().err
    assert "panda: running" in err and "panda: " in err and "step one of two" in err

    # the executed notebook: papermill's values folded into the visible parameters cell, no hidden cell
    # that would re-assign them, paths portable
    assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    template_params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(template_params) == 1 and "hide-cell" in template_params[0].metadata.tags
    assert f'results_dir = "{runner.portable(results)}"' in template_params[0].source
    assert 'overrides = {"seeds": [0]}' in template_params[0].source.replace("'", '"')
    meta = nb.metadata.papermill
    assert meta.input_path == "panda.ipynb" and meta.output_path == "panda.ipynb"

    # the summary names profile, overrides, machine and date
    summary = (out / "run_summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| panda |"))
    assert '| smoke | `{"seeds": [0]}` `{"beta": 0.5}` (study) |' in row
    assert runner.machine() in row and records[0]["finished"] in row
    assert not list(out.glob(".*.tmp")), "written atomically"


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_a_stale_failure_is_removed_when_the_notebook_is_skipped_or_succeeds(trivial_run):
    root, templates, _ = trivial_run
    out = root / "out"
    runner.run_profile("smoke", out, results_dir=root / "results", only=["panda"], templates=templates, progress=False)
    (out / "panda.failed.ipynb").write_text("{}")
    again = runner.run_profile("smoke", out, results_dir=root / "results", only=["panda"], templates=templates,
                               progress=False)
    assert [r["status"] for r in again] == ["skipped"] and not (out / "panda.failed.ipynb").exists()

    failing = _template(root / "failing", body="raise RuntimeError('planted')")
    with pytest.raises(runner.NotebookFailed, match="planted"):
        runner.run_profile("smoke", out, results_dir=root / "results", only=["panda"], templates=failing,
                           progress=False)
    failed = nbformat.read(out / "panda.failed.ipynb", as_version=4)
    assert failed.metadata.papermill.input_path == "panda.ipynb", "a failed notebook's paths are scrubbed too"
    runner.run_profile("smoke", out, results_dir=root / "results", only=["panda"], templates=templates,
                       progress=False, force=True)
    assert not (out / "panda.failed.ipynb").exists()


@pytest.mark.slow  # interrupts a real kernel; make test-fast leaves it out
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_one_line_and_marks_the_notebook_interrupted(tmp_path, sig):
    import signal
    import time

    started = tmp_path / "cell_started"  # written by the sleeping cell itself: no guess at the kernel's start-up time
    templates = _template(tmp_path / "slow", body=f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                                                  "time.sleep(120)")
    out = tmp_path / "out"
    out.mkdir()
    (out / "panda.failed.ipynb").write_text("{}")  # a stale failure from before
    cmd = [sys.executable, "-m", "lib.runner", "--profile", "smoke", "--only", "panda", "--out", str(out),
           "--results", str(tmp_path / "results"), "--templates", str(templates)]
    # a suite started as a background job (`make test &`) inherits SIGINT ignored, as POSIX shells do for
    # background jobs; the runner under test gets Ctrl-C's default disposition, as in a terminal
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not started.is_file():
        time.sleep(0.2)
    assert started.is_file(), "the notebook never reached its sleeping cell"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130, err
    assert lines[-1].startswith("stopped: interrupted while running 'panda'") and "run the same command again" in lines[-1]
    assert not [line for line in lines if "Traceback" in line or "IPKernelApp" in line], err
    assert (out / "panda.interrupted.ipynb").is_file() and not (out / "panda.ipynb").exists()
    assert (out / ".runinfo" / "panda.kernel.log").is_file(), "the kernel's own stderr went to its log, not the console"
    ok = _template(tmp_path / "ok")
    runner.run_profile("smoke", out, results_dir=tmp_path / "results", only=["panda"], templates=ok, progress=False)
    assert not (out / "panda.interrupted.ipynb").exists() and not (out / "panda.failed.ipynb").exists()


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_the_cli_prints_where_everything_went(trivial_run, capsys, monkeypatch):
    root, templates, _ = trivial_run
    real = runner.run_profile
    monkeypatch.setattr(runner, "run_profile", lambda *a, **k: real(*a, **{**k, "templates": templates, "progress": False}))
    assert runner.main(["--profile", "smoke", "--only", "panda", "--study", '{"beta": 0.25}']) == 0
    out, results = runner.destinations("smoke", {}, {"beta": 0.25})
    printed = capsys.readouterr().out
    assert f"notebooks: {out}" in printed and f"results:   {results}" in printed and "--publish" in printed
    assert (out / "panda.ipynb").is_file()


# --- --help and the reproducibility page ---------------------------------------------------------
@pytest.mark.slow  # runs the command line, which imports every chapter; make test-fast leaves it out
def test_fields_lists_every_overridable_field_and_help_says_where():
    proc = subprocess.run([sys.executable, "-m", "lib.runner", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "--study JSON" in proc.stdout and "--publish" in proc.stdout and "--apps JSON" in proc.stdout
    assert "python -m lib.runner --fields" in proc.stdout and "book/reproducibility.md" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "lib.runner", "--fields"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    fields = runner.overridable_fields()
    names = {f for _, f, _, _ in fields}
    assert {"seeds", "tune.max_steps", "tune.lr", "data.data_root", "beta", "projector_target"} <= names
    for param, field, typ, values in fields:
        assert f"    {field} ({typ}): " in proc.stdout, field
    assert "study_overrides:" in proc.stdout and "app_overrides:" in proc.stdout and "kept_fractions" in names


def test_the_reproducibility_page_lists_the_same_fields():
    page = (REPO / "book" / "reproducibility.md").read_text()
    block = f"{runner.FIELDS_START}\n{runner.overridable_fields_markdown()}{runner.FIELDS_END}"
    assert block in page, ("book/reproducibility.md's field table is out of date; regenerate it with "
                           "python -c 'import lib.runner as r; r.write_fields_page()'")


def test_the_command_line_answers_without_importing_torch():
    """`--help` and argument errors must not wait for torch, pandas and the chapters (they once took 22-28 s):
    importing the runner is measured against importing torch, side by side, in fresh interpreters."""
    code = ("import sys, time; t = time.perf_counter(); import {mod}; "
            "print(time.perf_counter() - t, ' '.join(m for m in ('torch', 'pandas', 'scipy', 'lib.profiles') "
            "if m in sys.modules))")

    def imported(mod: str) -> tuple[float, str]:
        out = subprocess.run([sys.executable, "-c", code.format(mod=mod)], capture_output=True, text=True, cwd=REPO,
                             check=True).stdout.split(maxsplit=1)
        return float(out[0]), (out[1].strip() if len(out) > 1 else "")

    runner_s, heavy = imported("lib.runner")
    torch_s, _ = imported("torch")
    assert heavy == "", f"importing lib.runner pulled in {heavy}"
    assert runner_s < 0.25 * torch_s, (runner_s, torch_s)
    proc = subprocess.run([sys.executable, "-m", "lib.runner", "--profile", "nope"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2 and "invalid choice: 'nope'" in proc.stderr


def test_the_command_lines_profile_names_are_the_catalogs():
    from lib.profiles import PROFILES

    assert sorted(runner.PROFILE_NAMES) == sorted(PROFILES)


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_the_visible_parameters_cell_is_the_one_that_counts(tmp_path):
    """A reader edits the parameters cell of an executed notebook and runs it where it lies (Run all):
    the banner shows the edited values, not the ones papermill injected when the book was built."""
    from nbclient import NotebookClient

    body = ("from lib.notebook import setup\n"
            "prof, exp = setup(profile, results_dir, overrides)\n"
            "print('seeds', list(prof.seeds))")
    templates = _template(tmp_path / "templates", body=body)
    out = tmp_path / "out"
    runner.run_profile("smoke", out, results_dir=tmp_path / "results", only=["panda"], templates=templates,
                       progress=False)
    nb = nbformat.read(out / "panda.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'profile = "smoke"' in params.source and "seeds [0, 1]" in nb.cells[-1].outputs[-1]["text"]
    params.source = params.source.replace("overrides = {}", 'overrides = {"seeds": [1]}', 1)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    banner = "".join(o.get("data", {}).get("text/markdown", "") for o in nb.cells[-1].outputs)
    assert "seeds: 1;" in banner and "Profile `smoke`" in banner, banner
    assert "seeds [1]" in nb.cells[-1].outputs[-1]["text"]


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_re_executing_an_unchanged_chapter_rewrites_the_same_bytes(tmp_path):
    """No timestamps, no random ids: a chapter re-run whose outputs did not change leaves git status clean."""
    body = ("import pandas as pd\nfrom lib.notebook import table\n"
            "table(pd.DataFrame({'a': [0.1234, 0.5]}), caption='two numbers')")
    templates = _template(tmp_path / "templates", body=body)
    out = tmp_path / "out"
    kwargs = dict(results_dir=tmp_path / "results", only=["panda"], templates=templates, progress=False)
    runner.run_profile("smoke", out, **kwargs)
    first = (out / "panda.ipynb").read_bytes()
    runner.run_profile("smoke", out, force=True, **kwargs)
    assert (out / "panda.ipynb").read_bytes() == first
    assert b"T_" in first, "the table's CSS ids are there, named after its content"


# --- progress --------------------------------------------------------------------------------------
def test_progress_lines_are_echoed_while_a_notebook_runs(capsys):
    from lib.progress import ENV, report

    before = os.environ.get(ENV)
    with runner._ProgressEcho("demo"):
        assert os.environ.get(ENV) and os.environ[ENV] != before
        report("tuning sst2 seed 0: step 50/200")
        with open(os.environ[ENV], "a") as fh:
            fh.write("half a li")  # not echoed until its newline arrives
    assert os.environ.get(ENV) == before
    err = capsys.readouterr().err
    assert "  demo: " in err and "tuning sst2 seed 0: step 50/200" in err and "half a li" not in err


# --- the book's launch buttons ---------------------------------------------------------------------
def _sphinx_conf(tmp_path: Path, url: str | None) -> str:
    cfg = write_book_config(tmp_path / "_config.yml", url=url)
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "config", "sphinx", str(REPO), "--config", str(cfg)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (tmp_path / "conf.py").read_text()


def test_launch_buttons_follow_the_repository_url(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPENDIUM_REPO_URL", raising=False)
    assert "OWNER" not in (REPO / "_config.yml").read_text()
    off = _sphinx_conf(tmp_path / "off", None)
    assert "mybinder" not in off and "colab.research" not in off and "OWNER" not in off
    assert "'use_repository_button': False" in off and "'repository_url': ''" in off

    url = "https://github.com/someone/skill-neurons-compendium"
    monkeypatch.setenv("COMPENDIUM_REPO_URL", url + ".git")
    on = _sphinx_conf(tmp_path / "on", None)
    assert f"'repository_url': '{url}'" in on and "'binderhub_url': 'https://mybinder.org'" in on
    assert "'colab_url': 'https://colab.research.google.com'" in on and "'use_repository_button': True" in on
    with pytest.raises(ConfigError, match="^COMPENDIUM_REPO_URL must be a repository's web address"):
        book_config("github.com/someone")
    assert json.dumps(book_config(url="")["launch_buttons"]).count("https") == 0


def test_publishing_writes_the_address_once_and_reexecutes_nothing(tmp_path, monkeypatch, capsys):
    """`python -m lib.book_config --publish URL`: _config.yml gets the address (comments kept) and turns the
    buttons on; every notebook's install cell carries it (what Colab opens has only itself); fingerprints
    stay, so no chapter re-runs; a second call changes nothing."""
    monkeypatch.delenv("COMPENDIUM_REPO_URL", raising=False)
    everything = [p for folder in ("notebooks", "book", "book/experiments")
                  for p in sorted((REPO / folder).glob("*.ipynb"))]
    assert everything and all(len(REPO_URL_LINE.findall(p.read_text())) == 1 for p in everything), \
        "each notebook has one REPO_URL line for publish to fill"
    root = tmp_path / "repo"
    for rel in ("_config.yml", "notebooks/transfer.ipynb", "book/experiments/transfer.ipynb"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((REPO / rel).read_bytes())
    template = root / "notebooks" / "transfer.ipynb"
    before = runner._fingerprint(template, {"profile": "mini"}), runner._inputs(template, {})["template"]
    url = "https://github.com/someone/skill-neurons-compendium"
    changed = publish(url + ".git/", "release", root=root)
    assert sorted(p.relative_to(root).as_posix() for p in changed) == [
        "_config.yml", "book/experiments/transfer.ipynb", "notebooks/transfer.ipynb"]
    assert publish(url, "release", root=root) == [], "publishing twice changes nothing"
    assert (runner._fingerprint(template, {"profile": "mini"}), runner._inputs(template, {})["template"]) == before
    for nb_path in changed[1:]:
        cell = next(c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code")
        assert f'REPO_URL = "{url}"' in cell.source.splitlines()
    config = (root / "_config.yml").read_text()
    assert f'url: "{url}"' in config and "branch: release" in config and "# Launch buttons" in config
    cfg = book_config(base=root / "_config.yml")
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["repository"] == {**cfg["repository"], "url": url, "branch": "release"}
    with pytest.raises(ConfigError, match="^the address must be a repository's web address"):
        publish('https://github.com/a/b" + x', root=root)
    with pytest.raises(ConfigError, match="^the branch must be a git branch name"):
        publish(url, "main; rm", root=root)
    assert book_config_main(["--publish"]) == 2 and "usage:" in capsys.readouterr().err
    assert book_config_main(["--publish", "github.com/a"]) == 1
    assert capsys.readouterr().err.startswith("error: the address must be a repository's web address")


def test_the_console_says_why_a_notebook_runs_again():
    before = {"template": "a", "parameters": {"overrides": "x", "profile_fields": "p"}, "lib": {"store.py": "1",
                                                                                                "tuning.py": "2"}}
    same = json.loads(json.dumps(before))
    assert runner.changed_inputs(before, same) == "nothing it records (forced)"
    now = {**same, "lib": {"store.py": "1", "tuning.py": "3"}}
    assert runner.changed_inputs(before, now) == "lib/tuning.py"
    now = {"template": "b", "parameters": {"overrides": "y", "profile_fields": "q"}, "lib": {"store.py": "9"}}
    assert runner.changed_inputs(before, now) == ("its template, parameter overrides, profile settings, lib/store.py, "
                                                  "lib/tuning.py")
    many = {**same, "lib": {f"m{i}.py": str(i) for i in range(6)}}
    assert runner.changed_inputs(before, many).endswith("5 more lib modules")
    assert runner.changed_inputs(None, now) == "no record of its inputs from an earlier run"


def test_modules_of_lib_subpackages_are_notebook_inputs(tmp_path, monkeypatch):
    """An edit of a module in a subpackage of lib (lib/families/...) re-executes the notebooks as an edit of a
    top-level module does; a module's name is its path below lib/, so top-level names are unchanged."""
    (tmp_path / "lib" / "families").mkdir(parents=True)
    for rel, text in (("models.py", "A = 1\n"), ("families/base.py", "B = 1\n"), ("runner.py", "C = 1\n")):
        (tmp_path / "lib" / rel).write_text(text)
    template = tmp_path / "nb.ipynb"
    template.write_text("{}")
    monkeypatch.setattr(runner, "REPO", tmp_path)
    before = runner._fingerprint(template, {}), runner._inputs(template, {})
    assert sorted(before[1]["lib"]) == ["families/base.py", "models.py"], "runner.py is not a notebook input"
    (tmp_path / "lib" / "families" / "base.py").write_text("B = 2\n")
    after = runner._fingerprint(template, {}), runner._inputs(template, {})
    assert after[0] != before[0]
    assert runner.changed_inputs(before[1], after[1]) == "lib/families/base.py"


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_a_rerun_names_what_changed(tmp_path, capsys):
    templates = _template(tmp_path / "templates")
    kwargs = dict(results_dir=tmp_path / "results", only=["panda"], templates=templates)
    out = tmp_path / "out"
    runner.run_profile("smoke", out, **kwargs)
    assert "panda: running (first run here)" in capsys.readouterr().err
    runner.run_profile("smoke", out, overrides={"seeds": [0]}, **kwargs)
    err = capsys.readouterr().err
    assert "panda: running (parameter overrides, profile settings)" in err, err
    record = json.loads((out / ".runinfo" / "panda.json").read_text())
    assert record["why"] == "parameter overrides, profile settings" and set(record["inputs"]) == {"template",
                                                                                                   "parameters", "lib"}


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_a_no_op_rerun_leaves_every_file_as_it_was(tmp_path):
    """Nothing changed: the notebook is skipped and no file under the output folder is rewritten differently
    (notebook, .runinfo record, run summary), so `git status` stays clean for the book's own folders."""
    templates = _template(tmp_path / "templates")
    out = tmp_path / "out"
    kwargs = dict(results_dir=tmp_path / "results", only=["panda"], templates=templates, progress=False)
    runner.run_profile("smoke", out, **kwargs)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.endswith(".kernel.log")}
    records = runner.run_profile("smoke", out, **kwargs)
    assert [r["status"] for r in records] == ["skipped"]
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.endswith(".kernel.log")}
    assert after == before


@pytest.mark.slow  # executes notebooks in kernels; make test-fast leaves it out
def test_the_console_says_how_many_tables_a_chapter_reused_and_computed(tmp_path, capsys):
    """Issue 27: a re-executed chapter says whether its tables came from the cache (here: the first run
    computes the one table, a re-run with other overrides reuses it, since the table's key ignores them)."""
    body = ("import pandas as pd\nfrom lib.store import ResultsStore\n"
            "ResultsStore(results_dir + '/t').table('demo', {'a': 1}, lambda: pd.DataFrame({'x': [1]}))")
    templates = _template(tmp_path / "templates", body=body)
    kwargs = dict(results_dir=tmp_path / "results", only=["panda"], templates=templates)
    runner.run_profile("smoke", tmp_path / "out", **kwargs)
    assert "panda: done in" in (err := capsys.readouterr().err) and \
        "(tables and tensor files: 0 reused, 1 computed)" in err, err
    runner.run_profile("smoke", tmp_path / "out", overrides={"seeds": [0]}, **kwargs)
    assert "(tables and tensor files: 1 reused, 0 computed)" in (err := capsys.readouterr().err), err
    assert "COMPENDIUM_CACHE_LOG" not in os.environ, "the variable is the runner's own, for one chapter"
