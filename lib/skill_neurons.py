"""Skill-neuron predictivity, streamed in two passes with memory independent of the data size.

Definitions (Wang et al. 2022, reused by Ackermann & Ohmer 2024; book page "The method in formulas"):
- activation a[l, p, n]: FFN neuron n of layer l after the non-linearity, at soft-prompt position p;
- threshold t[l, p, n]: mean activation over the training set (pass 1),
      t_{l,p,n} = 1/|D_train| * sum_{x in D_train} a_{l,p,n}(x);
- neuron accuracy on an evaluation set: fraction of examples with (a > t) == label (pass 2),
      acc_{l,p,n} = 1/|D| * sum_{(x,y) in D} 1[ 1[a_{l,p,n}(x) > t_{l,p,n}] == y ];
- predictivity: max(acc, 1 - acc), since a neuron may fire for either class,
      pred_{l,p,n} = max(acc_{l,p,n}, 1 - acc_{l,p,n});
- aggregation: max over prompt positions, then mean over the prompts of several seeds,
      pred_{l,n} = max_p pred_{l,p,n},   mean_pred_{l,n} = 1/|S| * sum_{s in S} pred^{(s)}_{l,n}.
Multi-class tasks are split into binary sub-tasks (3-way NLI: entailment vs contradiction and
neutral vs rest, as Skill-Neuron does; otherwise one class vs the rest).
Pass 1 keeps a running float64 sum and pass 2 integer counts, both of shape (layers, positions,
neurons): nothing is stored per example, and every batch runs on the backbone's device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError
from .evaluation import length_sorted_batches
from .hooks import ffn_sites, record_ffn
from .models import Backbone, Encoded
from .tasks import Task, get_task


@dataclass(frozen=True)
class BinarySubtask:
    """Which canonical labels count as 1 and as 0; the other labels are left out."""

    name: str
    positive: tuple[int, ...]
    negative: tuple[int, ...]

    def binary_labels(self, labels: np.ndarray) -> np.ndarray:
        """1 / 0 / -1 (left out) per example."""
        out = np.full(len(labels), -1, dtype=np.int64)
        out[np.isin(labels, self.positive)] = 1
        out[np.isin(labels, self.negative)] = 0
        return out


def binary_subtasks(task: str | Task) -> list[BinarySubtask]:
    """The binary sub-tasks predictivity is computed on."""
    task = get_task(task)
    names = task.label_names
    if task.num_labels == 2:
        return [BinarySubtask(task.name, (1,), (0,))]
    if set(names) == {"entailment", "neutral", "contradiction"}:
        e, n, c = names.index("entailment"), names.index("neutral"), names.index("contradiction")
        return [BinarySubtask("entailment_vs_contradiction", (e,), (c,)),
                BinarySubtask("neutral_vs_rest", (n,), (e, c))]
    return [BinarySubtask(f"{name}_vs_rest", (i,), tuple(j for j in range(task.num_labels) if j != i))
            for i, name in enumerate(names)]


@dataclass
class Predictivity:
    """Per (sub-task, layer, prompt position, neuron) accuracies and the thresholds behind them."""

    thresholds: torch.Tensor  # (layers, positions, neurons), float64
    accuracy: torch.Tensor  # (subtasks, layers, positions, neurons), float64
    subtasks: list[str]
    n_train: int
    n_eval: list[int]

    @property
    def predictivity(self) -> torch.Tensor:
        """max(acc, 1 - acc), same shape as `accuracy`."""
        return torch.maximum(self.accuracy, 1.0 - self.accuracy)

    def per_neuron(self, subtask: str | None = None) -> torch.Tensor:
        """(layers, neurons): max over prompt positions (and over sub-tasks unless one is named)."""
        pred = self.predictivity
        if subtask is not None:
            if subtask not in self.subtasks:
                raise ConfigError(f"unknown sub-task {subtask!r}; valid: {', '.join(self.subtasks)}")
            pred = pred[self.subtasks.index(subtask)].unsqueeze(0)
        return pred.amax(dim=2).amax(dim=0)


def _positions(prompt: torch.Tensor, positions: Sequence[int] | None) -> torch.Tensor:
    pos = torch.arange(prompt.shape[0]) if positions is None else torch.as_tensor(list(positions), dtype=torch.long)
    if len(pos) == 0:
        raise ConfigError("no positions to read activations at")
    return pos


def _run_encoder(backbone: Backbone, prompt: torch.Tensor, data: Encoded, idx: list[int], part: str,
                 verbalizer: torch.Tensor | None) -> None:
    batch = backbone.collate(data, idx)
    if part == "decoder":
        assert verbalizer is not None
        backbone.label_logits(prompt, batch, verbalizer)
        return
    backbone.encode_prompted(prompt, batch)


def iter_activations(backbone: Backbone, prompt: torch.Tensor, data: Encoded, *, batch_size: int = 64,
                     positions: Sequence[int] | None = None, part: str = "encoder", desc: str = "activations",
                     progress: bool = False):
    """Yield (indices, activations (batch, layers, positions, neurons)) over `data`, batch by batch.

    Encoder activations need only the encoder pass; decoder ones (T5) run the full scoring path.
    """
    pos = _positions(prompt, positions)
    verbalizer = None
    if part == "decoder":
        verbalizer = torch.zeros(1, dtype=torch.long)  # the decoder's FFN does not depend on the words scored
    prompt = prompt.to(backbone.device)
    with torch.no_grad(), record_ffn(backbone, pos, part) as rec:
        for idx in tqdm(length_sorted_batches(data, batch_size), desc=desc, disable=not progress, leave=False):
            _run_encoder(backbone, prompt, data, idx, part, verbalizer)
            yield idx, rec.stacked()


def activation_thresholds(backbone: Backbone, prompt: torch.Tensor, data: Encoded, *, batch_size: int = 64,
                          positions: Sequence[int] | None = None, part: str = "encoder",
                          progress: bool = False) -> torch.Tensor:
    """Pass 1: mean activation per (layer, position, neuron) over `data` (float64)."""
    total: torch.Tensor | None = None
    for _idx, acts in iter_activations(backbone, prompt, data, batch_size=batch_size, positions=positions,
                                       part=part, desc="pass 1: thresholds", progress=progress):
        s = acts.to(torch.float64).sum(dim=0)
        total = s if total is None else total + s
    assert total is not None
    return total / len(data)


def neuron_accuracy(backbone: Backbone, prompt: torch.Tensor, data: Encoded, thresholds: torch.Tensor,
                    subtasks: Sequence[BinarySubtask], *, batch_size: int = 64,
                    positions: Sequence[int] | None = None, part: str = "encoder",
                    progress: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Pass 2: per sub-task, the fraction of examples with (activation > threshold) == binary label."""
    binary = [torch.as_tensor(st.binary_labels(data.labels)) for st in subtasks]
    n_used = [int((b >= 0).sum()) for b in binary]
    for st, n in zip(subtasks, n_used):
        if n == 0 or len(set(st.binary_labels(data.labels)) - {-1}) < 1:
            raise ConfigError(f"sub-task {st.name!r} has no evaluation examples")
    thr = thresholds.to(backbone.device)
    agree: list[torch.Tensor] = [torch.zeros(thr.shape, dtype=torch.int64, device=backbone.device) for _ in subtasks]
    for idx, acts in iter_activations(backbone, prompt, data, batch_size=batch_size, positions=positions,
                                      part=part, desc="pass 2: accuracy", progress=progress):
        fire = acts.to(torch.float64) > thr  # (batch, L, P, N)
        for k, b in enumerate(binary):
            lab = b[idx].to(backbone.device)
            pos, neg = lab == 1, lab == 0
            if bool(pos.any()):
                agree[k] += fire[pos].sum(dim=0)
            if bool(neg.any()):
                agree[k] += (~fire[neg]).sum(dim=0)
    acc = torch.stack([a.to(torch.float64).cpu() / n for a, n in zip(agree, n_used)])
    return acc, n_used


