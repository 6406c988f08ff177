"""One tuning unit, one command: the prompt-tuning runs of a profile as independent, idempotent units.

    python -m lib.units --profile paper --list                       # every unit of the profile, one per line
    python -m lib.units --profile paper --task sst2 --seed 0         # one prompt (tunes, resumes or loads)
    python -m lib.units --profile paper --arm panda --source sst2 --task imdb --seed 0   # a transfer-study arm
    python -m lib.units --profile paper --control --task sst2 --seed 0                  # the random-init control
    python -m lib.units --profile paper --unit tune/sst2/seed0       # any unit by the id --list prints
    python -m lib.units --profile mini --overrides '{"seeds": [0]}' --study '{"seeds": [0]}' --list

A unit is what one tuning run computes and caches, the expensive part of every chapter:
- `tune/<task>/seed<s>`: the profile's prompt of (task, seed), `Experiment.tune`;
- `control/<task>/seed<s>`: the random-initialisation control's prompt (first task, `control_seeds`);
- `baseline/<target>/seed<s>`, `transfer/<source>_to_<target>/seed<s>`, `panda/<source>_to_<target>/seed<s>`:
  the transfer study's runs, `TransferMethods.run` (they need the source prompt, and PANDA with
  `beta_mode='on'` the target's too: those units are run, or waited for, first).

A unit writes into the same results folder that `make run` with the same profile and overrides
reads (`results/`, or `_build_runs/<profile>-<hash>/results` with overrides; `--results` picks
another), keyed by the run's signature as every tuning run is, so the notebooks later find it and
only aggregate. Running a finished unit loads it (seconds); an interrupted one resumes from its
last checkpoint (`lib.tuning`). Two processes asked for the same unit never run it at once: each
unit holds an exclusive `flock` on a lock file beside its folder (`.seed<s>.unit.lock`) while it
runs; the second waits, then finds the unit finished and loads it. Every file is written atomically
(`lib.io`), so a reader never sees a torn file. The locks are advisory, for `lib.units` and
`lib.sweep` only: a notebook run at the same time does not take them (run the notebooks after a sweep).

This module is outside `lib.store.code_version()`'s closure (nothing that computes a cached result
imports it), so changing it invalidates no cache.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Mapping, Sequence

from .errors import CompendiumError, ConfigError, unknown
from .paths import REPO, from_repo
from .validation import check_path_component

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, one worker per unit is then up to the caller
    fcntl = None  # type: ignore[assignment]

KINDS = ("tune", "control", "baseline", "transfer", "panda")
ARMS = ("baseline", "transfer", "panda")
LOCK_SUFFIX = ".unit.lock"


@dataclass(frozen=True)
class Unit:
    """One tuning run: `kind` (see `KINDS`), the task it tunes (the target of a transfer arm), the seed,
    and the source task of a transfer or PANDA arm."""

    kind: str
    task: str
    seed: int
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise unknown("unit kind", self.kind, KINDS)
        check_path_component(self.task, "a unit's task")  # the unit's folder and lock file are named by it
        if self.source is not None:
            check_path_component(self.source, "a unit's source task")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"a unit's seed must be a non-negative integer, got {self.seed!r}")
        if (self.kind in ("transfer", "panda")) != (self.source is not None):
            raise ConfigError(f"unit kind {self.kind!r} {'needs' if self.source is None else 'takes no'} source task")
        if self.source is not None and self.source == self.task:
            raise ConfigError(f"a transfer arm needs two different tasks, got {self.source!r} twice")

    @property
    def id(self) -> str:
        """`tune/sst2/seed0`, `control/sst2/seed0`, `baseline/imdb/seed0`, `panda/sst2_to_imdb/seed0`."""
        middle = f"{self.source}_to_{self.task}" if self.source is not None else self.task
        return f"{self.kind}/{middle}/seed{self.seed}"

    @property
    def rel(self) -> Path:
        """The unit's folder, relative to its experiment's results root (keyed subfolders inside)."""
        if self.kind in ("tune", "control"):
            return Path("prompts") / self.task / f"seed{self.seed}"
        middle = f"{self.source}_to_{self.task}" if self.source is not None else self.task
        return Path("transfer_methods") / self.kind / middle / f"seed{self.seed}"

    @classmethod
    def parse(cls, text: str) -> "Unit":
        parts = text.strip().strip("/").split("/")
        if len(parts) != 3 or not re.fullmatch(r"seed[0-9]+", parts[2]):  # ASCII digits: '¹'.isdigit() is True
            raise ConfigError(f"a unit id is <kind>/<task or source_to_target>/seed<n>, e.g. tune/sst2/seed0; "
                              f"got {text!r}")
        kind, middle, seed = parts[0], parts[1], int(parts[2][4:])
        if kind in ("transfer", "panda"):
            pair = middle.split("_to_")
            if len(pair) != 2 or not all(pair):
                raise ConfigError(f"unit {text!r}: a {kind} arm is named <source>_to_<target>")
            return cls(kind, pair[1], seed, pair[0])
        return cls(kind, middle, seed)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Spec:
    """Which profile (with overrides), which transfer study and which results folder the units belong to.

    Plain data (JSON-able), so that it travels to a Ray worker or a Slurm job as it is. `results`
    defaults to where `make run` with the same overrides writes (`lib.runner.destinations`);
    `reuse` to the committed `results/` when `results` is another folder (as the notebooks do).
    """

    profile: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    study_overrides: Mapping[str, Any] = field(default_factory=dict)
    results: str | None = None
    reuse: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        from .notebook import parse_overrides

        object.__setattr__(self, "overrides", parse_overrides(self.overrides))
        object.__setattr__(self, "study_overrides", parse_overrides(self.study_overrides, "study_overrides"))
        if self.reuse is not None:
            object.__setattr__(self, "reuse", tuple(str(r) for r in self.reuse))

    def resolved(self) -> "Spec":
        """The same spec with absolute `results` and `reuse` (what is sent to another process)."""
        from .runner import destinations

        results = from_repo(self.results) if self.results else destinations(
            self.profile, self.overrides, self.study_overrides)[1]
        reuse = self.reuse
        if reuse is None:
            committed = REPO / "results"
            reuse = (str(committed),) if results.resolve() != committed.resolve() else ()
        return dataclasses.replace(self, results=str(results), reuse=tuple(str(from_repo(r)) for r in reuse))

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "overrides": dict(self.overrides),
                "study_overrides": dict(self.study_overrides), "results": self.results,
                "reuse": list(self.reuse) if self.reuse is not None else None}

    def profile_obj(self):
        from .profiles import get_profile

        return get_profile(self.profile).replace(**self.overrides)

    def study_obj(self):
        """The profile's transfer study, or None when the profile has none."""
        from .catalog import STUDIES
        from .transfer_study import get_study

        if self.profile not in STUDIES and not self.profile.startswith("paper"):
            if self.study_overrides:
                raise ConfigError(f"profile {self.profile!r} has no transfer study to override")
            return None
        return get_study(self.profile, self.study_overrides)


