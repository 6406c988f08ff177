"""Soft-prompt initialisation and checkpoint files.

A prompt is a plain (length, width) tensor: easy to save, compare across tasks (transfer,
indicators) and project across models. For masked LMs row 0 is the `<mask>` slot; the backbone
replaces it by the frozen mask embedding at every forward pass, and it is initialised to that
embedding so that saved prompts are self-describing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError, unknown
from .io import read_tensors, write_tensors
from .models import Backbone

INITS = ("random", "vocab", "source")
PROMPT_KEY = "prompt"


def init_prompt(backbone: Backbone, length: int, init: str = "vocab", seed: int = 0,
                source: torch.Tensor | str | Path | None = None) -> torch.Tensor:
    """A new prompt tensor (float32, on CPU).

    random: Gaussian with the standard deviation of the vocabulary embeddings (same scale as words);
    vocab: embeddings of randomly drawn non-special vocabulary tokens (Lester et al.);
    source: a copy of an existing prompt (tensor or checkpoint path), e.g. for transfer.
    """
    if init not in INITS:
        raise unknown("prompt init", init, INITS)
    if length < 1:
        raise ConfigError(f"prompt length must be at least 1, got {length}")
    weight = backbone.word_embeddings.weight.detach().float().cpu()
    gen = torch.Generator().manual_seed(int(seed))
    if init == "source":
        if source is None:
            raise ConfigError("init='source' needs a source prompt (a tensor or a checkpoint path)")
        prompt = load_prompt(source) if isinstance(source, (str, Path)) else source.detach().float().cpu().clone()
        backbone.check_prompt(prompt)
        if prompt.shape[0] != length:
            raise ConfigError(f"source prompt has length {prompt.shape[0]}, expected {length}")
    elif init == "random":
        prompt = torch.randn(length, weight.shape[1], generator=gen) * weight.std()
    else:
        special = set(backbone.tokenizer.all_special_ids)
        candidates = torch.tensor([i for i in range(weight.shape[0]) if i not in special])
        pick = candidates[torch.randint(len(candidates), (length,), generator=gen)]
        prompt = weight[pick].clone()
    if init != "source":  # the readout slot's rows (masked LMs: row 0 holds the <mask> embedding)
        prompt = backbone.rules.fill_slot(backbone, prompt).detach()
    return prompt.contiguous()


def save_prompt(path: str | Path, prompt: torch.Tensor, metadata: dict[str, str] | None = None) -> None:
    """Write a prompt as safetensors, atomically."""
    if prompt.dim() != 2:
        raise ConfigError(f"a prompt must be 2-d (length, width), got shape {tuple(prompt.shape)}")
    write_tensors(Path(path), {PROMPT_KEY: prompt.float()}, metadata)


def load_prompt(path: str | Path) -> torch.Tensor:
    """Read a prompt written by `save_prompt`; corrupt or foreign files give a CheckpointError."""
    tensors = read_tensors(Path(path))
    if PROMPT_KEY not in tensors:
        raise CheckpointError(f"{path} holds no '{PROMPT_KEY}' tensor (keys: {sorted(tensors)})")
    prompt = tensors[PROMPT_KEY]
    if prompt.dim() != 2:
        raise CheckpointError(f"{path}: prompt has shape {tuple(prompt.shape)}, expected (length, width)")
    return prompt
