"""The mini recipe before and after the speed work, side by side in one run: wall time, CPU time, accuracy.

    python benchmarks/mini_speed.py                    # mini: sst2 and newsgroups x seeds 0, 1, 200 steps each
    python benchmarks/mini_speed.py --profile smoke --tasks synthetic --seeds 0 1 --steps 20 --out /tmp/b   # test

Two recipes tune the same units (task x seed, the profile's full recipe) from scratch into fresh folders:
- before: random batches and the last layer at every position (`batch_order='random'`, `last_layer='all'`),
  the units one after another in one process with torch's threads (one per core): what a notebook did;
- after: length-grouped batches and the last layer at the mask slot only in training steps (the new
  defaults), the units side by side in one one-thread worker process per core (`lib.parallel_units`,
  what `make run` now does before the notebooks).
Each task is one block per recipe, run as a child process; the blocks alternate (task 1 before then after,
task 2 after then before) so that a change of load during the run touches both recipes. Wall time is
the blocks' elapsed time, CPU time the children's user + system time (`getrusage`).

Accuracy: every prompt's best dev accuracy and its test accuracy; per task, the after-recipe's mean test
accuracy is compared with the 95 % interval (examples resampled, seeds averaged; `lib.intervals`) of the
committed prompts of the profile (mini: its 3 seeds), evaluated here. Padding: the share of padded token
positions over each recipe's training batches (`lib.tuning.padding_share`). The before-recipe's prompts
are also compared bit for bit with the committed prompts of the same seeds (same key: same prompt).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, save

RECIPES = {
    "before": {"tune": {"batch_order": "random", "last_layer": "all"}, "parallel": False},
    "after": {"tune": {"batch_order": "length_grouped", "last_layer": "slot"}, "parallel": True},
}
LEGACY = RECIPES["before"]["tune"]  # how the committed prompts were tuned (their keys carry neither option)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _overrides(recipe: str, task: str, seeds: list[int], steps: int | None) -> dict:
    tune = dict(RECIPES[recipe]["tune"])
    if steps is not None:
        tune["max_steps"] = steps
    return {"tasks": [task], "seeds": seeds, "tune": tune}


def block(recipe: str, profile: str, task: str, seeds: list[int], steps: int | None, results: str) -> None:
    """A child process: tune one task's units with one recipe (fresh folder, nothing reused)."""
    import torch

    from lib.parallel_units import run_units
    from lib.units import Spec, Unit

    spec = Spec(profile, _overrides(recipe, task, seeds, steps), results=results, reuse=())
    units = [Unit("tune", task, s) for s in seeds]
    if RECIPES[recipe]["parallel"]:
        run_units(spec, units, jobs=min(_cores(), len(units)), threads=1)
    else:
        torch.set_num_threads(_cores())
        run_units(spec, units, jobs=1)


def _timed_block(recipe: str, args, task: str, results: str) -> dict:
    cmd = [sys.executable, __file__, "--block", recipe, "--profile", args.profile, "--task", task,
           "--seeds", *map(str, args.seeds), "--results", results] + (["--steps", str(args.steps)] if args.steps else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(__file__).parent, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"the {recipe} block of {task} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{task:<12} {recipe:<7} wall {wall:7.1f} s  cpu {cpu:7.1f} s", flush=True)
    return {"task": task, "recipe": recipe, "wall_s": wall, "cpu_s": cpu}


