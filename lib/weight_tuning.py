"""Tuning methods that change the backbone's weights, to set beside prompt tuning.

Wang et al. (2022, "Finding Skill Neurons") show that skill neurons found with prompt tuning also
matter when the backbone is tuned with adapters or BitFit; PANDA / Su et al. compare with full
model tuning. Four methods (`METHODS`):
- 'bitfit': only the bias terms train (Ben Zaken et al. 2022), LayerNorm's included. T5 has no
  bias terms at all, so it has no BitFit (a ConfigError says so);
- 'adapter': bottleneck adapters in series after the sublayers' output projections (`lib.adapters`:
  Houlsby placement after attention and FFN, or Pfeiffer after the FFN only; reduction factor 16), W_up
  zero at the start; the adapters and the LayerNorms train. This is the adapter arm of Skill-Neuron's
  claim: the adapters read the FFN neurons' output directly, and every FFN weight stays frozen;
- 'lora': low-rank adapters on the attention query/value projections, injected in place with
  PEFT's `inject_adapter_in_model` (no PeftModel wrapper, so `lib.hooks.ffn_sites` still finds the
  FFN modules by type); only the adapters train. A different mechanism (in parallel to attention, not
  in series after the FFN), kept as an extra arm and labelled LoRA;
- 'full': every parameter trains (model tuning), embeddings, FFN and head included (so for
  masked LMs the `<mask>` embedding at the label slot trains too).

The label is read as in prompt tuning, with no soft prompt (`slot_prompt`): masked LMs get a one-row
prompt that `Backbone.prompt_inputs` replaces by the `<mask>` embedding, T5 an empty one. Runs
use prompt tuning's loop (`lib.training_loop`): the batch order is a pure function of (seed, step),
the model stays in eval mode (no dropout), every evaluation writes an atomic, resumable checkpoint,
so a run interrupted and resumed reaches bitwise the weights of an uninterrupted one. The input backbone is never
changed: the tuned model is a deep copy, returned as a new `Backbone`. A finished folder holds
config.json (the run signature), metrics.json and `weights.safetensors` (the best-on-dev trained
tensors only, by parameter name: small for bitfit and lora); `load_tuned` rebuilds the model.
metrics.json carries the weights' checksum (`weights_digest`), checked whenever a finished run is loaded.
A run killed after early stopping decided to stop stops again at once when resumed.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from .errors import CheckpointError, ConfigError, unknown
from .evaluation import EvalResult, evaluate
from .io import read_json, read_tensors, write_json, write_tensors
from .models import Backbone, Encoded
from .tasks import Task, get_task
from .training_loop import LoopConfig, RunFolder, Trainee, encode_splits, run_training
from .tuning import TuneConfig, data_digest
from .validation import check_fields, check_overrides

METHODS = ("bitfit", "adapter", "lora", "full")
DEFAULT_LR = {"bitfit": 1e-3, "adapter": 1e-3, "lora": 1e-3, "full": 2e-5}
WEIGHTS_FILE = "weights.safetensors"
RUN_FILES = ("metrics.json", "state.pt", WEIGHTS_FILE, "config.json")  # what a fresh start in a run's folder removes


@dataclass(frozen=True)
class WeightTuneConfig:
    """Hyper-parameters of one weight-tuning run (`for_method` fills in the method's usual lr)."""

    method: str  # one of METHODS
    lr: float  # AdamW learning rate, constant (DEFAULT_LR per method)
    weight_decay: float = 0.0
    batch_size: int = 16
    max_steps: int = 200
    eval_every: int = 50  # steps between dev evaluations (= checkpoints)
    eval_batch_size: int = 64
    max_length: int = 128  # tokens of text, the label slot not counted
    seed: int = 0  # batch order and the LoRA initialisation
    grad_clip: float | None = 1.0  # max global gradient norm over the trained parameters
    lora_rank: int = 8  # lora only: rank r of the adapters
    lora_alpha: int = 16  # lora only: scale alpha (the update is alpha / r * B A)
    adapter_placement: str = "houlsby"  # adapter only: 'houlsby' (attention and FFN) or 'pfeiffer' (FFN)
    adapter_reduction: int = 16  # adapter only: bottleneck width = hidden width / reduction
    patience: int | None = None  # stop after this many evaluations without a better dev accuracy
    device: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.method not in METHODS:
            raise unknown("weight-tuning method", self.method, METHODS)
        for name in ("batch_size", "max_steps", "eval_every", "eval_batch_size", "max_length", "lora_rank",
                     "lora_alpha", "adapter_reduction"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        for name in ("weight_decay", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 evaluation or None, got {self.patience}")
        TuneConfig(device=self.device)  # the same device check as prompt tuning
        from .adapters import PLACEMENTS

        if self.adapter_placement not in PLACEMENTS:
            raise unknown("adapter placement", self.adapter_placement, PLACEMENTS)

    @classmethod
    def for_method(cls, method: str, **kw: Any) -> "WeightTuneConfig":
        """A config for `method` with its usual learning rate (`DEFAULT_LR`) unless `lr` is given."""
        if method not in METHODS:
            raise unknown("weight-tuning method", method, METHODS)
        return cls(method=method, **{"lr": DEFAULT_LR[method], **kw})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WeightTuneConfig":
        kw = check_overrides(cls, d)
        if "method" not in kw:
            raise ConfigError(f"WeightTuneConfig needs a method; valid: {', '.join(METHODS)}")
        return cls.for_method(**kw)

    def resolved_device(self) -> torch.device:
        return TuneConfig(device=self.device).resolved_device()


@dataclass
class WeightTuneResult:
    backbone: Backbone  # a new Backbone holding the tuned copy (best on dev), frozen
    best_dev_accuracy: float
    best_step: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    stopped_early: bool = False

    def metrics(self) -> dict[str, Any]:
        return {"best_dev_accuracy": self.best_dev_accuracy, "best_step": self.best_step, "steps": self.steps,
                "history": self.history, "seconds": self.seconds, "stopped_early": self.stopped_early,
                "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters}


def slot_prompt(backbone: Backbone) -> torch.Tensor:
    """The empty 'prompt' of weight tuning: the `<mask>` slot alone for masked LMs (its row is replaced
    by the `<mask>` embedding at every forward pass, so its values do not matter), no rows for T5."""
    return torch.zeros(backbone.rules.slot_rows, backbone.embed_dim)


def evaluate_tuned(backbone: Backbone, task: str | Task, data: pd.DataFrame | Encoded, **kw: Any) -> EvalResult:
    """`lib.evaluation.evaluate` of a weight-tuned backbone (with `slot_prompt`)."""
    return evaluate(backbone, slot_prompt(backbone), task, data, **kw)


def weight_signature(cfg: WeightTuneConfig, backbone: Backbone, task: Task, train: pd.DataFrame | Encoded,
                     dev: pd.DataFrame | Encoded) -> dict[str, Any]:
    """What determines a run's result (as `lib.tuning.run_signature`): config.json and the cache key.
    Device and evaluation batch size are left out, and a method's own settings (LoRA's, the adapters')
    unless it is that method, so that adding a method's settings changes no other method's key."""
    sig = asdict(cfg)
    own = {"lora": ("lora_rank", "lora_alpha"), "adapter": ("adapter_placement", "adapter_reduction")}
    for name in ("device", "eval_batch_size") + tuple(n for m, names in own.items() if m != cfg.method for n in names):
        sig.pop(name)
    out: dict[str, Any] = {"config": sig, "backbone": backbone.name, "head": backbone.head, "task": task.name,
                           "n_train": len(train), "n_dev": len(dev),
                           "data": {"train": data_digest(train), "dev": data_digest(dev)}}
    if backbone.readout:
        out["readout"] = backbone.readout
    return out


def prepare(backbone: Backbone, cfg: WeightTuneConfig) -> tuple[Backbone, dict[str, nn.Parameter]]:
    """A deep copy of `backbone` set up for `cfg.method` (LoRA injected, seeded), and the parameters
    it trains, by name, with requires_grad on. The input backbone is not touched."""
    model = copy.deepcopy(backbone.model)
    if cfg.method == "lora":
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise ConfigError("method 'lora' needs PEFT, a dependency of this project: pip install peft") from None
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                          target_modules=list(backbone.rules.lora_targets), lora_dropout=0.0)
        device = backbone.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)  # PEFT draws lora_A from the global RNG: make it the seed's, restore after
            inject_adapter_in_model(lora, model)
    elif cfg.method == "adapter":
        from .adapters import add_adapters

        add_adapters(model, backbone.rules, cfg.adapter_placement, cfg.adapter_reduction, seed=cfg.seed)
    # Backbone() puts every module in eval mode and freezes every parameter (PEFT leaves its new modules
    # in training mode); then only the method's parameters are unfrozen
    tuned = Backbone(model, backbone.tokenizer, backbone.head, f"{backbone.name}+{cfg.method}",
                     verbalizer_space=backbone.verbalizer_space, prompt_positions=backbone.prompt_positions)
    named = dict(tuned.model.named_parameters())  # tied parameters appear once
    if cfg.method == "bitfit":
        params = {n: p for n, p in named.items() if n.rsplit(".", 1)[-1] == "bias"}
    elif cfg.method == "lora":
        params = {n: p for n, p in named.items() if "lora_" in n}
    elif cfg.method == "adapter":
        from .adapters import adapter_parameters

        params = dict(adapter_parameters(tuned.model))
    else:
        params = named
    if not params:
        raise ConfigError(f"backbone {backbone.name!r} has no parameters for method {cfg.method!r}"
                          + (" (T5 has no bias terms); use lora or full" if cfg.method == "bitfit" else ""))
    for p in params.values():
        p.requires_grad_(True)
    return tuned, params


def _snapshot(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in params.items()}


def _assign(params: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor], where: object) -> None:
    if set(tensors) != set(params):
        odd = sorted(set(tensors) ^ set(params))[:3]
        raise CheckpointError(f"{where} holds other tensors than the method trains (e.g. {odd}); "
                              f"it was not written for this backbone and configuration")
    with torch.no_grad():
        for n, p in params.items():
            if tensors[n].shape != p.shape:
                raise CheckpointError(f"{where}: {n} has shape {tuple(tensors[n].shape)}, expected {tuple(p.shape)}")
            p.copy_(tensors[n].to(device=p.device, dtype=p.dtype))


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the trained tensors (names and float32 bytes, in name order): the checksum a finished
    run's metrics.json carries, so that a weights file replaced by another run's is never served."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rebuild(backbone: Backbone, cfg: WeightTuneConfig, out: Path) -> tuple[Backbone, dict[str, nn.Parameter]]:
    tuned, params = prepare(backbone, cfg)
    tensors = read_tensors(out / WEIGHTS_FILE)
    saved = read_json(out / "metrics.json").get("weights_sha256")  # runs finished before the checksum have none
    if saved is not None and saved != weights_digest(tensors):
        raise CheckpointError(f"finished run in {out}: {WEIGHTS_FILE} is not the file this run saved (its checksum "
                              f"differs from metrics.json's); remove the folder {out} and run again")
    _assign(params, tensors, out / WEIGHTS_FILE)
    tuned.model.requires_grad_(False)
    return tuned, params


def load_tuned(backbone: Backbone, out_dir: str | Path) -> Backbone:
    """The tuned backbone of a finished run in `out_dir`, rebuilt on a copy of `backbone` (the one it
    was tuned from): LoRA injected as in the run, then the saved tensors loaded."""
    out = Path(out_dir)
    if not read_json(out / "metrics.json").get("finished"):
        raise CheckpointError(f"the run in {out} has not finished; call tune_weights with its arguments to resume it")
    saved = read_json(out / "config.json")
    for key, have in (("backbone", backbone.name), ("head", backbone.head), ("readout", backbone.readout)):
        if saved.get(key, {} if key == "readout" else None) != have:
            raise CheckpointError(f"{out} was tuned from a backbone with {key} {saved.get(key)!r}, not {have!r}; "
                                  f"load it with that backbone")
    return _rebuild(backbone, WeightTuneConfig.from_dict(saved["config"]), out)[0]


def tune_weights(backbone: Backbone, task: str | Task, train: pd.DataFrame | Encoded, dev: pd.DataFrame | Encoded,
                 cfg: WeightTuneConfig, out_dir: str | Path | None = None, *, resume: bool = True,
                 progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> WeightTuneResult:
    """Tune a copy of `backbone`'s weights with `cfg.method` for `task`; return the best-on-dev copy.

    With `out_dir`, each evaluation writes a resumable checkpoint (state.pt), and the end writes the
    best trained tensors (weights.safetensors), config.json and metrics.json, all atomically; calling
    again with the same arguments resumes, or loads a finished run without tuning. `on_step(step, loss)`
    runs after each optimiser step. A non-finite loss or weight raises `DivergenceError` before that
    step is kept.
    """
    task = get_task(task)
    device = cfg.resolved_device()
    signature = weight_signature(cfg, backbone, task, train, dev)
    folder = RunFolder(Path(out_dir), signature, RUN_FILES, resume) if out_dir is not None else None
    m = folder.finished_metrics() if folder is not None else None
    if m is not None:  # a finished run: rebuilt from its weights, not tuned again
        tuned, params = _rebuild(backbone, cfg, folder.path)
        return WeightTuneResult(tuned.to(device), m["best_dev_accuracy"], m["best_step"], m["steps"], m["history"],
                                m["seconds"], _count(params), _count(tuned.model.parameters()), m["stopped_early"])

    train_enc, dev_enc = encode_splits(backbone, task, train, dev, cfg.max_length)
    tuned, params = prepare(backbone, cfg)
    tuned.to(device)
    slot = slot_prompt(tuned)
    tuned.check_prompt(slot, cfg.max_length)
    verbalizer = tuned.task_verbalizer_ids(task)

    def loss(idx: list[int]) -> torch.Tensor:
        batch = tuned.collate(train_enc, idx)
        logits = tuned.label_logits(slot, batch, verbalizer)
        return torch.nn.functional.cross_entropy(logits.float(), batch.labels.to(device))

    trainee = Trainee(
        params=tuple(params.values()), n_train=len(train_enc), loss=loss,
        evaluate=lambda: evaluate(tuned, slot, task, dev_enc, batch_size=cfg.eval_batch_size, max_length=cfg.max_length),
        snapshot=lambda: _snapshot(params), restore=lambda values, where: _assign(params, values, where),
        label=f"{cfg.method} {task.name}", run=f"{cfg.method} tuning {task.name!r} seed {cfg.seed}", kind="weights",
        keys=("best", "weights"))
    reached = run_training(trainee, LoopConfig.of(cfg), folder, progress=progress, on_step=on_step)
    _assign(params, reached.best, "the best state")
    tuned.model.requires_grad_(False)
    result = WeightTuneResult(tuned, reached.best_accuracy, reached.best_step, reached.steps, reached.history,
                              reached.seconds, _count(params), _count(tuned.model.parameters()), reached.stopped_early)
    if folder is not None:
        write_tensors(folder.path / WEIGHTS_FILE, reached.best, {"task": task.name, "backbone": backbone.name,
                                                                 "method": cfg.method})
        write_json(folder.path / "metrics.json", {**result.metrics(), "finished": True, "signature": signature,
                                                  "weights_sha256": weights_digest(reached.best)})
    return result


def _count(params: Any) -> int:
    return sum(p.numel() for p in (params.values() if isinstance(params, dict) else params))


__all__ = ["METHODS", "DEFAULT_LR", "WeightTuneConfig", "WeightTuneResult", "tune_weights", "load_tuned",
           "slot_prompt", "evaluate_tuned", "weight_signature", "prepare"]
