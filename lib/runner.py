"""Execute the book's notebooks with papermill for a named profile.

    python -m lib.runner --profile mini                      # every notebook, into book/experiments
    python -m lib.runner --profile mini --only transfer      # one notebook
    python -m lib.runner --profile mini -p 'overrides={"seeds": [0]}'    # into _build_runs/mini-<hash>/
    python -m lib.runner --profile mini --only panda --study '{"beta": 0.5}'
    python -m lib.runner --profile mini --only pruning --apps '{"kept_fractions": [0.5, 0.3], "verdict_fraction": 0.3}'
    python -m lib.runner --profile mini -p 'overrides={"seeds": [0]}' --publish   # into the book after all

A run with overrides writes its notebooks and results into a scratch folder
`_build_runs/<profile>-<hash of the overrides>/` (reading the committed results whose keys match), so
trying a setting never overwrites the book; `--publish` writes into book/experiments and results/.
A notebook whose template, parameters, profile and `lib` sources are unchanged since its last
successful run is skipped (`--force` runs it anyway). The first failure stops the run; the
partly executed notebook is kept as `<name>.failed.ipynb` for inspection.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

# Only light modules at import time (no torch, pandas or chapter code): `--help` and a bad argument answer
# in about a second; tests/test_runner.py compares this module's import time with torch's.
from . import chapter_table
from .book_config import REPO_URL_LINE
from .errors import ConfigError
from .io import read_json, write_json, write_text
from .parameters import merge_injected_parameters, parse_overrides
from .paths import REPO, portable
from .progress import CACHE_ENV, cache_counts
from .progress import ENV as PROGRESS_ENV

TEMPLATES = REPO / "notebooks"
BOOK_OUT = REPO / "book" / "experiments"
RESULTS = REPO / "results"
SCRATCH = REPO / "_build_runs"
# The profiles' names, for the command line's checks before anything heavy is imported (a test keeps
# them equal to lib.catalog's PROFILES).
PROFILE_NAMES = ("smoke", "mini", "class", "paper", "paper_t5")
BOOK_PROFILE = "mini"  # the profile whose executed chapters the book shows (book/experiments, results/)
# The chapter lists, from the one table of chapters (lib.chapter_table): the application chapters (pruning,
# other tuning methods, model tuning); chapters that also show another chapter's results (read from the
# store only, `lib.notebook.cached_only`, never computed there); and the run order, in which such a chapter
# runs after the chapter it shows and the claims chapter (Holm's correction over every recorded verdict)
# runs last, so that one pass of `make run` fills every page.
APP_NOTEBOOKS = chapter_table.names(takes_apps=True)
SHOWS_RESULTS_OF: Mapping[str, tuple[str, ...]] = {c.name: c.shows_results_of for c in chapter_table.CHAPTERS
                                                   if c.shows_results_of}
NOTEBOOKS = chapter_table.run_order()
SELECTABLE = NOTEBOOKS
# Chapters a profile leaves out unless named with --only: the class run must fit a lesson (about 10 min on a
# laptop), and tuning every weight of the backbone three ways does not.
DEFAULT_SKIP: Mapping[str, tuple[str, ...]] = {"class": APP_NOTEBOOKS}
# The transfer-method chapters also take `study_overrides` (fields of lib.transfer_study.TransferStudy),
# the application chapters `app_overrides` (fields of lib.applications.ApplicationsConfig).
STUDY_NOTEBOOKS = chapter_table.names(takes_study=True)
PARAMS = ("overrides", "study_overrides", "app_overrides")
SCOPED = {"study_overrides": STUDY_NOTEBOOKS, "app_overrides": APP_NOTEBOOKS}
BATCH_ENV = "COMPENDIUM_BATCH"
# lib modules about how notebooks are run or the book is built, not what the notebooks compute.
NOT_NOTEBOOK_INPUTS = frozenset({"runner.py", "progress.py", "paths.py", "book_config.py", "units.py", "sweep.py",
                                 "peft_io.py", "figures.py", "parallel_units.py", "parameters.py", "lab_record.py"})
# Profile fields that only label a profile; listed nowhere as settings.
LABELS = ("name", "description")


class NotebookFailed(RuntimeError):
    pass


def _template_bytes(template: Path) -> bytes:
    """The template as the fingerprint sees it: without the published repository address of its install
    cell (`python -m lib.book_config --publish` writes it; where the code is fetched from changes no output)."""
    return REPO_URL_LINE.sub(lambda m: 'REPO_URL = \\"\\"', template.read_text(encoding="utf-8")).encode()


def _fingerprint(template: Path, parameters: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(_template_bytes(template))
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for name, src in _lib_sources():
        h.update(name.encode())
        h.update(src.read_bytes())
    return h.hexdigest()


def _lib_sources() -> list[tuple[str, Path]]:
    """(name, path) of every module of lib, subpackages included, less `NOT_NOTEBOOK_INPUTS`: a module's name is
    its path below lib/ ('models.py', 'families/base.py'), so that top-level modules keep the names they had."""
    lib = REPO / "lib"
    found = [(src.relative_to(lib).as_posix(), src) for src in sorted(lib.rglob("*.py"))]
    return [(name, src) for name, src in found if name not in NOT_NOTEBOOK_INPUTS]


def _inputs(template: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """What `_fingerprint` hashes, one short hash per part, kept in .runinfo so that the next run can say
    what changed (`changed_inputs`)."""
    def short(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:12]

    return {"template": short(_template_bytes(template)),
            "parameters": {k: short(json.dumps(v, sort_keys=True, default=str).encode())
                           for k, v in sorted(parameters.items())},
            "lib": {name: short(src.read_bytes()) for name, src in _lib_sources()}}


def changed_inputs(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """Why a notebook runs again, in words: 'its template', 'parameter overrides', 'lib/skill_neurons.py', ...
    (what differs between the inputs recorded at its last run and today's), or why that cannot be told."""
    if not before:
        return "no record of its inputs from an earlier run"
    parts = []
    if before.get("template") != now["template"]:
        parts.append("its template")
    old_p, new_p = before.get("parameters", {}), now["parameters"]
    parts += [("profile settings" if k == "profile_fields" else f"parameter {k}")
              for k in sorted(set(old_p) | set(new_p)) if old_p.get(k) != new_p.get(k)]
    old_l, new_l = before.get("lib", {}), now["lib"]
    libs = [f"lib/{n}" for n in sorted(set(old_l) | set(new_l)) if old_l.get(n) != new_l.get(n)]
    if len(libs) > 4:
        libs = libs[:3] + [f"{len(libs) - 3} more lib modules"]
    return ", ".join(parts + libs) or "nothing it records (forced)"


def default_chapters(profile: str | None = None) -> list[str]:
    """The chapters a run without --only executes: all of them, less the profile's `DEFAULT_SKIP`."""
    skipped = DEFAULT_SKIP.get(profile or "", ())
    return [n for n in NOTEBOOKS if n not in skipped]


def select(only: Sequence[str] | None, profile: str | None = None) -> list[str]:
    """The chapters to run, in the book's order: `only` (each checked), or the profile's default chapters."""
    if not only:
        return default_chapters(profile)
    bad = [n for n in only if n not in SELECTABLE]
    if bad:
        raise ConfigError(f"unknown notebook(s) {bad}; valid: {', '.join(SELECTABLE)}")
    return [n for n in SELECTABLE if n in only]


def destinations(profile: str, overrides: Mapping[str, Any] | None = None,
                 study_overrides: Mapping[str, Any] | None = None, *, publish: bool = False,
                 app_overrides: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """(notebook folder, results folder) of a run: the book's own for the book's profile without overrides
    or with `publish`, else a scratch folder named by the profile (and a hash of the overrides, one per
    setting tried). Another profile (`class`, `paper`) never overwrites the book's executed chapters."""
    if publish:
        return BOOK_OUT, RESULTS
    if not (overrides or study_overrides or app_overrides):
        if profile == BOOK_PROFILE:
            return BOOK_OUT, RESULTS
        return SCRATCH / profile / "experiments", SCRATCH / profile / "results"
    given = {"overrides": overrides or {}, "study_overrides": study_overrides or {}}
    if app_overrides:  # only when used: the scratch folders of earlier runs keep their names
        given["app_overrides"] = dict(app_overrides)
    key = json.dumps(given, sort_keys=True)
    root = SCRATCH / f"{profile}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return root / "experiments", root / "results"


def run_profile(profile: str, out_dir: str | Path | None = None, *, results_dir: str | Path | None = None,
                only: Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None,
                study_overrides: Mapping[str, Any] | None = None, publish: bool = False, force: bool = False,
                progress: bool = True, templates: str | Path = TEMPLATES,
                app_overrides: Mapping[str, Any] | None = None, jobs: int | None = None) -> list[dict]:
    """Execute the selected notebooks in order; return one record per notebook (ran / skipped, seconds).

    `out_dir` / `results_dir` default to `destinations(...)`: the book's folders, or a scratch folder
    when there are overrides and not `publish`. With `jobs` > 1 (default: one per usable CPU core, 1
    with a GPU) the prompts and transfer-study arms the notebooks to run need are tuned first, side by
    side in `jobs` one-thread worker processes (`lib.parallel_units`); the notebooks then load them.
    """
    import papermill as pm

    from .profiles import get_profile

    overrides = parse_overrides(overrides)
    study_overrides = parse_overrides(study_overrides, "study_overrides")
    app_overrides = parse_overrides(app_overrides, "app_overrides")
    prof = get_profile(profile).replace(**overrides)  # validates the overrides before any work
    names = select(only, profile)
    scoped = {"study_overrides": study_overrides, "app_overrides": app_overrides}
    for param, value in scoped.items():
        if value and not set(names) & set(SCOPED[param]):
            raise ConfigError(f"{param} apply to the notebooks {', '.join(SCOPED[param])} only")
    if study_overrides:
        from .transfer_study import get_study

        get_study(prof.name, study_overrides)  # validates the study overrides before any work
    if app_overrides:
        from .applications import get_applications

        get_applications(prof.name, app_overrides)  # validates the application overrides before any work
    default_out, default_results = destinations(profile, overrides, study_overrides, publish=publish,
                                                app_overrides=app_overrides)
    out = Path(out_dir) if out_dir is not None else default_out
    results = Path(results_dir) if results_dir is not None else default_results
    out.mkdir(parents=True, exist_ok=True)
    plan = []
    for name in names:
        template = Path(templates) / f"{name}.ipynb"
        params: dict[str, Any] = {"profile": profile, "results_dir": portable(results), "overrides": overrides}
        for param, value in scoped.items():
            if value and name in SCOPED[param]:
                params[param] = value
        # a missing template is reported when its turn comes: the notebooks before it still run
        hashed = {**params, "profile_fields": prof.as_dict()}
        stamp = _fingerprint(template, hashed) if template.is_file() else ""
        inputs = _inputs(template, hashed) if template.is_file() else {}
        target, info = out / f"{name}.ipynb", out / ".runinfo" / f"{name}.json"
        last = read_json(info) if info.is_file() else {}
        unchanged = bool(stamp) and not force and target.is_file() and last.get("fingerprint") == stamp
        why = "" if unchanged or not stamp else ("forced" if force and last.get("fingerprint") == stamp
                                                 else "first run here" if not target.is_file()
                                                 else changed_inputs(last.get("inputs"), inputs))
        plan.append((name, template, params, stamp, target, info, unchanged, inputs, why))
    to_run = [entry[0] for entry in plan if not entry[6]]  # (name, ..., unchanged, inputs, why)
    if jobs is None:
        from .parallel_units import default_jobs

        jobs = default_jobs()
    started = time.perf_counter()
    if jobs > 1 and to_run and Path(templates).resolve() == TEMPLATES.resolve():
        _tune_units_first(profile, overrides, study_overrides, results, to_run, jobs, progress)
    units_seconds = time.perf_counter() - started
    records = []
    for i, (name, template, params, stamp, target, info, unchanged, inputs, why) in enumerate(plan, 1):
        if not template.is_file():
            raise ConfigError(f"notebook template not found: {template}")
        partial = out / f"{name}.running.ipynb"  # renamed to <name>.failed.ipynb if the notebook fails
        if unchanged:
            _remove_stale_copies(out, name)  # a stale failure is superseded by the run that is current
            records.append({**read_json(info), "notebook": name, "status": "skipped"})
            _say(progress, f"[{i}/{len(names)}] {name}: unchanged, skipped")
            continue
        _say(progress, f"[{i}/{len(names)}] {name}: running ({why})" if why else f"[{i}/{len(names)}] {name}: running")
        t0 = time.perf_counter()
        try:
            with _KernelStderrTo(out / ".runinfo" / f"{name}.kernel.log"), _ProgressEcho(name if progress else None), \
                    _CacheTally() as tally:
                pm.execute_notebook(str(template), str(partial), parameters=params, cwd=str(REPO),
                                    kernel_name="python3", progress_bar=False, log_output=False, report_mode=False)
        except BaseException as exc:  # the partial notebook stays for inspection, its paths scrubbed too
            with contextlib.suppress(Exception):  # never hide the failure behind an unreadable partial file
                _finish_notebook(partial, template, target)
            if isinstance(exc, pm.PapermillExecutionError):
                failed = out / f"{name}.failed.ipynb"
                with contextlib.suppress(OSError):
                    os.replace(partial, failed)
                raise NotebookFailed(f"notebook {name!r} failed at cell {exc.exec_count}: {exc.ename}: "
                                     f"{exc.evalue}; partly executed copy kept at {failed}") from None
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or SIGTERM: not a failure of the notebook
                stopped = out / f"{name}.interrupted.ipynb"
                with contextlib.suppress(OSError):
                    os.replace(partial, stopped)
                raise Interrupted(f"interrupted while running {name!r} (partly executed copy: {stopped}); "
                                  "finished prompts and tables are kept: run the same command again to resume") \
                    from None
            raise
        _finish_notebook(partial, template, target)
        os.replace(partial, target)
        _remove_stale_copies(out, name)
        seconds = round(time.perf_counter() - t0, 1)
        record = {"notebook": name, "status": "ran", "seconds": seconds, "fingerprint": stamp, "inputs": inputs,
                  "why": why, "profile": prof.name,
                  "overrides": overrides, "study_overrides": params.get("study_overrides", {}),
                  **({"app_overrides": params["app_overrides"]} if "app_overrides" in params else {}),
                  "machine": machine(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(info, record)
        records.append(record)
        _say(progress, f"[{i}/{len(names)}] {name}: done in {seconds:.1f} s ({tally.sentence()})")
    write_summary(out, prof.name, results / prof.name)
    if _is_the_lab_run(profile, out, results, names, templates) and any(r["status"] == "ran" for r in records):
        from .lab_record import write_lab_record

        page = write_lab_record(results, records, total_seconds=time.perf_counter() - started,
                                units_seconds=units_seconds, machine=machine(),
                                finished=time.strftime("%Y-%m-%d %H:%M"))
        _say(progress, f"the class run's record for the teaching page: {portable(page)}")
        from .lab_record import build_lab_html

        front = build_lab_html(out, out.parent / "html")
        _say(progress, f"the class run as HTML pages for the students: {portable(front)}")
    return records


def _is_the_lab_run(profile: str, out: Path, results: Path, names: Sequence[str], templates: str | Path) -> bool:
    """The teaching page's class run: profile `class`, its own folders (no overrides), every default chapter."""
    return (profile == "class" and (Path(out), Path(results)) == destinations("class")
            and list(names) == default_chapters("class") and Path(templates).resolve() == TEMPLATES.resolve())


# Which chapters tune which units (lib.units kinds): every chapter but the claims summary reads the
# profile's prompts; the control chapter tunes the random-init control's; the transfer-method chapters
# the transfer study's arms.
CONTROL_NOTEBOOKS = ("random_init_control",)
ARM_NOTEBOOKS = ("indicators", "init_transfer", "panda")
PROMPT_NOTEBOOKS = tuple(n for n in NOTEBOOKS if n != "claims")


def _tune_units_first(profile: str, overrides: Mapping[str, Any], study_overrides: Mapping[str, Any],
                      results: Path, chapters: Sequence[str], jobs: int, progress: bool) -> None:
    """Tune the units `chapters` need in `jobs` worker processes before the notebooks run (see run_profile)."""
    from .parallel_units import run_units, units_for
    from .units import Spec

    spec = Spec(profile, dict(overrides), dict(study_overrides), str(results))
    units = units_for(spec, chapters, prompt_chapters=PROMPT_NOTEBOOKS, control_chapters=CONTROL_NOTEBOOKS,
                      arm_chapters=ARM_NOTEBOOKS)
    if units:
        with _ProgressEcho("units" if progress else None):
            run_units(spec, units, jobs=min(jobs, len(units)), say=lambda m: _say(progress, m))


class Interrupted(RuntimeError):
    """The run was stopped by Ctrl-C or SIGTERM (not a failure of a notebook)."""


def _remove_stale_copies(out: Path, name: str) -> None:
    for suffix in ("failed", "interrupted", "running"):
        (out / f"{name}.{suffix}.ipynb").unlink(missing_ok=True)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


_CONSOLE: list[Any] = []  # while a kernel's stderr is redirected: a stream on the console's own stderr


def _console() -> Any:
    return _CONSOLE[-1] if _CONSOLE else sys.stderr


class _KernelStderrTo:
    """Send file descriptor 2, which papermill's kernel inherits, into a log file while a notebook runs.

    The kernel's own chatter (a warning at every start, a traceback when it is killed by Ctrl-C) then
    lands in `<out>/.runinfo/<name>.kernel.log` instead of the console; the runner's progress lines
    go to the console through `_console()`.
    """

    def __init__(self, log: Path) -> None:
        self.log = log

    def __enter__(self) -> "_KernelStderrTo":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        self.saved = os.dup(2)
        with open(self.log, "wb") as fh:
            os.dup2(fh.fileno(), 2)
        _CONSOLE.append(os.fdopen(os.dup(self.saved), "w", buffering=1, encoding="utf-8", errors="replace"))
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        _CONSOLE.pop().close()
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=_console(), flush=True)


def _set_env(name: str, value: str | None) -> str | None:
    """Set (or, with None, remove) an environment variable the notebook kernels inherit; the previous value."""
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    return previous


class _CacheTally:
    """While a notebook runs, point $COMPENDIUM_CACHE_LOG (inherited by the kernel) at a temporary file where
    the results store notes each table and tensor file it reused or computed (`lib.progress.cache_event`);
    afterwards `counts` holds how many of each, for the console."""

    def __enter__(self) -> "_CacheTally":
        fd, self.path = tempfile.mkstemp(prefix="compendium-cache-", suffix=".log")
        os.close(fd)
        self.previous = _set_env(CACHE_ENV, self.path)
        self.counts = {"reused": 0, "computed": 0}
        return self

    def __exit__(self, *exc: object) -> None:
        self.counts = cache_counts(self.path)
        _set_env(CACHE_ENV, self.previous)
        os.unlink(self.path)

    def sentence(self) -> str:
        reused, computed = self.counts["reused"], self.counts["computed"]
        return f"tables and tensor files: {reused} reused, {computed} computed"


class _ProgressEcho:
    """While a notebook runs, point $COMPENDIUM_PROGRESS_LOG (inherited by papermill's kernel) at a
    temporary file and echo its new lines to stderr: papermill keeps the kernel's own output in the
    notebook, so without this a long tuning run shows nothing on the console. `None`: silent."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix
        self.stop = threading.Event()

    def __enter__(self) -> "_ProgressEcho":
        fd, self.path = tempfile.mkstemp(prefix="compendium-progress-", suffix=".log")
        os.close(fd)
        self.previous = _set_env(PROGRESS_ENV, self.path)
        self.batch = _set_env(BATCH_ENV, "1")  # tells notebooks there is no front end (the explorer's widgets wait for one)
        self.thread = threading.Thread(target=self._echo, daemon=True)
        self.thread.start()
        return self

    def _echo(self) -> None:
        pending = b""
        with open(self.path, "rb") as fh:
            while True:
                stopping = self.stop.wait(0.5)
                *lines, pending = (pending + fh.read()).split(b"\n")  # a half-written line waits
                if self.prefix is not None:
                    for line in lines:
                        print(f"  {self.prefix}: {line.decode('utf-8', 'replace')}", file=_console(), flush=True)
                if stopping:
                    return

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        _set_env(BATCH_ENV, self.batch)
        _set_env(PROGRESS_ENV, self.previous)
        os.unlink(self.path)


def machine() -> str:
    """One line describing where the notebooks ran (reported in the reproducibility chapter)."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _settings(record: Mapping[str, Any]) -> str:
    """The overrides of a run as JSON in a table cell ('none' without any)."""
    suffix = {"study_overrides": " (study)", "app_overrides": " (applications)"}
    parts = [f"`{json.dumps(record[k], sort_keys=True)}`" + suffix.get(k, "")
             for k in PARAMS if record.get(k)]
    return " ".join(parts) if parts else "none"


def write_summary(out: Path, profile: str, results: Path | None = None) -> None:
    """A Markdown table of every executed notebook's profile, overrides, date, machine and wall time.

    A notebook re-executed over cached results runs in seconds, so the compute time of each cached
    result (recorded when it was first computed) and of the prompt-tuning runs is reported too.
    """
    rows, total = [], 0.0
    for name in SELECTABLE:
        info = out / ".runinfo" / f"{name}.json"
        if info.is_file():
            r = read_json(info)
            total += r["seconds"]
            rows.append(f"| {name} | {r['profile']} | {_settings(r)} | {r['finished']} | {r['seconds']:.0f} | "
                        f"{r.get('machine', 'not recorded')} | {r.get('note', '')} |")
    text = ("| notebook | profile | overrides | finished | wall time (s) | machine | note |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\nTotal wall time {total / 60:.1f} min (each notebook's own last run; a notebook that found its "
            + "results cached took seconds).\n")
    if results is not None:
        tables = sorted(results.glob("*/tables/*.json"))
        if tables:
            text += ("\n| cached result | computed in (s) |\n|---|---|\n"
                     + "\n".join(f"| {p.parent.parent.name}/{p.stem} | {read_json(p).get('seconds', float('nan')):.0f} |"
                                 for p in tables) + "\n")
        for label, pattern in (("Prompt tuning", "prompts/**/metrics.json"),
                               ("The transfer-method runs (initialisation, PANDA, baselines)",
                                "transfer_methods/**/metrics.json")):
            done = [m for part in sorted(results.glob("*/")) for m in (read_json(p) for p in sorted(part.glob(pattern)))
                    if m.get("finished")]
            if done:
                text += (f"\n{label} took {sum(m['seconds'] for m in done) / 60:.1f} min for {len(done)} prompts "
                         f"({sum(m['steps'] for m in done)} optimiser steps in all).\n")
    write_text(out / "run_summary.md", text)


def _scrubbed(path: Path) -> str:
    """A path for notebook metadata: repository-relative, or only the file name outside the repository
    (an executed notebook must not carry the absolute paths of the machine that ran it)."""
    rel = portable(path)
    return Path(path).name if Path(rel).is_absolute() else rel


def _finish_notebook(path: Path, template: Path, target: Path) -> None:
    """Make an executed notebook the one a reader can re-run: papermill's injected values folded into the
    visible parameters cell (`lib.parameters.merge_injected_parameters`: the cell a reader edits is the
    one that counts), recorded paths portable, and no timestamps, so that re-executing a chapter whose
    outputs did not change rewrites the same bytes."""
    import nbformat

    if not path.is_file():
        return
    nb = nbformat.read(path, as_version=4)
    merge_injected_parameters(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # kernel timestamps
        cell.metadata.pop("papermill", None)  # per-cell start/end times and durations (.runinfo has the total)
    meta = nb.metadata.get("papermill", {})
    for volatile in ("start_time", "end_time", "duration", "exception"):
        meta.pop(volatile, None)
    if "input_path" in meta:
        meta["input_path"] = _scrubbed(template)
    if "output_path" in meta:
        meta["output_path"] = _scrubbed(target)
    text = nbformat.writes(nb)
    write_text(path, text if text.endswith("\n") else text + "\n")


def finish_notebook(executed: str | Path, template: str | Path | None = None) -> None:
    """`_finish_notebook` for a page executed outside the runner (`make bench` runs papermill on the
    Performance page itself); the template defaults to notebooks/<same name>."""
    executed = Path(executed)
    _finish_notebook(executed, Path(template) if template else TEMPLATES / executed.name, executed)


def fold_parameters(folder: Path = BOOK_OUT) -> list[str]:
    """Apply `_finish_notebook` to the executed notebooks already in `folder` (those executed before it
    folded papermill's cell into the visible one); outputs are untouched. Returns the notebooks changed."""
    changed = []
    for target in sorted(Path(folder).glob("*.ipynb")):
        before = target.read_bytes()
        _finish_notebook(target, TEMPLATES / target.name, target)
        if target.read_bytes() != before:
            changed.append(target.stem)
    return changed


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def overridable_fields() -> list[tuple[str, str, str, dict[str, str]]]:
    """(parameter, field as written in the JSON, type, value per profile) of every setting a run can override."""
    from .profiles import PROFILES
    from .transfer_study import STUDIES, get_study

    rows: list[tuple[str, str, str, dict[str, str]]] = []
    first = next(iter(PROFILES.values()))
    for f in dataclasses.fields(first):
        if f.name in LABELS:
            continue
        if f.name in ("tune", "data"):
            for sub in dataclasses.fields(getattr(first, f.name)):
                rows.append(("overrides", f"{f.name}.{sub.name}", _type(sub),
                             {p: json.dumps(_jsonable(getattr(getattr(prof, f.name), sub.name)))
                              for p, prof in PROFILES.items()}))
        else:
            rows.append(("overrides", f.name, _type(f),
                         {p: json.dumps(_jsonable(getattr(prof, f.name))) for p, prof in PROFILES.items()}))
    studies = {p: get_study(p) for p in PROFILES if p in STUDIES or p.startswith("paper")}
    for f in dataclasses.fields(next(iter(STUDIES.values()))):
        rows.append(("study_overrides", f.name, _type(f),
                     {p: json.dumps(_jsonable(getattr(s, f.name))) for p, s in studies.items()}))
    from .applications import APPLICATIONS

    for f in dataclasses.fields(next(iter(APPLICATIONS.values()))):
        rows.append(("app_overrides", f.name, _type(f),
                     {p: json.dumps(_jsonable(getattr(a, f.name))) for p, a in APPLICATIONS.items() if p in PROFILES}))
    return rows


def _type(field: dataclasses.Field) -> str:
    return str(field.type).replace(" | ", " or ")  # a bare "|" would split a Markdown table cell


def _values(per_profile: dict[str, str], code: str = "") -> str:
    if len(set(per_profile.values())) == 1:
        return f"{code}{next(iter(per_profile.values()))}{code}"
    return ", ".join(f"{p} {code}{v}{code}" for p, v in per_profile.items())


def overridable_fields_text() -> str:
    """The settings for `--help`: one line per field with its value in each profile."""
    lines = ["overridable settings (value per profile; a tune./data. field is nested: "
             "overrides='{\"tune\": {\"lr\": 0.01}}'):"]
    for param in PARAMS:
        lines.append(f"  {param}:")
        lines += [f"    {field} ({typ}): {_values(vals)}" for p, field, typ, vals in overridable_fields() if p == param]
    return "\n".join(lines)


def overridable_fields_markdown() -> str:
    """The same list as a Markdown table for book/reproducibility.md (tests check the page holds it)."""
    rows = ["| parameter | field | type | value per profile |", "|---|---|---|---|"]
    rows += [f"| `{p}` | `{field}` | `{typ}` | {_values(vals, '`')} |" for p, field, typ, vals in overridable_fields()]
    return "\n".join(rows) + "\n"


FIELDS_PAGE = REPO / "book" / "reproducibility.md"
FIELDS_START, FIELDS_END = "<!-- overridable-fields: start (lib.runner.write_fields_page) -->", \
    "<!-- overridable-fields: end -->"


def write_fields_page(page: Path = FIELDS_PAGE) -> None:
    """Regenerate the field table between the markers of the reproducibility page."""
    text = page.read_text(encoding="utf-8")
    head, sep1, rest = text.partition(FIELDS_START)
    _, sep2, tail = rest.partition(FIELDS_END)
    if not (sep1 and sep2):
        raise ConfigError(f"{page} lacks the markers {FIELDS_START!r} ... {FIELDS_END!r}")
    write_text(page, f"{head}{FIELDS_START}\n{overridable_fields_markdown()}{FIELDS_END}{tail}")


def _parse_param(text: str) -> tuple[str, dict[str, Any]]:
    key, sep, value = text.partition("=")
    if not sep or key not in PARAMS:
        raise ConfigError(f"parameters are given as overrides='{{...json...}}', study_overrides='{{...json...}}' or "
                          f"app_overrides='{{...json...}}', got {text!r}")
    return key, parse_overrides(value, key)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--fields" in argv:  # reads every profile, study and application configuration: slow, so on request
        print(overridable_fields_text())
        return 0
    ap = argparse.ArgumentParser(prog="python -m lib.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="overridable settings and their value in each profile: python -m lib.runner "
                                        "--fields (or the table in book/reproducibility.md)")
    ap.add_argument("--profile", required=True, choices=sorted(PROFILE_NAMES))
    ap.add_argument("--fields", action="store_true", help="list every overridable setting with its value per profile")
    ap.add_argument("--out", help="folder for the executed notebooks (default: book/experiments; with overrides "
                                  "_build_runs/<profile>-<hash>/experiments)")
    ap.add_argument("--results", help="folder for prompts, tables and scores (default: results; with overrides "
                                      "_build_runs/<profile>-<hash>/results)")
    skips = "; ".join(f"{p} leaves out {' '.join(n)} unless named" for p, n in DEFAULT_SKIP.items())
    ap.add_argument("--only", nargs="*", help=f"notebooks to run (default: {' '.join(NOTEBOOKS)}; {skips})")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                    help="overrides='{\"seeds\": [0]}' or study_overrides='{\"beta\": 0.5}'")
    ap.add_argument("--study", metavar="JSON", help="the transfer-method chapters' study_overrides (same as "
                                                    "-p study_overrides=JSON)")
    ap.add_argument("--apps", metavar="JSON", help="the application chapters' app_overrides (same as "
                                                   "-p app_overrides=JSON)")
    ap.add_argument("--publish", action="store_true", help="with overrides, write into book/experiments and results/ "
                                                           "anyway (make run ... PUBLISH=1)")
    ap.add_argument("--force", action="store_true", help="run even if nothing changed")
    ap.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="worker processes that tune the prompts side by side before the notebooks run, one "
                         "torch thread each (default: one per usable CPU core; 1 with a GPU; 1 = in the notebooks)")
    ap.add_argument("--templates", default=str(TEMPLATES), help=argparse.SUPPRESS)  # tests: stand-in notebooks
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if args.jobs is not None and args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        given: dict[str, dict[str, Any]] = {k: {} for k in PARAMS}
        for text in args.param:
            key, value = _parse_param(text)
            given[key].update(value)
        if args.study is not None:
            given["study_overrides"].update(parse_overrides(args.study, "study_overrides"))
        if args.apps is not None:
            given["app_overrides"].update(parse_overrides(args.apps, "app_overrides"))
        out, results = destinations(args.profile, given["overrides"], given["study_overrides"], publish=args.publish,
                                    app_overrides=given["app_overrides"])
        out = Path(args.out) if args.out else out
        results = Path(args.results) if args.results else results
        records = run_profile(args.profile, out, results_dir=results, only=args.only, overrides=given["overrides"],
                              study_overrides=given["study_overrides"], force=args.force, templates=args.templates,
                              app_overrides=given["app_overrides"], jobs=args.jobs)
    except (ConfigError, NotebookFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"stopped: {exc or 'interrupted'}", file=sys.stderr, flush=True)
        # the kernel client's own clean-up at exit may still complain about the killed kernel: not news
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        return 130
    for r in records:
        print(f"{r['notebook']:<22} {r['status']:<8} {r.get('seconds', 0):>8.1f} s")
    print(f"notebooks: {portable(out)}\nresults:   {portable(results)}\nsummary:   {portable(out / 'run_summary.md')}")
    if SCRATCH.resolve() in out.resolve().parents:
        print("(not the book's folders: pass --publish, or PUBLISH=1 to make run, to write into book/experiments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
