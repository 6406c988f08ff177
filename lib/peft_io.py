"""Move soft prompts between this project and PEFT's prompt tuning, with the mask slot made explicit.

    python -m lib.peft_io export --profile paper --unit tune/sst2/seed0 --out peft/sst2-seed0
    python -m lib.peft_io export --prompt results/.../prompt.safetensors --model roberta-base --out peft/x
    python -m lib.peft_io import peft/x --model roberta-base --out prompt.safetensors [--mask-slot input]

The two formats:
- this project: `prompt.safetensors`, one tensor `prompt` of shape (L, width), float32;
- PEFT: a folder with `adapter_config.json` (`peft_type` PROMPT_TUNING, `num_virtual_tokens`,
  `token_dim`, ...) and `adapter_model.safetensors` holding `prompt_embeddings`, shape
  (num_virtual_tokens x num_transformer_submodules, token_dim).

Where the prompt sits. `lib.models.Backbone.prompt_inputs` builds the input embeddings as
`[prompt rows 0..L-1] + [the tokenised text]`, the text with its own special tokens
(`[CLS] a [SEP] b [SEP]`, `<s> a </s></s> b </s>`, T5: `a </s>`), the attention mask all ones over
the prompt, position ids counted from the first prompt row (the models' defaults for
`inputs_embeds`), token-type ids 0 over the prompt and the tokenizer's over the text. PEFT's prompt
tuning builds exactly `[virtual tokens] + [input_ids' embeddings]` with the same masks. So:

- masked LMs (RoBERTa, BERT; heads 'mlm' and 'tied'): lib's row 0 is the *mask slot*: at every
  forward pass it is replaced by the frozen `<mask>` word embedding and the label is read from the
  final hidden state at sequence position 0. Exported (`mask_slot='virtual0'`), PEFT's
  `num_virtual_tokens` is L and virtual token 0 holds the `<mask>` embedding, so a PEFT model gives
  the same label logits at output position 0 (`peft_label_logits`). PEFT trains every virtual
  token: a prompt trained with PEFT in this layout keeps lib's meaning only if its virtual token 0
  stayed the `<mask>` embedding (freeze it, or reset it after each step); importing replaces it by
  the `<mask>` embedding and reports how far it had moved (`PeftPrompt.slot_drift`).
  `mask_slot='input'` imports the other common PEFT layout, L' virtual tokens followed by a real
  `<mask>` input token (`[P] <mask> <s> text`, as benchmarks/tuning_vs_peft.py trains it): lib's
  prompt becomes `[<mask>, P]` (length L'+1). That moves the mask from position L' to 0, so its
  position embedding and every attention score change: the logits are *not* the same, it is a
  re-layout to fine-tune from, not an exact conversion.
- T5: no mask slot; the virtual tokens are lib's rows 1:1 (encoder side) and the label is the
  verbalizer logit at the first decoder step. PEFT's SEQ_2_SEQ_LM default keeps a second block of
  `num_virtual_tokens` rows for the decoder (`num_transformer_submodules=2`) that prompt tuning
  never uses; export writes 1, import reads the first block.

Token-type ids (BERT; RoBERTa and T5 have none): lib passes them, zero over the prompt. PEFT's
FEATURE_EXTRACTION model (the export's default task type for masked LMs) drops token-type ids with
a warning, so on sentence pairs BERT sees segment 0 for the second text too and its logits differ
from lib's; export with `task_type='TOKEN_CLS'` (PEFT then prepends zeros for the virtual tokens,
as lib does) when pairs must match. Single sentences are unaffected either way.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import CheckpointError, CompendiumError, ConfigError, unknown
from .models import Backbone, Batch
from .prompt import load_prompt, save_prompt

MASK_SLOTS = ("virtual0", "input")
MLM_TASK_TYPES = ("FEATURE_EXTRACTION", "TOKEN_CLS")
CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_KEY = "adapter_config.json", "adapter_model.safetensors", "prompt_embeddings"
NOTE_FILE = "compendium_prompt.json"


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("PEFT is not installed: pip install -e .[bench] (or pip install peft)") from None
    return peft


def lib_layout_rows(backbone: Backbone, prompt: torch.Tensor) -> torch.Tensor:
    """The rows lib actually feeds for `prompt`: row 0 replaced by the `<mask>` embedding for masked LMs."""
    backbone.check_prompt(prompt)
    rows = prompt.detach().float().cpu().clone()
    if backbone.family == "mlm":
        rows[0] = backbone.word_embeddings.weight[backbone.tokenizer.mask_token_id].detach().float().cpu()
    return rows


def export_peft(prompt: torch.Tensor | str | Path, backbone: Backbone, out_dir: str | Path, *,
                task_type: str | None = None, base_model: str | None = None,
                note: dict[str, Any] | None = None) -> Path:
    """Write `prompt` as a PEFT prompt-tuning adapter folder that `PeftModel.from_pretrained` loads.

    Masked LMs: `num_virtual_tokens` = L, virtual token 0 = the `<mask>` embedding (see the module
    doc), `task_type` FEATURE_EXTRACTION (default) or TOKEN_CLS; T5: SEQ_2_SEQ_LM with one block
    of virtual tokens. `base_model` (default: the backbone's name) is written as
    `base_model_name_or_path`. A `compendium_prompt.json` beside the adapter says how to read the label.
    """
    peft = _peft()
    if isinstance(prompt, (str, Path)):
        prompt = load_prompt(Path(prompt) / "prompt.safetensors" if Path(prompt).is_dir() else prompt)
    rows = lib_layout_rows(backbone, prompt)
    if backbone.family == "t5":
        if task_type not in (None, "SEQ_2_SEQ_LM"):
            raise ConfigError(f"a T5 prompt exports as task_type SEQ_2_SEQ_LM, not {task_type!r}")
        task_type = "SEQ_2_SEQ_LM"
    else:
        task_type = task_type or "FEATURE_EXTRACTION"
        if task_type not in MLM_TASK_TYPES:
            raise unknown("PEFT task type for a masked LM", task_type, MLM_TASK_TYPES)
    cfg = backbone.config
    layers = getattr(cfg, "num_layers", None) or getattr(cfg, "num_hidden_layers", None)
    heads = getattr(cfg, "num_heads", None) or getattr(cfg, "num_attention_heads", None)
    config = peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=int(rows.shape[0]),
                                     token_dim=int(rows.shape[1]), num_transformer_submodules=1,
                                     num_attention_heads=heads, num_layers=layers, prompt_tuning_init="RANDOM",
                                     base_model_name_or_path=base_model or backbone.name, inference_mode=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    from .io import write_json, write_tensors

    write_tensors(out / WEIGHTS_FILE, {WEIGHTS_KEY: rows.contiguous()}, metadata={"format": "pt"})
    layout = ("virtual token 0 is the <mask> slot (the frozen <mask> embedding); the label logits are the masked "
              "LM's logits of the verbalizer tokens at output position 0" if backbone.family == "mlm" else
              "virtual tokens prepended to the encoder input; the label logits are the verbalizer tokens' logits "
              "at the first decoder step (decoder_input_ids = [decoder_start_token_id])")
    write_json(out / NOTE_FILE, {"written_by": "lib.peft_io.export_peft", "backbone": backbone.name,
                                 "head": backbone.head, "prompt_length": int(rows.shape[0]),
                                 "mask_slot": "virtual0" if backbone.family == "mlm" else None,
                                 "label_position": 0, "layout": layout, "task_type": task_type,
                                 "token_type_ids": ("dropped by PEFT (FEATURE_EXTRACTION): BERT sentence pairs "
                                                    "differ from lib" if task_type == "FEATURE_EXTRACTION" else
                                                    "kept, zeros over the virtual tokens (as lib)"),
                                 **(note or {})})
    return out


@dataclass
class PeftPrompt:
    """A prompt imported from PEFT, and what the import had to change."""

    prompt: torch.Tensor
    mask_slot: str | None
    num_virtual_tokens: int
    task_type: str | None
    slot_drift: float | None  # L2 distance of PEFT's virtual token 0 from the <mask> embedding (virtual0 only)
    exact: bool  # whether lib computes the same logits as PEFT did with this adapter


def read_peft(folder: str | Path) -> tuple[dict[str, Any], torch.Tensor]:
    """(adapter_config.json, prompt_embeddings) of a PEFT prompt-tuning folder."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} holds no {CONFIG_FILE}: not a PEFT adapter folder")
    from .io import read_json, read_tensors, read_torch

    config = read_json(folder / CONFIG_FILE)
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{folder}: peft_type {config.get('peft_type')!r}; only PROMPT_TUNING adapters hold "
                              f"input-embedding prompts")
    if (folder / WEIGHTS_FILE).is_file():
        weights = read_tensors(folder / WEIGHTS_FILE)
    elif (folder / "adapter_model.bin").is_file():
        weights = read_torch(folder / "adapter_model.bin")
    else:
        raise CheckpointError(f"{folder} holds neither {WEIGHTS_FILE} nor adapter_model.bin")
    if WEIGHTS_KEY not in weights:
        raise CheckpointError(f"{folder}: no '{WEIGHTS_KEY}' tensor (keys: {sorted(weights)})")
    return config, weights[WEIGHTS_KEY].float()


