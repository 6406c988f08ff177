"""Transferability indicators (Su et al. 2022): prompt similarity and ON, the overlap of activated neurons.

Each indicator scores a (source prompt, target prompt) pair without evaluating anything; a good
indicator's scores rank-correlate with the measured zero-shot transfer accuracy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau, spearmanr

from .errors import ConfigError, unknown
from .hooks import record_ffn
from .models import Backbone, Batch

METRICS = ("cosine", "euclidean")
ON_POSITIONS = ("all", "readout")
REDUCTIONS = ("flat", "mean")


def prompt_similarity(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine", reduce: str = "flat") -> float:
    """Similarity of two prompts: cosine, or negative Euclidean distance (higher = more similar).

    reduce='flat' compares the flattened (length x width) prompts, which needs equal shapes;
    'mean' compares the token-averaged prompts, which needs equal widths only.
    """
    if metric not in METRICS:
        raise unknown("similarity metric", metric, METRICS)
    if reduce not in REDUCTIONS:
        raise unknown("prompt reduction", reduce, REDUCTIONS)
    if a.dim() != 2 or b.dim() != 2:
        raise ConfigError(f"prompts must be 2-d (length, width), got {tuple(a.shape)} and {tuple(b.shape)}")
    if reduce == "flat" and a.shape != b.shape:
        raise ConfigError(f"flat similarity needs prompts of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"prompt widths differ: {a.shape[1]} vs {b.shape[1]}")
    x, y = a.to(torch.float64), b.to(torch.float64)
    x, y = (x.flatten(), y.flatten()) if reduce == "flat" else (x.mean(dim=0), y.mean(dim=0))
    if metric == "cosine":
        return float(torch.nn.functional.cosine_similarity(x, y, dim=0))
    return -float(torch.linalg.vector_norm(x - y))


@torch.no_grad()
def activated_neurons(backbone: Backbone, prompt: torch.Tensor, part: str = "encoder",
                      positions: str = "all") -> torch.Tensor:
    """Boolean (layers, positions, neurons): which FFN neurons fire (> 0) with the prompt alone as input.

    positions='readout' reads them where Su et al. do: a masked LM's `<mask>` slot (prompt position 0),
    T5's decoder at its first step (`part` is then 'decoder'); 'all' keeps every prompt position.
    """
    if positions not in ON_POSITIONS:
        raise unknown("ON positions", positions, ON_POSITIONS)
    readout_part = backbone.rules.readout_part  # where the family reads its label
    if positions == "readout" and readout_part == "decoder":
        part = "decoder"
    backbone.check_prompt(prompt)
    empty = Batch(torch.zeros((1, 0), dtype=torch.long), torch.zeros((1, 0), dtype=torch.long), None,
                  torch.zeros(1, dtype=torch.long))
    with record_ffn(backbone, part=part) as rec:
        if part == "decoder":
            backbone.label_logits(prompt.to(backbone.device), empty, torch.zeros(1, dtype=torch.long))
        else:
            backbone.encode_prompted(prompt.to(backbone.device), empty)
        acts = rec.stacked()[0]
    if positions == "readout" and readout_part == "encoder":
        acts = acts[:, :1]  # the mask slot
    return (acts > 0).cpu()


def overlap_of_neurons(a: torch.Tensor, b: torch.Tensor, window: int | None = 3) -> pd.DataFrame:
    """ON: cosine of the binary activation vectors of two prompts, per window of layers and overall.

    With b_{l,n}(P) = 1[max_p a_{l,p,n}(P) > 0] (the prompt alone as input) and a window W of layers,
    ON_W(A, B) = sum_{l in W, n} b_{l,n}(A) b_{l,n}(B) / sqrt(sum b(A)) / sqrt(sum b(B)).

    `a` and `b` are (layers, positions, neurons) boolean tensors of equal layer and neuron counts;
    positions are pooled (any position firing) so that prompts of different lengths compare.
    Rows: first_layer, last_layer, on (the last row covers all layers).
    """
    if a.dim() != 3 or b.dim() != 3:
        raise ConfigError(f"activation patterns must be (layers, positions, neurons), got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ConfigError(f"activation patterns of different models: {tuple(a.shape)} vs {tuple(b.shape)}")
    if window is not None and not 1 <= window <= a.shape[0]:
        raise ConfigError(f"window must be in 1..{a.shape[0]}, got {window}")
    x, y = a.any(dim=1).to(torch.float64), b.any(dim=1).to(torch.float64)

    def cos(u: torch.Tensor, v: torch.Tensor) -> float:
        nu, nv = torch.linalg.vector_norm(u), torch.linalg.vector_norm(v)
        return 0.0 if nu == 0 or nv == 0 else float(u @ v / (nu * nv))

    rows = []
    if window is not None:
        for start in range(0, a.shape[0] - window + 1):
            rows.append({"first_layer": start, "last_layer": start + window - 1,
                         "on": cos(x[start:start + window].flatten(), y[start:start + window].flatten())})
    rows.append({"first_layer": 0, "last_layer": a.shape[0] - 1, "on": cos(x.flatten(), y.flatten())})
    return pd.DataFrame(rows)


def rank_correlation(indicator: Sequence[float], transfer: Sequence[float]) -> dict[str, float]:
    """Spearman and Kendall correlation of indicator scores with measured transfer over pairs."""
    x, y = np.asarray(indicator, dtype=np.float64), np.asarray(transfer, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"indicator and transfer need equal 1-d shapes, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ConfigError(f"rank correlation needs at least 3 pairs, got {len(x)}")
    return {"spearman": float(spearmanr(x, y).statistic), "kendall": float(kendalltau(x, y).statistic), "n": len(x)}
