"""Encoder-decoders read at the first decoder step: T5.

The soft prompt is prepended to the encoder input as it is (no row is overwritten: there is no mask slot),
and the label is the verbalizer word's logit at the decoder's first step, with `decoder_start_token_id` as
its only input: the word the model would generate first. A label word is scored by its first sentencepiece
(the word-start marker `▁` alone skipped), since that is what the first step generates. T5's position
information is a relative attention bias, so prompt slots cannot be given zero position embeddings, and its
linear layers have no bias terms (no BitFit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConfigError
from .base import Family, FFNActivation, FFNProjections

if TYPE_CHECKING:
    from ..models import Backbone, Batch
    from ..tasks import Task

WORD_START = "▁"  # sentencepiece's word-start marker, a piece of its own before some words


def _ffn_classes() -> tuple[type, ...]:
    """T5's FFN blocks: the activation is the input of their `wo` projection (after ReLU or the gate)."""
    from transformers.models.t5.modeling_t5 import T5DenseActDense, T5DenseGatedActDense

    return T5DenseActDense, T5DenseGatedActDense


@dataclass(frozen=True)
class EncoderDecoder(Family):
    """T5-style encoder-decoders whose label is the first decoder step's logit of the label word."""

    key = "t5"
    label = "a T5 backbone"
    heads = ("t5",)
    slot_rows = 0
    readout_part = "decoder"
    relative_positions = True
    has_bias = False
    lora_targets = ("q", "v")
    adapter_sites = ((".SelfAttention.o", ".EncDecAttention.o"), (".DenseReluDense.wo",))
    peft_task_types = ("SEQ_2_SEQ_LM",)
    peft_layout = ("virtual tokens prepended to the encoder input; the label logits are the verbalizer tokens' logits "
                   "at the first decoder step (decoder_input_ids = [decoder_start_token_id])")

    # --- loading ----------------------------------------------------------------------------------
    def resolve_head(self, config: Any, head: str) -> str:
        if head not in ("auto", *self.heads):
            raise ConfigError(f"model type {config.model_type!r} supports head {self.heads[0]!r}, not {head!r}")
        return self.heads[0]

    def load_model(self, path: str, head: str, local_files_only: bool) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=local_files_only)

    # --- structure --------------------------------------------------------------------------------
    def encoder(self, model: nn.Module) -> nn.Module:
        return model.encoder

    def decoder(self, model: nn.Module) -> nn.Module | None:
        return model.decoder

    def max_positions(self, config: Any) -> int | None:
        return None

    # --- verbalizer -------------------------------------------------------------------------------
    def label_words(self, task: "Task") -> tuple[str, ...]:
        return task.t5_verbalizer

    def label_token(self, tokenizer: Any, word: str, *, space: bool, name: str) -> int:
        """The word's first sentencepiece; `space` does not apply (sentencepiece marks word starts itself)."""
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        pieces = [p for p in pieces if p != tokenizer.convert_tokens_to_ids(WORD_START)] or pieces
        if not pieces:
            raise ConfigError(f"verbalizer word {word!r} is empty for backbone {name!r}")
        return pieces[0]

    # --- prompt and readout -----------------------------------------------------------------------
    def read_labels(self, backbone: "Backbone", states: torch.Tensor, attn: torch.Tensor,
                    verbalizer_ids: torch.Tensor) -> torch.Tensor:
        """The decoder's first step over the encoder states, dotted with the label words' output embeddings
        (scaled by d_model^-1/2 where the checkpoint ties them to the input embeddings, as T5 does)."""
        config = backbone.config
        start = torch.full((states.shape[0], 1), config.decoder_start_token_id, dtype=torch.long,
                           device=backbone.device)
        dec = backbone.model.decoder(input_ids=start, encoder_hidden_states=states,
                                     encoder_attention_mask=attn).last_hidden_state[:, 0]
        scale = getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", True))
        if scale:
            dec = dec * (config.d_model ** -0.5)
        return dec @ backbone.model.get_output_embeddings().weight[verbalizer_ids].T.to(dec.dtype)

    def slot_logits(self, backbone: "Backbone", hidden: torch.Tensor, verbalizer_ids: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.title} reads its label at the first decoder step, not at a mask slot")

    # --- the FFN neuron ---------------------------------------------------------------------------
    def ffn_site(self, module: nn.Module) -> FFNActivation | None:
        """The input of each FFN block's `wo` projection."""
        if isinstance(module, _ffn_classes()):
            return module.wo, True, module.wo.in_features
        return None

    def ffn_projections(self, model: nn.Module) -> FFNProjections:
        """An FFN block owns `wi` (gated: `wi_0`, `wi_1`) and `wo` (the site)."""
        sites = _ffn_classes()
        return {id(m.wo): ([m.wi] if hasattr(m, "wi") else [m.wi_0, m.wi_1], m.wo)
                for m in model.modules() if isinstance(m, sites)}

    # --- other tools ------------------------------------------------------------------------------
    def peft_task_type(self, requested: str | None) -> str:
        """Always SEQ_2_SEQ_LM: the one PEFT task type that feeds T5's decoder as lib does."""
        if requested not in (None, *self.peft_task_types):
            raise ConfigError(f"a {self.title} prompt exports as task_type {self.peft_task_types[0]}, not "
                              f"{requested!r}")
        return self.peft_task_types[0]

    def peft_label_logits(self, peft_model: Any, backbone: "Backbone", batch: "Batch", ids: torch.Tensor,
                          attn: torch.Tensor, verbalizer_ids: torch.Tensor, *, mask_slot: str,
                          token_type_ids: bool) -> torch.Tensor:
        """At the first decoder step (no mask slot: `mask_slot` does not apply, nor token types)."""
        start = torch.full((ids.shape[0], 1), backbone.config.decoder_start_token_id, dtype=torch.long,
                           device=ids.device)
        out = peft_model(input_ids=ids, attention_mask=attn, decoder_input_ids=start)
        return out.logits[:, 0, verbalizer_ids]


T5 = EncoderDecoder("T5", ("t5",))

__all__ = ["EncoderDecoder", "T5"]
