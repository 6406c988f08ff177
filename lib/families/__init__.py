"""The model families and their registry: which rules (`base.Family`) a backbone of each model type follows.

Adding a family: a module here with a `Family` subclass (see `base` for what it decides, and what a
decoder-only family would implement), an entry in `REGISTERED`, and a test on a tiny model of its real class
(`tests/test_families.py`). No other module compares model types: they ask `Backbone.rules`.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ..errors import ModelLoadError, unknown
from .base import Family
from .encoder_decoder import T5, EncoderDecoder
from .encoder_mlm import BERT, ROBERTA, EncoderMLM

REGISTERED: tuple[Family, ...] = (BERT, ROBERTA, T5)
# config.model_type -> its family, in registration order (the order error messages list them in)
REGISTRY: Mapping[str, Family] = MappingProxyType({t: f for f in REGISTERED for t in f.model_types})
# every readout some family offers ('mlm', 'tied', 't5'), each once
HEADS: tuple[str, ...] = tuple(dict.fromkeys(h for f in REGISTERED for h in f.heads))


def family_for(model_type: str) -> Family:
    """The family of a checkpoint's `config.model_type`; `ModelLoadError` naming the supported types otherwise."""
    try:
        return REGISTRY[model_type]
    except KeyError:
        raise ModelLoadError(f"unsupported model type {model_type!r}; supported: {', '.join(REGISTRY)}") from None


def family_named(family: str | Family) -> Family:
    """A family given as itself or by its key ('mlm', 't5': `Backbone.family`); the first registered one of
    that key (families that share a key share the rules asked for by key: label words, adapter sites)."""
    if isinstance(family, Family):
        return family
    by_key = {f.key: f for f in reversed(REGISTERED)}
    if family not in by_key:
        raise unknown("model family", family, by_key)
    return by_key[family]


__all__ = ["Family", "EncoderMLM", "EncoderDecoder", "BERT", "ROBERTA", "T5", "REGISTERED", "REGISTRY", "HEADS",
           "family_for", "family_named"]
