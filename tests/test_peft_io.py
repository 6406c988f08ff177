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


def _peft_saved(tiny_path, tmp_path, rows, task_type="FEATURE_EXTRACTION", name="peft"):
    """An adapter written by PEFT's own save_pretrained with `rows` as its virtual tokens; (folder, model)."""
    from peft import PromptTuningConfig, get_peft_model

    base = load_backbone(str(tiny_path)).model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(base, PromptTuningConfig(task_type=task_type, num_virtual_tokens=rows.shape[0]))
    with torch.no_grad():
        weight = model.prompt_encoder["default"].embedding.weight
        weight[: rows.shape[0]] = rows
    model.save_pretrained(str(tmp_path / name))
    return tmp_path / name, model.eval()


def _files(folder):
    """{relative path: bytes} of every file under `folder` (None when it does not exist): 'nothing changed'."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(fn, error, fragment, *watched):
    """`fn()` raises `error` with a one-line message containing `fragment` and leaves `watched` unchanged."""
    before = [_files(w) for w in watched]
    with pytest.raises(error, match=fragment) as info:
        fn()
    assert "\n" not in str(info.value), "a one-line message"
    assert [_files(w) for w in watched] == before, "a refusal writes nothing"
    return str(info.value)


def _cli_refused(argv, fragment, capsys, *watched):
    """The CLI refuses with exit code 1 and one line on stderr naming `fragment`; `watched` unchanged."""
    before = [_files(w) for w in watched]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err, err
    assert [_files(w) for w in watched] == before, "a refusal writes nothing"


@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_prompt_saved_by_peft_imports(tiny_paths, batches, tmp_path, fam):
    """An adapter written by PEFT's own save_pretrained, in both mask-slot layouts: exact or refused."""
    b = load_backbone(str(tiny_paths[fam]))
    task, splits = batches[False]
    batch, vid = _batch(b, task, splits)
    rows = torch.randn(5, b.embed_dim, generator=torch.Generator().manual_seed(0)) * 0.2
    folder, model = _peft_saved(tiny_paths[fam], tmp_path, rows)

    # virtual0, token 0 trained away from <mask>: lib cannot feed it, so the import is refused (re-tune)
    _refused(lambda: import_peft(folder, b, mask_slot="virtual0", out=tmp_path / "lib"), CheckpointError,
             "virtual token 0 is .* away from the <mask> embedding.*re-tune", tmp_path / "lib")
    imported = import_peft(folder, b, mask_slot="virtual0", out=tmp_path / "lib", as_init=True)
    assert imported.prompt.shape == (5, b.embed_dim) and not imported.exact and imported.slot_drift > 0
    assert "virtual token 0" in imported.reason and torch.equal(imported.prompt[1:], rows[1:])
    assert torch.equal(load_prompt(tmp_path / "lib" / "prompt.safetensors"), imported.prompt)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "lib" / "prompt.safetensors"), "pt") as fh:
        assert fh.metadata()["exact"] == "false", "a starting prompt says so in its file"

    # with virtual token 0 at <mask> (frozen in PEFT), the import is exact and so are the logits
    kept = torch.cat([imported.prompt[:1], rows[1:]])
    frozen, frozen_model = _peft_saved(tiny_paths[fam], tmp_path, kept, name="frozen")
    exact = import_peft(frozen, b)
    assert exact.exact and exact.slot_drift == 0 and exact.reason is None
    with torch.no_grad():
        assert float((peft_label_logits(frozen_model, b, batch, vid) - b.label_logits(exact.prompt, batch, vid))
                     .abs().max()) < TOL

    # input: L' virtual tokens then a real <mask> token; lib's prompt would be [<mask>, P] (positions move)
    _refused(lambda: import_peft(folder, b, mask_slot="input", out=tmp_path / "relaid"), CheckpointError,
             "--mask-slot input moves PEFT's <mask> input token from position 5 to lib's mask slot at 0.*re-tune",
             tmp_path / "relaid")
    relaid = import_peft(folder, b, mask_slot="input", as_init=True)
    assert relaid.prompt.shape == (6, b.embed_dim) and not relaid.exact
    assert torch.equal(relaid.prompt[1:], rows)
    with torch.no_grad():
        peft_logits = peft_label_logits(model, b, batch, vid, mask_slot="input")
        assert peft_logits.shape == (12, 2)
        assert not torch.allclose(peft_logits, b.label_logits(relaid.prompt, batch, vid)), "why it is refused"


