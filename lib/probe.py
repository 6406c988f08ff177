"""What the frozen backbone offers a task before any prompt: a linear probe on the joint input.

Why: when prompt tuning leaves a task at its majority rate, the question is whether the recipe or
the backbone is to blame. Prompt tuning sees the two texts of a pair task *jointly* encoded
(`[CLS] a [SEP] b [SEP]`); a logistic-regression probe on that encoding's mean-pooled last hidden
state, h(x) = (1/T) sum_t h_t(x), trained on `n_train` random training examples and scored on the test
split, says how linearly available the label is in what the prompt can steer. A probe near the
majority rate is evidence that the backbone, not the recipe, is the limit.

Not part of `lib.store.code_version()`; its table is keyed by a hash of this module (`probe_version`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .code_identity import version
from .data import balanced_sample
from .experiments import Experiment
from .intervals import accuracy_interval, majority_rate
from .models import Backbone, Encoded


@functools.lru_cache(maxsize=1)
def probe_version() -> str:
    """The version of the code reachable from `probe_table` (`lib.code_identity`)."""
    return version("probe")


@torch.no_grad()
def pooled_features(backbone: Backbone, enc: Encoded, batch_size: int = 64) -> np.ndarray:
    """(examples, width) mean over the text tokens of the last hidden state, no prompt."""
    out = []
    for start in range(0, len(enc), batch_size):
        batch = backbone.collate(enc, range(start, min(start + batch_size, len(enc))))
        kwargs = {} if batch.token_type_ids is None else {"token_type_ids": batch.token_type_ids.to(backbone.device)}
        mask = batch.attention_mask.to(backbone.device)
        states = backbone.encoder(input_ids=batch.input_ids.to(backbone.device), attention_mask=mask,
                                  **kwargs).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        out.append(((states * weights).sum(1) / weights.sum(1)).float().cpu().numpy())
    return np.concatenate(out)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 100) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """L2-regularised logistic regression on standardised features (L-BFGS):
    min_{w,b} (1/N) sum_i log(1 + exp(-(2y_i - 1)(w.z_i + b))) + (l2 / (2N)) ||w||^2, z = (x - mu) / sigma.
    Returns (w, b, mu, sigma)."""
    mu, sigma = x.mean(0), x.std(0) + 1e-6
    z = torch.as_tensor((x - mu) / sigma, dtype=torch.float64)
    t = torch.as_tensor(2 * np.asarray(y) - 1, dtype=torch.float64)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-t * (z @ w + b)).mean() + l2 / (2 * len(t)) * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach()), mu, sigma


def predict_logistic(x: np.ndarray, w: np.ndarray, b: float, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return ((((x - mu) / sigma) @ w + b) > 0).astype(int)


def probe_table(exp: Experiment, tasks: tuple[str, ...] | None = None, n_train: int = 1500) -> pd.DataFrame:
    """Per task: the probe's test accuracy with its example-resampling interval, beside the majority rate."""
    tasks = tuple(tasks or exp.profile.tasks)

    def compute() -> pd.DataFrame:
        rows = []
        for task in tasks:
            if exp.task(task).num_labels != 2:
                continue
            train = balanced_sample(exp.splits(task)["train"], n_train, exp.profile.data.seed)
            enc_train = exp.backbone.encode(train, exp.max_length(task))
            test = exp.encoded(task, "test")
            w, b, mu, sigma = fit_logistic(pooled_features(exp.backbone, enc_train), enc_train.labels)
            correct = (predict_logistic(pooled_features(exp.backbone, test), w, b, mu, sigma) == test.labels)
            iv = accuracy_interval(correct.astype(float))
            rows.append({"task": task, "type": exp.task(task).task_type, "probe accuracy": iv.estimate,
                         "lo": iv.lo, "hi": iv.hi, "majority rate": majority_rate(test.labels),
                         "train examples": len(train)})
        return pd.DataFrame(rows)
    key = {"profile": exp.profile.as_dict(), "control": exp.control, "tasks": list(tasks), "n_train": n_train,
           "probe": probe_version()}
    return exp.store.table("backbone_probe", key, compute)


def probe_sentence(table: pd.DataFrame) -> str:
    """Which tasks' labels a linear probe on the joint input reads above the majority rate (interval
    entirely above it), and which not."""
    above = table[table["lo"] > table["majority rate"]]
    below = table[~(table["lo"] > table["majority rate"])]
    def fmt(rows: pd.DataFrame) -> str:
        return "; ".join(f"{r['task']} {r['probe accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] vs "
                         f"{r['majority rate']:.3f}" for r in rows.to_dict("records"))

    parts = []
    if len(above):
        parts.append("above the majority rate: " + fmt(above))
    if len(below):
        parts.append("not above it: " + fmt(below))
    return "Linear probe on the jointly encoded input (accuracy [95 % interval] vs majority rate), " + \
        ", ".join(parts) + "."
