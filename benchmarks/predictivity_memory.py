"""Skill-neuron predictivity: lib's streamed two-pass computation against storing every activation.

    python benchmarks/predictivity_memory.py --sizes 1000 5000
    python benchmarks/predictivity_memory.py --model tiny-bert --sizes 50 200 --out /tmp/b   # the test's run

`store-all` (`lib.skill_neurons.predictivity_store_all`) is what the reference code does: keep every example's FFN activations at the prompt
positions (examples x layers x positions x neurons), then take means and threshold agreement
afterwards. `streamed` is `lib.skill_neurons.compute_predictivity`: a running float64 sum, then
integer agreement counts, batch by batch. Each (method, size) runs in a fresh child process of
this one run, so that its peak resident memory (above the loaded model and data) is its own.
`forward_only` runs the same two forward passes with the hooks but scores nothing: the floor that
both methods share, which bounds any speed-up of one over the other.
Thresholds use n training examples and accuracies n other training examples.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, save

from lib.data import DataConfig, load_splits
from lib.models import load_backbone
from lib.prompt import init_prompt, load_prompt
from lib.skill_neurons import compute_predictivity, iter_activations, predictivity_store_all
from lib.tasks import get_task
from lib.tiny import build_tiny_backbone, synthetic_task

SHARED = REPO.parent / "shared" / "data"
TRAINED = REPO / "results" / "mini" / "main" / "prompts" / "sst2" / "seed0" / "prompt.safetensors"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child(method: str, n: int, model: str) -> dict:
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_pred_"))
    if model == "tiny-bert":
        b = load_backbone(str(build_tiny_backbone("bert", work / "m")))
        task = synthetic_task(work / "data", n_train=2 * n, n_test=10)
        sp = load_splits(task, DataConfig(data_root=str(work / "data"), source="local"))
        prompt = init_prompt(b, 8, "vocab", 0)
    else:
        b = load_backbone(model)
        task = get_task("sst2")
        sp = load_splits(task, DataConfig(data_root=str(SHARED), max_train=2 * n + 100))
        prompt = load_prompt(TRAINED) if TRAINED.is_file() else init_prompt(b, 20, "vocab", 0)
    df = sp["train"]
    train, ev = b.encode(df.iloc[:n], 64), b.encode(df.iloc[n:2 * n], 64)
    before = _rss_mb()
    t0 = time.perf_counter()
    if method == "streamed":
        pred = compute_predictivity(b, prompt, task, train, ev, progress=False)
        thr, acc = pred.thresholds, pred.accuracy
    elif method == "forward_only":  # the floor both methods share: the two passes' forward computations
        for enc in (train, ev):
            for _ in iter_activations(b, prompt, enc):
                pass
        acc = torch.zeros(1)
    else:
        thr, acc = predictivity_store_all(b, prompt, task, train, ev)
    seconds = time.perf_counter() - t0
    return {"method": method, "n": n, "seconds": seconds, "peak_rss_mb": _rss_mb(), "setup_rss_mb": before,
            "extra_mb": _rss_mb() - before, "checksum": float(acc.sum())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2", choices=("all-MiniLM-L6-v2", "tiny-bert"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.model)))
        return {}
    if args.model != "tiny-bert" and not (SHARED / "README.md").is_file():
        raise SystemExit(f"SST-2 not found under {SHARED}; use --model tiny-bert")
    rows = []
    for n in args.sizes:
        for method in ("forward_only", "streamed", "store_all"):
            proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", method, str(n)],
                                  capture_output=True, text=True, cwd=Path(__file__).parent)
            if proc.returncode:
                raise SystemExit(f"child {method} n={n} failed:\n{proc.stderr[-2000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1])
    ratios = []
    for n in args.sizes:
        s, a = (next(r for r in rows if r["n"] == n and r["method"] == m) for m in ("streamed", "store_all"))
        assert abs(s["checksum"] - a["checksum"]) < 1e-6 * max(1.0, abs(a["checksum"])), "the two methods disagree"
        f = next(r for r in rows if r["n"] == n and r["method"] == "forward_only")
        ratios.append({"n": n, "speedup": a["seconds"] / s["seconds"],
                       "streamed_over_forward_only": s["seconds"] / f["seconds"],
                       "store_all_over_forward_only": a["seconds"] / f["seconds"],
                       "memory_ratio": a["extra_mb"] / max(s["extra_mb"], 1.0),
                       "streamed_extra_mb": s["extra_mb"], "store_all_extra_mb": a["extra_mb"]})
        print(f"n={n}: store-all / streamed time {ratios[-1]['speedup']:.2f}x, extra memory "
              f"{a['extra_mb']:.0f} MB vs {s['extra_mb']:.0f} MB")
    result = {"model": args.model, "rows": rows, "ratios": ratios}
    save(f"predictivity_{args.model}", result, args.out)
    return result


if __name__ == "__main__":
    main()