def import_peft(folder: str | Path, backbone: Backbone, *, mask_slot: str = "virtual0",
                out: str | Path | None = None) -> PeftPrompt:
    """A PEFT prompt-tuning adapter as a lib prompt (written to `out` as prompt.safetensors if given).

    `mask_slot` (masked LMs only; see the module doc): 'virtual0', PEFT's virtual token 0 is lib's
    mask slot (exact when it is the `<mask>` embedding, as in an exported prompt); 'input', PEFT was
    trained with a `<mask>` input token after its virtual tokens (a re-layout, not exact).
    """
    if mask_slot not in MASK_SLOTS:
        raise unknown("mask slot", mask_slot, MASK_SLOTS)
    config, emb = read_peft(folder)
    n = int(config["num_virtual_tokens"])
    if emb.dim() != 2 or emb.shape[0] < n:
        raise CheckpointError(f"{folder}: prompt_embeddings of shape {tuple(emb.shape)} for {n} virtual tokens")
    rows = emb[:n].clone()  # a second block (seq2seq, 2 submodules) is the decoder's, unused by prompt tuning
    if rows.shape[1] != backbone.embed_dim:
        raise ConfigError(f"PEFT prompt width {rows.shape[1]} does not fit backbone {backbone.name!r} "
                          f"(embedding width {backbone.embed_dim})")
    drift = None
    exact = True
    if backbone.family == "t5":
        slot = None
    else:
        slot = mask_slot
        mask = backbone.word_embeddings.weight[backbone.tokenizer.mask_token_id].detach().float().cpu()
        if mask_slot == "virtual0":
            drift = float((rows[0] - mask).norm())
            exact = drift <= 1e-6 * max(1.0, float(mask.norm()))
            rows[0] = mask
        else:
            rows = torch.cat([mask.unsqueeze(0), rows], dim=0)
            exact = False
    backbone.check_prompt(rows)
    if out is not None:
        target = Path(out)
        target = target / "prompt.safetensors" if target.suffix != ".safetensors" else target
        save_prompt(target, rows, {"imported_from": str(folder), "mask_slot": str(slot)})
    return PeftPrompt(rows, slot, n, config.get("task_type"), drift, exact)