# --- the units of a profile ----------------------------------------------------------------------
def study_problem(spec: Spec) -> str | None:
    """Why the transfer study's units are left out of `list_units` (no study, or one that does not fit
    the overridden profile), or None when they are in."""
    study = spec.study_obj()
    if study is None:
        return f"profile {spec.profile!r} has no transfer study"
    try:
        study.check_against(SimpleNamespace(profile=spec.profile_obj()))
    except ConfigError as exc:
        return f"the transfer study does not fit this profile ({exc}); pass --study to change it"
    return None


def list_units(spec: Spec, kinds: Sequence[str] = KINDS) -> list[Unit]:
    """Every unit of the profile, in the order the notebooks need them: prompts, the control, then
    the transfer study's arms (the study's units only when the study fits the profile; see `study_problem`).

    Nothing is loaded: neither backbone nor data.
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise unknown("unit kind", bad[0], KINDS)
    prof = spec.profile_obj()
    units = [Unit("tune", t, s) for t in prof.tasks for s in prof.seeds]
    units += [Unit("control", prof.tasks[0], s) for s in prof.control_seeds]
    if study_problem(spec) is None:
        from .transfer_study import TransferMethods

        # the very list the transfer chapters run (TransferMethods._runs), so the two never drift apart
        runs = TransferMethods._runs(SimpleNamespace(study=spec.study_obj()))  # type: ignore[arg-type]
        units += [Unit(arm, target, seed, source) for arm, source, target, seed in runs]
    return [u for u in units if u.kind in kinds]


def dependencies(spec: Spec, unit: Unit) -> list[Unit]:
    """The units whose prompts `unit` starts from or reads: the source prompt of a transfer or PANDA
    arm, and for PANDA with `beta_mode='on'` the target's prompt too (the ON of both sets beta)."""
    if unit.kind not in ("transfer", "panda"):
        return []
    deps = [Unit("tune", unit.source, unit.seed)]  # type: ignore[arg-type]
    if unit.kind == "panda" and spec.study_obj().beta_mode == "on":
        deps.append(Unit("tune", unit.task, unit.seed))
    return deps


