"""Prompt tuning on a frozen backbone, resumable and bitwise reproducible on CPU.

The loop is `lib.training_loop`'s, the one weight tuning uses: the batch order is a pure function of
(seed, step), and the checkpoint holds the prompt, the optimiser and scheduler states and the
early-stopping counters, so a run killed at any point and resumed from its last checkpoint reaches
exactly the prompt an uninterrupted run reaches (also a run killed after early stopping decided to
stop: the resumed run stops at once). This module supplies what is the prompt's own: the
configuration and run signature, the prompt and its loss (PANDA's distillation term included), and
the finished files (prompt.safetensors, metrics.json with the prompt's checksum).

Batches are length-grouped by default (`batch_order='length_grouped'`, as HF Trainer's
`group_by_length`): a batch is padded to its longest example, so drawing examples of similar length
together removes most padding (45 % of SST-2's training positions with random batches). The
grouping is still a pure, seeded function of (seed, step). Training steps compute the last encoder
layer at the `<mask>` slot only (`last_layer='slot'`, masked LMs and tied encoders): the label is read
there alone, so the other positions' last layer is work without effect (1/L of every step).
Prompts tuned before either option existed (random batches, every position) keep their keys.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .batching import GROUP_BATCHES, batch_indices, grouped_epoch, padding_share
from .code_identity import version
from .errors import CheckpointError, ConfigError, unknown
from .evaluation import evaluate
from .io import write_json
from .models import Backbone, Encoded
from .prompt import INITS, init_prompt, load_prompt, save_prompt
from .tasks import Task, get_task
from .training_loop import LoopConfig, RunFolder, Trainee, encode_splits, run_training, stop_early
from .validation import check_fields, check_overrides

SCHEDULES = ("constant", "warmup_constant", "warmup_linear")
PRECISIONS = ("auto", "fp32", "bf16")
BATCH_ORDERS = ("length_grouped", "random")
LAST_LAYERS = ("slot", "all")
# Upper bounds that no run of this project comes near; beyond them a typo (10**12) fails at once, not
# after loading a model or allocating memory.
MAX_BATCH = 1 << 16
MAX_LENGTH = 1 << 16
RUN_FILES = ("metrics.json", "state.pt", "config.json")  # what a fresh start in a run's folder removes


@dataclass(frozen=True)
class TuneConfig:
    """Hyper-parameters of one prompt-tuning run (defaults: Robust-Neurons' RoBERTa set-up)."""

    prompt_length: int = 100
    init: str = "vocab"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    max_steps: int = 1000
    max_epochs: float | None = None  # if set, the budget is ceil(max_epochs * n_train / batch_size) steps
    schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_batch_size: int = 64
    patience: int | None = None
    max_length: int = 128
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    batch_order: str = "length_grouped"  # or 'random' (every prompt tuned before the option existed)
    last_layer: str = "slot"  # training steps compute the last layer at the mask slot only; 'all': every position

    def budgeted(self, n_train: int) -> "TuneConfig":
        """With `max_epochs`, the step budget of an epoch-based run (the references train 76 / 200
        epochs with early stopping on dev): max_steps = ceil(max_epochs * n_train / batch_size)."""
        if self.max_epochs is None:
            return self
        return replace(self, max_steps=max(1, math.ceil(self.max_epochs * n_train / self.batch_size)))

    def __post_init__(self) -> None:
        check_fields(self)  # types first (see lib.validation): no string, bool or non-finite number gets past
        if self.init not in INITS:
            raise unknown("prompt init", self.init, INITS)
        if self.schedule not in SCHEDULES:
            raise unknown("schedule", self.schedule, SCHEDULES)
        if self.precision not in PRECISIONS:
            raise unknown("precision", self.precision, PRECISIONS)
        if self.batch_order not in BATCH_ORDERS:
            raise unknown("batch order", self.batch_order, BATCH_ORDERS)
        if self.last_layer not in LAST_LAYERS:
            raise unknown("last_layer", self.last_layer, LAST_LAYERS)
        for name in ("prompt_length", "batch_size", "max_steps", "eval_every", "eval_batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, limit in (("batch_size", MAX_BATCH), ("eval_batch_size", MAX_BATCH), ("max_length", MAX_LENGTH),
                            ("prompt_length", MAX_LENGTH)):
            if getattr(self, name) > limit:
                raise ConfigError(f"{name} must be at most {limit:,}, got {getattr(self, name):,}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        for name in ("weight_decay", "warmup_steps", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.schedule != "constant" and self.warmup_steps == 0:
            raise ConfigError(f"schedule {self.schedule!r} needs warmup_steps > 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise ConfigError(f"max_epochs must be positive or None, got {self.max_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 evaluation or None, got {self.patience}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(f"device {self.device!r} is not a torch device; valid: auto, cpu, cuda, "
                                  f"cuda:<index>, mps") from None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TuneConfig":
        return cls(**check_overrides(cls, d))

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked, but no CUDA device is available here; "
                              f"use device='auto' or 'cpu'")
        return device

    def use_bf16(self, device: torch.device) -> bool:
        if self.precision == "auto":
            return device.type == "cuda"
        return self.precision == "bf16"


@dataclass
class TuneResult:
    prompt: torch.Tensor  # best-on-dev prompt
    best_dev_accuracy: float
    best_step: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        return {"best_dev_accuracy": self.best_dev_accuracy, "best_step": self.best_step, "steps": self.steps,
                "stopped_early": self.stopped_early, "seconds": self.seconds, "history": self.history}


def lr_lambda(cfg: TuneConfig) -> Callable[[int], float]:
    """Multiplier of the base learning rate at a step (picklable-free: rebuilt on resume)."""
    def f(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "warmup_constant":
            return 1.0
        rest = max(1, cfg.max_steps - cfg.warmup_steps)
        return max(0.0, 1.0 - (step - cfg.warmup_steps) / rest)
    return f


def training_lengths(cfg: "TuneConfig", data: Encoded) -> tuple[int, ...] | None:
    """What `batch_indices` groups by: the examples' token counts with length-grouped batches, else None."""
    return tuple(len(x) for x in data.input_ids) if cfg.batch_order == "length_grouped" else None


@functools.lru_cache(maxsize=1)
def prompt_code_version() -> str:
    """The version of the code reachable from `tune_prompt` (`lib.code_identity.version`): the part of a
    run signature that says which code produced a prompt, so an edit of the loop, forward pass,
    initialisation or dev evaluation tunes new prompts instead of silently reusing (or silently differing
    from) committed ones."""
    return version("prompts")


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class DataDigest:
    """A training or development set known only by its size and content hash (`data_digest`), as recorded
    beside committed results: all a finished run's signature needs where the data themselves are absent."""

    n: int
    digest: str

    def __len__(self) -> int:
        return self.n


def data_digest(data: pd.DataFrame | Encoded | DataDigest) -> str:
    """Hash of a training or development set's content (raw rows, or token ids and labels)."""
    from .store import data_fingerprint

    if isinstance(data, DataDigest):
        return data.digest
    if isinstance(data, pd.DataFrame):
        return data_fingerprint(data)
    h = hashlib.sha256(json.dumps([data.input_ids, data.token_type_ids]).encode())
    h.update(np.asarray(data.labels).tobytes())
    return h.hexdigest()[:16]


def run_signature(cfg: TuneConfig, backbone: Backbone, task: Task, train: pd.DataFrame | Encoded,
                  dev: pd.DataFrame | Encoded, *, source_prompt: torch.Tensor | None = None,
                  teacher_prompt: torch.Tensor | None = None, distill_beta: float = 0.0) -> dict[str, Any]:
    """Everything that determines a tuning run's result: its checkpoint fingerprint and cache key.

    Settings that cannot change the prompt (device, evaluation batch size) are left out; the data
    enter by content hash, so the same configuration on other data is another run. Length-grouped
    runs also carry the version of the code that tunes them (`prompt_code_version`).
    """
    sig = asdict(cfg)
    sig.pop("device")
    sig.pop("eval_batch_size")
    if sig["max_epochs"] is None:  # options added later enter only when used: older prompts keep their keys
        sig.pop("max_epochs")
    legacy = cfg.batch_order == "random" and cfg.last_layer == "all"  # how every prompt before the options was tuned
    if sig["batch_order"] == "random":  # options added later enter only when they differ from the old behaviour
        sig.pop("batch_order")
    if sig["last_layer"] == "all":
        sig.pop("last_layer")
    out: dict[str, Any] = {"config": sig, "backbone": backbone.name, "head": backbone.head, "task": task.name,
                           "n_train": len(train), "n_dev": len(dev),
                           "data": {"train": data_digest(train), "dev": data_digest(dev)}}
    if backbone.readout:
        out["readout"] = backbone.readout
    if source_prompt is not None:
        out["source_prompt"] = _tensor_digest(source_prompt)
    if teacher_prompt is not None:
        out["distill"] = {"beta": distill_beta, "teacher_sha256": _tensor_digest(teacher_prompt)}
    if not legacy:
        out["code"] = prompt_code_version()
    return out


def tune_prompt(backbone: Backbone, task: str | Task, train: pd.DataFrame | Encoded, dev: pd.DataFrame | Encoded,
                cfg: TuneConfig = TuneConfig(), out_dir: str | Path | None = None, *,
                source_prompt: torch.Tensor | str | Path | None = None, resume: bool = True,
                teacher_prompt: torch.Tensor | None = None, distill_beta: float = 0.0,
                progress: bool = True,
                on_step: Callable[[int, float], None] | None = None) -> TuneResult:
    """Tune a soft prompt for `task` and return the best-on-dev prompt.

    With `out_dir`, every evaluation writes a resumable checkpoint (state.pt) and the best prompt
    (prompt.safetensors), config.json and metrics.json, all atomically; calling again with the
    same arguments resumes (or returns at once if the run had finished). `on_step(step, loss)`
    is called after each optimiser step (used by tests to simulate an interruption).

    A non-finite loss or prompt stops the run with a `DivergenceError` before that step is kept:
    nothing non-finite is ever saved, and a run is marked finished only with a finite prompt.

    PANDA (Zhong et al. 2022): with `teacher_prompt`, the loss becomes cross-entropy +
    `distill_beta` * MSE(student verbalizer logits, teacher logits), the teacher being the same
    frozen backbone with the (source) teacher prompt.
    """
    task = get_task(task)
    device = cfg.resolved_device()
    backbone.to(device)
    if source_prompt is not None and cfg.init != "source":
        raise ConfigError(f"source_prompt is only used with init='source' (got init={cfg.init!r}); "
                          "set TuneConfig(init='source') or leave source_prompt out")
    if isinstance(source_prompt, (str, Path)):
        source_prompt = load_prompt(source_prompt)
    for what, given in (("source_prompt", source_prompt), ("teacher_prompt", teacher_prompt)):
        if given is not None and not bool(torch.isfinite(given).all()):
            raise ConfigError(f"{what} holds non-finite values (nan or inf); a prompt must be finite")
    if isinstance(distill_beta, bool) or not isinstance(distill_beta, numbers.Real) \
            or not math.isfinite(distill_beta):
        raise ConfigError(f"distill_beta must be a finite number, got {distill_beta!r}")
    teacher = None
    if teacher_prompt is not None:
        if distill_beta < 0:
            raise ConfigError(f"distill_beta must be non-negative, got {distill_beta}")
        teacher = teacher_prompt.detach().float().to(device)
        backbone.check_prompt(teacher, cfg.max_length)
    elif distill_beta:
        raise ConfigError("distill_beta needs a teacher_prompt")
    signature = run_signature(cfg, backbone, task, train, dev, source_prompt=source_prompt,
                              teacher_prompt=teacher_prompt, distill_beta=distill_beta)
    cfg = cfg.budgeted(len(train))
    folder = RunFolder(Path(out_dir), signature, RUN_FILES, resume) if out_dir is not None else None
    if folder is not None:
        done = _finished_result(folder)
        if done is not None:
            return done

    train_enc, dev_enc = encode_splits(backbone, task, train, dev, cfg.max_length)
    verbalizer = backbone.task_verbalizer_ids(task)
    bf16 = cfg.use_bf16(device)
    prompt_init = init_prompt(backbone, cfg.prompt_length, cfg.init, cfg.seed, source_prompt)
    backbone.check_prompt(prompt_init, cfg.max_length)
    prompt = torch.nn.Parameter(prompt_init.to(device))
    slot_only = cfg.last_layer == "slot"  # dev evaluation always runs the whole model, as the reported numbers do

    def loss(idx: list[int]) -> torch.Tensor:
        batch = backbone.collate(train_enc, idx)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = backbone.label_logits(prompt, batch, verbalizer, slot_only=slot_only)
        value = torch.nn.functional.cross_entropy(logits.float(), batch.labels.to(device))
        if teacher is not None:
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                target = backbone.label_logits(teacher, batch, verbalizer, slot_only=slot_only)
            value = value + distill_beta * torch.nn.functional.mse_loss(logits.float(), target.float())
        return value

    def restore(values: torch.Tensor, where: Path) -> None:
        with torch.no_grad():
            prompt.copy_(values.to(prompt.device))

    trainee = Trainee(
        params=(prompt,), n_train=len(train_enc), loss=loss,
        evaluate=lambda: evaluate(backbone, prompt.detach(), task, dev_enc, batch_size=cfg.eval_batch_size,
                                  max_length=cfg.max_length, autocast=bf16),
        snapshot=lambda: prompt.detach().cpu().clone(), restore=restore, label=f"tune {task.name}",
        run=f"tuning {task.name!r} seed {cfg.seed}", kind="prompt", keys=("best_prompt", "prompt"),
        schedule=lr_lambda(cfg), lengths=training_lengths(cfg, train_enc),
        save_best=lambda out, best: save_prompt(out / "prompt.safetensors", best))
    reached = run_training(trainee, LoopConfig.of(cfg), folder, progress=progress, on_step=on_step)
    result = TuneResult(reached.best, reached.best_accuracy, reached.best_step, reached.steps, reached.history,
                        reached.stopped_early, reached.seconds)
    if folder is not None:
        save_prompt(folder.path / "prompt.safetensors", result.prompt, {"task": task.name, "backbone": backbone.name})
        write_json(folder.path / "metrics.json", {**result.metrics(), "finished": True, "signature": signature,
                                                  "prompt_sha256": _tensor_digest(result.prompt)})
    return result


def _finished_result(folder: RunFolder) -> TuneResult | None:
    metrics = folder.finished_metrics()
    if metrics is None:
        return None
    out = folder.path
    prompt = load_prompt(out / "prompt.safetensors")
    if not bool(torch.isfinite(prompt).all()):
        raise CheckpointError(f"finished run in {out} holds a non-finite prompt (a diverged run saved before this "
                              f"was checked); it is not a valid result: remove the folder {out} and run again")
    saved = metrics.get("prompt_sha256")  # runs finished before the checksum existed have none
    if saved is not None and saved != _tensor_digest(prompt):
        raise CheckpointError(f"finished run in {out}: prompt.safetensors is not the prompt this run saved "
                              f"(checksum {_tensor_digest(prompt)}, metrics.json says {saved}); remove the folder "
                              f"{out} and run again")
    return TuneResult(prompt, metrics["best_dev_accuracy"], metrics["best_step"],
                      metrics["steps"], metrics["history"], metrics["stopped_early"], metrics["seconds"])


# batch_indices, grouped_epoch, padding_share, GROUP_BATCHES (lib.batching) and stop_early (lib.training_loop)
# stay importable from here, where they were defined before the loop was shared
__all__ = ["TuneConfig", "TuneResult", "tune_prompt", "batch_indices", "grouped_epoch", "padding_share", "GROUP_BATCHES",
           "training_lengths", "stop_early", "prompt_code_version", "lr_lambda", "SCHEDULES", "BATCH_ORDERS"]