def load_peft_model(backbone: Backbone, folder: str | Path):
    """`PeftModel.from_pretrained` on a copy of the backbone's own model (float32, eval mode)."""
    import copy

    peft = _peft()
    with warnings.catch_warnings():  # PEFT calls a transformers API deprecated in v5 (FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(folder))
    return model.eval()


def peft_label_logits(peft_model, backbone: Backbone, batch: Batch, verbalizer_ids: torch.Tensor, *,
                      mask_slot: str = "virtual0", token_type_ids: bool = True) -> torch.Tensor:
    """(batch, n_labels) verbalizer logits of a PEFT prompt-tuning model on a lib `Batch`, read the way
    lib reads them: masked LMs at the mask slot (output position 0 for 'virtual0'; after the virtual
    tokens for 'input'), T5 at the first decoder step. `token_type_ids=False` leaves them out."""
    dev = next(peft_model.parameters()).device
    ids, attn = batch.input_ids.to(dev), batch.attention_mask.to(dev)
    vid = verbalizer_ids.to(dev)
    kwargs: dict[str, Any] = {}
    if backbone.family == "t5":
        start = torch.full((ids.shape[0], 1), backbone.config.decoder_start_token_id, dtype=torch.long, device=dev)
        out = peft_model(input_ids=ids, attention_mask=attn, decoder_input_ids=start)
        return out.logits[:, 0, vid]
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
    with warnings.catch_warnings():  # FEATURE_EXTRACTION warns that it drops token-type ids (see the module doc)
        warnings.filterwarnings("ignore", message="Token type ids are not supported")
        out = peft_model(input_ids=ids, attention_mask=attn, **kwargs)
    if backbone.head == "mlm":
        return out.logits[:, position, vid]
    hidden = out.last_hidden_state[:, position]  # 'tied': the tied word embeddings of the label words
    return hidden @ backbone.word_embeddings.weight[vid].T.to(hidden.dtype)


