"""One resumable training loop, shared by prompt tuning (`lib.tuning`) and weight tuning (`lib.weight_tuning`).

One loop, so that both methods keep the same guarantees rather than two copies of them. The loop owns
what makes a run reproducible and resumable on CPU:
- the batch at each step is a pure function of (seed, step) (`lib.batching`), so a resumed run draws
  the batches an uninterrupted one draws;
- AdamW steps the trained tensors (gradients clipped together), and a learning-rate schedule where the
  caller gives one; the model stays as the caller set it (eval mode: no dropout);
- every `eval_every` steps and at the last, the dev set is evaluated, the best-on-dev values are kept,
  early stopping is counted, and, with a run folder, a checkpoint is written atomically: state.pt
  (counters, history, the best and the current values, optimiser and scheduler states) and metrics.json
  (marked unfinished), config.json (the run signature) with the first one.
A run killed at any point and resumed from its last checkpoint therefore reaches bitwise what an
uninterrupted run reaches, also one killed after early stopping decided to stop (it stops again at once).
A non-finite loss or parameter stops the run with a `DivergenceError` before that step is kept, so nothing
non-finite is ever saved.

The caller supplies what differs (`Trainee`): the trained tensors, the loss of a batch, the dev evaluation,
how the trained values are copied out and put back, and what a checkpoint that improved writes beside
state.pt. It checks a finished folder before tuning (`RunFolder.finished_metrics`) and writes its finished
files from the loop's `Outcome`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from .batching import batch_indices
from .errors import CheckpointError, ConfigError, DivergenceError
from .evaluation import EvalResult
from .io import read_json, read_torch, write_json, write_torch
from .models import Backbone, Encoded
from .progress import report
from .tasks import Task

# What a finished run's metrics.json must hold to be served without tuning again.
FINISHED_FIELDS = ("best_dev_accuracy", "best_step", "steps", "history", "stopped_early", "seconds")


@dataclass(frozen=True)
class LoopConfig:
    """The hyper-parameters the loop reads; `TuneConfig` and `WeightTuneConfig` both carry them (`of`)."""

    lr: float
    weight_decay: float
    batch_size: int
    max_steps: int
    eval_every: int
    seed: int
    grad_clip: float | None
    patience: int | None

    @classmethod
    def of(cls, cfg: Any) -> "LoopConfig":
        """The loop's part of a method's configuration (its fields of the same names)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Trainee:
    """The caller's part of a run: what trains, how a batch is scored, and how its values are kept.

    `snapshot()` copies the trained values to the CPU (the best-on-dev copy, and the checkpoint's);
    `restore(values, where)` puts a checkpoint's copy back (`where` names the file in errors).
    """

    params: tuple[torch.Tensor, ...]  # the trained tensors (AdamW's, their gradients clipped together)
    n_train: int  # training examples, drawn by `batch_indices`
    loss: Callable[[list[int]], torch.Tensor]  # the training loss of the batch of these example indices
    evaluate: Callable[[], EvalResult]  # the dev evaluation of the current values
    snapshot: Callable[[], Any]
    restore: Callable[[Any, Path], None]
    label: str  # progress bar and lines: 'tune sst2', 'bitfit sst2'
    run: str  # messages: "tuning 'sst2' seed 0"
    kind: str  # what trains, in messages: 'prompt', 'weights'
    keys: tuple[str, str]  # state.pt's names of the best and the current values (those of existing checkpoints)
    schedule: Callable[[int], float] | None = None  # lr multiplier per step (LambdaLR, checkpointed); None: constant
    lengths: tuple[int, ...] | None = None  # example lengths for length-grouped batches; None: random batches
    save_best: Callable[[Path, Any], None] | None = None  # writes the best values beside a checkpoint that improved


