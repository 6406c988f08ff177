"""Prompt tuning on a frozen backbone, resumable and bitwise reproducible on CPU.

The batch order is a pure function of (seed, step), and the checkpoint holds the prompt, the
optimiser and scheduler states and the early-stopping counters, so a run killed at any point
and resumed from its last checkpoint reaches exactly the prompt an uninterrupted run reaches
(also a run killed after early stopping decided to stop: the resumed run stops at once).

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
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .code_identity import version
from .errors import CheckpointError, ConfigError, DivergenceError, unknown
from .evaluation import EvalResult, evaluate
from .io import read_json, read_torch, write_json, write_torch
from .models import Backbone, Encoded
from .progress import report
from .prompt import INITS, init_prompt, load_prompt, save_prompt
from .tasks import Task, get_task
from .validation import check_fields, check_overrides

SCHEDULES = ("constant", "warmup_constant", "warmup_linear")
PRECISIONS = ("auto", "fp32", "bf16")
BATCH_ORDERS = ("length_grouped", "random")
LAST_LAYERS = ("slot", "all")
# Batches per length-sorted group: a group of GROUP_BATCHES x batch_size shuffled examples is sorted by
# length and cut into batches (HF Trainer's LengthGroupedSampler uses 50), so batches stay random draws
# of the epoch while their members have similar lengths.
GROUP_BATCHES = 50
# Upper bounds that no run of this project comes near; beyond them a typo (10**12) fails at once, not
# after loading a model or allocating memory.
MAX_BATCH = 1 << 16
MAX_LENGTH = 1 << 16


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


def batch_indices(n: int, batch_size: int, seed: int, step: int,
                  lengths: tuple[int, ...] | None = None) -> list[int]:
    """Indices of the batch at `step`: epochs are seeded permutations, a pure function of the step.

    With `lengths` (one per example), the epoch's batches are length-grouped (`grouped_epoch`);
    without, batch k of an epoch is slice k of the permutation.
    """
    per_epoch = math.ceil(n / batch_size)
    epoch, pos = divmod(step, per_epoch)
    if lengths is not None:
        if len(lengths) != n:
            raise ConfigError(f"lengths has {len(lengths)} entries for {n} examples")
        return list(grouped_epoch(tuple(lengths), batch_size, seed, epoch)[pos])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[pos * batch_size: (pos + 1) * batch_size].tolist()


@functools.lru_cache(maxsize=8)
def grouped_epoch(lengths: tuple[int, ...], batch_size: int, seed: int, epoch: int) -> tuple[tuple[int, ...], ...]:
    """The batches of one epoch, length-grouped: the epoch's seeded permutation (the one random batches
    use) is cut into groups of `GROUP_BATCHES` x batch_size examples, each group is sorted by length
    (longest first, ties in permutation order) and cut into batches, and the batches' order is shuffled
    with a second seeded permutation, so a long batch is as likely early as late. Every example appears
    once per epoch; the epoch has ceil(n / batch_size) batches, as with random batches.
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    span = GROUP_BATCHES * batch_size
    batches: list[tuple[int, ...]] = []
    for start in range(0, n, span):
        group = sorted(perm[start: start + span], key=lambda i: -lengths[i])  # stable: ties keep perm order
        batches += [tuple(group[k: k + batch_size]) for k in range(0, len(group), batch_size)]
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919_743))
    return tuple(batches[k] for k in order.tolist())


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of the token positions of `batches` that are padding, each batch padded to its longest:
    1 - sum(lengths) / sum(len(batch) * max length in batch)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if len(b))
    return 1.0 - real / padded if padded else 0.0


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
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        done = _finished_result(out, signature) if resume else None
        if done is not None:
            return done

    # tokenising is the slow part of loading a finished run, so it happens only when tuning is needed
    train_enc = backbone.encode(train, cfg.max_length) if isinstance(train, pd.DataFrame) else train
    dev_enc = backbone.encode(dev, cfg.max_length) if isinstance(dev, pd.DataFrame) else dev
    for name, enc in (("train", train_enc), ("dev", dev_enc)):
        if len(enc) == 0:
            raise ConfigError(f"the {name} set is empty")
        if enc.labels.min() < 0 or enc.labels.max() >= task.num_labels:
            raise ConfigError(f"{name} labels outside 0..{task.num_labels - 1} for task {task.name!r}")
    verbalizer = backbone.task_verbalizer_ids(task)
    bf16 = cfg.use_bf16(device)

    prompt_init = init_prompt(backbone, cfg.prompt_length, cfg.init, cfg.seed, source_prompt)
    backbone.check_prompt(prompt_init, cfg.max_length)
    prompt = torch.nn.Parameter(prompt_init.to(device))
    optimizer = torch.optim.AdamW([prompt], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    state = {"step": 0, "best_acc": -1.0, "best_step": 0, "bad_evals": 0, "history": [], "seconds": 0.0,
             "best_prompt": prompt_init.clone(), "loss_sum": 0.0, "loss_n": 0}
    # config.json is written with the first checkpoint, not before: a run that fails before its first
    # evaluation (bad data, a diverging loss) leaves no folder that only looks like a run
    config_pending = out is not None
    if out is not None and resume and (out / "state.pt").is_file():
        state = _load_state(out, signature, prompt, optimizer, scheduler)
        config_pending = False
    elif out is not None:
        _forget_previous_run(out)

    def diverged(what: str, value: object) -> DivergenceError:
        kept = (f"the last checkpoint in {out} (step {state['history'][-1]['step']}) is kept, unfinished"
                if out is not None and state["history"] else "no checkpoint of this run was written")
        return DivergenceError(f"tuning {task.name!r} seed {cfg.seed} diverged at step {state['step'] + 1}: "
                               f"{what} is {value} (lr {cfg.lr}); lower lr"
                               f"{' or set grad_clip' if cfg.grad_clip is None else ''}; {kept}")

    def evaluate_dev() -> EvalResult:
        return evaluate(backbone, prompt.detach(), task, dev_enc, batch_size=cfg.eval_batch_size,
                        max_length=cfg.max_length, autocast=bf16)

    # a run killed after early stopping decided to stop (its last checkpoint written, metrics.json not yet
    # marked finished) stops again here, before another step: training on would give another prompt
    stopped_early = stop_early(cfg.patience, state["bad_evals"])
    lengths = training_lengths(cfg, train_enc)
    slot_only = cfg.last_layer == "slot"  # dev evaluation always runs the whole model, as the reported numbers do
    t0 = time.perf_counter() - state["seconds"]
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=f"tune {task.name}", disable=not progress,
               unit="step", leave=False)
    try:
        while state["step"] < cfg.max_steps and not stopped_early:
            idx = batch_indices(len(train_enc), cfg.batch_size, cfg.seed, state["step"], lengths)
            batch = backbone.collate(train_enc, idx)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = backbone.label_logits(prompt, batch, verbalizer, slot_only=slot_only)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch.labels.to(device))
            if teacher is not None:
                with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    target = backbone.label_logits(teacher, batch, verbalizer, slot_only=slot_only)
                loss = loss + distill_beta * torch.nn.functional.mse_loss(logits.float(), target.float())
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise diverged("the training loss", loss_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([prompt], cfg.grad_clip)
            try:
                optimizer.step()
            except RuntimeError as exc:  # AdamW's step size lr / (1 - beta1^t) past the float range
                if "overflow" not in str(exc):
                    raise
                raise diverged("the update", f"beyond the float range ({str(exc).splitlines()[0]})") from None
            if not bool(torch.isfinite(prompt).all()):
                raise diverged("the prompt", "non-finite (nan or inf) after the update")
            scheduler.step()
            state["step"] += 1
            state["loss_sum"] += loss_value
            state["loss_n"] += 1
            bar.update(1)
            if on_step is not None:
                on_step(state["step"], loss_value)
            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
                res = evaluate_dev()
                improved = res.accuracy > state["best_acc"]
                if improved:
                    state.update(best_acc=res.accuracy, best_step=state["step"], bad_evals=0,
                                 best_prompt=prompt.detach().cpu().clone())
                else:
                    state["bad_evals"] += 1
                state["history"].append({"step": state["step"], "train_loss": state["loss_sum"] / state["loss_n"],
                                         "dev_accuracy": res.accuracy, "dev_macro_f1": res.macro_f1,
                                         "lr": scheduler.get_last_lr()[0]})
                state.update(loss_sum=0.0, loss_n=0, seconds=time.perf_counter() - t0)
                bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3f}", dev=f"{res.accuracy:.3f}")
                report(f"tune {task.name} seed {cfg.seed}: step {state['step']}/{cfg.max_steps}, "
                       f"loss {state['history'][-1]['train_loss']:.3f}, dev accuracy {res.accuracy:.3f}")
                if out is not None:
                    if config_pending:
                        write_json(out / "config.json", signature)
                        config_pending = False
                    _save_state(out, state, prompt, optimizer, scheduler, improved)
                if stop_early(cfg.patience, state["bad_evals"]):
                    stopped_early = True
                    break
    finally:
        bar.close()
    result = TuneResult(state["best_prompt"], state["best_acc"], state["best_step"], state["step"],
                        state["history"], stopped_early, time.perf_counter() - t0)
    if not bool(torch.isfinite(result.prompt).all()):  # cannot happen after the checks above; never saved
        raise diverged("the best prompt", "non-finite")
    if out is not None:
        if config_pending:
            write_json(out / "config.json", signature)
        save_prompt(out / "prompt.safetensors", result.prompt, {"task": task.name, "backbone": backbone.name})
        write_json(out / "metrics.json", {**result.metrics(), "finished": True, "signature": signature,
                                          "prompt_sha256": _tensor_digest(result.prompt)})
    return result


