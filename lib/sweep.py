"""Run every unit of a profile in parallel: on a Ray cluster, as Slurm job arrays (submitit), or one by one.

    python -m lib.sweep --profile smoke --results _build_smoke/results                 # local Ray cluster
    python -m lib.sweep --profile paper --address auto                                 # an existing Ray cluster
    python -m lib.sweep --profile paper --engine slurm --slurm-partition gpu --timeout-min 720
    python -m lib.sweep --profile paper --engine sequential                            # one after another
    python -m lib.sweep --profile paper --dry-run                                      # the plan only

The units are `lib.units`' (`python -m lib.units --profile P --list`): one Ray task or one Slurm array
job per unit, each calling `lib.units.run_unit`, which is idempotent (a finished unit loads, an
interrupted one resumes) and takes a per-unit file lock, so a sweep can be stopped and started
again, run twice at once, or mixed with `python -m lib.units` by hand without two workers ever
running the same unit or tearing a file. The transfer-study arms start from the profile's prompts:
on Ray they are tasks that depend on those prompts' tasks; on Slurm they are a second array that
starts after the first (`afterok`).

Ray: a local cluster by default (`--num-cpus`, default all cores), `--address auto` (or
`ray://host:10001`) joins one that is running. With GPUs in the cluster every unit asks for
`--gpus-per-unit` (default 1) GPU, so N GPUs run N units at once; on CPU every unit asks for
`--cpus-per-unit` cores and uses as many torch threads. All workers must see the same results
folder (a shared file system on several machines; the locks are `flock`, which NFSv4 supports) and
have this repository installed (`pip install -e .[sweep]`).

After a sweep the notebooks only aggregate: `make run PROFILE=P` (same overrides) finds every
prompt finished.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import CompendiumError, ConfigError
from .units import (KINDS, Spec, Unit, add_spec_arguments, dependencies, list_units, positive_threads, run_unit,
                    spec_from_args)

ENGINES = ("ray", "slurm", "sequential")


def plan(spec: Spec, kinds: Sequence[str] = KINDS) -> tuple[list[Unit], list[Unit]]:
    """(first wave, second wave): units that depend on no other unit, then the transfer arms that do."""
    units = list_units(spec, kinds)
    first = [u for u in units if not dependencies(spec, u)]
    return first, [u for u in units if u not in first]


def _worker(spec: dict[str, Any], unit: str, threads: int | None, *after: Any) -> dict[str, Any]:
    """What one Ray task or Slurm job runs: one unit, in a fresh process (`after`: the records of the
    units it had to wait for, unused)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    record = run_unit(Spec(**{**spec, "reuse": tuple(spec["reuse"] or ())}), unit, check=False)
    record.update(host=os.uname().nodename, pid=os.getpid(), started=t0, ended=time.time())
    return record