# --- command line --------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.peft_io", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="a lib prompt (a unit's, or a prompt.safetensors) as a PEFT adapter folder")
    ex.add_argument("--prompt", help="prompt.safetensors or a run folder holding one (with --model)")
    ex.add_argument("--model", help="the backbone (hub id, folder, alias) the prompt was tuned on")
    ex.add_argument("--profile", help="with --unit: a unit of this profile (see python -m lib.units --list)")
    ex.add_argument("--unit", help="a unit id, e.g. tune/sst2/seed0 (run or loaded through lib.units)")
    ex.add_argument("--overrides", default=None, help="profile overrides (JSON), with --unit")
    ex.add_argument("--study", default=None, help="transfer-study overrides (JSON), with --unit")
    ex.add_argument("--results", default=None, help="results folder, with --unit")
    ex.add_argument("--task-type", default=None, choices=MLM_TASK_TYPES, help="masked LMs: PEFT task type")
    ex.add_argument("--out", required=True)
    im = sub.add_parser("import", help="a PEFT prompt-tuning adapter folder as a lib prompt.safetensors")
    im.add_argument("folder")
    im.add_argument("--model", required=True, help="the backbone (hub id, folder, alias)")
    im.add_argument("--mask-slot", choices=MASK_SLOTS, default="virtual0")
    im.add_argument("--out", required=True, help="a .safetensors file or a folder")
    args = ap.parse_args(argv)
    from .models import load_backbone

    try:
        if args.command == "export":
            note: dict[str, Any] = {}
            if args.unit:
                from .units import Spec, Unit, experiment_for, load_prompt_of

                if not args.profile:
                    raise ConfigError("--unit needs --profile")
                spec = Spec(args.profile, args.overrides or {}, args.study or {}, args.results)
                prompt = load_prompt_of(spec, args.unit)
                backbone = experiment_for(spec, Unit.parse(args.unit)).backbone
                note = {"profile": args.profile, "unit": args.unit}
            else:
                if not (args.prompt and args.model):
                    raise ConfigError("export needs --prompt and --model, or --profile and --unit")
                prompt, backbone = args.prompt, load_backbone(args.model)
            out = export_peft(prompt, backbone, args.out, task_type=args.task_type, note=note)
            print(f"wrote {out} (PEFT prompt tuning; load with PeftModel.from_pretrained)")
        else:
            backbone = load_backbone(args.model)
            res = import_peft(args.folder, backbone, mask_slot=args.mask_slot, out=args.out)
            print(json.dumps({"out": args.out, "prompt_length": int(res.prompt.shape[0]), "mask_slot": res.mask_slot,
                              "slot_drift": res.slot_drift, "exact": res.exact}))
    except CompendiumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