def compute_predictivity(backbone: Backbone, prompt: torch.Tensor, task: str | Task, train: Encoded,
                         evaluation: Encoded, *, batch_size: int = 64, positions: Sequence[int] | None = None,
                         part: str = "encoder", progress: bool = True) -> Predictivity:
    """Both passes: thresholds on `train`, accuracies on `evaluation` (which may be adversarial data)."""
    task = get_task(task)
    backbone.check_prompt(prompt)
    for name, enc in (("train", train), ("evaluation", evaluation)):
        if len(enc) == 0:
            raise ConfigError(f"the {name} set for predictivity is empty")
        if enc.labels.min() < 0 or enc.labels.max() >= task.num_labels:
            raise ConfigError(f"{name} labels outside 0..{task.num_labels - 1} for task {task.name!r}")
    subtasks = binary_subtasks(task)
    thr = activation_thresholds(backbone, prompt, train, batch_size=batch_size, positions=positions, part=part,
                                progress=progress)
    acc, n_used = neuron_accuracy(backbone, prompt, evaluation, thr, subtasks, batch_size=batch_size,
                                  positions=positions, part=part, progress=progress)
    return Predictivity(thr.cpu(), acc, [s.name for s in subtasks], len(train), n_used)


def predictivity_store_all(backbone: Backbone, prompt: torch.Tensor, task: str | Task, train: Encoded,
                           evaluation: Encoded, *, batch_size: int = 64, part: str = "encoder"
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(thresholds, accuracy per sub-task) computed the way the reference code does: every example's
    activations at the prompt positions kept in memory, scored afterwards.

    Memory grows with the number of examples; kept as an independent check of `compute_predictivity`
    (they agree exactly) and as the benchmark's contender.
    """
    task = get_task(task)
    layers, width = ffn_shape(backbone, part)

    def collect(enc: Encoded) -> torch.Tensor:
        out = torch.zeros((len(enc), layers, prompt.shape[0], width))
        for idx, acts in iter_activations(backbone, prompt, enc, batch_size=batch_size, part=part):
            out[idx] = acts.float().cpu()
        return out

    thr = collect(train).to(torch.float64).mean(dim=0)
    acts = collect(evaluation)
    accs = []
    for st in binary_subtasks(task):
        y = torch.as_tensor(st.binary_labels(evaluation.labels))
        keep = y >= 0
        fire = acts[keep].to(torch.float64) > thr
        accs.append((fire == (y[keep] == 1).view(-1, 1, 1, 1)).to(torch.float64).mean(dim=0))
    return thr, torch.stack(accs)


def aggregate_seeds(per_seed: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over seeds of (layers, neurons) predictivities (each already maxed over positions)."""
    if not per_seed:
        raise ConfigError("no predictivities to aggregate")
    shapes = {tuple(p.shape) for p in per_seed}
    if len(shapes) != 1:
        raise ConfigError(f"predictivities of different shapes cannot be averaged: {sorted(shapes)}")
    return torch.stack([p.to(torch.float64) for p in per_seed]).mean(dim=0)


def _count(n: int, fraction: float | None, k: int | None) -> int:
    if (fraction is None) == (k is None):
        raise ConfigError("give exactly one of fraction or k")
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"fraction must be in [0, 1], got {fraction}")
        return int(round(fraction * n))
    assert k is not None
    if not 0 <= k <= n:
        raise ConfigError(f"k must be in 0..{n}, got {k}")
    return k


