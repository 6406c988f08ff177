"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021): the adapter arm of the tuning methods.

Skill-Neuron's claim about adapters is about *bottleneck* adapters: small MLPs inserted in series after
a sublayer's output projection, so they read the FFN neurons' output directly,

    h <- h + W_up act(W_down h),      W_down: d -> d / r,  W_up: d / r -> d,  W_up = 0 at the start,

and only the adapters and the LayerNorms train. Placements (`PLACEMENTS`):
- 'houlsby': after the attention output projection and after the FFN output projection of every layer;
- 'pfeiffer': after the FFN output projection only.
The reduction factor r is 16 in both papers' default configurations (`DEFAULT_REDUCTION`); the
activation is ReLU (Pfeiffer) and SiLU ("swish", Houlsby's adapters library default).

Implemented here (the `adapters` library pins another transformers, and PEFT has no bottleneck
adapter) by wrapping the output `nn.Linear` of each sublayer in `AdaptedLinear`, which keeps the
wrapped layer's `in_features`, `out_features`, `weight` and `bias`, so the FFN sites
(`lib.hooks.ffn_sites`) and their interventions work on an adapted model unchanged. With W_up = 0 the
adapted model computes exactly what the original does.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from .errors import ConfigError, unknown
from .families import Family, family_named

PLACEMENTS = ("houlsby", "pfeiffer")
DEFAULT_REDUCTION = 16
ACTIVATIONS = {"houlsby": nn.SiLU, "pfeiffer": nn.ReLU}


class Bottleneck(nn.Module):
    """x + W_up act(W_down x), with W_up (and its bias) zero at the start: the identity until trained."""

    def __init__(self, width: int, reduction: int, activation: type[nn.Module], generator: torch.Generator) -> None:
        super().__init__()
        hidden = max(1, width // reduction)
        self.down = nn.Linear(width, hidden)
        self.act = activation()
        self.up = nn.Linear(hidden, width)
        with torch.no_grad():  # seeded, and independent of the global RNG
            bound = 1.0 / width ** 0.5
            self.down.weight.copy_(torch.empty_like(self.down.weight).uniform_(-bound, bound, generator=generator))
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AdaptedLinear(nn.Module):
    """A frozen `nn.Linear` followed by a bottleneck adapter; looks like the Linear to code that reads it."""

    def __init__(self, inner: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.inner = inner
        self.adapter = adapter

    in_features = property(lambda self: self.inner.in_features)
    out_features = property(lambda self: self.inner.out_features)
    weight = property(lambda self: self.inner.weight)
    bias = property(lambda self: self.inner.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.inner(x))


def adapter_sites(model: nn.Module, family: str | Family, placement: str) -> list[str]:
    """Names of the `nn.Linear` modules an adapter follows, in module order: the output projections of the
    sublayers that the model family names (`Family.adapter_sites`; the family or its key, `Backbone.family`)."""
    if placement not in PLACEMENTS:
        raise unknown("adapter placement", placement, PLACEMENTS)
    attention, ffn = family_named(family).adapter_sites
    suffixes = ffn if placement == "pfeiffer" else attention + ffn
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not name.endswith(suffixes):
            continue
        if placement == "pfeiffer" and name.endswith(attention):  # '.attention.output.dense' ends in '.output.dense'
            continue
        names.append(name)
    if not names:
        raise ConfigError(f"no sublayer output projections found for {placement} adapters in "
                          f"{type(model).__name__}")
    return names


def add_adapters(model: nn.Module, family: str | Family, placement: str = "pfeiffer",
                 reduction: int = DEFAULT_REDUCTION, seed: int = 0) -> list[str]:
    """Insert bottleneck adapters into `model` in place; returns the names of the adapted projections."""
    if reduction < 1:
        raise ConfigError(f"adapter reduction factor must be at least 1, got {reduction}")
    generator = torch.Generator().manual_seed(seed)
    names = adapter_sites(model, family, placement)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        inner = getattr(parent, child)
        adapter = Bottleneck(inner.out_features, reduction, ACTIVATIONS[placement], generator)
        adapter.to(device=inner.weight.device, dtype=inner.weight.dtype)
        setattr(parent, child, AdaptedLinear(inner, adapter))
    return names


HEADS = ("lm_head.", "cls.")  # the masked-LM heads (RoBERTa, BERT): not part of the transformer's layers


def adapter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """What adapter tuning trains: the adapters and the transformer's LayerNorms (as Houlsby et al.), not
    the LayerNorm inside a masked-LM head, which belongs to the readout."""
    for name, param in model.named_parameters():
        if name.startswith(HEADS):
            continue
        if ".adapter." in f".{name}" or "layernorm" in name.lower().replace("_", ""):
            yield name, param


__all__ = ["PLACEMENTS", "DEFAULT_REDUCTION", "Bottleneck", "AdaptedLinear", "adapter_sites", "add_adapters",
           "adapter_parameters"]
