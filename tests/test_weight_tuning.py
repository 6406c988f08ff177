"""Weight tuning (lib.weight_tuning): BitFit, LoRA and full tuning on tiny backbones of the real classes."""
import json

import pytest
import torch

pytest.importorskip("peft")

from lib.data import DataConfig, load_splits  # noqa: E402
from lib.errors import CheckpointError, ConfigError, DivergenceError  # noqa: E402
from lib.evaluation import predict_logits  # noqa: E402
from lib.hooks import ffn_sites, intervene_ffn  # noqa: E402
from lib.io import read_tensors  # noqa: E402
from lib.models import load_backbone  # noqa: E402
from lib.tiny import build_tiny_backbone  # noqa: E402
from lib.weight_tuning import (DEFAULT_LR, METHODS, WeightTuneConfig, evaluate_tuned, load_tuned,  # noqa: E402
                               slot_prompt, tune_weights)

LR = {"bitfit": 1e-2, "adapter": 1e-2, "lora": 1e-2, "full": 1e-3}  # rates that learn the synthetic task on the tiny networks


@pytest.fixture(scope="module")
def splits(synth):
    task, root = synth
    return task, load_splits(task, DataConfig(data_root=str(root), source="local"))


def cfg_for(method, **kw):
    base = dict(lr=LR[method], batch_size=16, max_steps=20, eval_every=10, max_length=32)
    base.update(kw)
    return WeightTuneConfig(method, **base)


def original_name(name):
    """The input model's name of a parameter of the tuned copy (LoRA wraps q/v as `base_layer`, the
    bottleneck adapters wrap the output projections as `inner`)."""
    return name.replace(".base_layer.", ".").replace(".inner.", ".")


def params_of(backbone):
    return {n: p.detach().clone() for n, p in backbone.model.named_parameters()}


def logits(backbone, task, data, max_length=32):
    enc = backbone.encode(data, max_length)
    return predict_logits(backbone, slot_prompt(backbone), enc, backbone.task_verbalizer_ids(task))


class Kill(Exception):
    pass


def _kill_at(step):
    def hook(s, loss):
        if s == step:
            raise Kill
    return hook


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_each_method_changes_only_its_parameters(tiny_paths, splits, fam, method):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    before = params_of(b)
    res = tune_weights(b, task, sp["train"], sp["dev"], cfg_for(method), progress=False)
    assert all(torch.equal(p, before[n]) for n, p in b.model.named_parameters()), "the input backbone changed"
    assert res.backbone is not b and res.backbone.model is not b.model
    assert not any(p.requires_grad for p in res.backbone.model.parameters()), "a tuned backbone is frozen"
    assert not any(m.training for m in res.backbone.model.modules()), "kept in eval mode (no dropout)"
    after = params_of(res.backbone)
    added = lambda n: "lora_" in n or ".adapter." in n  # noqa: E731
    assert {original_name(n) for n in after if not added(n)} == set(before)
    changed = {n for n, p in after.items() if not added(n) and not torch.equal(p, before[original_name(n)])}
    biases = {n for n in before if n.endswith(".bias")}
    ffn = {n for n in before if ".intermediate.dense.weight" in n}
    assert res.total_parameters == sum(p.numel() for p in res.backbone.model.parameters())
    if method == "bitfit":
        assert changed and changed <= biases, sorted(changed - biases)
        assert res.trainable_parameters == sum(before[n].numel() for n in biases)
        assert res.total_parameters == sum(p.numel() for p in before.values())
    elif method == "lora":
        assert not changed, "LoRA leaves every original weight (FFN included) as it was"
        lora = {n: p for n, p in after.items() if "lora_" in n}
        assert any(float(p.abs().sum()) > 0 for n, p in lora.items() if "lora_B" in n), "lora_B moved from zero"
        # rank r on each query and value projection: r * (in + out) per projection
        qv = [m for n, m in b.model.named_modules() if n.endswith((".query", ".value"))]
        assert res.trainable_parameters == sum(8 * (m.in_features + m.out_features) for m in qv)
        assert res.trainable_parameters == sum(p.numel() for p in lora.values())
    elif method == "adapter":
        norms = {n for n in before if "LayerNorm" in n and not n.startswith(("lm_head.", "cls."))}
        assert changed and changed <= norms, "adapter tuning moves the LayerNorms and nothing else of the original"
        ups = {n: p for n, p in after.items() if n.endswith("adapter.up.weight")}
        assert ups and any(float(p.abs().sum()) > 0 for p in ups.values()), "W_up moved from zero"
        assert res.trainable_parameters == sum(p.numel() for n, p in after.items() if ".adapter." in n) + \
            sum(before[n].numel() for n in norms)
    else:
        assert ffn <= changed, "full tuning moves the FFN weights"
        assert res.trainable_parameters == res.total_parameters == sum(p.numel() for p in before.values())