@dataclass(frozen=True)
class Outcome:
    """What a finished loop reached: the best-on-dev values and the run's record."""

    best: Any  # the snapshot of the best evaluation
    best_accuracy: float
    best_step: int
    steps: int
    history: list[dict[str, float]]
    stopped_early: bool
    seconds: float


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: its signature (config.json) must match to resume or reuse it."""

    path: Path
    signature: dict[str, Any]
    files: tuple[str, ...]  # what a fresh start removes (state and metrics first, config.json last)
    resume: bool = True

    def check_signature(self) -> None:
        saved = read_json(self.path / "config.json")
        if saved != self.signature:
            raise CheckpointError(f"checkpoint in {self.path} was made with another configuration "
                                  f"({'; '.join(_differences(saved, self.signature))}); that run is kept as it "
                                  f"is: pass another out_dir for this one")

    def finished_metrics(self) -> dict[str, Any] | None:
        """The metrics.json of a finished run here (signature and fields checked), or None: tune."""
        path = self.path / "metrics.json"
        if not self.resume or not path.is_file():
            return None
        metrics = read_json(path)
        if not metrics.get("finished"):
            return None
        self.check_signature()
        missing = [k for k in FINISHED_FIELDS if k not in metrics]
        if missing:
            raise CheckpointError(f"finished run in {self.path} has a metrics.json without {', '.join(missing)}; it "
                                  f"is not a valid result: remove the folder {self.path} and run again")
        return metrics

    def forget(self) -> None:
        """A fresh start in a folder holding another run (resume=False): its files go first, so that an
        interruption before the first checkpoint can never pair them with the new config.json."""
        for name in self.files:
            (self.path / name).unlink(missing_ok=True)


def encode_splits(backbone: Backbone, task: Task, train: pd.DataFrame | Encoded, dev: pd.DataFrame | Encoded,
                  max_length: int) -> tuple[Encoded, Encoded]:
    """The training and dev sets encoded for `backbone` (tokenised unless they already are), checked: not
    empty, labels within the task's. Tokenising is the slow part of loading a finished run: call it only
    when tuning is needed."""
    train_enc = backbone.encode(train, max_length) if isinstance(train, pd.DataFrame) else train
    dev_enc = backbone.encode(dev, max_length) if isinstance(dev, pd.DataFrame) else dev
    for name, enc in (("train", train_enc), ("dev", dev_enc)):
        if len(enc) == 0:
            raise ConfigError(f"the {name} set is empty")
        if enc.labels.min() < 0 or enc.labels.max() >= task.num_labels:
            raise ConfigError(f"{name} labels outside 0..{task.num_labels - 1} for task {task.name!r}")
    return train_enc, dev_enc


def stop_early(patience: int | None, bad_evals: int) -> bool:
    """Early stopping: `patience` evaluations in a row without a better dev accuracy (None: never)."""
    return patience is not None and bad_evals >= patience


def run_training(trainee: Trainee, cfg: LoopConfig, folder: RunFolder | None = None, *, progress: bool = True,
                 on_step: Callable[[int, float], None] | None = None) -> Outcome:
    """Train `trainee` for `cfg.max_steps` steps (fewer if stopped early); return the best-on-dev values.

    With `folder`, resume from its checkpoint if it holds one (and `folder.resume`), else start afresh
    there; config.json is written with the first checkpoint, so that a run failing before its first
    evaluation leaves no folder that only looks like a run. `on_step(step, loss)` runs after each
    optimiser step (the tests interrupt runs with it).
    """
    optimizer = torch.optim.AdamW(list(trainee.params), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = None if trainee.schedule is None else torch.optim.lr_scheduler.LambdaLR(optimizer, trainee.schedule)
    best_key = trainee.keys[0]
    state = {"step": 0, "best_acc": -1.0, "best_step": 0, "bad_evals": 0, "history": [], "seconds": 0.0,
             best_key: trainee.snapshot(), "loss_sum": 0.0, "loss_n": 0}
    config_pending = folder is not None
    if folder is not None and folder.resume and (folder.path / "state.pt").is_file():
        state = _load_state(folder, trainee, optimizer, scheduler)
        config_pending = False
    elif folder is not None:
        folder.forget()

    def diverged(what: str, value: object) -> DivergenceError:
        kept = (f"the last checkpoint in {folder.path} (step {state['history'][-1]['step']}) is kept, unfinished"
                if folder is not None and state["history"] else "no checkpoint of this run was written")
        return DivergenceError(f"{trainee.run} diverged at step {state['step'] + 1}: {what} is {value} (lr {cfg.lr}); "
                               f"lower lr{' or set grad_clip' if cfg.grad_clip is None else ''}; {kept}")

    # a run killed after early stopping decided to stop (its last checkpoint written, its final files not)
    # stops again here, before another step: training on would reach other values
    stopped_early = stop_early(cfg.patience, state["bad_evals"])
    t0 = time.perf_counter() - state["seconds"]
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=trainee.label, disable=not progress, unit="step",
               leave=False)
    try:
        while state["step"] < cfg.max_steps and not stopped_early:
            loss = trainee.loss(batch_indices(trainee.n_train, cfg.batch_size, cfg.seed, state["step"], trainee.lengths))
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise diverged("the training loss", loss_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(list(trainee.params), cfg.grad_clip)
            try:
                optimizer.step()
            except RuntimeError as exc:  # AdamW's step size lr / (1 - beta1^t) past the float range
                if "overflow" not in str(exc):
                    raise
                raise diverged("the update", f"beyond the float range ({str(exc).splitlines()[0]})") from None
            if not _finite(tuple(trainee.params)):
                raise diverged(f"the {trainee.kind}", "non-finite (nan or inf) after the update")
            if scheduler is not None:
                scheduler.step()
            state["step"] += 1
            state["loss_sum"] += loss_value
            state["loss_n"] += 1
            bar.update(1)
            if on_step is not None:
                on_step(state["step"], loss_value)
            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
                improved = _evaluate(trainee, state, scheduler, t0)
                bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3f}",
                                dev=f"{state['history'][-1]['dev_accuracy']:.3f}")
                report(f"{trainee.label} seed {cfg.seed}: step {state['step']}/{cfg.max_steps}, "
                       f"loss {state['history'][-1]['train_loss']:.3f}, "
                       f"dev accuracy {state['history'][-1]['dev_accuracy']:.3f}")
                if folder is not None:
                    if config_pending:
                        write_json(folder.path / "config.json", folder.signature)
                        config_pending = False
                    _save_state(folder.path, state, trainee, optimizer, scheduler, improved)
                if stop_early(cfg.patience, state["bad_evals"]):
                    stopped_early = True
                    break
    finally:
        bar.close()
    if not _finite(state[best_key]):  # cannot happen after the checks above; never saved
        raise diverged(f"the best {trainee.kind}", "non-finite")
    if folder is not None and config_pending:
        write_json(folder.path / "config.json", folder.signature)
    return Outcome(state[best_key], state["best_acc"], state["best_step"], state["step"], state["history"],
                   stopped_early, time.perf_counter() - t0)


def _evaluate(trainee: Trainee, state: dict[str, Any], scheduler: Any, t0: float) -> bool:
    """Evaluate on dev, keep the best values, append the history row; whether the dev accuracy improved."""
    res = trainee.evaluate()
    improved = res.accuracy > state["best_acc"]
    if improved:
        state.update({"best_acc": res.accuracy, "best_step": state["step"], "bad_evals": 0,
                      trainee.keys[0]: trainee.snapshot()})
    else:
        state["bad_evals"] += 1
    row = {"step": state["step"], "train_loss": state["loss_sum"] / state["loss_n"], "dev_accuracy": res.accuracy,
           "dev_macro_f1": res.macro_f1}
    if scheduler is not None:
        row["lr"] = scheduler.get_last_lr()[0]
    state["history"].append(row)
    state.update(loss_sum=0.0, loss_n=0, seconds=time.perf_counter() - t0)
    return improved


def _finite(values: Any) -> bool:
    """Whether a tensor, or every tensor of a tuple or dict of them, is finite (other values: not checked)."""
    if isinstance(values, torch.Tensor):
        return bool(torch.isfinite(values).all())
    if isinstance(values, (tuple, dict)):
        return all(_finite(v) for v in (values.values() if isinstance(values, dict) else values))
    return True


def _save_state(out: Path, state: dict[str, Any], trainee: Trainee, optimizer: torch.optim.Optimizer,
                scheduler: Any, improved: bool) -> None:
    payload = {**state, trainee.keys[1]: trainee.snapshot(), "optimizer": optimizer.state_dict()}
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    write_torch(out / "state.pt", payload)
    if improved and trainee.save_best is not None:
        trainee.save_best(out, state[trainee.keys[0]])
    write_json(out / "metrics.json", {"best_dev_accuracy": state["best_acc"], "best_step": state["best_step"],
                                      "steps": state["step"], "history": state["history"], "finished": False})


def _load_state(folder: RunFolder, trainee: Trainee, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    folder.check_signature()
    path = folder.path / "state.pt"
    payload = read_torch(path)
    saved = payload.get(trainee.keys[1]) if isinstance(payload, dict) else None
    if saved is not None and not _finite(saved):
        raise CheckpointError(f"checkpoint {path} holds a non-finite {trainee.kind} (a diverged run saved before "
                              f"this was checked); it cannot be resumed: remove the folder {folder.path}")
    try:
        trainee.restore(payload.pop(trainee.keys[1]), path)
        optimizer.load_state_dict(payload.pop("optimizer"))
        if scheduler is not None:
            scheduler.load_state_dict(payload.pop("scheduler"))
    except (KeyError, RuntimeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {exc}") from None
    return payload


def _differences(saved: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two nested dicts, with both values."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        return [d for k in sorted(set(saved) | set(wanted))
                for d in _differences(saved.get(k), wanted.get(k), f"{prefix}{k}.")]
    return [] if saved == wanted else [f"{prefix.rstrip('.')}: {saved!r} here, {wanted!r} asked"]


__all__ = ["FINISHED_FIELDS", "LoopConfig", "Trainee", "Outcome", "RunFolder", "encode_splits", "stop_early", "run_training"]
