"""One profile's inputs and cached core quantities: backbone, data, prompts, evaluations, neuron scores.

Notebooks open an `Experiment` and hand it to the chapter functions in `lib.chapters`; every
expensive step is cached in a `lib.store.ResultsStore` under `results/<profile>/<main|control>`:
prompt-tuning runs in folders keyed by their signature (configuration and data), neuron scores
keyed by configuration and code. A notebook re-executed with the same profile costs seconds, an
interrupted run resumes where it stopped, and a changed setting computes a new result beside the
old one instead of failing or reusing a stale one.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from .data import DataConfig, load_splits
from .evaluation import EvalResult, evaluate
from .models import Backbone, Encoded, load_backbone, randomized_copy
from .paths import from_repo
from .profiles import Profile, get_profile
from .progress import report
from .skill_neurons import aggregate_seeds, compute_predictivity
from .store import ResultsStore, fingerprint
from .tasks import Task, get_task
from .tuning import TuneConfig, TuneResult, run_signature, tune_prompt

SYNTHETIC_TASKS = ("synthetic", "synthetic_pair", "synthetic_adv")


class Experiment:
    """Cached access to a profile's backbone, data, prompts, evaluations and neuron scores.

    `control=True` gives the random-initialisation control: the same pipeline on a randomly
    initialised copy of the backbone (seeded), with its own results folder. `reuse` names other
    results folders (e.g. the committed `results/`) whose matching entries are read, never written.
    Relative paths are taken from the repository root, not the working directory.
    """

    def __init__(self, profile: str | Profile, results_dir: str | Path = "results", *, control: bool = False,
                 progress: bool = True, reuse: Sequence[str | Path] = ()) -> None:
        self.profile = get_profile(profile)
        self.control = control
        self.results_dir = from_repo(results_dir)
        part = "control" if control else "main"
        self.shared = self.results_dir / self.profile.name
        self.root = self.shared / part
        self.store = ResultsStore(self.root, [from_repo(r) / self.profile.name / part for r in reuse])
        self.reuse = tuple(from_repo(r) for r in reuse)
        self.progress = progress
        self._splits: dict[str, dict[str, pd.DataFrame]] = {}
        self._encoded: dict[tuple[str, str], Encoded] = {}

    # --- inputs -------------------------------------------------------------------------------
    @property
    def data_config(self) -> DataConfig:
        if self.profile.synthetic:
            return DataConfig(data_root=str(self.shared / "data"), source="local", seed=self.profile.data.seed)
        cfg = self.profile.data
        if cfg.data_root is not None and not Path(cfg.data_root).is_absolute():
            cfg = dataclasses.replace(cfg, data_root=str(from_repo(cfg.data_root)))
        return cfg

    @cached_property
    def backbone(self) -> Backbone:
        name = self.profile.model
        if name.startswith("tiny-"):
            from .tiny import build_tiny_backbone  # the test bed is imported only for the smoke profile

            path = self.shared / "models" / name
            if not (path / "config.json").is_file():
                build_tiny_backbone(name.removeprefix("tiny-"), path)
            backbone = load_backbone(str(path))
            backbone.name = name  # keys and messages name the profile's model, not the folder it sits in
        else:
            backbone = load_backbone(name)
        if self.control:
            backbone = randomized_copy(backbone, seed=1000 + self.profile.control_seeds[0])
        return backbone

    def task(self, name: str) -> Task:
        if self.profile.synthetic and name in SYNTHETIC_TASKS:
            from .tiny import synthetic_task

            return synthetic_task(self.shared / "data", name=name, pair=name == "synthetic_pair", n_train=400,
                                  n_test=200, seed={"synthetic": 0, "synthetic_pair": 1, "synthetic_adv": 2}[name],
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

    # --- prompt tuning ------------------------------------------------------------------------
    def tune_config(self, seed: int) -> TuneConfig:
        return dataclasses.replace(self.profile.tune, seed=seed)

    def run_signature(self, task: str, seed: int) -> dict[str, Any]:
        """What the prompt of (task, seed) depends on: its cache key (see `lib.tuning.run_signature`)."""
        sp = self.splits(task)
        return run_signature(self.tune_config(seed), self.backbone, self.task(task), sp["train"], sp["dev"])

    def prompt_dir(self, task: str, seed: int) -> Path:
        return self.store.run_dir(Path("prompts") / task / f"seed{seed}", self.run_signature(task, seed))

    def tune(self, task: str, seed: int) -> TuneResult:
        """Tune (or load, or resume) the prompt of one task and seed."""
        sp = self.splits(task)
        return tune_prompt(self.backbone, self.task(task), sp["train"], sp["dev"], self.tune_config(seed),
                           self.prompt_dir(task, seed), progress=self.progress)

    def prompt(self, task: str, seed: int) -> torch.Tensor:
        return self.tune(task, seed).prompt

    def evaluate(self, prompt: torch.Tensor, task: str, split: str = "test") -> EvalResult:
        return evaluate(self.backbone, prompt, self.task(task), self.encoded(task, split),
                        max_length=self.profile.tune.max_length)

    # --- skill neurons ------------------------------------------------------------------------
    def _neuron_file(self, task: str, seed: int, eval_task: str | None = None) -> dict[str, torch.Tensor]:
        eval_task = eval_task or task
        config = {"prompt": fingerprint(self.run_signature(task, seed)), "eval_task": eval_task,
                  "threshold_examples": self.profile.threshold_examples,
                  "data": dataclasses.asdict(self.profile.data),  # as configured: the same in every clone
                  "max_length": self.profile.tune.max_length}

        def compute() -> dict[str, torch.Tensor]:
            report(f"neuron scores {task} seed {seed} on {eval_task}")
            pred = compute_predictivity(self.backbone, self.prompt(task, seed), self.task(task),
                                        self.encoded(task, "train"), self.encoded(eval_task, "test"),
                                        progress=self.progress)
            return {"scores": pred.per_neuron().to(torch.float32),
                    "baseline": pred.thresholds.mean(dim=1).to(torch.float32)}
        return self.store.tensors(Path("neurons") / task / f"seed{seed}_{eval_task}.safetensors", config, compute)

    def neuron_scores(self, task: str, seed: int, eval_task: str | None = None) -> torch.Tensor:
        """(layers, neurons) predictivity of the prompt (task, seed): thresholds on the task's train
        split, accuracies on `eval_task`'s test split (default: the task's own; or its adversarial set)."""
        return self._neuron_file(task, seed, eval_task)["scores"]

    def mean_scores(self, task: str, eval_task: str | None = None) -> torch.Tensor:
        """Predictivity averaged over the profile's seeds (the references' aggregation)."""
        return aggregate_seeds([self.neuron_scores(task, s, eval_task) for s in self.profile.seeds]).float()

    def baseline_means(self, task: str, seed: int) -> torch.Tensor:
        """(layers, neurons) mean activation over prompt positions: the 'mean' suppression baseline."""
        return self._neuron_file(task, seed)["baseline"]
