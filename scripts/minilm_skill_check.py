"""Real check of the skill-neuron pipeline: all-MiniLM-L6-v2 prompt-tuned on SST-2 (offline data).

Usage: python scripts/minilm_skill_check.py [--data ../shared/data] [--out runs/minilm_sst2_check]
Prints the numbers reported on the skill-neuron issue; the tuning run resumes from --out.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from lib.analyses import layer_distribution, suppression_curve
from lib.data import DataConfig, load_splits
from lib.evaluation import evaluate
from lib.models import load_backbone
from lib.skill_neurons import compute_predictivity, top_per_layer
from lib.tuning import TuneConfig, tune_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/minilm_sst2_check")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n-train-thresholds", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sp = load_splits("sst2", DataConfig(data_root=args.data, max_train=5000, max_dev=500))
    b = load_backbone("all-MiniLM-L6-v2")
    cfg = TuneConfig(prompt_length=20, lr=0.02, batch_size=32, max_steps=args.steps, eval_every=100, max_length=64)
    t0 = time.perf_counter()
    res = tune_prompt(b, "sst2", sp["train"], sp["dev"], cfg, args.out)
    tune_s = time.perf_counter() - t0
    test = b.encode(sp["test"], 64)
    acc = evaluate(b, res.prompt, "sst2", test).accuracy
    t1 = time.perf_counter()
    train = b.encode(sp["train"].iloc[: args.n_train_thresholds], 64)
    pred = compute_predictivity(b, res.prompt, "sst2", train, test, batch_size=64)
    pred_s = time.perf_counter() - t1
    scores = pred.per_neuron()
    dist = layer_distribution(scores, fraction=0.01)
    t2 = time.perf_counter()
    curve = suppression_curve(b, res.prompt, "sst2", test, scores, fractions=(0.0, 0.01), n_random=3, seed=0)
    supp_s = time.perf_counter() - t2
    summary = curve.groupby(["fraction", "kind"])["accuracy"].agg(["mean", "std"]).reset_index()
    report = {
        "tune_seconds": round(tune_s, 1), "steps": res.steps, "best_dev": res.best_dev_accuracy,
        "test_accuracy": acc, "predictivity_seconds": round(pred_s, 1), "suppression_seconds": round(supp_s, 1),
        "max_predictivity": float(scores.max()), "n_above_0.7": int((scores > 0.7).sum()),
        "n_neurons": int(scores.numel()), "top1pct_layer_counts": dist["n_selected"].tolist(),
        "suppression": summary.to_dict("records"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
