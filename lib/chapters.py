"""The tables behind the book's experiment chapters, each computed once and cached.

Each function takes an `Experiment` (profile, backbone, data, cached prompts and neuron scores)
and returns a tidy table; the expensive ones are cached by `exp.store.table` under a key made of
the profile, the function's arguments and the library's code version.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from .analyses import clean_vs_adversarial, layer_distribution, suppression_curve, task_specificity
from .errors import ConfigError
from .experiments import Experiment
from .skill_neurons import iter_activations
from .intervals import accuracy_interval, majority_rate


def cached(exp: Experiment, name: str, args: Any, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """`exp.store.table` keyed by the whole profile, the control flag and the chapter's arguments."""
    return exp.store.table(name, {"profile": exp.profile.as_dict(), "control": exp.control, "args": args}, compute)


# --- prompt tuning ----------------------------------------------------------------------------
def tuning_table(exp: Experiment, tasks: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per (task, seed): best dev accuracy, test accuracy and macro-F1, steps, seconds."""
    tasks = tuple(tasks or exp.profile.tasks)

    def compute() -> pd.DataFrame:
        rows = []
        for task in tasks:
            for seed in exp.profile.seeds:
                res = exp.tune(task, seed)
                ev = exp.evaluate(res.prompt, task)
                rows.append({"task": task, "type": exp.task(task).task_type, "seed": seed,
                             "dev_accuracy": res.best_dev_accuracy, "test_accuracy": ev.accuracy,
                             "test_macro_f1": ev.macro_f1, "n_test": ev.n, "best_step": res.best_step,
                             "tune_seconds": res.seconds})
        return pd.DataFrame(rows)
    return cached(exp, "prompt_tuning", list(tasks), compute)


def learning_curves(exp: Experiment) -> pd.DataFrame:
    rows = []
    for task in exp.profile.tasks:
        for seed in exp.profile.seeds:
            for h in exp.tune(task, seed).history:
                rows.append({"task": task, "seed": seed, **h})
    return pd.DataFrame(rows)


# --- transfer and robustness ------------------------------------------------------------------
def transfer_table(exp: Experiment) -> pd.DataFrame:
    """Zero-shot transfer: every source prompt evaluated on every target task's test set."""
    def compute() -> pd.DataFrame:
        def one_prompt(source: str, seed: int) -> pd.DataFrame:
            prompt = exp.prompt(source, seed)
            rows = []
            for target in exp.profile.tasks:
                ev = exp.evaluate(prompt, target)
                rows.append({"source": source, "target": target, "seed": seed, "accuracy": ev.accuracy,
                             "same_type": exp.task(source).task_type == exp.task(target).task_type})
            return pd.DataFrame(rows)
        return pd.concat([exp.store.part(f"{source}-seed{seed}", lambda s=source, k=seed: one_prompt(s, k))
                          for source in exp.profile.tasks for seed in exp.profile.seeds], ignore_index=True)
    return cached(exp, "transfer", "v1", compute)


def adversarial_table(exp: Experiment, n_boot: int = 2000) -> pd.DataFrame:
    """Clean and adversarial accuracy per seed, and (seed -1) the seed mean with its interval.

    The interval resamples examples, each example's correctness averaged over the seeds first
    (`lib.intervals.accuracy_interval`): the seeds are evaluated on the same examples, so pooling their
    predictions as independent draws would make it too narrow.
    """
    def compute() -> pd.DataFrame:
        rows = []
        for clean, adv in exp.profile.adversarial.items():
            for split_task in (clean, adv):
                correct = []
                for seed in exp.profile.seeds:
                    ev = exp.evaluate(exp.prompt(clean, seed), split_task)
                    correct.append((ev.predictions == ev.labels).astype(float))
                    rows.append({"task": clean, "data": "adversarial" if split_task == adv else "clean",
                                 "seed": seed, "accuracy": ev.accuracy, "n": ev.n, "lo": np.nan, "hi": np.nan})
                ci = accuracy_interval(np.stack(correct), n_boot=n_boot, seed=0)
                rows.append({"task": clean, "data": "adversarial" if split_task == adv else "clean", "seed": -1,
                             "accuracy": ci.estimate, "n": len(correct[0]), "lo": ci.lo, "hi": ci.hi,
                             "majority_baseline": majority_rate(exp.encoded(split_task, "test").labels)})
        return pd.DataFrame(rows)
    return cached(exp, "adversarial", {"n_boot": n_boot, "interval": "examples, seed-averaged"}, compute)


# --- skill neurons ----------------------------------------------------------------------------
def predictivity_table(exp: Experiment) -> pd.DataFrame:
    rows = []
    for task in exp.profile.tasks:
        for seed in exp.profile.seeds:
            s = exp.neuron_scores(task, seed)
            layers, width = s.shape
            rows.append(pd.DataFrame({"task": task, "seed": seed,
                                      "layer": np.repeat(np.arange(layers), width),
                                      "neuron": np.tile(np.arange(width), layers),
                                      "predictivity": s.flatten().numpy()}))
    return pd.concat(rows, ignore_index=True)


def layer_distribution_table(exp: Experiment) -> pd.DataFrame:
    return pd.concat([layer_distribution(exp.mean_scores(t), exp.profile.top_fraction).assign(task=t)
                      for t in exp.profile.tasks], ignore_index=True)


def suppression_table(exp: Experiment, tasks: tuple[str, ...] | None = None, mode: str = "zero") -> pd.DataFrame:
    tasks = tuple(tasks or exp.profile.tasks)

    def compute() -> pd.DataFrame:
        def one_prompt(task: str, seed: int) -> pd.DataFrame:
            baseline = exp.baseline_means(task, seed) if mode == "mean" else None
            # neurons selected by their dev-split predictivity, suppressed on the test split
            curve = suppression_curve(exp.backbone, exp.prompt(task, seed), exp.task(task),
                                      exp.encoded(task, "test"), exp.mean_scores(task, split="dev"),
                                      exp.profile.suppression_fractions, n_random=exp.profile.n_random_draws,
                                      mode=mode, baseline=baseline, seed=seed, max_length=exp.max_length(task))
            return curve.assign(task=task, seed=seed)
        # one finished piece per prompt: an interrupted computation resumes from them (`ResultsStore.part`)
        return pd.concat([exp.store.part(f"{task}-seed{seed}", lambda t=task, k=seed: one_prompt(t, k))
                          for task in tasks for seed in exp.profile.seeds], ignore_index=True)
    return cached(exp, f"suppression_{mode}", {"tasks": list(tasks), "select": "dev", "evaluate": "test"}, compute)


def specificity_table(exp: Experiment) -> pd.DataFrame:
    rows = []
    for a in exp.profile.tasks:
        for b in exp.profile.tasks:
            spec = task_specificity(exp.mean_scores(a), exp.mean_scores(b))
            rows.append({"task_a": a, "task_b": b, "mean_spearman": spec.attrs["mean"],
                         "same_type": exp.task(a).task_type == exp.task(b).task_type})
    return pd.DataFrame(rows)


def adversarial_neurons_table(exp: Experiment, fractions: tuple[float, ...] | None = None) -> pd.DataFrame:
    fractions = fractions or (exp.profile.top_fraction,)
    parts = []
    for clean, adv in exp.profile.adversarial.items():
        for seed in exp.profile.seeds:
            table = clean_vs_adversarial(exp.neuron_scores(clean, seed), exp.neuron_scores(clean, seed, adv),
                                         fractions)
            parts.append(table.assign(task=clean, adversarial=adv, seed=seed))
    if not parts:
        raise ConfigError(f"profile {exp.profile.name!r} lists no adversarial sets")
    return pd.concat(parts, ignore_index=True)


def neuron_activations(exp: Experiment, task: str, seed: int, layer: int, neuron: int, split: str = "test",
                       data_task: str | None = None) -> pd.DataFrame:
    """Per-example activation of one neuron at each prompt position, with labels (the explorer)."""
    data_task = data_task or task
    enc = exp.encoded(data_task, split)
    prompt = exp.prompt(task, seed)
    values = np.zeros((len(enc), prompt.shape[0]), dtype=np.float32)
    for idx, acts in iter_activations(exp.backbone, prompt, enc):
        values[idx] = acts[:, layer, :, neuron].float().cpu().numpy()
    frame = pd.DataFrame(values, columns=[f"p{i}" for i in range(prompt.shape[0])])
    frame["label"] = [exp.task(data_task).label_names[i] for i in enc.labels]
    return frame.melt(id_vars="label", var_name="position", value_name="activation")
