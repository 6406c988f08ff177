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

import numpy as np
import pandas as pd
import torch

from .data import DataConfig, balanced_sample, drop_overlap, load_splits, task_root
from .evaluation import EvalResult, evaluate
from .models import Backbone, Encoded, load_backbone, randomized_copy
from .paths import from_repo
from .profiles import Profile, get_profile
from .progress import report
from .skill_neurons import aggregate_seeds, compute_predictivity
from .errors import ConfigError
from .io import read_json, write_json
from .store import ResultsStore, fingerprint, run_finished
from .tasks import Task, get_task
from .tuning import DataDigest, TuneConfig, TuneResult, data_digest, run_signature, tune_prompt

SYNTHETIC_TASKS = ("synthetic", "synthetic_pair", "synthetic_adv")
DIGESTS = "data_digests.json"  # results/<profile>/: size and hash of each task's train and dev sets


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
        self._overlap: dict[str, dict[str, int]] = {}
        self._encoded: dict[tuple[str, str], Encoded] = {}
        self._digests: dict[str, tuple[DataDigest, DataDigest]] = {}  # hashed and recorded once per task

    # --- inputs -------------------------------------------------------------------------------
    @property
    def data_config(self) -> DataConfig:
        if self.profile.synthetic:
            return DataConfig(data_root=str(self.shared / "data"), source="local", seed=self.profile.data.seed)
        cfg = self.profile.data
        if cfg.data_root is not None and not Path(cfg.data_root).is_absolute():
            cfg = dataclasses.replace(cfg, data_root=str(from_repo(cfg.data_root)))
        return cfg

    @property
    def readout_options(self) -> dict[str, Any]:
        return {"verbalizer_space": self.profile.verbalizer_space, "prompt_positions": self.profile.prompt_positions}

    @cached_property
    def backbone(self) -> Backbone:
        name = self.profile.model
        if name.startswith("tiny-"):
            from .tiny import build_tiny_backbone  # the test bed is imported only for the smoke profile

            path = self.shared / "models" / name
            if not (path / "config.json").is_file():
                build_tiny_backbone(name.removeprefix("tiny-"), path)
            backbone = load_backbone(str(path), **self.readout_options)
            backbone.name = name  # keys and messages name the profile's model, not the folder it sits in
        else:
            backbone = load_backbone(name, **self.readout_options)
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
        """The task's splits; train and dev without the examples that share a text with its AdvGLUE set."""
        if task not in self._splits:
            t = self.task(task)
            wanted = ("test",) if t.is_adversarial or task == "synthetic_adv" else ("train", "dev", "test")
            splits = load_splits(t, self.data_config, wanted)
            if t.adversarial and not self.profile.synthetic and "train" in splits:
                adversarial = self.splits(t.adversarial)["test"]
                removed = {"adversarial": drop_overlap(adversarial, pd.concat([splits["train"], splits["dev"]]))[1]}
                for name in ("train", "dev"):
                    splits[name], removed[name] = drop_overlap(splits[name], adversarial)
                self._overlap[task] = removed
            self._splits[task] = splits
        return self._splits[task]

    def advglue_overlap(self) -> pd.DataFrame:
        """How many train/dev examples of each tuned task were removed for sharing a text with AdvGLUE."""
        rows = []
        for task in self.profile.tasks:
            self.splits(task)
            removed = self._overlap.get(task)
            if removed is not None:
                rows.append({"task": task, "adversarial set": self.task(task).adversarial,
                             "adversarial examples": len(self.splits(self.task(task).adversarial)["test"]),
                             "of them sharing a text with train/dev": removed["adversarial"],
                             "removed from train": removed["train"], "removed from dev": removed["dev"],
                             "train kept": len(self.splits(task)["train"]), "dev kept": len(self.splits(task)["dev"])})
        return pd.DataFrame(rows)

    def max_length(self, task: str) -> int:
        """Input length of a task: its tuning value; an adversarial set uses its clean task's."""
        return self.profile.tune_for(self.task(task).clean or task).max_length

    def encoded(self, task: str, split: str) -> Encoded:
        """Encoded split; 'train' is the label-balanced random threshold sample (`lib.data.balanced_sample`)."""
        key = (task, split)
        if key not in self._encoded:
            df = self.splits(task)[split]
            if split == "train":
                df = balanced_sample(df, self.profile.threshold_examples, self.profile.data.seed)
            self._encoded[key] = self.backbone.encode(df, self.max_length(task))
        return self._encoded[key]

    def tune_config(self, seed: int, task: str | None = None) -> TuneConfig:
        base = self.profile.tune_for(task) if task is not None else self.profile.tune
        return dataclasses.replace(base, seed=seed)

    # --- what the keys need of the data: their digests, recorded beside the results ---------------
    def data_here(self, task: str) -> bool:
        """Whether the task's data lie where the profile points (synthetic data always do)."""
        if self.profile.synthetic:
            return True
        t = self.task(task)
        root = task_root(t, self.data_config) if t.local is not None else None
        return root is not None and (root / t.local.files["test"]).is_file()  # type: ignore[union-attr]

    def _digest_files(self) -> list[Path]:
        return [self.shared / DIGESTS] + [r / self.profile.name / DIGESTS for r in self.reuse]

    def _recorded(self, task: str) -> dict[str, Any]:
        """What is recorded about `task`'s data under this data configuration (own folder first), or {}."""
        data = fingerprint(dataclasses.asdict(self.profile.data))
        for path in self._digest_files():
            entry = read_json(path).get(task) if path.is_file() else None
            if entry and entry.get("data") == data:
                return entry
        return {}

    def _record(self, task: str, **facts: Any) -> None:
        """Add facts about `task`'s data to `results/<profile>/data_digests.json` (written only on a change)."""
        path = self.shared / DIGESTS
        known = read_json(path) if path.is_file() else {}
        data = fingerprint(dataclasses.asdict(self.profile.data))
        old = known.get(task) if (known.get(task) or {}).get("data") == data else {}
        entry = {**(old or {}), "data": data, **facts}
        if known.get(task) != entry:
            write_json(path, {**known, task: entry})

    def recorded_digests(self, task: str) -> tuple[DataDigest, DataDigest] | None:
        """The train and dev digests recorded for `task` under this data configuration, or None."""
        entry = self._recorded(task)
        return (DataDigest(**entry["train"]), DataDigest(**entry["dev"])) if "train" in entry else None

    def train_dev(self, task: str, rows: bool = True) -> tuple[pd.DataFrame | DataDigest, pd.DataFrame | DataDigest]:
        """The train and dev sets. Where the data are absent and `rows` is False (a key or a finished run
        needs no rows), their recorded digests; whenever the data are read, their digests are recorded
        (`results/<profile>/data_digests.json`), so committed results stay readable without the data."""
        if not rows and not self.data_here(task):
            recorded = self.recorded_digests(task)
            if recorded is not None:
                return recorded
        sp = self.splits(task)
        if task not in self._digests:
            self._digests[task] = (DataDigest(len(sp["train"]), data_digest(sp["train"])),
                                   DataDigest(len(sp["dev"]), data_digest(sp["dev"])))
            self._record(task, **{name: dataclasses.asdict(d) for name, d in zip(("train", "dev"), self._digests[task])})
        return (sp["train"], sp["dev"]) if rows else self._digests[task]

    def label_counts(self, task: str, split: str = "test") -> list[int]:
        """How many examples of each label `split` holds (recorded, like the digests, for reading without data)."""
        if not self.data_here(task):
            recorded = self._recorded(task).get("labels", {}).get(split)
            if recorded is not None:
                return list(recorded)
        counts = np.bincount(self.encoded(task, split).labels, minlength=self.task(task).num_labels).tolist()
        self._record(task, labels={**self._recorded(task).get("labels", {}), split: counts})
        return counts

    # --- prompt tuning ------------------------------------------------------------------------
    def run_signature(self, task: str, seed: int) -> dict[str, Any]:
        """What the prompt of (task, seed) depends on: its cache key (see `lib.tuning.run_signature`)."""
        train, dev = self.train_dev(task, rows=False)
        return run_signature(self.tune_config(seed, task), self.backbone, self.task(task), train, dev)

    def prompt_dir(self, task: str, seed: int) -> Path:
        return self.store.run_dir(Path("prompts") / task / f"seed{seed}", self.run_signature(task, seed))

    def tune(self, task: str, seed: int) -> TuneResult:
        """Tune (or load, or resume) the prompt of one task and seed; a finished run is read without the data."""
        out = self.prompt_dir(task, seed)
        train, dev = self.train_dev(task, rows=not run_finished(out))
        return tune_prompt(self.backbone, self.task(task), train, dev, self.tune_config(seed, task), out,
                           progress=self.progress)

    def prompt(self, task: str, seed: int) -> torch.Tensor:
        return self.tune(task, seed).prompt

    def evaluate(self, prompt: torch.Tensor, task: str, split: str = "test") -> EvalResult:
        return evaluate(self.backbone, prompt, self.task(task), self.encoded(task, split),
                        max_length=self.max_length(task))

    # --- skill neurons ------------------------------------------------------------------------
    def _neuron_file(self, task: str, seed: int, eval_task: str | None = None,
                     split: str = "test") -> dict[str, torch.Tensor]:
        eval_task = eval_task or task
        if split not in ("dev", "test"):
            raise ConfigError(f"neuron scores are measured on 'dev' or 'test', got {split!r}")
        if split == "dev" and eval_task != task:
            raise ConfigError(f"{eval_task!r} has only a test split; dev scores are for the task's own data")
        config = {"prompt": fingerprint(self.run_signature(task, seed)), "eval_task": eval_task,
                  "threshold_examples": self.profile.threshold_examples, "threshold_sample": "label-balanced random",
                  "split": split,
                  "data": dataclasses.asdict(self.profile.data),  # as configured: the same in every clone
                  "max_length": self.max_length(task)}

        def compute() -> dict[str, torch.Tensor]:
            report(f"neuron scores {task} seed {seed} on {eval_task} {split}")
            pred = compute_predictivity(self.backbone, self.prompt(task, seed), self.task(task),
                                        self.encoded(task, "train"), self.encoded(eval_task, split),
                                        progress=self.progress)
            return {"scores": pred.per_neuron().to(torch.float32),
                    "baseline": pred.thresholds.mean(dim=1).to(torch.float32)}
        suffix = "" if split == "test" else f"_{split}"
        return self.store.tensors(Path("neurons") / task / f"seed{seed}_{eval_task}{suffix}.safetensors", config,
                                  compute)

    def neuron_scores(self, task: str, seed: int, eval_task: str | None = None, split: str = "test") -> torch.Tensor:
        """(layers, neurons) predictivity of the prompt (task, seed): thresholds on a label-balanced
        sample of the task's train split, accuracies on `eval_task`'s `split` (default: the task's own
        test split; or its adversarial set). Select neurons on 'dev' where they are then tested on 'test'."""
        return self._neuron_file(task, seed, eval_task, split)["scores"]

    def mean_scores(self, task: str, eval_task: str | None = None, split: str = "test") -> torch.Tensor:
        """Predictivity averaged over the profile's seeds (the references' aggregation)."""
        return aggregate_seeds([self.neuron_scores(task, s, eval_task, split) for s in self.profile.seeds]).float()

    def baseline_means(self, task: str, seed: int) -> torch.Tensor:
        """(layers, neurons) mean activation over prompt positions: the 'mean' suppression baseline."""
        return self._neuron_file(task, seed)["baseline"]
