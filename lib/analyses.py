"""Skill-neuron analyses as tidy pandas tables, ready for seaborn in the notebooks.

Every function takes (layers, neurons) predictivity scores (see `skill_neurons.Predictivity.per_neuron`
and `aggregate_seeds`) and returns one row per observation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .errors import ConfigError
from .evaluation import evaluate
from .hooks import intervene_ffn
from .models import Backbone, Encoded
from .skill_neurons import _check_scores, top_global, top_per_layer
from .tasks import Task


def layer_distribution(scores: torch.Tensor, fraction: float = 0.01) -> pd.DataFrame:
    """Where the globally top `fraction` of neurons sit: count and share per layer."""
    scores = _check_scores(scores)
    mask = top_global(scores, fraction=fraction)
    counts = mask.sum(dim=1).numpy()
    total = max(1, int(counts.sum()))
    return pd.DataFrame({"layer": np.arange(scores.shape[0]), "n_selected": counts, "share": counts / total,
                         "mean_predictivity": scores.to(torch.float64).mean(dim=1).numpy(),
                         "max_predictivity": scores.to(torch.float64).amax(dim=1).numpy()})


def random_per_layer(shape: tuple[int, int], n_per_layer: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean (layers, neurons) mask with `n_per_layer` random neurons in each layer."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for layer in range(shape[0]):
        mask[layer, torch.randperm(shape[1], generator=generator)[:n_per_layer]] = True
    return mask


def suppression_curve(backbone: Backbone, prompt: torch.Tensor, task: str | Task, data: pd.DataFrame | Encoded,
                      scores: torch.Tensor, fractions: Sequence[float] = (0.0, 0.005, 0.01, 0.015), *,
                      n_random: int = 3, mode: str = "zero", baseline: torch.Tensor | None = None,
                      std: float = 0.1, seed: int = 0, batch_size: int = 64, max_length: int = 128) -> pd.DataFrame:
    """Accuracy vs the fraction of neurons suppressed per layer: skill neurons vs random draws.

    Skill neurons are the top `fraction` per layer by `scores`; each random draw suppresses the same
    number of uniformly drawn neurons per layer. Rows: fraction, n_per_layer, kind, draw, accuracy.
    """
    scores = _check_scores(scores)
    if n_random < 1:
        raise ConfigError(f"n_random must be at least 1, got {n_random}")
    encoded = backbone.encode(data, max_length) if isinstance(data, pd.DataFrame) else data
    gen = torch.Generator().manual_seed(int(seed))
    rows = []

    def acc(mask: torch.Tensor, draw_seed: int) -> float:
        with intervene_ffn(backbone, mask, mode, baseline=baseline, std=std, seed=draw_seed):
            return evaluate(backbone, prompt, task, encoded, batch_size=batch_size, max_length=max_length).accuracy

    for fraction in fractions:
        skill = top_per_layer(scores, fraction=fraction)
        n = int(skill[0].sum())
        skill_acc = acc(skill, seed)
        rows.append({"fraction": fraction, "n_per_layer": n, "kind": "skill", "draw": 0, "accuracy": skill_acc})
        for draw in range(n_random):
            rnd = random_per_layer(tuple(scores.shape), n, gen)
            # with nothing suppressed every draw is the unperturbed model: evaluate it once
            rows.append({"fraction": fraction, "n_per_layer": n, "kind": "random", "draw": draw,
                         "accuracy": skill_acc if n == 0 else acc(rnd, seed + 1 + draw)})
    return pd.DataFrame(rows)


def task_specificity(scores_a: torch.Tensor, scores_b: torch.Tensor) -> pd.DataFrame:
    """Per-layer Spearman correlation of two tasks' predictivities; `.attrs['mean']` averages layers."""
    a, b = _check_scores(scores_a), _check_scores(scores_b)
    if a.shape != b.shape:
        raise ConfigError(f"score shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    rho = [float(spearmanr(a[layer].numpy(), b[layer].numpy()).statistic) for layer in range(a.shape[0])]
    table = pd.DataFrame({"layer": np.arange(a.shape[0]), "spearman": rho})
    table.attrs["mean"] = float(np.nanmean(rho))
    return table


def percentile_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Per layer, each neuron's percentile (0-100] among its layer's neurons (ties share the top rank)."""
    scores = _check_scores(scores).to(torch.float64)
    n = scores.shape[1]
    ranks = torch.empty_like(scores)
    for layer in range(scores.shape[0]):
        row = scores[layer]
        ranks[layer] = (row.unsqueeze(1) >= row.unsqueeze(0)).sum(dim=1).to(torch.float64) / n * 100.0
    return ranks


def clean_vs_adversarial(clean: torch.Tensor, adversarial: torch.Tensor,
                         fractions: Sequence[float] = (0.005, 0.01, 0.015)) -> pd.DataFrame:
    """Do clean-data skill neurons stay predictive on adversarial data?

    Per fraction and layer: overlap of the top-fraction neurons on clean and on adversarial data
    (|both| / k), and the mean adversarial predictivity and percentile rank of the neurons selected
    on clean data (50 = no better than a typical neuron).
    """
    c, a = _check_scores(clean), _check_scores(adversarial)
    if c.shape != a.shape:
        raise ConfigError(f"score shapes differ: {tuple(c.shape)} vs {tuple(a.shape)}")
    ranks = percentile_ranks(a)
    rows = []
    for fraction in fractions:
        top_c, top_a = top_per_layer(c, fraction=fraction), top_per_layer(a, fraction=fraction)
        k = int(top_c[0].sum())
        if k == 0:
            raise ConfigError(f"fraction {fraction} selects no neuron of {c.shape[1]} per layer")
        for layer in range(c.shape[0]):
            sel = top_c[layer]
            rows.append({"fraction": fraction, "layer": layer, "k": k,
                         "overlap": float((sel & top_a[layer]).sum()) / k,
                         "adv_predictivity": float(a[layer][sel].to(torch.float64).mean()),
                         "adv_percentile": float(ranks[layer][sel].mean()),
                         "clean_predictivity": float(c[layer][sel].to(torch.float64).mean())})
    return pd.DataFrame(rows)
