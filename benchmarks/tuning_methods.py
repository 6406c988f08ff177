"""What each tuning method costs: seconds per optimiser step and per run, measured side by side.

    python benchmarks/tuning_methods.py                                   # all-MiniLM-L6-v2, SST-2, mini recipe
    python benchmarks/tuning_methods.py --model tiny-bert --steps 4 --rounds 1 --out /tmp/b   # the test's run

Contenders: prompt tuning (`lib.tuning.tune_prompt`) and each weight-tuning method of the
application chapters (`lib.weight_tuning.tune_weights`: BitFit, bottleneck adapters, LoRA, full),
on the same backbone, training examples, batch size, text length and batch seed, with the learning
rates of `lib.applications.ApplicationsConfig` for the profile. They are timed in alternating rounds
in this one process and this many torch threads (`--threads`, default 1 as a `make run` worker): in
each round every method runs `--steps` optimiser steps, and each step's wall time is taken from
the `on_step` callback, so model copies, set-up and the one dev evaluation at the end are excluded.
Seconds per step = the median over all timed steps (the first of each run is a warm-up and not
counted); seconds per run = seconds per step x the profile's step budget (200 on mini). This
replaces the model-tuning chapter's logged seconds, which came from a shared machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, save

from lib.applications import get_applications
from lib.data import DataConfig, load_splits
from lib.models import load_backbone
from lib.profiles import get_profile
from lib.tasks import get_task
from lib.tiny import build_tiny_backbone, synthetic_task
from lib.tuning import tune_prompt
from lib.weight_tuning import METHODS, WeightTuneConfig, tune_weights

SHARED = REPO.parent / "shared" / "data"
CONTENDERS = ("prompt", *METHODS)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("all-MiniLM-L6-v2", "tiny-bert"), default="all-MiniLM-L6-v2")
    ap.add_argument("--task", default="sst2", help="task of the mini profile (tiny-bert: a synthetic task)")
    ap.add_argument("--steps", type=int, default=12, help="optimiser steps per method and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the methods alternating within each")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as one make-run worker)")
    ap.add_argument("--methods", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error(f"--steps must be at least 2 (the first step of each run is a warm-up), got {args.steps}")
    for name in ("rounds", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_methods_"))
    prof, apps = get_profile("mini"), get_applications("mini")
    tune = prof.tune_for(args.task)
    if args.model == "tiny-bert" or not (SHARED / "README.md").is_file():
        backbone = load_backbone(str(build_tiny_backbone("bert", work / "tiny-bert")))
        task = synthetic_task(work / "data", n_train=256, n_test=64)
        splits = load_splits(task, DataConfig(data_root=str(work / "data"), source="local"))
        task_name, max_length, model_name = task.name, 32, "tiny-bert"
        tune = dataclasses.replace(tune, max_length=max_length)
    else:
        backbone = load_backbone(args.model)
        task = get_task(args.task)
        splits = load_splits(task, DataConfig(data_root=str(SHARED), max_train=2000, max_dev=32))
        task_name, max_length, model_name = args.task, tune.max_length, args.model  # max_length as Experiment's
    train = backbone.encode(splits["train"], max_length)
    dev = backbone.encode(splits["dev"].head(32), max_length)

    def run(method: str) -> tuple[list[float], int]:
        """One run of `steps` steps; (wall seconds of each step after the first, trainable parameters)."""
        stamps: list[float] = []
        on_step = lambda step, loss: stamps.append(time.perf_counter())  # noqa: E731
        if method == "prompt":
            cfg = dataclasses.replace(tune, max_steps=args.steps, eval_every=args.steps, patience=None, seed=0)
            start = time.perf_counter()
            result = tune_prompt(backbone, task, train, dev, cfg, progress=False, on_step=on_step)
            trainable = result.prompt.numel()
        else:
            cfg = WeightTuneConfig(method=method, lr=apps.lr(method), batch_size=tune.batch_size,
                                   max_steps=args.steps, eval_every=args.steps, max_length=max_length, seed=0)
            start = time.perf_counter()
            result = tune_weights(backbone, task, train, dev, cfg, progress=False, on_step=on_step)
            trainable = result.trainable_parameters
        times = [b - a for a, b in zip([start, *stamps[:-1]], stamps)]
        return times[1:], trainable

    seconds: dict[str, list[float]] = {m: [] for m in args.methods}
    trainable: dict[str, int] = {}
    for r in range(args.rounds):
        for method in args.methods:
            steps, trainable[method] = run(method)
            seconds[method] += steps
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m} {statistics.median(seconds[m]):.3f} s/step"
                                                           for m in args.methods))
    budget = apps.steps or tune.max_steps
    base = statistics.median(seconds[args.methods[0]])
    rows = []
    for method in args.methods:
        per_step = statistics.median(seconds[method])
        rows.append({"method": method, "seconds_per_step": per_step, "seconds_per_run": per_step * budget,
                     "ratio_to_first": per_step / base, "trainable_parameters": trainable[method],
                     "timed_steps": len(seconds[method])})
        print(f"{method:<8} {per_step:.3f} s/step ({per_step / base:.2f}x {args.methods[0]}), {per_step * budget:.0f} s "
              f"per {budget}-step run, {trainable[method]:,} trainable parameters")
    result = {"model": model_name, "task": task_name, "profile": prof.name, "batch": tune.batch_size,
              "max_length": max_length, "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
              "run_steps": budget, "methods": rows}
    save(f"tuning_methods_{model_name}", result, args.out)
    return result


if __name__ == "__main__":
    main()