# --- engines -------------------------------------------------------------------------------------
def run_sequential(spec: Spec, units: Sequence[Unit], *, threads: int | None = None,
                   on_record: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Every unit in this process, in order (the reference a parallel sweep must equal); `threads`
    applies during the run only."""
    import torch

    records = []
    before = torch.get_num_threads()
    try:
        for unit in units:
            records.append(_worker(spec.resolved().as_dict(), unit.id, threads))
            if on_record:
                on_record(records[-1])
    finally:
        torch.set_num_threads(before)
    return records


def run_ray(spec: Spec, units: Sequence[Unit], *, address: str | None = None, num_cpus: int | None = None,
            gpus_per_unit: float | None = None, cpus_per_unit: float = 1, threads: int | None = None,
            object_store_mb: int = 200, on_record: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """One Ray task per unit; the transfer arms depend on the tasks of the prompts they start from.

    `address` None starts a local cluster of `num_cpus` cores (stopped at the end); otherwise joins
    that cluster ('auto', 'ray://host:10001'). `gpus_per_unit` None: 1 when the cluster has GPUs, else 0.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install -e .[sweep] (or pip install 'ray>=2.40')") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     object_store_memory=object_store_mb * 1024 ** 2)
    try:
        if gpus_per_unit is None:
            gpus_per_unit = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        threads = threads or (max(1, int(cpus_per_unit)) if not gpus_per_unit else None)
        task = ray.remote(_worker)
        resources = {"num_cpus": cpus_per_unit, "num_gpus": gpus_per_unit, "max_retries": 2, "retry_exceptions": False}
        payload = spec.resolved().as_dict()
        refs: dict[Unit, Any] = {}
        for unit in units:
            deps = [refs[d] for d in dependencies(spec, unit) if d in refs]
            # an ObjectRef argument makes Ray start this task only after that one finished (its record is unused)
            refs[unit] = task.options(name=unit.id, **resources).remote(payload, unit.id, threads, *deps)
        pending = {ref: unit for unit, ref in refs.items()}
        done: dict[Unit, dict[str, Any]] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                unit = pending.pop(ref)
                done[unit] = ray.get(ref)
                if on_record:
                    on_record(done[unit])
        return [done[u] for u in units]
    finally:
        if started_here:
            ray.shutdown()


def _worker_args(spec: Spec, units: Sequence[Unit], threads: int | None) -> tuple[list, list, list]:
    payload = spec.resolved().as_dict()
    return [payload] * len(units), [u.id for u in units], [threads] * len(units)


def run_slurm(spec: Spec, first: Sequence[Unit], second: Sequence[Unit], *, log_dir: str | Path,
              cluster: str | None = None, partition: str | None = None, timeout_min: int = 720,
              gpus_per_unit: int = 1, cpus_per_unit: int = 4, mem_gb: int = 32, max_parallel: int | None = None,
              threads: int | None = None, extra: dict[str, Any] | None = None, wait: bool = True,
              on_record: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Two Slurm job arrays through submitit: the units without dependencies, then the transfer arms
    (`--dependency=afterok` on the first array). `cluster` None is submitit's auto-detection (Slurm
    when `sbatch` exists, else local processes); 'local' / 'debug' run here (tests)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("submitit is not installed: pip install -e .[sweep] (or pip install submitit)") from None
    executor = submitit.AutoExecutor(folder=str(log_dir), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_unit, "mem_gb": mem_gb,
                              "name": f"units-{spec.profile}"}
    if executor.cluster == "slurm":
        params.update(gpus_per_node=gpus_per_unit, slurm_array_parallelism=max_parallel or 256,
                      **({"slurm_partition": partition} if partition else {}),
                      **({"slurm_additional_parameters": dict(extra)} if extra else {}))
    elif executor.cluster == "local":
        params.update(gpus_per_node=gpus_per_unit if _has_cuda() else 0)
    executor.update_parameters(**params)
    jobs = executor.map_array(_worker, *_worker_args(spec, first, threads)) if first else []
    if second:
        if executor.cluster == "slurm" and jobs:
            array = str(jobs[0].job_id).split("_")[0]
            executor.update_parameters(slurm_additional_parameters={**(extra or {}), "dependency": f"afterok:{array}"})
        elif jobs:  # local and debug executors know no dependencies: wait for the first wave
            for job in jobs:
                job.result()
        jobs = list(jobs) + list(executor.map_array(_worker, *_worker_args(spec, second, threads)))
    print(f"submitted {len(jobs)} jobs ({executor.cluster}); logs in {log_dir}"
          + (f"; job ids {jobs[0].job_id} ... {jobs[-1].job_id}" if jobs else ""), file=sys.stderr)
    if not wait:
        return []
    records = []
    for job in jobs:
        records.append(job.result())
        if on_record:
            on_record(records[-1])
    return records


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- command line --------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(ap)
    ap.add_argument("--engine", choices=ENGINES, default="ray")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"unit kinds to run ({','.join(KINDS)})")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (units per wave) and stop")
    ap.add_argument("--threads", type=positive_threads, default=None, help="torch CPU threads per unit")
    ray_args = ap.add_argument_group("ray")
    ray_args.add_argument("--address", default=None, help="join this Ray cluster ('auto', 'ray://host:10001'); "
                                                          "default: start a local one")
    ray_args.add_argument("--num-cpus", type=int, default=None, help="cores of the local cluster (default: all)")
    ray_args.add_argument("--gpus-per-unit", type=float, default=None,
                          help="GPUs per unit (default: 1 when the cluster has GPUs, else 0)")
    ray_args.add_argument("--cpus-per-unit", type=float, default=1)
    slurm = ap.add_argument_group("slurm (submitit)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--timeout-min", type=int, default=720, help="wall-time limit of one unit's job")
    slurm.add_argument("--mem-gb", type=int, default=32)
    slurm.add_argument("--max-parallel", type=int, default=None, help="array jobs running at once")
    slurm.add_argument("--slurm-extra", metavar="JSON", default=None,
                       help="more sbatch options, e.g. '{\"account\": \"abc\", \"qos\": \"normal\"}'")
    slurm.add_argument("--log-dir", default="_build_runs/slurm", help="submitit's folder for scripts and logs")
    slurm.add_argument("--cluster", default=None, help="submitit executor: slurm (default when sbatch exists), "
                                                       "local, debug")
    slurm.add_argument("--no-wait", action="store_true", help="submit and return")
    args = ap.parse_args(argv)
    try:
        spec = spec_from_args(args)
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        first, second = plan(spec, kinds)
        resolved = spec.resolved()
        print(f"profile {spec.profile}: {len(first)} units, then {len(second)} transfer-study arms that start from "
              f"their prompts; results {resolved.results}", file=sys.stderr)
        if args.dry_run:
            for wave, units in (("1", first), ("2", second)):
                for u in units:
                    print(f"{wave}\t{u.id}")
            return 0
        t0 = time.perf_counter()
        counts: dict[str, int] = {}

        def show(record: dict) -> None:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            print(json.dumps({k: record[k] for k in ("unit", "status", "seconds", "best_dev_accuracy", "host")
                              if k in record}), flush=True)

        if args.engine == "sequential":
            run_sequential(spec, first + second, threads=args.threads, on_record=show)
        elif args.engine == "ray":
            run_ray(spec, first + second, address=args.address, num_cpus=args.num_cpus,
                    gpus_per_unit=args.gpus_per_unit, cpus_per_unit=args.cpus_per_unit, threads=args.threads,
                    on_record=show)
        else:
            extra = json.loads(args.slurm_extra) if args.slurm_extra else None
            if extra is not None and not isinstance(extra, dict):
                raise ConfigError("--slurm-extra must be a JSON object of sbatch options")
            run_slurm(spec, first, second, log_dir=args.log_dir, cluster=args.cluster, partition=args.slurm_partition,
                      timeout_min=args.timeout_min,
                      gpus_per_unit=1 if args.gpus_per_unit is None else int(args.gpus_per_unit),
                      cpus_per_unit=max(1, int(args.cpus_per_unit)), mem_gb=args.mem_gb,
                      max_parallel=args.max_parallel, threads=args.threads, extra=extra, wait=not args.no_wait,
                      on_record=show)
    except (CompendiumError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"# {sum(counts.values())} units in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), file=sys.stderr)
    return 0


__all__ = ["plan", "run_sequential", "run_ray", "run_slurm", "ENGINES"]

if __name__ == "__main__":
    sys.exit(main())
