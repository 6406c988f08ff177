"""The machine's matrix-multiply roofline against the FLOP/s the tuning loop achieves.

    python benchmarks/roofline.py                          # all-MiniLM-L6-v2, the mini profile's shapes, CPU
    python benchmarks/roofline.py --device cuda --bf16     # on a GPU: model FLOP utilisation in bf16
    python benchmarks/roofline.py --model tiny-bert --batch 4 --reps 2 --out /tmp/b   # the test's run

Peak: the best GFLOP/s of square matrix products (sizes --mm-sizes) in the tuning dtype. Achieved:
FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` for one forward pass of the prompted
backbone (`Backbone.label_logits`, as in the tuning loop) and for one whole step (forward,
backward, AdamW), divided by their median wall time over --reps repetitions.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import save, timed

from lib.models import Batch, load_backbone
from lib.prompt import init_prompt
from lib.tasks import get_task
from lib.tiny import build_tiny_backbone
from lib.tuning import TuneConfig


def sync_for(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: list[int], reps: int) -> dict:
    sync = sync_for(device)
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        t = min(timed(lambda: torch.mm(a, b), sync) for _ in range(reps))
        best[n] = 2 * n ** 3 / t / 1e9
    return {"gflops_by_size": best, "peak_gflops": max(best.values())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mm-sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the tuning step to bfloat16 (GPU)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    name = args.model
    if name == "tiny-bert":
        name = str(build_tiny_backbone("bert", Path(tempfile.mkdtemp(prefix="bench_roof_")) / "m"))
    b = load_backbone(name).to(device)
    task = get_task("sst2")
    verbalizer = b.task_verbalizer_ids(task)
    # a full-length batch (every example max_length tokens): the shape the FLOP count assumes
    ids = torch.randint(1000 if b.word_embeddings.num_embeddings > 2000 else 10, b.word_embeddings.num_embeddings - 1,
                        (args.batch, args.max_length))
    batch = Batch(ids, torch.ones_like(ids), torch.zeros_like(ids), torch.randint(0, 2, (args.batch,)))
    cfg = TuneConfig(prompt_length=args.prompt_length, max_length=args.max_length, batch_size=args.batch)
    prompt = torch.nn.Parameter(init_prompt(b, cfg.prompt_length, "vocab", 0).to(device))
    opt = torch.optim.AdamW([prompt], lr=0.02)
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    def forward():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
            return b.label_logits(prompt, batch, verbalizer)

    def step():
        loss = torch.nn.functional.cross_entropy(forward().float(), batch.labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fwd_count:
        forward()
    with FlopCounterMode(display=False) as step_count:
        step()
    sync = sync_for(device)
    step()  # warm-up
    fwd_t = statistics.median(timed(forward, sync) for _ in range(args.reps))
    step_t = statistics.median(timed(step, sync) for _ in range(args.reps))
    peak = matmul_peak(device, dtype, args.mm_sizes, max(3, args.reps))
    fwd_gflops = fwd_count.get_total_flops() / fwd_t / 1e9
    step_gflops = step_count.get_total_flops() / step_t / 1e9
    result = {"model": args.model, "device": str(device), "dtype": str(dtype), "batch": args.batch,
              "max_length": args.max_length, "prompt_length": args.prompt_length, **peak,
              "forward_gflop": fwd_count.get_total_flops() / 1e9, "forward_seconds": fwd_t,
              "forward_gflops": fwd_gflops, "step_gflop": step_count.get_total_flops() / 1e9, "step_seconds": step_t,
              "step_gflops": step_gflops, "forward_fraction_of_peak": fwd_gflops / peak["peak_gflops"],
              "step_fraction_of_peak": step_gflops / peak["peak_gflops"]}
    print(f"peak matmul {peak['peak_gflops']:.1f} GFLOP/s; forward {fwd_gflops:.1f} GFLOP/s "
          f"({result['forward_fraction_of_peak']:.0%} of peak); step {step_gflops:.1f} GFLOP/s "
          f"({result['step_fraction_of_peak']:.0%})")
    save(f"roofline_{args.model}_{device.type}", result, args.out)
    return result


if __name__ == "__main__":
    main()
