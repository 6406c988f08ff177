"""Context-manager hooks on FFN activations: record them at chosen positions, or intervene on neurons.

The activation site is the FFN hidden layer after its non-linearity (Skill-Neuron definition):
BERT/RoBERTa `*Intermediate` modules' output (after GELU); T5 `DenseReluDense` the input of its
`wo` projection (after ReLU). Each model family says which modules those are (`Family.ffn_site`, by
module type), so any model built from these classes works whatever its attribute paths. Every hook
is removed when the `with` block exits, also after an exception: no state leaks from one analysis
into the next.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .errors import ConfigError, unknown
from .models import Backbone

PARTS = ("encoder", "decoder")
INTERVENTIONS = ("zero", "mean", "noise")


@dataclass(frozen=True)
class FFNSite:
    """One layer's FFN activation: read from `module`'s output, or from the input of `module`."""

    layer: int
    module: nn.Module
    reads_input: bool
    width: int


def ffn_sites(backbone: Backbone, part: str = "encoder") -> list[FFNSite]:
    """The FFN activation sites of the encoder (or T5 decoder), in layer order."""
    if part not in PARTS:
        raise unknown("model part", part, PARTS)
    root = backbone.encoder if part == "encoder" else backbone.rules.decoder(backbone.model)
    if root is None:
        raise ConfigError(f"backbone {backbone.name!r} has no decoder; part='decoder' is for T5")
    sites: list[FFNSite] = []
    for module in root.modules():
        found = backbone.rules.ffn_site(module)  # the family says which module is the FFN neuron
        if found is not None:
            sites.append(FFNSite(len(sites), *found))
    if not sites:
        raise ConfigError(f"no FFN layers found in backbone {backbone.name!r} ({type(backbone.model).__name__})")
    widths = {s.width for s in sites}
    if len(widths) != 1:
        raise ConfigError(f"FFN widths differ across layers ({sorted(widths)}); not supported")
    return sites


class ActivationRecorder:
    """Holds the activations captured during the last forward pass, per layer: (batch, positions, width)."""

    def __init__(self, n_layers: int) -> None:
        self.layers: list[torch.Tensor | None] = [None] * n_layers

    def stacked(self) -> torch.Tensor:
        """(batch, layers, positions, width) of the last forward pass."""
        if any(a is None for a in self.layers):
            raise RuntimeError("no forward pass has been recorded yet")
        return torch.stack(self.layers, dim=1)  # type: ignore[arg-type]


@contextmanager
def _hooked(sites: list[FFNSite], make: Callable[[int, bool], Callable]) -> Iterator[None]:
    """Register one hook per site (pre-hook where the activation is a module's input); always remove."""
    handles = []
    try:
        for s in sites:
            fn = make(s.layer, s.reads_input)
            handles.append(s.module.register_forward_pre_hook(fn) if s.reads_input
                           else s.module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def _select(act: torch.Tensor, positions: torch.Tensor | slice) -> torch.Tensor:
    return act[:, positions] if isinstance(positions, slice) else act.index_select(1, positions.to(act.device))


@contextmanager
def record_ffn(backbone: Backbone, positions: Sequence[int] | slice | torch.Tensor | None = None,
               part: str = "encoder", detach: bool = True) -> Iterator[ActivationRecorder]:
    """Record FFN activations at `positions` (default: all) during forward passes in the block.

    >>> with record_ffn(backbone, positions=range(prompt_len)) as rec:
    ...     backbone.label_logits(prompt, batch, verbalizer)
    ...     acts = rec.stacked()   # (batch, layers, prompt_len, ffn_width)
    """
    sites = ffn_sites(backbone, part)
    if positions is None:
        pos: torch.Tensor | slice = slice(None)
    elif isinstance(positions, slice):
        pos = positions
    else:
        pos = torch.as_tensor(list(positions) if not isinstance(positions, torch.Tensor) else positions,
                              dtype=torch.long)
    rec = ActivationRecorder(len(sites))

    def make(i: int, reads_input: bool):
        if reads_input:
            def pre_hook(_m, args):
                a = _select(args[0], pos)
                rec.layers[i] = a.detach() if detach else a
            return pre_hook
        def hook(_m, _args, output):
            a = _select(output, pos)
            rec.layers[i] = a.detach() if detach else a
        return hook

    with _hooked(sites, make):
        yield rec


def neuron_mask(neurons: torch.Tensor | dict[int, Sequence[int]], n_layers: int, width: int) -> torch.Tensor:
    """A boolean (layers, width) mask from a mask or a {layer: [neuron, ...]} mapping."""
    if isinstance(neurons, dict):
        mask = torch.zeros(n_layers, width, dtype=torch.bool)
        for layer, idx in neurons.items():
            if not 0 <= layer < n_layers:
                raise ConfigError(f"layer {layer} outside 0..{n_layers - 1}")
            idx_t = torch.as_tensor(list(idx), dtype=torch.long)
            if len(idx_t) and (idx_t.min() < 0 or idx_t.max() >= width):
                raise ConfigError(f"neuron index outside 0..{width - 1} in layer {layer}")
            mask[layer, idx_t] = True
        return mask
    mask = torch.as_tensor(neurons)
    if mask.shape != (n_layers, width):
        raise ConfigError(f"neuron mask has shape {tuple(mask.shape)}, expected (layers, width) = {(n_layers, width)}")
    return mask.bool()


@contextmanager
def intervene_ffn(backbone: Backbone, neurons: torch.Tensor | dict[int, Sequence[int]], mode: str = "zero", *,
                  baseline: torch.Tensor | None = None, std: float = 0.1, seed: int = 0,
                  part: str = "encoder") -> Iterator[torch.Tensor]:
    """Perturb chosen FFN neurons at every token position while the block runs.

    mode 'zero' sets them to 0 (Robust-Neurons); 'mean' to `baseline` (layers, width), e.g. their
    mean activation; 'noise' adds Gaussian noise of `std` (Skill-Neuron's default, std 0.1), drawn
    from a generator seeded with `seed` so that runs repeat. Yields the boolean (layers, width) mask.
    """
    if mode not in INTERVENTIONS:
        raise unknown("intervention", mode, INTERVENTIONS)
    sites = ffn_sites(backbone, part)
    mask = neuron_mask(neurons, len(sites), sites[0].width)
    if mode == "mean":
        if baseline is None:
            raise ConfigError("mode='mean' needs a baseline tensor of shape (layers, width)")
        if tuple(baseline.shape) != tuple(mask.shape):
            raise ConfigError(f"baseline has shape {tuple(baseline.shape)}, expected {tuple(mask.shape)}")
    if mode == "noise" and not std > 0:
        raise ConfigError(f"noise std must be positive, got {std}")
    gen = torch.Generator(device=backbone.device).manual_seed(int(seed))

    def perturb(layer: int, act: torch.Tensor) -> torch.Tensor:
        m = mask[layer].to(act.device)
        if not bool(m.any()):
            return act
        if mode == "zero":
            return act.masked_fill(m, 0.0)
        if mode == "mean":
            assert baseline is not None
            return torch.where(m, baseline[layer].to(device=act.device, dtype=act.dtype), act)
        noise = torch.randn(act.shape, generator=gen, device=act.device, dtype=torch.float32).to(act.dtype)
        return act + noise * std * m.to(act.dtype)

    def make(layer: int, reads_input: bool):
        if reads_input:
            return lambda _m, args: (perturb(layer, args[0]), *args[1:])
        return lambda _m, _args, output: perturb(layer, output)

    with _hooked(sites, make):
        yield mask