def test_lora_on_t5_keeps_the_original_weights_and_counts_every_attention(tiny_paths, splits):
    task, sp = splits
    b = load_backbone(str(tiny_paths["t5"]))
    before = params_of(b)
    res = tune_weights(b, task, sp["train"], sp["dev"], cfg_for("lora", lora_rank=4), progress=False)
    after = params_of(res.backbone)
    assert all(torch.equal(after[n], before[original_name(n)]) for n in after if "lora_" not in n)
    assert all(torch.equal(p, before[n]) for n, p in b.model.named_parameters())
    qv = [m for n, m in b.model.named_modules() if n.endswith((".q", ".v"))]
    assert len(qv) == 2 * 2 + 2 * 4, "encoder self-attention, decoder self- and cross-attention"
    assert res.trainable_parameters == sum(4 * (m.in_features + m.out_features) for m in qv)
    assert slot_prompt(res.backbone).shape == (0, 32), "T5 reads the first decoder step: no slot row"


@pytest.mark.parametrize(("fam", "method"), [("roberta", "full"), ("bert", "bitfit"), ("t5", "lora")])
def test_kill_and_resume_equals_uninterrupted(tiny_paths, splits, tmp_path, fam, method):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    cfg = cfg_for(method, max_steps=30, eval_every=10)
    full = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "full", progress=False)
    with pytest.raises(Kill):
        tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False, on_step=_kill_at(25))
    assert (tmp_path / "cut/state.pt").is_file() and not (tmp_path / "cut/weights.safetensors").exists()
    assert not list((tmp_path / "cut").glob(".*.tmp"))
    assert json.loads((tmp_path / "cut/metrics.json").read_text())["finished"] is False
    seen = []
    resumed = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False,
                           on_step=lambda s, l: seen.append(s))
    assert seen[0] == 21, "resumes from the last checkpoint (step 20), not from scratch"
    a, c = params_of(full.backbone), params_of(resumed.backbone)
    assert a.keys() == c.keys() and all(torch.equal(a[n], c[n]) for n in a)
    assert resumed.history == full.history and resumed.best_step == full.best_step
    saved, want = (read_tensors(tmp_path / f"{d}/weights.safetensors") for d in ("cut", "full"))
    assert saved.keys() == want.keys() and all(torch.equal(saved[n], want[n]) for n in want)
    # a finished run is loaded, not repeated
    again = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False, on_step=_kill_at(1))
    assert all(torch.equal(a[n], p) for n, p in params_of(again.backbone).items())
    assert again.trainable_parameters == full.trainable_parameters and again.history == full.history


@pytest.mark.parametrize("fam", ["bert", "roberta", "t5"])
def test_weight_tuning_learns_a_separable_task(tmp_path, splits, fam):
    """Full tuning and LoRA both learn the synthetic task on three random tiny networks in 60 steps
    (the untuned networks score 0.40-0.55 on its test set)."""
    task, sp = splits
    for seed in (0, 1, 2):
        b = load_backbone(str(build_tiny_backbone(fam, tmp_path / f"{fam}{seed}", seed=seed)))
        untuned = evaluate_tuned(b, task, sp["test"], max_length=32).accuracy
        for method in ("full", "lora"):
            res = tune_weights(b, task, sp["train"], sp["dev"], cfg_for(method, max_steps=60, eval_every=20),
                               progress=False)
            test = evaluate_tuned(res.backbone, task, sp["test"], max_length=32).accuracy
            assert res.best_dev_accuracy >= 0.85 and test >= 0.85, (seed, method, res.history, test)
            assert test - untuned > 0.3, (seed, method, untuned, test)


@pytest.mark.parametrize("fam", ["roberta", "t5"])
def test_ffn_hooks_work_on_a_lora_backbone(tiny_paths, splits, fam):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    res = tune_weights(b, task, sp["train"], sp["dev"], cfg_for("lora", max_steps=10, eval_every=10), progress=False)
    sites = ffn_sites(res.backbone)
    assert len(sites) == 2 and sites[0].width == 64
    plain = logits(res.backbone, task, sp["dev"])
    with intervene_ffn(res.backbone, torch.ones(2, 64, dtype=torch.bool)):
        zeroed = logits(res.backbone, task, sp["dev"])
    assert float(abs(plain - zeroed).max()) > 1e-3, "zeroing every FFN neuron changes the logits"
    assert (logits(res.backbone, task, sp["dev"]) == plain).all(), "the hooks are gone after the block"


@pytest.mark.parametrize(("fam", "method"), [("bert", "bitfit"), ("roberta", "lora"), ("t5", "lora"),
                                             ("bert", "full")])
def test_load_tuned_reproduces_the_tuned_logits(tiny_paths, splits, tmp_path, fam, method):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    res = tune_weights(b, task, sp["train"], sp["dev"], cfg_for(method), tmp_path, progress=False)
    loaded = load_tuned(b, tmp_path)
    assert (logits(loaded, task, sp["test"]) == logits(res.backbone, task, sp["test"])).all()
    assert not (logits(b, task, sp["test"]) == logits(res.backbone, task, sp["test"])).all()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["finished"] and metrics["trainable_parameters"] == res.trainable_parameters
    other = load_backbone(str(tiny_paths["roberta" if fam == "bert" else "bert"]))
    with pytest.raises(CheckpointError, match="was tuned from a backbone with"):
        load_tuned(other, tmp_path)


