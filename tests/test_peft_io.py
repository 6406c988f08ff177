"""PEFT interop (lib.peft_io): an exported prompt loads with PeftModel.from_pretrained and gives lib's
label logits; a prompt saved by PEFT itself imports; the mask-slot and token-type conventions."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

pytest.importorskip("peft")

from lib.data import DataConfig, load_splits  # noqa: E402
from lib.errors import CheckpointError, ConfigError  # noqa: E402
from lib.models import load_backbone  # noqa: E402
from lib.peft_io import (export_peft, import_peft, lib_layout_rows, load_peft_model, main,  # noqa: E402
                        peft_label_logits, read_peft)
from lib.prompt import init_prompt, load_prompt, save_prompt  # noqa: E402
from lib.tiny import synthetic_task  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """{pair: (task, splits)}: single sentences and sentence pairs."""
    root = tmp_path_factory.mktemp("peft_data")
    out = {}
    for pair in (False, True):
        name = "synthetic_pair" if pair else "synthetic"
        task = synthetic_task(root, name=name, pair=pair, n_train=40, n_test=24, seed=3)
        out[pair] = task, load_splits(task, DataConfig(data_root=str(root), source="local"))
    return out


def _batch(backbone, task, splits, n=12):
    enc = backbone.encode(splits["test"], 32)
    return backbone.collate(enc, list(range(n))), backbone.task_verbalizer_ids(task)


@pytest.mark.parametrize("fam", ["bert", "roberta", "t5"])
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_exported_prompt_loads_in_peft_with_the_same_label_logits(tiny_paths, batches, tmp_path, fam, pair):
    b = load_backbone(str(tiny_paths[fam]))
    task, splits = batches[pair]
    prompt = init_prompt(b, 6, "random", seed=1)
    prompt[0] += 0.5  # a masked LM's row 0 is the mask slot: lib ignores what it holds, so must the export
    batch, vid = _batch(b, task, splits)
    with torch.no_grad():
        ref = b.label_logits(prompt, batch, vid)
    out = export_peft(prompt, b, tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    config, emb = read_peft(out)
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 6
    assert emb.shape == (6, b.embed_dim)
    model = load_peft_model(b, out)  # PeftModel.from_pretrained on the backbone's own model
    with torch.no_grad():
        got = peft_label_logits(model, b, batch, vid)
    diff = float((got - ref).abs().max())
    if fam == "bert" and pair:
        # FEATURE_EXTRACTION drops token-type ids: BERT's second segment differs (the documented difference)
        assert diff > 1e-3
        exact = export_peft(prompt, b, tmp_path / "token_cls", task_type="TOKEN_CLS")
        with torch.no_grad():
            got = peft_label_logits(load_peft_model(b, exact), b, batch, vid)
        assert float((got - ref).abs().max()) < TOL, "TOKEN_CLS keeps token types, zeros over the prompt, as lib"
        no_types = type(batch)(batch.input_ids, batch.attention_mask, torch.zeros_like(batch.token_type_ids),
                               batch.labels)
        with torch.no_grad():
            assert float((b.label_logits(prompt, no_types, vid) - peft_label_logits(model, b, batch, vid))
                         .abs().max()) < TOL, "the difference is exactly the dropped token types"
    else:
        assert diff < TOL, diff
    back = import_peft(out, b)
    assert back.exact and torch.equal(back.prompt, lib_layout_rows(b, prompt))
    with torch.no_grad():
        assert torch.equal(b.label_logits(back.prompt, batch, vid), ref), "the round trip changes no logit"
    note = json.loads((out / "compendium_prompt.json").read_text())
    assert note["mask_slot"] == (None if fam == "t5" else "virtual0") and note["label_position"] == 0


@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_prompt_saved_by_peft_imports(tiny_paths, batches, tmp_path, fam):
    """An adapter written by PEFT's own save_pretrained, in both mask-slot layouts."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    b = load_backbone(str(tiny_paths[fam]))
    task, splits = batches[False]
    batch, vid = _batch(b, task, splits)
    rows = torch.randn(5, b.embed_dim, generator=torch.Generator().manual_seed(0)) * 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(load_backbone(str(tiny_paths[fam])).model,
                               PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=5))
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(rows)
    model.save_pretrained(str(tmp_path / "peft"))

    # virtual0: PEFT's virtual token 0 is the mask slot; here PEFT trained it away from <mask>
    imported = import_peft(tmp_path / "peft", b, mask_slot="virtual0", out=tmp_path / "lib")
    assert imported.prompt.shape == (5, b.embed_dim) and not imported.exact and imported.slot_drift > 0
    assert torch.equal(imported.prompt[1:], rows[1:])
    assert torch.equal(load_prompt(tmp_path / "lib" / "prompt.safetensors"), imported.prompt)
    with torch.no_grad():  # with virtual token 0 reset to <mask>, PEFT and lib agree exactly
        model.prompt_encoder["default"].embedding.weight[0] = imported.prompt[0]
        assert float((peft_label_logits(model, b, batch, vid) - b.label_logits(imported.prompt, batch, vid))
                     .abs().max()) < TOL

    # input: L' virtual tokens then a real <mask> token; lib's prompt is [<mask>, P], a re-layout (positions move)
    relaid = import_peft(tmp_path / "peft", b, mask_slot="input")
    assert relaid.prompt.shape == (6, b.embed_dim) and not relaid.exact
    assert torch.equal(relaid.prompt[1:], rows)
    with torch.no_grad():
        peft_logits = peft_label_logits(model, b, batch, vid, mask_slot="input")
        assert peft_logits.shape == (12, 2)
        assert not torch.allclose(peft_logits, b.label_logits(relaid.prompt, batch, vid)), "not an exact conversion"