def stop_early(patience: int | None, bad_evals: int) -> bool:
    """Early stopping: `patience` evaluations in a row without a better dev accuracy (None: never)."""
    return patience is not None and bad_evals >= patience


def _save_state(out: Path, state: dict, prompt: torch.Tensor, optimizer, scheduler, improved: bool) -> None:
    payload = {k: v for k, v in state.items()}
    payload.update(prompt=prompt.detach().cpu().clone(), optimizer=optimizer.state_dict(),
                   scheduler=scheduler.state_dict())
    write_torch(out / "state.pt", payload)
    if improved:
        save_prompt(out / "prompt.safetensors", state["best_prompt"])
    write_json(out / "metrics.json", {"best_dev_accuracy": state["best_acc"], "best_step": state["best_step"],
                                      "steps": state["step"], "history": state["history"], "finished": False})


def _forget_previous_run(out: Path) -> None:
    """A fresh start in a folder holding another run (resume=False): its state and metrics go first,
    so that an interruption before the first checkpoint can never pair them with the new config.json."""
    for name in ("metrics.json", "state.pt", "config.json"):
        (out / name).unlink(missing_ok=True)


def _differences(saved: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two nested dicts, with both values."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        return [d for k in sorted(set(saved) | set(wanted))
                for d in _differences(saved.get(k), wanted.get(k), f"{prefix}{k}.")]
    return [] if saved == wanted else [f"{prefix.rstrip('.')}: {saved!r} here, {wanted!r} asked"]


