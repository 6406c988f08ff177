"""Tune a profile's independent units side by side before its notebooks run: one thread per unit.

On a CPU, two one-thread processes use two cores better than one two-thread process (a MiniLM step
runs 1.6x faster on 2 threads than on 1, not 2x), and a profile's prompts are independent units
(`lib.units`). `make run` / `python -m lib.runner` therefore tunes the pending prompts first, in
`jobs` worker processes, and the notebooks then find them finished and only aggregate.

Nothing changes in what is computed: each worker runs `lib.units.run_unit` (the unit's own lock,
its keyed folder, atomic writes), and the prompts are bit for bit those of the same units tuned one
after another with one thread (tested on the smoke profile). Another thread count may round the last
bits differently (tiny BERT does; MiniLM at the sst2 and newsgroups shapes gave equal prompts with 1 and
2 threads), as with the Ray and Slurm sweeps: keys do not hold the thread count, so that results move
between machines. Workers are started with `spawn`, so
no torch state of the parent is inherited; each keeps one `Experiment` per (spec, kind) so that the
backbone and the data are loaded once per worker, not once per unit.

    run_units(spec, units, jobs=2, say=print)   # returns one record per unit, in the order given
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import time
from typing import Any, Callable, Sequence

from .units import ARMS, Spec, Unit, list_units

# Per worker process only (each is spawned for one run and exits with it): the experiments it opened.
_OPENED: dict[tuple[str, str], Any] = {}


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Workers for a run: one per usable core on a CPU; 1 where a GPU does the work (the units would
    share it, and one process already keeps it busy)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, available_cores())


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_one(spec_dict: dict[str, Any], unit_id: str) -> dict[str, Any]:
    """A worker's task: `lib.units.run_unit` in this process's experiment for the unit (opened once per kind)."""
    from .units import experiment_for, run_unit

    spec = Spec(**{k: v for k, v in spec_dict.items() if k != "reuse"},
                reuse=tuple(spec_dict["reuse"]) if spec_dict["reuse"] is not None else None)
    unit = Unit.parse(unit_id)
    key = (repr(sorted(spec_dict.items(), key=str)), "control" if unit.kind == "control" else "main")
    if key not in _OPENED:
        _OPENED[key] = experiment_for(spec, unit)
    return run_unit(spec, unit, check=False, exp=_OPENED[key])


def run_units(spec: Spec, units: Sequence[Unit], *, jobs: int, threads: int = 1,
              say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run `units` in `jobs` spawned worker processes of `threads` torch threads each (jobs=1: in this
    process, in order, with torch's threads). Prompt units (tune, control) run before the transfer-study
    arms that start from them. Returns one record per unit (`lib.units.run_unit`'s), in the given order."""
    from .units import run_unit

    spec = spec.resolved()
    say = say or (lambda message: None)
    ordered = [u for u in units if u.kind not in ARMS] + [u for u in units if u.kind in ARMS]
    records: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    if jobs <= 1:
        for k, unit in enumerate(ordered, 1):
            records[unit.id] = run_unit(spec, unit, check=False)
            _tell(say, records[unit.id], k, len(ordered), [])
    else:
        payload = spec.as_dict()
        ctx = multiprocessing.get_context("spawn")
        pool = futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                           initargs=(threads,))
        try:
            for phase in ([u for u in ordered if u.kind not in ARMS], [u for u in ordered if u.kind in ARMS]):
                if not phase:
                    continue
                running = {pool.submit(_run_one, payload, u.id): u for u in phase}
                say(f"units: {len(phase)} {'prompts' if phase[0].kind not in ARMS else 'transfer-study arms'} "
                    f"in {jobs} worker processes of {threads} thread{'s' if threads != 1 else ''} each")
                while running:
                    finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                    for fut in finished:
                        unit = running.pop(fut)
                        records[unit.id] = fut.result()  # a worker's error ends the run with that error
                        _tell(say, records[unit.id], len(records), len(ordered),
                              sorted(u.id for u in running.values()))
        finally:  # an error or Ctrl-C: queued units are dropped, finished ones stay (each is its own unit)
            pool.shutdown(wait=True, cancel_futures=True)
    counts = {s: sum(r["status"] == s for r in records.values()) for s in ("ran", "resumed", "cached")}
    say(f"units: {len(records)} done in {time.perf_counter() - t0:.0f} s ("
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")")
    return [records[u.id] for u in units]


def _tell(say: Callable[[str], None], record: dict[str, Any], k: int, n: int, still: list[str]) -> None:
    """One line per unit that was tuned (finished units that were only loaded are counted at the end)."""
    if record["status"] == "cached":
        return
    shown = ", ".join(still[:4]) + (" ..." if len(still) > 4 else "")
    say(f"units: [{k}/{n}] {record['unit']} {record['status']} in {record['seconds']:.0f} s "
        f"(best dev accuracy {record['best_dev_accuracy']:.3f})" + (f"; not finished yet: {shown}" if still else ""))


def units_for(spec: Spec, chapters: Sequence[str], *, prompt_chapters: Sequence[str],
              control_chapters: Sequence[str], arm_chapters: Sequence[str]) -> list[Unit]:
    """The units the given chapters tune: the profile's prompts when any chapter reads them, the control's
    when its chapter runs, the transfer study's arms when a transfer-method chapter runs."""
    kinds = []
    if set(chapters) & set(prompt_chapters):
        kinds.append("tune")
    if set(chapters) & set(control_chapters):
        kinds.append("control")
    if set(chapters) & set(arm_chapters):
        kinds += list(ARMS)
    return list_units(spec, kinds) if kinds else []


__all__ = ["run_units", "units_for", "default_jobs", "available_cores"]