def test_peft_cli_round_trip_and_errors(tiny_paths, tmp_path, capsys):
    b = load_backbone(str(tiny_paths["roberta"]))
    prompt = init_prompt(b, 4, "vocab", seed=2)
    save_prompt(tmp_path / "run" / "prompt.safetensors", prompt)
    assert main(["export", "--prompt", str(tmp_path / "run"), "--model", str(tiny_paths["roberta"]),
                 "--out", str(tmp_path / "adapter")]) == 0
    assert main(["import", str(tmp_path / "adapter"), "--model", str(tiny_paths["roberta"]),
                 "--out", str(tmp_path / "back")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["exact"] and report["prompt_length"] == 4
    assert torch.equal(load_prompt(tmp_path / "back" / "prompt.safetensors"), prompt)  # vocab init: row 0 is <mask>
    with pytest.raises(CheckpointError, match="not a PEFT adapter"):
        import_peft(tmp_path / "run", b)
    with pytest.raises(ConfigError, match="mask slot"):
        import_peft(tmp_path / "adapter", b, mask_slot="middle")
    from safetensors.torch import save_file

    save_file({"prompt_embeddings": torch.zeros(4, 16)}, str(tmp_path / "adapter" / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match="does not fit"):
        import_peft(tmp_path / "adapter", b)
    assert main(["export", "--model", str(tiny_paths["roberta"]), "--out", str(tmp_path / "x")]) == 1


def test_a_units_prompt_exports_to_peft(tmp_path):
    """`python -m lib.peft_io export --profile smoke --unit tune/synthetic/seed0`: the unit is run (or
    loaded) and its prompt gives the same label logits in PEFT on the profile's test data."""
    from lib.units import Spec, experiment_for, run_unit

    spec = Spec("smoke", results=str(tmp_path / "results"), reuse=())
    assert main(["export", "--profile", "smoke", "--unit", "tune/synthetic/seed0", "--results",
                 str(tmp_path / "results"), "--out", str(tmp_path / "adapter")]) == 0
    assert run_unit(spec, "tune/synthetic/seed0")["status"] == "cached", "export ran the unit once"
    exp = experiment_for(spec, "tune/synthetic/seed0")
    prompt = exp.prompt("synthetic", 0)
    b = exp.backbone
    batch = b.collate(exp.encoded("synthetic", "test"), list(range(16)))
    vid = b.task_verbalizer_ids(exp.task("synthetic"))
    with torch.no_grad():
        diff = (peft_label_logits(load_peft_model(b, tmp_path / "adapter"), b, batch, vid)
                - b.label_logits(prompt, batch, vid)).abs().max()
    assert float(diff) < TOL
    note = json.loads((tmp_path / "adapter" / "compendium_prompt.json").read_text())
    assert note["unit"] == "tune/synthetic/seed0" and note["profile"] == "smoke"