def units_steps(spec: Spec, units: Sequence[Unit]) -> int:
    """Optimiser steps of the units at most (early stopping may end a prompt sooner)."""
    prof = spec.profile_obj()
    study = spec.study_obj()
    return sum(prof.tune_for(u.task).max_steps if u.kind in ("tune", "control") else study.steps for u in units)


def check_unit(spec: Spec, unit: Unit) -> None:
    """A unit must be one of the profile's (its tasks, seeds, the study's pairs and seeds)."""
    known = list_units(spec)
    if unit not in known:
        problem = study_problem(spec) if unit.kind in ARMS else None
        near = [u.id for u in known if u.kind == unit.kind][:6]
        raise ConfigError(f"unit {unit.id} is not one of profile {spec.profile!r}'s units"
                          + (f" ({problem})" if problem else "")
                          + (f"; its {unit.kind} units: {', '.join(near)}{' ...' if len(near) == 6 else ''}"
                             if near else f"; python -m lib.units --profile {spec.profile} --list shows them"))


# --- running one unit ----------------------------------------------------------------------------
@contextlib.contextmanager
def unit_lock(path: Path) -> Iterator[float]:
    """Hold an exclusive `flock` on `path` (created if missing); yields the seconds spent waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.perf_counter() - t0
    finally:
        os.close(fd)  # releases the lock; a killed holder's lock goes with its process


def lock_path(root: Path, unit: Unit) -> Path:
    """The lock file beside the unit's folder: `<root>/<rel parent>/.seed<s>.unit.lock`."""
    return root / unit.rel.parent / f".{unit.rel.name}{LOCK_SUFFIX}"


def _snapshot(root: Path, unit: Unit) -> dict[Path, tuple[int, bool]]:
    """metrics.json of every keyed run folder of the unit under `root`: (mtime, has a checkpoint)."""
    out = {}
    for metrics in (root / unit.rel).glob("*/metrics.json"):
        with contextlib.suppress(OSError):
            out[metrics.parent] = (metrics.stat().st_mtime_ns, (metrics.parent / "state.pt").is_file())
    return out


def experiment_for(spec: Spec, unit: Unit | str, *, progress: bool = False):
    """The `Experiment` a unit runs in (the control's for `control` units), as the notebooks open it."""
    from .experiments import Experiment

    unit = Unit.parse(unit) if isinstance(unit, str) else unit

    spec = spec.resolved()
    prof = spec.profile_obj()
    if unit.kind == "control":  # as notebooks/random_init_control.ipynb opens it
        prof = prof.replace(seeds=list(prof.control_seeds))
    return Experiment(prof, spec.results, control=unit.kind == "control", progress=progress,
                      reuse=list(spec.reuse or ()))