def _accuracies(args, results: dict[str, str]) -> dict:
    """Dev and test accuracy of every tuned prompt, the padding shares, and the committed prompts' interval."""
    import numpy as np
    import torch

    from lib.experiments import Experiment
    from lib.intervals import accuracy_interval
    from lib.profiles import get_profile
    from lib.tuning import batch_indices, padding_share, training_lengths

    out: dict = {"units": [], "tasks": {}}
    synthetic = get_profile(args.profile).synthetic
    committed = None if synthetic else Experiment(get_profile(args.profile).replace(tune=dict(LEGACY)), progress=False)
    for task in args.tasks:
        row: dict = {}
        for recipe in RECIPES:
            prof = get_profile(args.profile).replace(**_overrides(recipe, task, args.seeds, args.steps))
            exp = Experiment(prof, results[recipe], progress=False)
            cfg = exp.tune_config(args.seeds[0], task)
            train = exp.backbone.encode(exp.splits(task)["train"], cfg.max_length)
            lengths = [len(x) for x in train.input_ids]
            batches = [batch_indices(len(train), cfg.batch_size, cfg.seed, s, training_lengths(cfg, train))
                       for s in range(cfg.budgeted(len(train)).max_steps)]
            row[f"padding_share_{recipe}"] = padding_share(lengths, batches)
            accs = []
            for seed in args.seeds:
                res = exp.tune(task, seed)
                ev = exp.evaluate(res.prompt, task)
                accs.append(ev.accuracy)
                out["units"].append({"task": task, "seed": seed, "recipe": recipe, "dev_accuracy": res.best_dev_accuracy,
                                     "test_accuracy": ev.accuracy, "best_step": res.best_step,
                                     "tune_seconds": res.seconds})
                if recipe == "before" and committed is not None:
                    if (committed.prompt_dir(task, seed) / "metrics.json").is_file():
                        same = torch.equal(committed.prompt(task, seed), res.prompt)
                        out["units"][-1]["bitwise_equal_to_committed"] = same
            row[f"mean_test_{recipe}"] = statistics.mean(accs)
        if committed is not None:
            seeds = [s for s in committed.profile.seeds
                     if (committed.prompt_dir(task, s) / "metrics.json").is_file()]
            if seeds:
                correct = []
                for s in seeds:
                    ev = committed.evaluate(committed.prompt(task, s), task)
                    correct.append(ev.predictions == ev.labels)
                iv = accuracy_interval(np.asarray(correct, dtype=float))
                row["committed"] = {"seeds": seeds, "test_accuracy": iv.estimate, "lo": iv.lo, "hi": iv.hi}
                row["after_within_committed_interval"] = bool(iv.lo <= row["mean_test_after"] <= iv.hi)
        out["tasks"][task] = row
    return out


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--tasks", nargs="+", default=["sst2", "newsgroups"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per unit (default: the profile's)")
    ap.add_argument("--out", default=None, help="folder of the JSON (default benchmarks/results)")
    ap.add_argument("--note", default="", help="a remark stored with the numbers (e.g. other load on the machine)")
    ap.add_argument("--block", choices=sorted(RECIPES), help=argparse.SUPPRESS)  # a child process's job
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.block:
        block(args.block, args.profile, args.task, args.seeds, args.steps, args.results)
        return None
    with tempfile.TemporaryDirectory(prefix="mini-speed-") as tmp:
        results = {r: str(Path(tmp) / r) for r in RECIPES}
        blocks = []
        for k, task in enumerate(args.tasks):
            for recipe in (("before", "after") if k % 2 == 0 else ("after", "before")):
                blocks.append(_timed_block(recipe, args, task, results[recipe]))
        acc = _accuracies(args, results)
    total = {r: {"wall_s": sum(b["wall_s"] for b in blocks if b["recipe"] == r),
                 "cpu_s": sum(b["cpu_s"] for b in blocks if b["recipe"] == r)} for r in RECIPES}
    payload = {"profile": args.profile, "tasks": args.tasks, "seeds": args.seeds, "steps": args.steps or "profile's",
               "cores": _cores(), "recipes": {r: {**v["tune"],
                                                  "units": "side by side, 1 thread each" if v["parallel"]
                                                  else "one after another, one thread per core"}
                                              for r, v in RECIPES.items()},
               "blocks": blocks, "total": total,
               "wall_ratio": total["before"]["wall_s"] / total["after"]["wall_s"],
               "cpu_ratio": total["before"]["cpu_s"] / total["after"]["cpu_s"], **acc, "note": args.note}
    print(f"wall time before/after: {payload['wall_ratio']:.2f}x, CPU time before/after: {payload['cpu_ratio']:.2f}x")
    for task, row in acc["tasks"].items():
        print(f"{task}: padding {row['padding_share_before']:.1%} -> {row['padding_share_after']:.1%}; mean test "
              f"accuracy {row['mean_test_before']:.3f} -> {row['mean_test_after']:.3f}"
              + (f"; committed {row['committed']['test_accuracy']:.3f} [{row['committed']['lo']:.3f}, "
                 f"{row['committed']['hi']:.3f}]" if "committed" in row else ""))
    save(f"mini_speed_{args.profile}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
