"""Move soft prompts between this project and PEFT's prompt tuning, with the mask slot made explicit.

    python -m lib.peft_io export --profile paper_t5 --unit tune/sst2/seed0 --out peft/sst2-seed0
    python -m lib.peft_io export --prompt results/.../prompt.safetensors --model roberta-base --out peft/x
    python -m lib.peft_io import peft/x --model roberta-base --out prompt.safetensors [--mask-slot input --as-init]

Exact or refused: an export gives PEFT the label logits lib computes, an import gives lib the logits
PEFT computed; anything else is refused in one line, before anything is written. Refused: prompts or
adapters with non-finite values; prompts of a backbone with zero prompt positions
(`prompt_positions='zero'`, the `paper` profile: PEFT numbers positions from its first virtual token
and ignores `position_ids`, so no PEFT adapter reproduces them); adapters whose task type carries
more than the prompt (`SEQ_CLS`: a trained classifier head) or whose config is malformed. Imports
that lib can only approximate (a moved mask slot, a trained virtual token 0, a zero-positions
backbone) are refused too, unless `as_init=True` (`--as-init`) asks for a starting prompt to re-tune
from, marked `exact: false` in the file's metadata.

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
  stayed the `<mask>` embedding (freeze it, or reset it after each step); an import where it moved
  is refused, saying how far (with `as_init`, it is replaced by `<mask>`, `PeftPrompt.slot_drift`).
  `mask_slot='input'` imports the other common PEFT layout, L' virtual tokens followed by a real
  `<mask>` input token (`[P] <mask> <s> text`, as benchmarks/tuning_vs_peft.py trains it): lib's
  prompt becomes `[<mask>, P]` (length L'+1). That moves the mask from position L' to 0, so its
  position embedding and every attention score change: the logits are *not* the same, it is a
  re-layout to fine-tune from (`as_init`), not an exact conversion, and refused without `as_init`.
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
from .families import EncoderMLM, Family
from .models import Backbone, Batch
from .prompt import load_prompt, save_prompt

MASK_SLOTS = ("virtual0", "input")
MLM_TASK_TYPES = EncoderMLM.peft_task_types  # PEFT forwards that prepend exactly lib's rows: `Family.peft_task_types`
CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_KEY = "adapter_config.json", "adapter_model.safetensors", "prompt_embeddings"
NOTE_FILE = "compendium_prompt.json"
AS_INIT_HINT = "import with --as-init (as_init=True) to re-tune from it in lib (init='source')"


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("PEFT is not installed: pip install -e .[bench] (or pip install peft)") from None
    return peft


def zero_positions_refusal(model: str) -> ConfigError:
    """Why a zero-prompt-positions prompt has no PEFT form: PEFT drops `position_ids`, so the text's
    positions shift by the prompt length and no choice of virtual tokens undoes that."""
    return ConfigError(f"cannot export for PEFT: backbone {model!r} gives the prompt slots zero position embeddings "
                       f"(prompt_positions='zero', as the paper profile) and PEFT's prompt tuning numbers positions "
                       f"from its first virtual token (it ignores position_ids), so every logit would differ; export "
                       f"a prompt tuned with prompt_positions='ordinary' "
                       f"(--overrides '{{\"prompt_positions\": \"ordinary\"}}')")


def _check_finite(rows: torch.Tensor, what: str, todo: str) -> None:
    bad = int((~torch.isfinite(rows)).sum())
    if bad:
        raise CheckpointError(f"{what} holds {bad} non-finite value(s) (NaN or inf); nothing written: {todo}")


def lib_layout_rows(backbone: Backbone, prompt: torch.Tensor) -> torch.Tensor:
    """The rows lib actually feeds for `prompt`: row 0 replaced by the `<mask>` embedding for masked LMs."""
    backbone.check_prompt(prompt)
    return backbone.rules.fill_slot(backbone, prompt.detach().float().cpu().clone()).detach()


def _tuned_readout(path: Path) -> dict[str, Any]:
    """The readout options a run folder's config.json (its run signature) records; {} when there is none,
    so that a paper prompt passed as a file is not exported as if tuned with ordinary positions."""
    config = path.parent / "config.json"
    if not config.is_file():
        return {}
    from .io import read_json

    saved = read_json(config)
    readout = saved.get("readout") if isinstance(saved, dict) else None
    return dict(readout) if isinstance(readout, dict) else {}


def export_peft(prompt: torch.Tensor | str | Path, backbone: Backbone, out_dir: str | Path, *,
                task_type: str | None = None, base_model: str | None = None,
                note: dict[str, Any] | None = None) -> Path:
    """Write `prompt` as a PEFT prompt-tuning adapter folder that `PeftModel.from_pretrained` loads.

    Masked LMs: `num_virtual_tokens` = L, virtual token 0 = the `<mask>` embedding (see the module
    doc), `task_type` FEATURE_EXTRACTION (default) or TOKEN_CLS; T5: SEQ_2_SEQ_LM with one block
    of virtual tokens. `base_model` (default: the backbone's name) is written as
    `base_model_name_or_path`. A `compendium_prompt.json` beside the adapter says how to read the label.
    Everything is checked before the folder is touched: a refused export writes nothing.
    """
    peft = _peft()
    readout = dict(backbone.readout)
    if isinstance(prompt, (str, Path)):
        path = Path(prompt) / "prompt.safetensors" if Path(prompt).is_dir() else Path(prompt)
        prompt = load_prompt(path)
        readout = {**_tuned_readout(path), **readout}
    if readout.get("prompt_positions", "ordinary") != "ordinary":
        raise zero_positions_refusal(backbone.name)
    _check_finite(prompt, "the prompt", "the run diverged; re-tune it")
    rows = lib_layout_rows(backbone, prompt)
    task_type = backbone.rules.peft_task_type(task_type)
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
    write_json(out / NOTE_FILE, {"written_by": "lib.peft_io.export_peft", "backbone": backbone.name,
                                 "head": backbone.head, "prompt_length": int(rows.shape[0]),
                                 "mask_slot": "virtual0" if backbone.rules.slot_rows else None,
                                 "label_position": 0, "layout": backbone.rules.peft_layout, "task_type": task_type,
                                 "readout": readout,
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
    reason: str | None = None  # why not, when imported with as_init=True


def _positive_int(config: dict[str, Any], field: str, path: Path, *, required: bool = True) -> int | None:
    """A config field that must be a positive integer: a clear line naming file and field, not a KeyError."""
    value = config.get(field)
    if value is None:
        if required:
            raise CheckpointError(f"{path}: field '{field}' is missing; a PEFT prompt-tuning config gives it as a "
                                  f"positive integer")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: field '{field}' must be a positive integer, got {value!r}")
    return value


def read_peft(folder: str | Path) -> tuple[dict[str, Any], torch.Tensor]:
    """(adapter_config.json, prompt_embeddings) of a PEFT prompt-tuning folder, checked: an object with
    a positive `num_virtual_tokens`, embeddings of the shape it implies, all finite."""
    config, emb, _ = _read_adapter(Path(folder))
    return config, emb


def _read_adapter(folder: Path) -> tuple[dict[str, Any], torch.Tensor, list[str]]:
    """`read_peft` and the names of every tensor in the weights file (a trained head shows up there)."""
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} holds no {CONFIG_FILE}: not a PEFT adapter folder")
    from .io import read_json, read_tensors, read_torch

    config = read_json(cfg_path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object (PEFT's adapter config), got a JSON "
                              f"{'list' if isinstance(config, list) else type(config).__name__}")
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{folder}: peft_type {config.get('peft_type')!r}; only PROMPT_TUNING adapters hold "
                              f"input-embedding prompts")
    n = _positive_int(config, "num_virtual_tokens", cfg_path)
    assert n is not None  # required: _positive_int raised otherwise
    blocks = _positive_int(config, "num_transformer_submodules", cfg_path, required=False)
    dim = _positive_int(config, "token_dim", cfg_path, required=False)
    if (folder / WEIGHTS_FILE).is_file():
        weights_path = folder / WEIGHTS_FILE
        weights = read_tensors(weights_path)
    elif (folder / "adapter_model.bin").is_file():
        weights_path = folder / "adapter_model.bin"
        weights = read_torch(weights_path)
    else:
        raise CheckpointError(f"{folder} holds neither {WEIGHTS_FILE} nor adapter_model.bin")
    if not isinstance(weights, dict) or WEIGHTS_KEY not in weights:
        keys = sorted(weights) if isinstance(weights, dict) else type(weights).__name__
        raise CheckpointError(f"{weights_path}: no '{WEIGHTS_KEY}' tensor (keys: {keys})")
    emb = weights[WEIGHTS_KEY]
    rows = (n * blocks,) if blocks is not None else (n, 2 * n)  # PEFT saves one block per transformer submodule
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] not in rows:
        shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise CheckpointError(f"{weights_path}: prompt_embeddings of shape {shape} for {n} virtual tokens "
                              f"({' or '.join(map(str, rows))} rows expected)")
    if dim is not None and emb.shape[1] != dim:
        raise CheckpointError(f"{cfg_path}: field 'token_dim' is {dim} but prompt_embeddings are {emb.shape[1]} wide")
    emb = emb.float()
    _check_finite(emb, f"{weights_path}: prompt_embeddings", "the PEFT run diverged; re-tune it")
    return config, emb, sorted(weights)


def _check_task_type(config: dict[str, Any], folder: Path, weights_keys: Sequence[str], family: Family) -> None:
    """Only task types whose PEFT forward is exactly `[virtual tokens] + input` through the backbone's own
    head: SEQ_CLS and others add a trained head (or none of the prompt) that a lib prompt cannot carry."""
    task_type = config.get("task_type")
    valid = family.peft_task_types
    if task_type == "SEQ_CLS":
        raise CheckpointError(f"{folder}: a SEQ_CLS adapter scores labels with its own classifier head, which a lib "
                              f"prompt (read through the verbalizer) cannot carry; re-tune the prompt with PEFT task "
                              f"type {' or '.join(valid)} and import that")
    if task_type not in valid:
        raise CheckpointError(f"{folder}: PEFT task type {task_type!r} cannot be imported for {family.label} exactly; "
                              f"valid: {', '.join(valid)}")
    extra = [k for k in weights_keys if k != WEIGHTS_KEY]
    if extra:
        raise CheckpointError(f"{folder}: the adapter also holds trained weights {extra[:4]} that a lib prompt "
                              f"cannot carry; import an adapter with {WEIGHTS_KEY} only")


def import_peft(folder: str | Path, backbone: Backbone, *, mask_slot: str = "virtual0",
                out: str | Path | None = None, as_init: bool = False) -> PeftPrompt:
    """A PEFT prompt-tuning adapter as a lib prompt (written to `out` as prompt.safetensors if given).

    `mask_slot` (masked LMs only; see the module doc): 'virtual0', PEFT's virtual token 0 is lib's
    mask slot (exact when it is the `<mask>` embedding, as in an exported prompt); 'input', PEFT was
    trained with a `<mask>` input token after its virtual tokens (a re-layout, never exact). An import
    that lib cannot reproduce exactly is refused in one line, unless `as_init` asks for a starting
    prompt to re-tune from; every refusal comes before anything is written.
    """
    if mask_slot not in MASK_SLOTS:
        raise unknown("mask slot", mask_slot, MASK_SLOTS)
    folder = Path(folder)
    config, emb, keys = _read_adapter(folder)
    _check_task_type(config, folder, keys, backbone.rules)
    n = int(config["num_virtual_tokens"])
    rows = emb[:n].clone()  # a second block (seq2seq, 2 submodules) is the decoder's, unused by prompt tuning
    if rows.shape[1] != backbone.embed_dim:
        raise ConfigError(f"PEFT prompt width {rows.shape[1]} does not fit backbone {backbone.name!r} "
                          f"(embedding width {backbone.embed_dim})")
    drift = None
    reason = None
    if not backbone.rules.slot_rows:
        if mask_slot == "input":
            raise ConfigError(f"{backbone.rules.title} has no mask slot: leave --mask-slot out (its virtual tokens are "
                              f"lib's rows 1:1)")
        slot = None
    else:
        slot = mask_slot
        mask = backbone.word_embeddings.weight[backbone.tokenizer.mask_token_id].detach().float().cpu()
        if mask_slot == "virtual0":
            drift = float((rows[0] - mask).norm())
            if drift > 1e-6 * max(1.0, float(mask.norm())):
                reason = (f"PEFT's virtual token 0 is {drift:.3g} away from the <mask> embedding (PEFT trained it) "
                          f"while lib always feeds <mask> in that slot, so the logits would differ; re-tune in PEFT "
                          f"with virtual token 0 frozen at <mask>, or {AS_INIT_HINT}")
            rows[0] = mask
        else:
            rows = torch.cat([mask.unsqueeze(0), rows], dim=0)
            reason = (f"--mask-slot input moves PEFT's <mask> input token from position {n} to lib's mask slot at 0, "
                      f"so every logit changes (not an exact conversion); {AS_INIT_HINT}, or re-tune in PEFT with "
                      f"the mask slot as virtual token 0 (the layout export writes)")
    if reason is None and backbone.prompt_positions != "ordinary":
        reason = (f"backbone {backbone.name!r} gives the prompt slots zero position embeddings "
                  f"(prompt_positions='zero') but PEFT numbered them from its first virtual token, so the logits "
                  f"would differ; import into a backbone with prompt_positions='ordinary', or {AS_INIT_HINT}")
    if reason is not None and not as_init:
        raise CheckpointError(f"{folder}: not imported: {reason}")
    backbone.check_prompt(rows)
    if out is not None:
        target = Path(out)
        target = target / "prompt.safetensors" if target.suffix != ".safetensors" else target
        meta = {"imported_from": str(folder), "mask_slot": str(slot), "exact": str(reason is None).lower()}
        if reason is not None:
            meta["use"] = "a starting prompt to re-tune (init='source'): lib's logits differ from PEFT's"
        save_prompt(target, rows, meta)
    return PeftPrompt(rows, slot, n, config.get("task_type"), drift, reason is None, reason)

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
    return backbone.rules.peft_label_logits(peft_model, backbone, batch, ids, attn, verbalizer_ids.to(dev),
                                            mask_slot=mask_slot, token_type_ids=token_type_ids)


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
    im.add_argument("--as-init", action="store_true",
                    help="write an import lib cannot reproduce exactly as a starting prompt to re-tune from")
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
                unit = Unit.parse(args.unit)
                profile = spec.profile_obj()
                if profile.prompt_positions != "ordinary":  # refused before the unit is tuned
                    raise zero_positions_refusal(profile.model)
                prompt = load_prompt_of(spec, unit)
                exp = experiment_for(spec, unit)
                backbone = exp.backbone
                task = exp.task(unit.task)
                note = {"profile": args.profile, "unit": args.unit,
                        "verbalizer": {"task": task.name, "words": list(backbone.rules.label_words(task)),
                                       "token_ids": backbone.task_verbalizer_ids(task).tolist()}}
            else:
                if not (args.prompt and args.model):
                    raise ConfigError("export needs --prompt and --model, or --profile and --unit")
                prompt, backbone = args.prompt, load_backbone(args.model)
            out = export_peft(prompt, backbone, args.out, task_type=args.task_type, note=note)
            print(f"wrote {out} (PEFT prompt tuning; load with PeftModel.from_pretrained)")
        else:
            backbone = load_backbone(args.model)
            res = import_peft(args.folder, backbone, mask_slot=args.mask_slot, out=args.out, as_init=args.as_init)
            print(json.dumps({"out": args.out, "prompt_length": int(res.prompt.shape[0]), "mask_slot": res.mask_slot,
                              "slot_drift": res.slot_drift, "exact": res.exact, "reason": res.reason}))
    except CompendiumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
