"""One profile's experiment pipeline with every expensive step cached on disk.

Notebooks stay thin by calling these methods; each one either reads its result from
`results/<profile>/...` or computes and writes it (atomically), so a notebook re-executed with
the same profile costs seconds, and an interrupted run resumes where it stopped (prompt tuning
checkpoints itself; tables and predictivities are written once complete). Cached tables carry
the profile they were made with and are recomputed when it changes.
"""
from __future__ import annotations

import hashlib
import json
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .analyses import bootstrap_ci, clean_vs_adversarial, layer_distribution, suppression_curve, task_specificity
from .data import DataConfig, load_splits
from .errors import ConfigError
from .evaluation import evaluate
from .io import read_json, read_tensors, write_json, write_tensors
from .models import Backbone, Encoded, load_backbone, randomized_copy
from .profiles import Profile, get_profile
from .skill_neurons import aggregate_seeds, compute_predictivity, iter_activations
from .tasks import Task, get_task
from .tiny import build_tiny_backbone, synthetic_task
from .tuning import TuneResult, tune_prompt

SYNTHETIC_TASKS = ("synthetic", "synthetic_pair", "synthetic_adv")


def _key(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Experiment:
    """Cached access to a profile's backbone, data, prompts, evaluations and neuron scores.

    `control=True` gives the random-initialisation control: the same pipeline on a randomly
    initialised copy of the backbone (seeded), with its own results folder.
    """

    def __init__(self, profile: str | Profile, results_dir: str | Path = "results", *, control: bool = False,
                 progress: bool = True) -> None:
        self.profile = get_profile(profile)
        self.control = control
        self.root = Path(results_dir) / self.profile.name / ("control" if control else "main")
        self.shared = Path(results_dir) / self.profile.name
        self.progress = progress
        self._splits: dict[str, dict[str, pd.DataFrame]] = {}
        self._encoded: dict[tuple[str, str], Encoded] = {}

    # --- inputs -------------------------------------------------------------------------------
    @property
    def data_config(self) -> DataConfig:
        if self.profile.synthetic:
            return DataConfig(data_root=str(self.shared / "data"), source="local", seed=self.profile.data.seed)
        return self.profile.data

    @cached_property
    def backbone(self) -> Backbone:
        name = self.profile.model
        if name.startswith("tiny-"):
            path = self.shared / "models" / name
            if not (path / "config.json").is_file():
                build_tiny_backbone(name.removeprefix("tiny-"), path)
            name = str(path)
        backbone = load_backbone(name)
        if self.control:
            backbone = randomized_copy(backbone, seed=1000 + self.profile.control_seeds[0])
        return backbone

    def task(self, name: str) -> Task:
        if self.profile.synthetic and name in SYNTHETIC_TASKS:
            root = self.shared / "data"
            return synthetic_task(root, name=name, pair=name == "synthetic_pair", n_train=400, n_test=200,
                                  seed={"synthetic": 0, "synthetic_pair": 1, "synthetic_adv": 2}[name],
                                  noise=0.25 if name == "synthetic_adv" else 0.0)
        return get_task(name)

    def splits(self, task: str) -> dict[str, pd.DataFrame]:
        if task not in self._splits:
            t = self.task(task)
            wanted = ("test",) if t.is_adversarial or task == "synthetic_adv" else ("train", "dev", "test")
            self._splits[task] = load_splits(t, self.data_config, wanted)
        return self._splits[task]

    def encoded(self, task: str, split: str) -> Encoded:
        key = (task, split)
        if key not in self._encoded:
            df = self.splits(task)[split]
            if split == "train":
                df = df.iloc[: self.profile.threshold_examples]
            self._encoded[key] = self.backbone.encode(df, self.profile.tune.max_length)
        return self._encoded[key]

    # --- cache --------------------------------------------------------------------------------
    def _table(self, name: str, key: object, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        path = self.root / "tables" / f"{name}.csv"
        meta = self.root / "tables" / f"{name}.json"
        stamp = _key({"profile": self.profile.as_dict(), "key": key})
        if path.is_file() and meta.is_file() and read_json(meta).get("key") == stamp:
            return pd.read_csv(path)
        t0 = time.perf_counter()
        table = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(path)
        write_json(meta, {"key": stamp, "seconds": round(time.perf_counter() - t0, 1), "profile": self.profile.name})
        return table

    # --- prompt tuning ------------------------------------------------------------------------
    def prompt_dir(self, task: str, seed: int) -> Path:
        return self.root / "prompts" / task / f"seed{seed}"

    def tune(self, task: str, seed: int) -> TuneResult:
        """Tune (or load, or resume) the prompt of one task and seed."""
        sp = self.splits(task)
        cfg = self.profile.tune.__class__(**{**self.profile.tune.__dict__, "seed": seed})
        return tune_prompt(self.backbone, self.task(task), sp["train"], sp["dev"], cfg, self.prompt_dir(task, seed),
                           progress=self.progress)

    def prompt(self, task: str, seed: int) -> torch.Tensor:
        return self.tune(task, seed).prompt

    def evaluate(self, prompt: torch.Tensor, task: str, split: str = "test"):
        return evaluate(self.backbone, prompt, self.task(task), self.encoded(task, split),
                        max_length=self.profile.tune.max_length)

    def tuning_table(self, tasks: tuple[str, ...] | None = None) -> pd.DataFrame:
        """One row per (task, seed): best dev accuracy, test accuracy and macro-F1, steps, seconds."""
        tasks = tasks or self.profile.tasks

        def compute() -> pd.DataFrame:
            rows = []
            for task in tasks:
                for seed in self.profile.seeds:
                    res = self.tune(task, seed)
                    ev = self.evaluate(res.prompt, task)
                    rows.append({"task": task, "type": self.task(task).task_type, "seed": seed,
                                 "dev_accuracy": res.best_dev_accuracy, "test_accuracy": ev.accuracy,
                                 "test_macro_f1": ev.macro_f1, "n_test": ev.n, "best_step": res.best_step,
                                 "tune_seconds": res.seconds})
            return pd.DataFrame(rows)
        return self._table("prompt_tuning", list(tasks), compute)

    def learning_curves(self) -> pd.DataFrame:
        rows = []
        for task in self.profile.tasks:
            for seed in self.profile.seeds:
                for h in self.tune(task, seed).history:
                    rows.append({"task": task, "seed": seed, **h})
        return pd.DataFrame(rows)

    # --- transfer and robustness --------------------------------------------------------------
    def transfer_table(self) -> pd.DataFrame:
        """Zero-shot transfer: every source prompt evaluated on every target task's test set."""
        def compute() -> pd.DataFrame:
            rows = []
            for source in self.profile.tasks:
                for seed in self.profile.seeds:
                    prompt = self.prompt(source, seed)
                    for target in self.profile.tasks:
                        ev = self.evaluate(prompt, target)
                        rows.append({"source": source, "target": target, "seed": seed, "accuracy": ev.accuracy,
                                     "same_type": self.task(source).task_type == self.task(target).task_type})
            return pd.DataFrame(rows)
        return self._table("transfer", "v1", compute)

    def adversarial_table(self, n_boot: int = 2000) -> pd.DataFrame:
        """Clean and adversarial accuracy with bootstrap intervals (pooled over seeds' predictions)."""
        def compute() -> pd.DataFrame:
            rows = []
            for clean, adv in self.profile.adversarial.items():
                for split_task in (clean, adv):
                    correct = []
                    for seed in self.profile.seeds:
                        ev = self.evaluate(self.prompt(clean, seed), split_task)
                        correct.append(ev.predictions == ev.labels)
                        rows.append({"task": clean, "data": "adversarial" if split_task == adv else "clean",
                                     "seed": seed, "accuracy": ev.accuracy, "n": ev.n, "lo": np.nan, "hi": np.nan})
                    ci = bootstrap_ci(np.concatenate(correct), n_boot=n_boot, seed=0)
                    majority = float(np.bincount(self.encoded(split_task, "test").labels).max() / ci["n"] * len(correct))
                    rows.append({"task": clean, "data": "adversarial" if split_task == adv else "clean", "seed": -1,
                                 "accuracy": ci["accuracy"], "n": ci["n"], "lo": ci["lo"], "hi": ci["hi"],
                                 "majority_baseline": majority})
            return pd.DataFrame(rows)
        return self._table("adversarial", n_boot, compute)

    # --- skill neurons ------------------------------------------------------------------------
    def neuron_scores(self, task: str, seed: int, eval_task: str | None = None) -> torch.Tensor:
        """(layers, neurons) predictivity of the prompt (task, seed): thresholds on the task's train
        split, accuracies on `eval_task`'s test split (default: the task's own; or its adversarial set)."""
        eval_task = eval_task or task
        path = self.root / "neurons" / task / f"seed{seed}_{eval_task}.safetensors"
        stamp = _key({"profile": self.profile.as_dict(), "task": task, "seed": seed, "eval": eval_task})
        if path.is_file():
            tensors = read_tensors(path)
            if "stamp" in tensors and bytes(tensors["stamp"].tolist()).decode() == stamp:
                return tensors["scores"]
        pred = compute_predictivity(self.backbone, self.prompt(task, seed), self.task(task),
                                    self.encoded(task, "train"), self.encoded(eval_task, "test"),
                                    progress=self.progress)
        scores = pred.per_neuron().to(torch.float32)
        write_tensors(path, {"scores": scores, "stamp": torch.tensor(list(stamp.encode()), dtype=torch.uint8),
                             "baseline": pred.thresholds.mean(dim=1).to(torch.float32)})
        return scores

    def mean_scores(self, task: str, eval_task: str | None = None) -> torch.Tensor:
        """Predictivity averaged over the profile's seeds (the references' aggregation)."""
        return aggregate_seeds([self.neuron_scores(task, s, eval_task) for s in self.profile.seeds]).float()

    def baseline_means(self, task: str, seed: int) -> torch.Tensor:
        """(layers, neurons) mean activation over prompt positions: the 'mean' suppression baseline."""
        self.neuron_scores(task, seed)
        return read_tensors(self.root / "neurons" / task / f"seed{seed}_{task}.safetensors")["baseline"]

    def predictivity_table(self) -> pd.DataFrame:
        rows = []
        for task in self.profile.tasks:
            for seed in self.profile.seeds:
                s = self.neuron_scores(task, seed)
                layers, width = s.shape
                rows.append(pd.DataFrame({"task": task, "seed": seed,
                                          "layer": np.repeat(np.arange(layers), width),
                                          "neuron": np.tile(np.arange(width), layers),
                                          "predictivity": s.flatten().numpy()}))
        return pd.concat(rows, ignore_index=True)

    def layer_distribution_table(self) -> pd.DataFrame:
        return pd.concat([layer_distribution(self.mean_scores(t), self.profile.top_fraction).assign(task=t)
                          for t in self.profile.tasks], ignore_index=True)

    def suppression_table(self, tasks: tuple[str, ...] | None = None, mode: str = "zero") -> pd.DataFrame:
        tasks = tasks or self.profile.tasks

        def compute() -> pd.DataFrame:
            parts = []
            for task in tasks:
                for seed in self.profile.seeds:
                    baseline = self.baseline_means(task, seed) if mode == "mean" else None
                    curve = suppression_curve(self.backbone, self.prompt(task, seed), self.task(task),
                                              self.encoded(task, "test"), self.mean_scores(task),
                                              self.profile.suppression_fractions, n_random=self.profile.n_random_draws,
                                              mode=mode, baseline=baseline, seed=seed,
                                              max_length=self.profile.tune.max_length)
                    parts.append(curve.assign(task=task, seed=seed))
            return pd.concat(parts, ignore_index=True)
        return self._table(f"suppression_{mode}", list(tasks), compute)

    def specificity_table(self) -> pd.DataFrame:
        rows = []
        for a in self.profile.tasks:
            for b in self.profile.tasks:
                spec = task_specificity(self.mean_scores(a), self.mean_scores(b))
                rows.append({"task_a": a, "task_b": b, "mean_spearman": spec.attrs["mean"],
                             "same_type": self.task(a).task_type == self.task(b).task_type})
        return pd.DataFrame(rows)

    def adversarial_neurons_table(self, fractions: tuple[float, ...] | None = None) -> pd.DataFrame:
        fractions = fractions or (self.profile.top_fraction,)
        parts = []
        for clean, adv in self.profile.adversarial.items():
            for seed in self.profile.seeds:
                table = clean_vs_adversarial(self.neuron_scores(clean, seed), self.neuron_scores(clean, seed, adv),
                                             fractions)
                parts.append(table.assign(task=clean, adversarial=adv, seed=seed))
        if not parts:
            raise ConfigError(f"profile {self.profile.name!r} lists no adversarial sets")
        return pd.concat(parts, ignore_index=True)

    def neuron_activations(self, task: str, seed: int, layer: int, neuron: int, split: str = "test",
                           data_task: str | None = None) -> pd.DataFrame:
        """Per-example activation of one neuron at each prompt position, with labels (the explorer)."""
        data_task = data_task or task
        enc = self.encoded(data_task, split)
        prompt = self.prompt(task, seed)
        values = np.zeros((len(enc), prompt.shape[0]), dtype=np.float32)
        for idx, acts in iter_activations(self.backbone, prompt, enc):
            values[idx] = acts[:, layer, :, neuron].float().cpu().numpy()
        frame = pd.DataFrame(values, columns=[f"p{i}" for i in range(prompt.shape[0])])
        frame["label"] = [self.task(data_task).label_names[i] for i in enc.labels]
        return frame.melt(id_vars="label", var_name="position", value_name="activation")


def write_run_info(path: str | Path, info: dict) -> None:
    write_json(Path(path), info)