def test_t5_adapter_saved_by_peft_imports_exactly(tiny_paths, batches, tmp_path):
    """paper_t5's backbone family: PEFT's SEQ_2_SEQ_LM default saves two blocks (num_transformer_submodules
    2); prompt tuning feeds only the first to the encoder, so the import (first block) is exact."""
    b = load_backbone(str(tiny_paths["t5"]))
    task, splits = batches[True]
    batch, vid = _batch(b, task, splits)
    rows = torch.randn(5, b.embed_dim, generator=torch.Generator().manual_seed(4)) * 0.3
    folder, model = _peft_saved(tiny_paths["t5"], tmp_path, rows, task_type="SEQ_2_SEQ_LM")
    config, emb = read_peft(folder)
    assert config["num_transformer_submodules"] == 2 and emb.shape == (10, b.embed_dim)
    back = import_peft(folder, b, out=tmp_path / "lib")
    assert back.exact and torch.equal(back.prompt, rows)
    with torch.no_grad():
        assert float((peft_label_logits(model, b, batch, vid) - b.label_logits(back.prompt, batch, vid))
                     .abs().max()) < TOL
    _refused(lambda: import_peft(folder, b, mask_slot="input", out=tmp_path / "x"), ConfigError,
             "T5 has no mask slot", tmp_path / "x")


def test_paper_profile_settings_export_exactly_or_are_refused(tiny_paths, batches, tmp_path, capsys):
    """The `paper` profile's readout on tiny RoBERTa: no-space verbalizer ids (exact in PEFT with those ids)
    and zero prompt positions (PEFT ignores position_ids, so such prompts are refused, in every entry point)."""
    path = str(tiny_paths["roberta"])
    paper = load_backbone(path, verbalizer_space=False, prompt_positions="zero")
    no_space = load_backbone(path, verbalizer_space=False)
    task, splits = batches[True]
    batch, vid = _batch(paper, task, splits)
    assert not torch.equal(vid, load_backbone(path).task_verbalizer_ids(task)), "the no-space ids differ"
    prompt = init_prompt(paper, 6, "random", seed=5)
    with torch.no_grad():
        ref = paper.label_logits(prompt, batch, vid)

    # zero positions: refused, nothing written, also into a folder that holds an earlier export
    out = tmp_path / "adapter"
    _refused(lambda: export_peft(prompt, paper, out), ConfigError, "zero position embeddings", out)
    export_peft(prompt, no_space, out)
    message = _refused(lambda: export_peft(prompt, paper, out), ConfigError, "prompt_positions='ordinary'", out)
    assert "PEFT" in message
    with torch.no_grad():  # what the refusal prevents: PEFT's logits are not the paper backbone's
        assert float((peft_label_logits(load_peft_model(no_space, out), no_space, batch, vid) - ref)
                     .abs().max()) > 1e-3
    # a paper prompt passed as a file: its run's config.json records the readout
    run = tmp_path / "run"
    save_prompt(run / "prompt.safetensors", prompt)
    (run / "config.json").write_text(json.dumps({"readout": paper.readout}))
    _refused(lambda: export_peft(run, no_space, tmp_path / "from_file"), ConfigError, "zero position embeddings",
             tmp_path / "from_file")
    _cli_refused(["export", "--prompt", str(run), "--model", path, "--out", str(tmp_path / "cli")],
                 "zero position embeddings", capsys, tmp_path / "cli")
    # book/scaling.md's example before this change: refused before the unit is tuned or anything is written
    _cli_refused(["export", "--profile", "paper", "--unit", "tune/sst2/seed0", "--results", str(tmp_path / "res"),
                  "--out", str(tmp_path / "book")], "prompt_positions='zero'", capsys, tmp_path / "book",
                 tmp_path / "res")

    # no-space verbalizer, ordinary positions: exact, and the note says how the label is read
    with torch.no_grad():
        ordinary_ref = no_space.label_logits(prompt, batch, vid)
        assert float((peft_label_logits(load_peft_model(no_space, out), no_space, batch, vid) - ordinary_ref)
                     .abs().max()) < TOL
    assert json.loads((out / "compendium_prompt.json").read_text())["readout"] == {"verbalizer_space": False}
    back = import_peft(out, no_space)
    assert back.exact and torch.equal(back.prompt, lib_layout_rows(no_space, prompt))

    # importing into the zero-positions backbone cannot reproduce PEFT's logits: refused unless as_init
    _refused(lambda: import_peft(out, paper, out=tmp_path / "imp"), CheckpointError,
             "zero position embeddings.*re-tune", tmp_path / "imp")
    start = import_peft(out, paper, out=tmp_path / "imp", as_init=True)
    assert not start.exact and (tmp_path / "imp" / "prompt.safetensors").is_file()


