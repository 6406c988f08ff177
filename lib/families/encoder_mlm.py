"""Encoders read at a `<mask>` slot: BERT, RoBERTa and XLM-R, with their MLM head or with tied embeddings.

The soft prompt is prepended to the tokenised text and its row 0 is replaced, at every forward pass, by the
frozen `<mask>` word embedding: the label is read from the final hidden state at sequence position 0 (the
references' mask slot at prompt position 0). Two readouts:
- 'mlm': a checkpoint saved with its masked-LM head; the head's transform (dense, GELU, LayerNorm) is applied
  to that one hidden state, which is then dotted with the verbalizer rows of the output embeddings (+ bias);
- 'tied': a bare encoder (all-MiniLM-L6-v2 ships without an MLM head transform); the hidden state is dotted
  with the input word embeddings of the label words.
Full-vocabulary logits at every position are never formed.

BERT and RoBERTa differ in two rules, kept as data on the one class: RoBERTa's byte-level BPE spells a word
after a space as another token (`Ġpositive`), so its label words may be scored with a leading space
(`leading_space`); and RoBERTa numbers positions from `pad_token_id + 1` (`positions_after_padding`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..errors import ConfigError, ModelLoadError
from .base import Family, FFNActivation, FFNProjections

if TYPE_CHECKING:
    from ..models import Backbone, Batch
    from ..tasks import Task


def _intermediate_classes() -> tuple[type, ...]:
    """The FFN blocks whose output (after GELU) is the Skill-Neuron activation: `*Intermediate` modules."""
    from transformers.models.bert.modeling_bert import BertIntermediate
    from transformers.models.roberta.modeling_roberta import RobertaIntermediate

    found: list[type] = [BertIntermediate, RobertaIntermediate]
    try:
        from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaIntermediate

        found.append(XLMRobertaIntermediate)
    except ImportError:  # pragma: no cover - optional model family
        pass
    return tuple(found)


@dataclass(frozen=True)
class EncoderMLM(Family):
    """BERT-style encoders whose label is read at a `<mask>` slot in prompt row 0."""

    positions_after_padding: bool = False  # position ids start at pad_token_id + 1 (RoBERTa), else at 0

    key = "mlm"
    label = "a masked LM"
    heads = ("mlm", "tied")
    slot_rows = 1
    readout_part = "encoder"
    relative_positions = False
    has_bias = True
    lora_targets = ("query", "value")
    # '.attention.output.dense' also ends in '.output.dense': `lib.adapters` tells them apart
    adapter_sites = ((".attention.output.dense",), (".output.dense",))
    peft_task_types = ("FEATURE_EXTRACTION", "TOKEN_CLS")
    peft_layout = ("virtual token 0 is the <mask> slot (the frozen <mask> embedding); the label logits are the masked "
                   "LM's logits of the verbalizer tokens at output position 0")

    # --- loading ----------------------------------------------------------------------------------
    def resolve_head(self, config: Any, head: str) -> str:
        """'auto': 'mlm' for checkpoints saved with a masked-LM head, 'tied' for bare encoders."""
        if head == "auto":
            archs = config.architectures or []
            return "mlm" if any(a.endswith("ForMaskedLM") or a.endswith("ForPreTraining") for a in archs) else "tied"
        if head not in self.heads:
            raise ConfigError(f"model type {config.model_type!r} cannot use head {head!r}; valid: "
                              f"{', '.join(('auto', *self.heads))}")
        return head

    def load_model(self, path: str, head: str, local_files_only: bool) -> nn.Module:
        from transformers import AutoModel, AutoModelForMaskedLM

        if head == "mlm":
            return AutoModelForMaskedLM.from_pretrained(path, local_files_only=local_files_only)
        return AutoModel.from_pretrained(path, local_files_only=local_files_only, add_pooling_layer=False)

    def head_transform(self, model: nn.Module, head: str, name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The MLM head's transform (RoBERTa's `lm_head`, BERT's `cls.predictions`) for head 'mlm'."""
        if head != "mlm":
            return None
        if hasattr(model, "lm_head") and hasattr(model.lm_head, "dense"):  # RoBERTa family
            lm = model.lm_head
            return lambda h: lm.layer_norm(nn.functional.gelu(lm.dense(h)))
        if hasattr(model, "cls") and hasattr(model.cls, "predictions"):  # BERT family
            return model.cls.predictions.transform
        raise ModelLoadError(f"backbone {name!r}: no MLM head transform found; use head='tied'")

    def check_tokenizer(self, tokenizer: Any, name: str) -> None:
        if tokenizer.mask_token_id is None:
            raise ModelLoadError(f"backbone {name!r} has no mask token; masked-LM prompting needs one")

    # --- structure --------------------------------------------------------------------------------
    def encoder(self, model: nn.Module) -> nn.Module:
        return model.base_model

    def first_position(self, config: Any) -> int:
        return int(config.pad_token_id) + 1 if self.positions_after_padding else 0

    def max_positions(self, config: Any) -> int | None:
        return int(config.max_position_embeddings) - self.first_position(config)

    # --- verbalizer -------------------------------------------------------------------------------
    def label_words(self, task: "Task") -> tuple[str, ...]:
        return task.mlm_verbalizer

    def label_token(self, tokenizer: Any, word: str, *, space: bool, name: str) -> int:
        """The word's single token at the mask slot (with a leading space where `space` and the tokenizer
        spells words after a space differently); a word of several tokens cannot be one slot's label."""
        pieces = tokenizer(" " + word if space and self.leading_space else word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            toks = tokenizer.convert_ids_to_tokens(pieces)
            raise ConfigError(f"verbalizer word {word!r} is {len(pieces)} tokens {toks} for backbone "
                              f"{name!r}; masked-LM verbalizers must be single tokens")
        return pieces[0]

    # --- prompt and readout -----------------------------------------------------------------------
    def fill_slot(self, backbone: "Backbone", prompt: torch.Tensor) -> torch.Tensor:
        """Row 0 becomes the `<mask>` embedding (trained with the weights in full model tuning, frozen otherwise)."""
        mask = backbone.word_embeddings.weight[backbone.tokenizer.mask_token_id].to(device=prompt.device,
                                                                                    dtype=prompt.dtype)
        return torch.cat([mask.unsqueeze(0), prompt[1:]], dim=0)

    def read_labels(self, backbone: "Backbone", states: torch.Tensor, attn: torch.Tensor,
                    verbalizer_ids: torch.Tensor) -> torch.Tensor:
        return self.slot_logits(backbone, states[:, 0], verbalizer_ids)

    def slot_logits(self, backbone: "Backbone", hidden: torch.Tensor, verbalizer_ids: torch.Tensor) -> torch.Tensor:
        """The MLM head restricted to the verbalizer rows ('mlm'), or the tied word embeddings ('tied')."""
        vid = verbalizer_ids.to(hidden.device)
        if backbone.head == "tied":
            return hidden @ backbone.word_embeddings.weight[vid].T.to(hidden.dtype)
        assert backbone.head_transform is not None
        h = backbone.head_transform(hidden)
        out = backbone.model.get_output_embeddings()
        logits = h @ out.weight[vid].T.to(h.dtype)
        if out.bias is not None:
            logits = logits + out.bias[vid].to(h.dtype)
        return logits

    def slot_only_logits(self, backbone: "Backbone", prompt: torch.Tensor, batch: "Batch",
                         verbalizer_ids: torch.Tensor) -> torch.Tensor | None:
        if not _slot_only_possible(backbone):
            return None
        return self.slot_logits(backbone, _last_layer_at_slot(backbone, prompt, batch), verbalizer_ids)

    # --- the FFN neuron ---------------------------------------------------------------------------
    def ffn_site(self, module: nn.Module) -> FFNActivation | None:
        """The output of each layer's `*Intermediate` module (after GELU)."""
        if isinstance(module, _intermediate_classes()):
            return module, False, module.dense.out_features
        return None

    def ffn_projections(self, model: nn.Module) -> FFNProjections:
        """A layer owns both `.intermediate` (the site, its input projection) and `.output` (the output one)."""
        sites = _intermediate_classes()
        found: FFNProjections = {}
        for m in model.modules():
            if isinstance(getattr(m, "intermediate", None), sites) and hasattr(m, "output"):
                found[id(m.intermediate)] = ([m.intermediate.dense], m.output.dense)
        return found

    # --- other tools ------------------------------------------------------------------------------
    def residual_permutation(self, key: str, tensor: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Permute one BERT/RoBERTa parameter along its residual-stream (hidden) axes; leave others alone."""
        k = key.lower()
        if k.endswith(("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                       "decoder.weight")) or (k.endswith(".weight") and any(
                           s in k for s in ("attention.self.query", "attention.self.key", "attention.self.value",
                                            "intermediate.dense"))):
            return tensor[:, perm]  # reads the residual stream (columns) or is the tied (vocab, hidden) matrix
        if k.endswith(("layernorm.weight", "layernorm.bias", "layer_norm.weight", "layer_norm.bias")):
            return tensor[perm]
        if "transform.dense" in k or "lm_head.dense" in k or "pooler.dense" in k:  # hidden -> hidden
            return tensor[perm][:, perm] if tensor.dim() == 2 else tensor[perm]
        if "output.dense" in k:  # attention output and FFN output write into the residual stream
            return tensor[perm] if tensor.dim() == 1 else tensor[perm, :]
        return tensor

    def peft_label_logits(self, peft_model: Any, backbone: "Backbone", batch: "Batch", ids: torch.Tensor,
                          attn: torch.Tensor, verbalizer_ids: torch.Tensor, *, mask_slot: str,
                          token_type_ids: bool) -> torch.Tensor:
        """At output position 0 ('virtual0'), or after the virtual tokens where a real `<mask>` input token
        follows them ('input')."""
        dev = ids.device
        kwargs: dict[str, Any] = {}
        position = 0
        if mask_slot == "input":
            n = ids.shape[0]
            ids = torch.cat([torch.full((n, 1), backbone.tokenizer.mask_token_id, device=dev), ids], dim=1)
            attn = torch.cat([torch.ones(n, 1, dtype=attn.dtype, device=dev), attn], dim=1)
            position = peft_model.active_peft_config.num_virtual_tokens
        if token_type_ids and batch.token_type_ids is not None:
            types = batch.token_type_ids.to(dev)
            if mask_slot == "input":
                types = torch.cat([torch.zeros(types.shape[0], 1, dtype=types.dtype, device=dev), types], dim=1)
            kwargs["token_type_ids"] = types
        with warnings.catch_warnings():  # FEATURE_EXTRACTION warns that it drops token-type ids (lib.peft_io)
            warnings.filterwarnings("ignore", message="Token type ids are not supported")
            out = peft_model(input_ids=ids, attention_mask=attn, **kwargs)
        if backbone.head == "mlm":
            return out.logits[:, position, verbalizer_ids]
        hidden = out.last_hidden_state[:, position]  # 'tied': the tied word embeddings of the label words
        return hidden @ backbone.word_embeddings.weight[verbalizer_ids].T.to(hidden.dtype)


def _slot_only_possible(backbone: "Backbone") -> bool:
    """The last layer is computed by hand only where its modules are the BERT/RoBERTa ones this code knows
    and carry no hooks (an FFN intervention or recording must see every position)."""
    layers = getattr(getattr(backbone.encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) < 2:
        return False
    last = layers[-1]
    parts = [getattr(last, "attention", None), getattr(last, "intermediate", None), getattr(last, "output", None)]
    if any(p is None for p in parts) or not hasattr(last.attention, "self") or not hasattr(last.attention, "output"):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in last.modules())


def _last_layer_at_slot(backbone: "Backbone", prompt: torch.Tensor, batch: "Batch") -> torch.Tensor:
    """(batch, width) final hidden state at the `<mask>` slot (position 0): every layer but the last run by
    the model on every position, the last one for the slot only, from its own modules:
    a = LN(h0 + W_o softmax(q0 K^T / sqrt(d) + mask) V), out = LN(a + W_2 gelu(W_1 a)),
    with q0 the slot's query and K, V every position's keys and values."""
    stack = backbone.encoder.encoder
    layers = stack.layer
    last = layers[-1]
    stack.layer = layers[:-1]  # the model runs L-1 layers; restored whatever happens
    try:
        states, attn = backbone.encode_prompted(prompt, batch)
    finally:
        stack.layer = layers
    sa = last.attention.self
    n, width = states.shape[0], states.shape[1]
    heads, size = sa.num_attention_heads, sa.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:  # (n, t, heads * size) -> (n, heads, t, size)
        return x.view(n, -1, heads, size).transpose(1, 2)
    slot = states[:, :1]
    keep = attn.to(torch.bool)[:, None, None, :].expand(n, 1, 1, width)
    ctx = nn.functional.scaled_dot_product_attention(split(sa.query(slot)), split(sa.key(states)),
                                                     split(sa.value(states)), attn_mask=keep)
    ctx = ctx.transpose(1, 2).reshape(n, 1, heads * size)
    a = last.attention.output(ctx, slot)
    return last.output(last.intermediate(a), a)[:, 0]


BERT = EncoderMLM("BERT", ("bert",))
ROBERTA = EncoderMLM("RoBERTa", ("roberta", "xlm-roberta"), leading_space=True, positions_after_padding=True)

__all__ = ["EncoderMLM", "BERT", "ROBERTA"]