def run_unit(spec: Spec, unit: Unit | str, *, progress: bool = False, check: bool = True, exp=None) -> dict[str, Any]:
    """Run one unit to completion (or load it when finished); return a record of what happened.

    status: 'ran' (tuned from scratch), 'resumed' (from a checkpoint), 'cached' (finished already,
    here or in a reuse folder: loaded, nothing written). The unit's dependencies run first, each
    under its own lock, in the same experiment; the unit then runs under its lock (see the module doc).
    """
    spec = spec.resolved()
    unit = Unit.parse(unit) if isinstance(unit, str) else unit
    if check:
        check_unit(spec, unit)
    t0 = time.perf_counter()
    if exp is None:  # a caller running many units passes the experiment it keeps open (lib.parallel_units)
        exp = experiment_for(spec, unit, progress=progress)
    if exp.profile.model.startswith("tiny-"):  # the test bed's model is built on first use: by one worker
        with unit_lock(exp.shared / f".inputs{LOCK_SUFFIX}"):
            exp.backbone
    deps = [_run_locked(spec, exp, d) for d in dependencies(spec, unit)]
    record = _run_locked(spec, exp, unit)
    record.update(seconds=round(time.perf_counter() - t0, 2), dependencies={d["unit"]: d["status"] for d in deps})
    return record


def _run_locked(spec: Spec, exp, unit: Unit) -> dict[str, Any]:
    from .store import run_finished
    from .transfer_study import TransferMethods

    with unit_lock(lock_path(exp.root, unit)) as waited:
        before = _snapshot(exp.root, unit)
        if unit.kind in ("tune", "control"):
            result = exp.tune(unit.task, unit.seed)
        else:
            result = TransferMethods(exp, spec.study_obj()).run(unit.kind, unit.source, unit.task, unit.seed)
        after = _snapshot(exp.root, unit)
    changed = [p for p, (mtime, _) in after.items() if before.get(p, (None, False))[0] != mtime]
    folder: Path | None
    if changed:
        folder = changed[0]
        status = "resumed" if before.get(folder, (None, False))[1] else "ran"
    else:
        status = "cached"
        if unit.kind in ("tune", "control"):
            folder = exp.prompt_dir(unit.task, unit.seed)
        else:  # the finished run folder of this arm, when only one (another setting's may lie beside it)
            finished = [p for root in (exp.root, *exp.store.reuse) for p in sorted((root / unit.rel).glob("*"))
                        if run_finished(p)]
            folder = finished[0] if len(finished) == 1 else None
    return {"unit": unit.id, "status": status, "waited_s": round(waited, 2),
            "folder": str(folder) if folder is not None else None, "steps": result.steps,
            "best_step": result.best_step, "best_dev_accuracy": result.best_dev_accuracy,
            "stopped_early": result.stopped_early}


def load_prompt_of(spec: Spec, unit: Unit | str):
    """The finished prompt of a unit (runs it when it is not finished: units are idempotent)."""
    unit = Unit.parse(unit) if isinstance(unit, str) else unit
    run_unit(spec, unit)
    exp = experiment_for(spec, unit)
    if unit.kind in ("tune", "control"):
        return exp.prompt(unit.task, unit.seed)
    from .transfer_study import TransferMethods

    return TransferMethods(exp, spec.study_obj()).run(unit.kind, unit.source, unit.task, unit.seed).prompt


