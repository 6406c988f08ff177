"""What the `paper` and `paper_t5` profiles cost: measured tuning steps/s of base-sized backbones x their units.

    python benchmarks/paper_cost.py                        # CPU here: roberta-base- and t5-base-sized, 2 timed steps
    python benchmarks/paper_cost.py --device cuda --steps 20 --profile-ops   # a GPU: bf16, MFU, top kernels
    python benchmarks/paper_cost.py --models tiny-bert tiny-t5 --steps 1 --out /tmp/b   # the test's run

Backbones: RoBERTa-base- and T5-base-sized models with random weights (`lib.tiny.build_base_sized_*`;
only the shapes matter for speed, and no weights can be downloaded here). Shapes are the profiles':
batch 16, a 100-token prompt, every example a full 128 tokens (an upper bound: lib pads a batch to
its longest example, and SST-2 sentences are much shorter), bf16 autocast on a GPU and float32 on a
CPU, as `lib.tuning` does. The step is the tuning loop's (forward through `Backbone.label_logits`,
cross-entropy, backward to the prompt, gradient clipping, AdamW, and the two divergence checks
that read the loss and the prompt's finiteness back from the device).

Measured: the median wall time of --steps steps after one warm-up step, a no-grad forward pass of
the same batch (evaluation), the FLOPs of both (`torch.utils.flop_counter`), and the device's
matrix-multiply peak in the tuning dtype (`roofline.matmul_peak`); MFU = step FLOPs x steps/s / peak.
With --profile-ops, the top operators of one step by self time (what holds the step back).

Cost: every unit of the profile (`python -m lib.units --profile P --list`: its tasks x seeds, the
random-init control, the transfer study's arms) runs its full step budget (the profile's max_steps;
early stopping with patience may end a prompt sooner) and evaluates its development set every
eval_every steps (dev = 20 % of the task's public training set, `DataConfig.dev_fraction`). Hours
per unit and per profile follow, on the machine measured. CPU numbers are not GPU numbers; without
a GPU measurement the JSON also holds a projection at the 40 % MFU goal of a named GPU's
vendor-specified bf16 peak, labelled as such.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import save, timed
from roofline import matmul_peak, sync_for

from lib.catalog import PROFILES
from lib.models import Backbone, Batch, load_backbone
from lib.prompt import init_prompt
from lib.tasks import get_task
from lib.tiny import build_base_sized_roberta, build_base_sized_t5, build_tiny_backbone
from lib.transfer_study import get_study
from lib.units import Spec, list_units

# model -> (profile whose units it prices, builder, shape overrides: the tiny test models have 160 positions)
MODELS = {
    "roberta-base-random": ("paper", build_base_sized_roberta, {}),
    "t5-base-random": ("paper_t5", build_base_sized_t5, {}),
    "tiny-bert": ("paper", lambda path: build_tiny_backbone("bert", path), {"prompt_length": 20, "max_length": 64}),
    "tiny-t5": ("paper_t5", lambda path: build_tiny_backbone("t5", path), {"prompt_length": 20, "max_length": 64}),
}
# Public training-set sizes (GLUE, IMDB); binary MNLI drops the neutral third. Dev = 20 % of train.
TRAIN_SIZES = {"sst2": 67_349, "imdb": 25_000, "mrpc": 3_668, "qqp": 363_846, "mnli": 392_702 * 2 // 3,
               "qnli": 104_743}
MFU_GOAL = 0.40
# aten operators that launch no kernel of their own on a GPU: views and metadata, allocations, and
# composites whose work is counted in the operators they call (linear -> addmm, layer_norm -> native_...)
NOT_KERNELS = frozenset({
    "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "transpose", "t", "permute", "expand",
    "slice", "select", "narrow", "unsqueeze", "squeeze", "unbind", "split", "chunk", "alias", "detach",
    "lift_fresh", "resolve_conj", "resolve_neg", "result_type", "empty", "empty_strided", "empty_like", "to",
    "linear", "layer_norm", "dropout", "scaled_dot_product_attention", "zeros", "zeros_like", "matmul",
    "contiguous", "item", "embedding", "cross_entropy_loss", "log_softmax", "nll_loss_nd", "flatten",
    "softmax", "ones", "ones_like", "full", "new_zeros", "new_empty", "clone", "is_nonzero", "stack", "sum_to_size"})
# A projection only, used when no GPU was measured: the vendor's dense bf16 tensor-core peak.
PROJECTED_GPU = {"name": "NVIDIA H100 SXM5", "bf16_dense_tflops": 989.4}


def dev_size(task: str, profile) -> int:
    cfg = profile.data
    n = int(round(cfg.dev_fraction * TRAIN_SIZES[task]))
    return min(n, cfg.max_dev) if cfg.max_dev else n


def measure(backbone: Backbone, profile, device: torch.device, steps: int, profile_ops: bool) -> dict:
    """Steps/s, forward examples/s and FLOPs of the tuning step at the profile's shapes."""
    tune = profile.tune
    bf16 = device.type == "cuda"
    task = get_task(profile.tasks[0])
    verbalizer = backbone.task_verbalizer_ids(task)
    vocab = backbone.word_embeddings.num_embeddings
    low = 1000 if vocab > 2000 else 10
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(low, vocab - 1, (tune.batch_size, tune.max_length), generator=gen)
    types = torch.zeros_like(ids) if backbone.head != "t5" else None
    batch = Batch(ids, torch.ones_like(ids), types, torch.randint(0, 2, (tune.batch_size,), generator=gen))
    prompt = torch.nn.Parameter(init_prompt(backbone, tune.prompt_length, "vocab", 0).to(device))
    opt = torch.optim.AdamW([prompt], lr=tune.lr)
    labels = batch.labels.to(device)

    def forward():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            return backbone.label_logits(prompt, batch, verbalizer)

    def step():  # lib.tuning's step, its two checks for divergence included (each reads a value from the device)
        loss = torch.nn.functional.cross_entropy(forward().float(), labels)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([prompt], tune.grad_clip or float("inf"))
        opt.step()
        if not bool(torch.isfinite(prompt).all()):
            raise FloatingPointError("prompt")

    def evaluate():
        with torch.no_grad():
            forward()

    # evaluation as lib.evaluation runs it: length-sorted batches of eval_batch_size (here every example
    # has the full length, so sorting changes nothing and only the batch size differs from `evaluate`)
    eval_batch = Batch(*(t.repeat((-(-tune.eval_batch_size // tune.batch_size), 1))[: tune.eval_batch_size]
                         if t is not None else None
                         for t in (batch.input_ids, batch.attention_mask, batch.token_type_ids)),
                       batch.labels.repeat(-(-tune.eval_batch_size // tune.batch_size))[: tune.eval_batch_size])

    def evaluate_eval_batch():
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            backbone.label_logits(prompt, eval_batch, verbalizer)

    sync = sync_for(device)
    with FlopCounterMode(display=False) as step_count:  # also the warm-up step
        step()
    with FlopCounterMode(display=False) as fwd_count:
        evaluate()
    step_times = [timed(step, sync) for _ in range(steps)]
    fwd_times = [timed(evaluate, sync) for _ in range(max(1, steps))]
    eval_times = [timed(evaluate_eval_batch, sync) for _ in range(max(1, steps))]
    out = {"bf16": bf16, "batch": tune.batch_size, "prompt_length": tune.prompt_length, "max_length": tune.max_length,
           "tokens_per_example": tune.prompt_length + tune.max_length, "steps_timed": steps,
           "step_seconds": step_times, "step_seconds_median": statistics.median(step_times),
           "steps_per_s": 1 / statistics.median(step_times), "forward_seconds": fwd_times,
           "forward_examples_per_s": tune.batch_size / statistics.median(fwd_times),
           "eval_batch": tune.eval_batch_size, "eval_batch_seconds": eval_times,
           "eval_examples_per_s": tune.eval_batch_size / statistics.median(eval_times),
           "step_tflop": step_count.get_total_flops() / 1e12, "forward_tflop": fwd_count.get_total_flops() / 1e12}
    if profile_ops:
        out["top_ops"] = top_ops(step, device, sync)
    return out


def top_ops(step, device: torch.device, sync, n: int = 12) -> dict:
    """One step under torch.profiler: the operators with the most self time, and how busy the device was."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync()
    with profile(activities=activities) as prof:
        wall = timed(step, sync)
    events = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, attr, 0), reverse=True)[:n]
    busy = sum(getattr(e, attr, 0) for e in events) / 1e6
    calls = {e.key: e.count for e in events if e.key.startswith("aten::")}
    return {"by": attr, "wall_seconds": wall, "busy_seconds": busy, "busy_fraction": busy / wall if wall else None,
            "host_op_calls": sum(calls.values()),
            "kernel_op_calls": sum(n for k, n in calls.items() if k.removeprefix("aten::") not in NOT_KERNELS),
            "syncs": sum(calls.get(k, 0) for k in ("aten::_local_scalar_dense",)),
            "ops": [{"name": e.key, "self_seconds": getattr(e, attr, 0) / 1e6, "calls": e.count} for e in rows]}


def cost(profile_name: str, m: dict) -> dict:
    """Hours per unit and per profile at the measured rates (full step budgets; evaluation included)."""
    prof = PROFILES[profile_name]
    study = get_study(profile_name)
    rows = []
    for unit in list_units(Spec(profile_name)):
        arm = unit.kind not in ("tune", "control")
        steps = study.steps if arm else prof.tune.max_steps
        every = study.eval_every if arm else prof.tune.eval_every
        evals = math.ceil(steps / every)
        n_dev = dev_size(unit.task, prof)
        train_h = steps / m["steps_per_s"] / 3600
        # evaluation priced at the evaluation batch size lib uses (eval_batch_size); the earlier pages priced it
        # at the training batch (`eval_hours_at_train_batch`, kept for the before/after comparison)
        eval_h = evals * n_dev / m.get("eval_examples_per_s", m["forward_examples_per_s"]) / 3600
        eval_old = evals * n_dev / m["forward_examples_per_s"] / 3600
        rows.append({"unit": unit.id, "kind": unit.kind, "task": unit.task, "steps": steps, "evaluations": evals,
                     "dev_examples": n_dev, "train_hours": train_h, "eval_hours": eval_h,
                     "eval_hours_at_train_batch": eval_old, "hours": train_h + eval_h})
    main = [r for r in rows if r["kind"] == "tune"]
    total = {k: sum(r[k] for r in rows) for k in ("train_hours", "eval_hours", "eval_hours_at_train_batch", "hours")}
    dev_forward = sum(r["evaluations"] * r["dev_examples"] for r in rows)
    train_examples = sum(r["steps"] for r in rows) * prof.tune.batch_size
    return {"profile": profile_name, "units": rows, "n_units": len(rows),
            "eval_share": total["eval_hours"] / total["hours"],
            "eval_share_at_train_batch": total["eval_hours_at_train_batch"]
            / (total["train_hours"] + total["eval_hours_at_train_batch"]),
            "dev_examples_forwarded": dev_forward, "train_examples": train_examples,
            "n_units_by_kind": {k: sum(r["kind"] == k for r in rows) for k in dict.fromkeys(r["kind"] for r in rows)},
            "steps_total": sum(r["steps"] for r in rows), "profile_hours": total,
            "prompt_unit_hours": {"train": main[0]["train_hours"], "mean": statistics.mean(r["hours"] for r in main),
                                  "min": min(r["hours"] for r in main), "max": max(r["hours"] for r in main)},
            "arm_unit_hours_mean": statistics.mean(r["hours"] for r in rows if r["kind"] in ("baseline", "transfer", "panda"))}


def projection(m: dict, c: dict) -> dict:
    """Hours on `PROJECTED_GPU` if the step reached the MFU goal of its vendor bf16 peak (not a measurement)."""
    rate = MFU_GOAL * PROJECTED_GPU["bf16_dense_tflops"]  # TFLOP/s
    step_s = m["step_tflop"] / rate
    example_s = m["forward_tflop"] / m["batch"] / rate
    train = sum(r["steps"] * step_s for r in c["units"]) / 3600
    evals = sum(r["evaluations"] * r["dev_examples"] * example_s for r in c["units"]) / 3600
    one = next(r for r in c["units"] if r["kind"] == "tune")
    return {**PROJECTED_GPU, "assumed_mfu": MFU_GOAL, "step_seconds": step_s, "steps_per_s": 1 / step_s,
            "prompt_unit_train_hours": one["steps"] * step_s / 3600, "profile_train_hours": train,
            "profile_eval_hours": evals, "profile_hours": train + evals}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["roberta-base-random", "t5-base-random"], choices=sorted(MODELS))
    ap.add_argument("--steps", type=int, default=2, help="timed steps per model (after one warm-up step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--mm-sizes", type=int, nargs="+", default=None,
                    help="matmul sizes for the peak (default 512 1024 2048 on CPU, 4096 8192 on a GPU)")
    ap.add_argument("--profile-ops", action="store_true", help="profile one step: top operators by self time")
    ap.add_argument("--note", default="", help="a remark stored with the numbers (e.g. another job sharing the machine)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = args.mm_sizes or ([4096, 8192] if device.type == "cuda" else [512, 1024, 2048])
    peak = matmul_peak(device, dtype, sizes, reps=3 if device.type == "cpu" else 10)
    work = Path(tempfile.mkdtemp(prefix="bench_cost_"))
    results = []
    for name in args.models:
        profile_name, build, shapes = MODELS[name]
        prof = PROFILES[profile_name].replace(tune=shapes) if shapes else PROFILES[profile_name]
        b = load_backbone(str(build(work / name))).to(device)
        m = measure(b, prof, device, args.steps, args.profile_ops)
        m["mfu"] = m["step_tflop"] * m["steps_per_s"] / (peak["peak_gflops"] / 1e3)
        m["forward_fraction_of_peak"] = m["forward_tflop"] * m["forward_examples_per_s"] / m["batch"] \
            / (peak["peak_gflops"] / 1e3)
        c = cost(profile_name, m)
        entry = {"model": name, **m, **c}
        if device.type != "cuda":
            entry["gpu_projection"] = projection(m, c)
        results.append(entry)
        del b
        print(f"{name} ({profile_name}) on {device.type}: {m['steps_per_s']:.4g} steps/s, "
              f"{m['forward_examples_per_s']:.4g} eval examples/s, step {m['step_tflop']:.3f} TFLOP, "
              f"{m['mfu']:.1%} of the measured {peak['peak_gflops'] / 1e3:.3g} TFLOP/s peak; "
              f"one prompt unit {c['prompt_unit_hours']['mean']:.1f} h, profile {c['profile_hours']['hours']:.0f} h "
              f"({c['n_units']} units)")
    payload = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
               else "CPU", "dtype": str(dtype), "mfu_goal": MFU_GOAL, "note": args.note, **peak, "results": results}
    save("paper_cost" if device.type == "cpu" else f"paper_cost_{device.type}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