def _check_scores(scores: torch.Tensor) -> torch.Tensor:
    scores = torch.as_tensor(scores)
    if scores.dim() != 2:
        raise ConfigError(f"scores must be (layers, neurons), got shape {tuple(scores.shape)}")
    return scores


def top_per_layer(scores: torch.Tensor, fraction: float | None = None, k: int | None = None) -> torch.Tensor:
    """Boolean (layers, neurons) mask of the top neurons of each layer: the references' equal quota.

    Ties are broken by the lower neuron index, so selections are deterministic.
    """
    scores = _check_scores(scores)
    n = _count(scores.shape[1], fraction, k)
    mask = torch.zeros(scores.shape, dtype=torch.bool)
    if n:
        order = torch.argsort(-scores.to(torch.float64), dim=1, stable=True)[:, :n]
        mask.scatter_(1, order, True)
    return mask


def top_global(scores: torch.Tensor, fraction: float | None = None, k: int | None = None) -> torch.Tensor:
    """Boolean (layers, neurons) mask of the top neurons over all layers together."""
    scores = _check_scores(scores)
    n = _count(scores.numel(), fraction, k)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if n:
        mask[torch.argsort(-scores.flatten().to(torch.float64), stable=True)[:n]] = True
    return mask.view(scores.shape)


def ffn_shape(backbone: Backbone, part: str = "encoder") -> tuple[int, int]:
    """(layers, neurons) of a backbone's FFN activation sites."""
    sites = ffn_sites(backbone, part)
    return len(sites), sites[0].width
