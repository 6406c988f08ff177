"""Structural pruning of FFN neurons: the Skill-Neuron paper's application (Wang et al. 2022, sec. 7).

If a prompt's skill lives in a few FFN neurons, the others can be removed to speed up inference.
Removing neuron n of layer l deletes row n of the FFN's input projection(s) and column n of its
output projection, so the layer computes

    FFN_l(x) = W_out[:, K_l] act(W_in[K_l] x + b_in[K_l]) + b_out,

with K_l the kept neurons: exactly the unpruned layer with the other neurons' activations set to 0
(`lib.hooks.intervene_ffn(..., mode='zero')`), but with smaller matrices. The pruned backbone is a
deep copy; the original and every global setting are left as they were. Its `config` still states
the unpruned width (forward passes do not read it), so save the pruned model only with that in mind.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import ConfigError, unknown
from .hooks import ffn_sites, neuron_mask
from .models import Backbone
from .skill_neurons import top_per_layer

HOW = ("top", "random")


def keep_mask(scores: torch.Tensor, fraction: float, how: str = "top", seed: int = 0) -> torch.Tensor:
    """Boolean (layers, width) mask of the neurons to keep, k = max(1, round(fraction * width)) per layer.

    'top' keeps each layer's k most predictive neurons (ties to the lower index, `top_per_layer`);
    'random' keeps k neurons drawn per layer from a generator seeded with `seed` (the control).
    The same k in every layer keeps the layers' widths equal, as `lib.hooks.ffn_sites` requires.
    """
    if how not in HOW:
        raise unknown("pruning selection", how, HOW)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"kept fraction must be in (0, 1], got {fraction}")
    scores = torch.as_tensor(scores)
    if scores.dim() != 2 or scores.numel() == 0:
        raise ConfigError(f"scores must be a non-empty (layers, width) tensor, got shape {tuple(scores.shape)}")
    layers, width = scores.shape
    k = max(1, round(fraction * width))
    if how == "top":
        return top_per_layer(scores, k=k)
    gen = torch.Generator().manual_seed(int(seed))
    mask = torch.zeros(layers, width, dtype=torch.bool)
    for layer in range(layers):
        mask[layer, torch.randperm(width, generator=gen)[:k]] = True
    return mask


def _slice(linear: nn.Linear, idx: torch.Tensor, dim: int) -> None:
    """Keep rows (dim 0: output features, with the bias) or columns (dim 1: input features) `idx`."""
    linear.weight = nn.Parameter(linear.weight.index_select(dim, idx.to(linear.weight.device)).clone(),
                                 requires_grad=False)
    if dim == 0:
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias[idx.to(linear.bias.device)].clone(), requires_grad=False)
        linear.out_features = len(idx)
    else:
        linear.in_features = len(idx)


def prune_ffn(backbone: Backbone, keep: torch.Tensor, part: str = "encoder") -> Backbone:
    """A new Backbone whose `part` FFN layers hold only the `keep` (layers, width) neurons.

    The model is deep-copied and its FFN matrices sliced (see the module docstring); tokenizer,
    head, name and readout options are those of `backbone`, which is not changed. Every layer must
    keep the same number of neurons, at least one.
    """
    sites = ffn_sites(backbone, part)
    mask = neuron_mask(keep, len(sites), sites[0].width)
    counts = mask.sum(dim=1)
    if int(counts.min()) < 1 or int(counts.max()) != int(counts.min()):
        raise ConfigError(f"keep mask must keep the same number (>= 1) of neurons in every layer, "
                          f"got {counts.tolist()}; build it with keep_mask")
    pruned = Backbone(copy.deepcopy(backbone.model), backbone.tokenizer, backbone.head, backbone.name,
                      verbalizer_space=backbone.verbalizer_space, prompt_positions=backbone.prompt_positions)
    # (input projections, output projection) of every FFN, by the id of its site module (`Family.ffn_projections`)
    projections = pruned.rules.ffn_projections(pruned.model)
    for site in ffn_sites(pruned, part):
        if id(site.module) not in projections:
            raise ConfigError(f"FFN layer {site.layer} of backbone {backbone.name!r}: no projections found "
                              f"beside {type(site.module).__name__}; pruning supports BERT, RoBERTa and T5 layers")
        inputs, output = projections[id(site.module)]
        idx = mask[site.layer].nonzero().flatten()
        for linear in inputs:
            _slice(linear, idx, 0)
        _slice(output, idx, 1)
    return pruned


def count_parameters(backbone: Backbone) -> int:
    """Number of parameter values of the backbone's model (tied weights counted once)."""
    return sum(p.numel() for p in backbone.model.parameters())