def _check_signature(out: Path, signature: dict) -> None:
    saved = read_json(out / "config.json")
    if saved != signature:
        raise CheckpointError(f"checkpoint in {out} was made with another configuration "
                              f"({'; '.join(_differences(saved, signature))}); that run is kept as it is: "
                              f"pass another out_dir for this one")


def _load_state(out: Path, signature: dict, prompt, optimizer, scheduler) -> dict:
    _check_signature(out, signature)
    payload = read_torch(out / "state.pt")
    saved_prompt = payload.get("prompt") if isinstance(payload, dict) else None
    if isinstance(saved_prompt, torch.Tensor) and not bool(torch.isfinite(saved_prompt).all()):
        raise CheckpointError(f"checkpoint {out / 'state.pt'} holds a non-finite prompt (a diverged run saved "
                              f"before this was checked); it cannot be resumed: remove the folder {out}")
    try:
        with torch.no_grad():
            prompt.copy_(payload.pop("prompt").to(prompt.device))
        optimizer.load_state_dict(payload.pop("optimizer"))
        scheduler.load_state_dict(payload.pop("scheduler"))
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"corrupt checkpoint {out / 'state.pt'}: {exc}") from None
    return payload


def _finished_result(out: Path, signature: dict) -> TuneResult | None:
    metrics_path = out / "metrics.json"
    if not metrics_path.is_file():
        return None
    metrics = read_json(metrics_path)
    if not metrics.get("finished"):
        return None
    _check_signature(out, signature)
    prompt = load_prompt(out / "prompt.safetensors")
    if not bool(torch.isfinite(prompt).all()):
        raise CheckpointError(f"finished run in {out} holds a non-finite prompt (a diverged run saved before this "
                              f"was checked); it is not a valid result: remove the folder {out} and run again")
    missing = [k for k in FINISHED_FIELDS if k not in metrics]
    if missing:
        raise CheckpointError(f"finished run in {out} has a metrics.json without {', '.join(missing)}; it is not a "
                              f"valid result: remove the folder {out} and run again")
    saved = metrics.get("prompt_sha256")  # runs finished before the checksum existed have none
    if saved is not None and saved != _tensor_digest(prompt):
        raise CheckpointError(f"finished run in {out}: prompt.safetensors is not the prompt this run saved "
                              f"(checksum {_tensor_digest(prompt)}, metrics.json says {saved}); remove the folder "
                              f"{out} and run again")
    return TuneResult(prompt, metrics["best_dev_accuracy"], metrics["best_step"],
                      metrics["steps"], metrics["history"], metrics["stopped_early"], metrics["seconds"])


FINISHED_FIELDS = ("best_dev_accuracy", "best_step", "steps", "history", "stopped_early", "seconds")


__all__ = ["TuneConfig", "TuneResult", "tune_prompt", "batch_indices", "grouped_epoch", "padding_share",
           "training_lengths", "stop_early", "prompt_code_version", "lr_lambda", "SCHEDULES", "BATCH_ORDERS"]