def test_bad_configs_give_one_clear_line(tiny_paths, splits, tmp_path):
    cases = [
        (dict(method="houlsby", lr=1e-3), r"unknown weight-tuning method 'houlsby'; valid: adapter, bitfit, full, lora"),
        (dict(method="adapter", lr=1e-3, adapter_reduction=0), r"adapter_reduction must be at least 1, got 0"),
        (dict(method="lora", lr=0.0), r"lr must be positive, got 0\.0"),
        (dict(method="lora", lr=1e-3, lora_rank=0), r"lora_rank must be at least 1, got 0"),
        (dict(method="full", lr=1e-3, batch_size=0), r"batch_size must be at least 1"),
        (dict(method="full", lr="0.01"), r"lr must be a finite number, got '0\.01'"),
        (dict(method="full", lr=1e-3, patience=0), r"patience must be at least 1"),
        (dict(method="full", lr=1e-3, device="gpu0"), r"device 'gpu0' is not a torch device"),
    ]
    for kw, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            WeightTuneConfig(**kw)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown WeightTuneConfig field\(s\) \['learning_rate'\]"):
        WeightTuneConfig.from_dict({"method": "lora", "learning_rate": 1})
    with pytest.raises(ConfigError, match="needs a method"):
        WeightTuneConfig.from_dict({"lr": 1e-3})
    assert WeightTuneConfig.from_dict({"method": "full"}).lr == DEFAULT_LR["full"] == 2e-5
    assert WeightTuneConfig.for_method("lora", max_steps=5) == WeightTuneConfig("lora", 1e-3, max_steps=5)
    task, sp = splits
    t5 = load_backbone(str(tiny_paths["t5"]))
    with pytest.raises(ConfigError, match=r"no parameters for method 'bitfit' \(T5 has no bias terms\)"):
        tune_weights(t5, task, sp["train"], sp["dev"], cfg_for("bitfit"), progress=False)
    b = load_backbone(str(tiny_paths["bert"]))
    with pytest.raises(ConfigError, match=r"train labels outside 0\.\.1"):
        tune_weights(b, task, sp["train"].assign(label=2), sp["dev"], cfg_for("bitfit"), progress=False)
    # a changed configuration in an existing folder
    with pytest.raises(Kill):
        tune_weights(b, task, sp["train"], sp["dev"], cfg_for("bitfit"), tmp_path, progress=False,
                     on_step=_kill_at(15))
    with pytest.raises(CheckpointError, match=r"another configuration \(config\.lr: 0\.01 here, 0\.5 asked\)"):
        tune_weights(b, task, sp["train"], sp["dev"], cfg_for("bitfit", lr=0.5), tmp_path, progress=False)
    tune_weights(b, task, sp["train"], sp["dev"], cfg_for("bitfit"), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"config\.method: 'bitfit' here, 'lora' asked"):
        tune_weights(b, task, sp["train"], sp["dev"], cfg_for("lora"), tmp_path, progress=False)


def test_divergence_stops_before_anything_is_saved(tiny_paths, splits, tmp_path):
    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    with pytest.raises(DivergenceError, match="full tuning 'synthetic' seed 0 diverged at step"):
        tune_weights(b, task, sp["train"], sp["dev"], cfg_for("full", lr=1e38, grad_clip=None, max_steps=10),
                     tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_run_killed_after_early_stopping_resumes_to_the_same_weights(tiny_paths, splits, tmp_path, monkeypatch):
    """Killed between early stopping's last checkpoint and the final files: the re-run stops at once."""
    import lib.weight_tuning as wt

    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = cfg_for("bitfit", max_steps=300, eval_every=10, patience=2)
    full = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "full", progress=False)
    assert full.stopped_early and full.steps < 300, "the set-up must stop early for the test to mean anything"
    real = wt.write_tensors

    def killed(*a, **kw):
        raise Kill
    with monkeypatch.context() as m:
        m.setattr(wt, "write_tensors", killed)
        with pytest.raises(Kill):
            tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False)
    assert wt.write_tensors is real
    assert json.loads((tmp_path / "cut/metrics.json").read_text())["finished"] is False
    steps = []
    resumed = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False,
                           on_step=lambda s, l: steps.append(s))
    assert steps == [], "the resumed run stops where the uninterrupted one stopped"
    assert resumed.steps == full.steps and resumed.stopped_early and resumed.history == full.history
    saved, want = (read_tensors(tmp_path / f"{d}/weights.safetensors") for d in ("cut", "full"))
    assert saved.keys() == want.keys() and all(torch.equal(saved[n], want[n]) for n in want)


def test_a_finished_run_whose_weights_were_replaced_is_refused(tiny_paths, splits, tmp_path):
    from lib.io import write_tensors

    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = cfg_for("bitfit", max_steps=10, eval_every=5)
    tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
    saved = read_tensors(tmp_path / "weights.safetensors")
    write_tensors(tmp_path / "weights.safetensors", {k: v + 1 for k, v in saved.items()})
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is not the file this run saved"):
        tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is not the file this run saved"):
        load_tuned(b, tmp_path)
