"""What a model family decides, as one abstract class: everything `lib` does differently per kind of backbone.

A *family* is a kind of pretrained network that prompt tuning reads the same way: one tokenizer convention,
one place where the soft prompt goes, one place where the label is read, one module that is "the FFN
neuron". `lib.models.Backbone` and the tools around it (hooks, pruning, adapters, LoRA, PEFT export, the
permuted-copy control) ask the backbone's family (`Backbone.rules`) instead of comparing model-type strings,
so that adding a family is one new module, one registry entry (`lib.families.REGISTERED`) and its
tiny-model test.

The families of this package:
- `encoder_mlm.EncoderMLM` (BERT, RoBERTa, XLM-R; all-MiniLM-L6-v2 is a BERT): the soft prompt is prepended to
  the text, prompt row 0 is replaced by the frozen `<mask>` embedding (the *mask slot*), and the label is read
  at that slot through the MLM head ('mlm') or the tied input embeddings ('tied');
- `encoder_decoder.EncoderDecoder` (T5): the prompt is prepended to the encoder input, no row is overwritten,
  and the label is the verbalizer logit at the decoder's first step.

A decoder-only family (GPT-2, Llama) would be a third subclass. It would: load with `AutoModelForCausalLM`
(`load_model`, head e.g. 'causal'); prepend the prompt to the text and read the label at the *last* real
token of each row (so `read_labels` gathers the final non-padding position, and `slot_rows` is 0: no prompt
row is overwritten); score label words with a leading space, as byte-level BPE spells a word after another
(`leading_space=True`, first BPE piece as the label token, as T5 takes the first sentencepiece); report
`decoder` None (its single stack is its `encoder`), `readout_part` 'encoder'; place its FFN neuron at the
input of the MLP's output projection (`ffn_site`: GPT-2's `mlp.c_proj`, Llama's `mlp.down_proj`) and its
projections for pruning (`ffn_projections`); and name its LoRA and adapter targets (`lora_targets`,
`adapter_sites`). Its verbalizer could reuse the masked-LM words (`label_words`). Nothing outside the new
module would change.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from ..errors import ConfigError, unknown

if TYPE_CHECKING:
    from ..models import Backbone, Batch
    from ..tasks import Task

# (the module a hook goes on, whether the activation is that module's input, the number of neurons)
FFNActivation = tuple[nn.Module, bool, int]
# id of the FFN site module -> (its input projections, its output projection)
FFNProjections = dict[int, tuple[list[nn.Linear], nn.Linear]]


@dataclass(frozen=True)
class Family(ABC):
    """The rules of one family of backbones. Instances are immutable and shared: one per registry entry.

    Fields are what differs between members of a family (BERT vs RoBERTa); class variables are what the
    whole family shares.
    """

    title: str  # the family's name in messages ('BERT', 'RoBERTa', 'T5')
    model_types: tuple[str, ...]  # the `config.model_type` values it loads
    # whether label words are tokenised after a space when the backbone's `verbalizer_space` asks for it:
    # byte-level BPE spells a word after a space as another token ('Ġpositive') than at the start of a text
    leading_space: bool = False

    key: ClassVar[str]  # the short name `Backbone.family` reports ('mlm', 't5'); enters no key or signature
    label: ClassVar[str]  # the kind of model in messages ('a masked LM', 'a T5 backbone')
    heads: ClassVar[tuple[str, ...]]  # the readouts it offers (`Backbone.head`, part of run signatures)
    slot_rows: ClassVar[int]  # leading prompt rows replaced by the readout slot (the `<mask>` row), 0 for none
    readout_part: ClassVar[str]  # 'encoder' or 'decoder': where the label is read (`lib.indicators`)
    relative_positions: ClassVar[bool]  # relative position biases: the prompt slots cannot get zero positions
    has_bias: ClassVar[bool]  # whether its linear layers have bias terms (BitFit trains only those)
    lora_targets: ClassVar[tuple[str, ...]]  # names of the attention query/value projections (LoRA)
    adapter_sites: ClassVar[tuple[tuple[str, ...], tuple[str, ...]]]  # suffixes of (attention, FFN) outputs
    peft_task_types: ClassVar[tuple[str, ...]]  # PEFT task types whose forward is `[prompt] + input`; first: default
    peft_layout: ClassVar[str]  # how an exported PEFT adapter's label is read, for its note file

    # --- loading ----------------------------------------------------------------------------------
    @abstractmethod
    def resolve_head(self, config: Any, head: str) -> str:
        """The readout for `head` ('auto' or one of `heads`) on a checkpoint with this config; an error
        naming the valid heads otherwise."""

    @abstractmethod
    def load_model(self, path: str, head: str, local_files_only: bool) -> nn.Module:
        """The pretrained model class that carries the readout `head`, loaded from `path`."""

    def head_transform(self, model: nn.Module, head: str, name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """What the readout `head` applies to a slot's hidden state before the output embeddings (None: nothing)."""
        return None

    def check_tokenizer(self, tokenizer: Any, name: str) -> None:
        """Refuse a tokenizer that lacks a special token the readout needs (nothing by default)."""

    # --- structure --------------------------------------------------------------------------------
    @abstractmethod
    def encoder(self, model: nn.Module) -> nn.Module:
        """The stack that reads the prompted input embeddings (and returns `last_hidden_state`)."""

    def decoder(self, model: nn.Module) -> nn.Module | None:
        """The decoder stack, None where there is none."""
        return None

    def first_position(self, config: Any) -> int:
        """The position id of a sequence's first token (absolute position embeddings)."""
        return 0

    @abstractmethod
    def max_positions(self, config: Any) -> int | None:
        """The longest sequence (prompt + text) the position embeddings allow; None for relative positions."""

    # --- verbalizer -------------------------------------------------------------------------------
    @abstractmethod
    def label_words(self, task: "Task") -> tuple[str, ...]:
        """The task's label words for this family (each task declares one list per family of words)."""

    @abstractmethod
    def label_token(self, tokenizer: Any, word: str, *, space: bool, name: str) -> int:
        """The one token id scored for `word`; `space`: the backbone's `verbalizer_space` option."""

    # --- prompt and readout -----------------------------------------------------------------------
    def fill_slot(self, backbone: "Backbone", prompt: torch.Tensor) -> torch.Tensor:
        """The prompt rows as fed to the model: the first `slot_rows` rows replaced by the readout slot's
        frozen embedding (no row by default)."""
        return prompt

    @abstractmethod
    def read_labels(self, backbone: "Backbone", states: torch.Tensor, attn: torch.Tensor,
                    verbalizer_ids: torch.Tensor) -> torch.Tensor:
        """(batch, n_labels) verbalizer logits from the prompted encoder's states; only those are computed."""

    def slot_logits(self, backbone: "Backbone", hidden: torch.Tensor, verbalizer_ids: torch.Tensor) -> torch.Tensor:
        """Verbalizer logits from the final hidden state at a mask slot; families without one refuse."""
        raise ConfigError(f"{self.title} has no mask slot to read a label at")

    def slot_only_logits(self, backbone: "Backbone", prompt: torch.Tensor, batch: "Batch",
                         verbalizer_ids: torch.Tensor) -> torch.Tensor | None:
        """The same logits as `read_labels` with the last layer computed at the readout slot alone, or None
        where that shortcut does not apply (the caller then runs the whole model)."""
        return None

    # --- the FFN neuron ---------------------------------------------------------------------------
    @abstractmethod
    def ffn_site(self, module: nn.Module) -> FFNActivation | None:
        """Where the FFN activation (after the non-linearity) of `module` is read, if it is an FFN block."""

    @abstractmethod
    def ffn_projections(self, model: nn.Module) -> FFNProjections:
        """The input and output projections of every FFN, keyed by the id of its `ffn_site` module."""

    # --- other tools ------------------------------------------------------------------------------
    def residual_permutation(self, key: str, tensor: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Parameter `key` with its residual-stream axes permuted by `perm` (the permuted-copy control)."""
        raise ConfigError(f"permuted_copy supports BERT/RoBERTa-style backbones (heads 'mlm', 'tied'), "
                          f"not {self.title}")

    def peft_task_type(self, requested: str | None) -> str:
        """The PEFT task type an export writes: `requested`, checked, or the family's default."""
        task_type = requested or self.peft_task_types[0]
        if task_type not in self.peft_task_types:
            raise unknown(f"PEFT task type for {self.label}", task_type, self.peft_task_types)
        return task_type

    @abstractmethod
    def peft_label_logits(self, peft_model: Any, backbone: "Backbone", batch: "Batch", ids: torch.Tensor,
                          attn: torch.Tensor, verbalizer_ids: torch.Tensor, *, mask_slot: str,
                          token_type_ids: bool) -> torch.Tensor:
        """(batch, n_labels) verbalizer logits of a PEFT prompt-tuning model on `batch` (its `ids` and `attn`
        already on the model's device, as `verbalizer_ids`), read where lib reads them (`lib.peft_io`)."""


__all__ = ["Family", "FFNActivation", "FFNProjections"]
