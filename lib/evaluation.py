"""Accuracy and macro-F1 of a prompt on any task split, including prompts tuned on other tasks.

Evaluation always uses the *target* task's verbalizer: within a task type the canonical label
orders agree, so a source prompt's label words map onto the target's labels (the transfer matrix).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError
from .models import Backbone, Encoded
from .tasks import Task, get_task


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    macro_f1: float
    n: int
    predictions: np.ndarray
    labels: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "n": self.n}


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of per-class F1 over all classes of the task (absent classes score 0)."""
    scores = []
    for c in range(num_labels):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores))


def length_sorted_batches(data: Encoded, batch_size: int) -> list[list[int]]:
    """Batches of similar length, so that padding (and CPU time) stays small."""
    order = np.argsort([len(x) for x in data.input_ids], kind="stable")
    return [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]


@torch.no_grad()
def predict_logits(backbone: Backbone, prompt: torch.Tensor, data: Encoded, verbalizer_ids: torch.Tensor,
                   batch_size: int = 64, autocast: bool = False) -> np.ndarray:
    """(n, n_labels) verbalizer logits for pre-encoded data, in the data's order."""
    out = np.zeros((len(data), len(verbalizer_ids)), dtype=np.float32)
    for idx in length_sorted_batches(data, batch_size):
        batch = backbone.collate(data, idx)
        with torch.autocast(device_type=backbone.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = backbone.label_logits(prompt, batch, verbalizer_ids)
        out[idx] = logits.float().cpu().numpy()
    return out


def evaluate(backbone: Backbone, prompt: torch.Tensor, task: str | Task, data: pd.DataFrame | Encoded,
             *, batch_size: int = 64, max_length: int = 128, autocast: bool = False) -> EvalResult:
    """Accuracy and macro-F1 of `prompt` on `data` labelled for `task`."""
    task = get_task(task)
    backbone.check_prompt(prompt, max_length)
    encoded = backbone.encode(data, max_length) if isinstance(data, pd.DataFrame) else data
    if len(encoded) == 0:
        raise ConfigError("cannot evaluate on an empty dataset")
    labels = encoded.labels
    if labels.min() < 0 or labels.max() >= task.num_labels:
        raise ConfigError(f"labels outside 0..{task.num_labels - 1} for task {task.name!r}")
    logits = predict_logits(backbone, prompt, encoded, backbone.task_verbalizer_ids(task), batch_size, autocast)
    preds = logits.argmax(axis=1)
    return EvalResult(float(np.mean(preds == labels)), macro_f1(labels, preds, task.num_labels),
                      len(labels), preds, labels)


__all__ = ["EvalResult", "evaluate", "macro_f1", "predict_logits", "length_sorted_batches"]
