"""Controls that say what a predictivity would be without skill, and an artefact of one adversarial set.

- **Label-permutation null.** The test labels are permuted (seeded) and the predictivity of every
  neuron is measured again with the same prompt and thresholds. With N neurons, max_n Pred_n is large
  by chance alone (a constant neuron already scores max(acc, 1 - acc) = the majority rate); the
  permuted maximum is what "the best neuron" reaches with no relation between activation and label.
- **Untuned prompt.** The same measurement with the prompt the tuning started from (`init_prompt`,
  same seed): what the pretrained backbone gives before any tuning.
- **No-skill reference.** The majority rate of the evaluation labels, max_c (1/N) sum_i 1[y_i = c].
- **Length artefact.** In AdvGLUE's RTE set the label is predictable from premise length alone; the
  accuracy of the best single word-count threshold (in sample, and leave-one-out) is shown beside
  the adversarial numbers.

Not part of `lib.store.code_version()` (no cached chapter table imports it); its tables are keyed
by a hash of this module instead (`controls_version`).
"""
from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .code_identity import version
from .experiments import Experiment
from .intervals import majority_rate
from .models import Encoded
from .prompt import init_prompt
from .skill_neurons import compute_predictivity, top_per_layer

CONDITIONS = ("tuned prompt", "labels permuted", "untuned prompt")


@functools.lru_cache(maxsize=1)
def controls_version() -> str:
    """The version of the code reachable from `skill_neuron_controls` (`lib.code_identity`)."""
    return version("controls")


def permuted_labels(enc: Encoded, seed: int) -> Encoded:
    """The same examples with their labels permuted (seeded): the null of no activation-label relation."""
    return replace(enc, labels=np.random.default_rng(seed).permutation(enc.labels))


def summarise(scores: torch.Tensor, top_fraction: float) -> dict[str, float]:
    """Max predictivity, the mean over the top `top_fraction` per layer (the skill neurons), and the
    number of neurons at or above 0.7."""
    s = scores.to(torch.float64)
    top = top_per_layer(scores, fraction=top_fraction)
    return {"max predictivity": float(s.max()), "top-fraction mean": float(s[top].mean()),
            "neurons >= 0.7": int((s >= 0.7).sum())}


def skill_neuron_controls(exp: Experiment, tasks: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per task and seed: the tuned prompt's predictivity on test beside the permutation null and the
    untuned prompt, with the no-skill reference (majority rate of the test labels)."""
    tasks = tuple(tasks or exp.profile.tasks)

    def compute() -> pd.DataFrame:
        rows = []
        for task in tasks:
            train, test = exp.encoded(task, "train"), exp.encoded(task, "test")
            for seed in exp.profile.seeds:
                prompt = exp.prompt(task, seed)
                cfg = exp.tune_config(seed, task)
                start = init_prompt(exp.backbone, cfg.prompt_length, cfg.init, seed)
                measured = {
                    "tuned prompt": exp.neuron_scores(task, seed),
                    "labels permuted": compute_predictivity(exp.backbone, prompt, exp.task(task), train,
                                                            permuted_labels(test, seed), progress=False).per_neuron(),
                    "untuned prompt": compute_predictivity(exp.backbone, start, exp.task(task), train, test,
                                                           progress=False).per_neuron(),
                }
                for condition, scores in measured.items():
                    rows.append({"task": task, "seed": seed, "condition": condition,
                                 **summarise(scores, exp.profile.top_fraction),
                                 "no-skill reference": majority_rate(test.labels)})
        return pd.DataFrame(rows)
    key = {"profile": exp.profile.as_dict(), "control": exp.control, "tasks": list(tasks),
           "controls": controls_version()}
    return exp.store.table("skill_neuron_controls", key, compute)


def length_only_accuracy(lengths: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of the best rule 'label = 1 iff length > t' (or its negation), in sample and leave-one-out.

    In sample: max over thresholds t and both directions. Leave-one-out: for each example i, the rule is
    chosen on the other examples and applied to i, which removes the optimism of choosing t on the data.
    """
    x, y = np.asarray(lengths, dtype=float), np.asarray(labels, dtype=int)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need equal 1-d lengths and labels, at least 3; got {x.shape} and {y.shape}")

    def best(idx: np.ndarray) -> tuple[float, float, bool]:
        values = np.unique(x[idx])  # thresholds: midpoints between the lengths seen (nothing of a held-out one)
        cuts = np.r_[values[0] - 1, (values[:-1] + values[1:]) / 2]
        acc = np.array([((x[idx] > t) == y[idx]).mean() for t in cuts])
        a, b = acc.max(), (1 - acc).max()
        return (float(a), float(cuts[acc.argmax()]), False) if a >= b else (float(b), float(cuts[acc.argmin()]), True)

    everything = np.arange(len(x))
    acc, threshold, flipped = best(everything)
    loo = []
    for i in everything:
        _, t, flip = best(np.delete(everything, i))
        loo.append(((x[i] > t) == y[i]) != flip)
    return {"in-sample accuracy": acc, "leave-one-out accuracy": float(np.mean(loo)), "threshold": threshold,
            "longer means label 0": flipped, "majority rate": majority_rate(y), "n": int(len(x))}


def premise_length_artefact(exp: Experiment, adversarial_task: str = "adv_rte") -> dict[str, float]:
    """`length_only_accuracy` of the premise's word count on an adversarial set (default AdvGLUE RTE)."""
    df = exp.splits(adversarial_task)["test"]
    return length_only_accuracy(df["text_a"].str.split().str.len().to_numpy(), df["label"].to_numpy())


def controls_sentence(table: pd.DataFrame, learned: set[str] | None = None) -> str:
    """What the controls table shows, per task: how far the tuned prompt's skill neurons (top-fraction
    mean predictivity) lie above the label-permutation null and the untuned prompt, seed by seed.

    A task is said to have neurons 'above both controls' only when every seed's margin is positive;
    tasks not in `learned` are named as untestable instead of described.
    """
    parts = []
    for task, g in table.groupby("task", sort=False):
        if learned is not None and task not in learned:
            parts.append(f"{task}: untestable (the prompt did not learn the task)")
            continue
        wide = g.pivot(index="seed", columns="condition", values="top-fraction mean")
        over_null = wide["tuned prompt"] - wide["labels permuted"]
        over_untuned = wide["tuned prompt"] - wide["untuned prompt"]
        both = bool((over_null > 0).all() and (over_untuned > 0).all())
        parts.append(f"{task}: {'above both controls in every seed' if both else 'not above both controls in every seed'} "
                     f"(margin over the null {over_null.min():+.3f} to {over_null.max():+.3f}, over the untuned "
                     f"prompt {over_untuned.min():+.3f} to {over_untuned.max():+.3f})")
    return "; ".join(parts) + "."