def test_non_finite_prompts_are_refused(tiny_paths, tmp_path, capsys):
    """A PEFT prompt of NaNs (a diverged run) is not imported; a non-finite lib prompt is not exported."""
    b = load_backbone(str(tiny_paths["roberta"]))
    adapter = export_peft(init_prompt(b, 4, "vocab", seed=2), b, tmp_path / "adapter")
    from safetensors.torch import save_file

    nan = torch.full((4, b.embed_dim), float("nan"))
    save_file({"prompt_embeddings": nan}, str(adapter / "adapter_model.safetensors"))
    target = tmp_path / "lib"
    _refused(lambda: import_peft(adapter, b, out=target), CheckpointError,
             "prompt_embeddings holds 128 non-finite value.*nothing written.*re-tune", target)
    _cli_refused(["import", str(adapter), "--model", str(tiny_paths["roberta"]), "--out", str(target)],
                 "non-finite", capsys, target)
    bad = init_prompt(b, 4, "random", seed=1)
    bad[2, 3] = float("inf")
    _refused(lambda: export_peft(bad, b, tmp_path / "out"), CheckpointError, "the prompt holds 1 non-finite",
             tmp_path / "out")


def test_seq_cls_adapter_is_refused(tiny_paths, tmp_path, capsys):
    """PEFT's SEQ_CLS prompt tuning trains a classifier head too; a lib prompt cannot carry it."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from lib.models import quiet_transformers

    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = AutoModelForSequenceClassification.from_pretrained(str(tiny_paths["roberta"]), num_labels=2)
        model = get_peft_model(base, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    model.save_pretrained(str(tmp_path / "seq_cls"))
    b = load_backbone(str(tiny_paths["roberta"]))
    target = tmp_path / "lib"
    _refused(lambda: import_peft(tmp_path / "seq_cls", b, out=target), CheckpointError,
             "SEQ_CLS adapter scores labels with its own classifier head", target)
    _refused(lambda: import_peft(tmp_path / "seq_cls", b, out=target, as_init=True), CheckpointError,
             "SEQ_CLS", target)
    _cli_refused(["import", str(tmp_path / "seq_cls"), "--model", str(tiny_paths["roberta"]), "--out",
                  str(target)], "SEQ_CLS", capsys, target)
    # another task type, and a head's weights under an accepted task type: refused as well
    adapter = export_peft(init_prompt(b, 4, "vocab"), b, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "task_type": "CAUSAL_LM"}))
    _refused(lambda: import_peft(adapter, b, out=target), CheckpointError,
             "task type 'CAUSAL_LM' cannot be imported for a masked LM exactly; valid: FEATURE_EXTRACTION, "
             "TOKEN_CLS", target)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({**weights, "classifier.weight": torch.zeros(2, b.embed_dim)}, str(adapter / "adapter_model.safetensors"))
    _refused(lambda: import_peft(adapter, b, out=target), CheckpointError, "also holds trained weights", target)


@pytest.mark.parametrize("config, fragment", [
    ({"num_virtual_tokens": None}, "field 'num_virtual_tokens' is missing"),
    ({"num_virtual_tokens": "abc"}, "field 'num_virtual_tokens' must be a positive integer, got 'abc'"),
    ({"num_virtual_tokens": 0}, "field 'num_virtual_tokens' must be a positive integer, got 0"),
    ({"num_virtual_tokens": True}, "field 'num_virtual_tokens' must be a positive integer, got True"),
    ({"num_virtual_tokens": 3}, r"prompt_embeddings of shape \(4, 32\) for 3 virtual tokens"),
    ({"token_dim": 16}, "field 'token_dim' is 16 but prompt_embeddings are 32 wide"),
    ({"num_transformer_submodules": "two"}, "field 'num_transformer_submodules' must be a positive integer"),
    ([1, 2], "expected a JSON object .*, got a JSON list"),
], ids=["missing", "abc", "zero", "bool", "too_few", "token_dim", "submodules", "list"])
def test_malformed_adapter_config_is_one_line(tiny_paths, tmp_path, capsys, config, fragment):
    """adapter_config.json errors name the file and the field (not KeyError, ValueError, IndexError, ...)."""
    b = load_backbone(str(tiny_paths["roberta"]))
    adapter = export_peft(init_prompt(b, 4, "vocab"), b, tmp_path / "adapter")
    if isinstance(config, dict):
        saved = json.loads((adapter / "adapter_config.json").read_text())
        saved.update(config)
        config = {k: v for k, v in saved.items() if v is not None}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    target = tmp_path / "lib"
    message = _refused(lambda: import_peft(adapter, b, out=target), CheckpointError, fragment, target)
    assert "adapter_config.json" in message or "adapter_model.safetensors" in message
    _cli_refused(["import", str(adapter), "--model", str(tiny_paths["roberta"]), "--out", str(target)],
                 "adapter_", capsys, target)


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
    with pytest.raises(CheckpointError, match="field 'token_dim' is 32 but prompt_embeddings are 16 wide"):
        import_peft(tmp_path / "adapter", b)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({**config, "token_dim": 16}))
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