def pending_units(spec: Spec) -> list[Unit]:
    """The profile's prompts (`tune` and `control` units) with no finished run in the results folder
    or a reuse folder, found by their exact keys (this loads the backbone and the data, not the runs).

    What a notebook can check before it aggregates a large profile: `make run PROFILE=paper` would
    otherwise tune the missing prompts one after another (see book/scaling.md).
    """
    from .store import run_finished

    spec = spec.resolved()
    missing, experiments = [], {}
    for unit in list_units(spec, ("tune", "control")):
        if unit.kind not in experiments:  # one experiment (backbone, data) per kind, not per unit
            experiments[unit.kind] = experiment_for(spec, unit)
        if not run_finished(experiments[unit.kind].prompt_dir(unit.task, unit.seed)):
            missing.append(unit)
    return missing


# --- command line --------------------------------------------------------------------------------
def add_spec_arguments(ap: argparse.ArgumentParser) -> None:
    from .catalog import PROFILES

    ap.add_argument("--profile", required=True, choices=sorted(PROFILES))
    ap.add_argument("--overrides", "-o", metavar="JSON", default=None,
                    help="profile overrides, as make run's OVERRIDES, e.g. '{\"seeds\": [0]}'")
    ap.add_argument("--study", metavar="JSON", default=None,
                    help="transfer-study overrides, as make run's STUDY, e.g. '{\"seeds\": [0]}'")
    ap.add_argument("--results", metavar="DIR", default=None,
                    help="results folder (default: where make run with the same overrides writes: results/, or "
                         "_build_runs/<profile>-<hash>/results with overrides); the committed results/ is reused")


def positive_threads(text: str) -> int:
    """`--threads` as argparse's type: a whole number of at least 1, else argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"threads must be at least 1, got {value}")
    return value


def spec_from_args(args: argparse.Namespace) -> Spec:
    spec = Spec(args.profile, args.overrides or {}, args.study or {}, args.results)
    spec.profile_obj()  # validates the overrides before any work
    spec.study_obj()
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.units", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(ap)
    what = ap.add_argument_group("which unit (or --list)")
    what.add_argument("--list", action="store_true", help="print every unit id of the profile, one per line")
    what.add_argument("--kinds", default=",".join(KINDS), help=f"with --list: the kinds to list ({','.join(KINDS)})")
    what.add_argument("--unit", help="a unit id as --list prints it, e.g. tune/sst2/seed0")
    what.add_argument("--task", help="the task tuned (the target of a transfer arm)")
    what.add_argument("--seed", type=int)
    what.add_argument("--arm", choices=ARMS, help="a transfer-study arm instead of the profile's prompt")
    what.add_argument("--source", help="the source task of a transfer or panda arm")
    what.add_argument("--control", action="store_true", help="the random-initialisation control's prompt")
    ap.add_argument("--threads", type=positive_threads, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--progress", action="store_true", help="show the tuning progress bar")
    args = ap.parse_args(argv)
    try:
        spec = spec_from_args(args)
        if args.list:
            kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
            units = list_units(spec, kinds)
            for u in units:
                print(u.id)
            counts = ", ".join(f"{sum(u.kind == k for u in units)} {k}" for k in KINDS if any(u.kind == k for u in units))
            note = study_problem(spec)
            print(f"# {len(units)} units of profile {spec.profile} ({counts}); at most "
                  f"{units_steps(spec, units):,} optimiser steps; results: {spec.resolved().results}"
                  + (f"; no transfer-study units: {note}" if note and any(k in ARMS for k in kinds) else ""),
                  file=sys.stderr)
            return 0
        if args.unit:
            if any(v is not None for v in (args.task, args.seed, args.arm, args.source)) or args.control:
                raise ConfigError("give either --unit or --task/--seed/--arm/--source/--control, not both")
            unit = Unit.parse(args.unit)
        else:
            if args.task is None or args.seed is None:
                raise ConfigError("name a unit: --task T --seed S (with --arm A [--source S] or --control), "
                                  "--unit ID, or --list")
            if args.control and args.arm:
                raise ConfigError("--control and --arm exclude each other")
            kind = args.arm or ("control" if args.control else "tune")
            unit = Unit(kind, args.task, args.seed, args.source)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        record = run_unit(spec, unit, progress=args.progress)
    except CompendiumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
