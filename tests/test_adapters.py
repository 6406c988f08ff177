"""Bottleneck adapters (lib.adapters) on tiny backbones of each family, and the 'adapter' tuning method."""
import numpy as np
import pytest
import torch

from lib.adapters import AdaptedLinear, adapter_parameters, adapter_sites, add_adapters
from lib.data import DataConfig, load_splits
from lib.errors import ConfigError
from lib.evaluation import predict_logits
from lib.hooks import ffn_sites, intervene_ffn
from lib.models import load_backbone
from lib.weight_tuning import WeightTuneConfig, load_tuned, slot_prompt, tune_weights


@pytest.fixture(scope="module")
def splits(synth):
    task, root = synth
    return task, load_splits(task, DataConfig(data_root=str(root), source="local"))


def _logits(backbone, task, data):
    enc = backbone.encode(data, 32)
    return predict_logits(backbone, slot_prompt(backbone), enc, backbone.task_verbalizer_ids(task))


@pytest.mark.parametrize("fam", ["bert", "roberta", "t5"])
@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_zero_initialised_adapters_leave_the_logits_unchanged(tiny_paths, splits, fam, placement):
    import copy

    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    before = _logits(b, task, sp["test"].head(24))
    adapted = copy.deepcopy(b)
    names = add_adapters(adapted.model, adapted.family, placement, reduction=4, seed=0)
    layers = len(ffn_sites(b)) + (len(ffn_sites(b, "decoder")) if fam == "t5" else 0)
    attention = 0 if placement == "pfeiffer" else (layers + (len(ffn_sites(b, "decoder")) if fam == "t5" else 0))
    assert len(names) == layers + attention  # one per FFN; Houlsby also one per attention (T5: self and cross)
    assert np.array_equal(_logits(adapted, task, sp["test"].head(24)), before)
    # the FFN sites (and their interventions) still find the activations through the wrapped projections
    assert len(ffn_sites(adapted)) == len(ffn_sites(b))
    mask = torch.zeros(len(ffn_sites(b)), ffn_sites(b)[0].width, dtype=torch.bool)
    mask[:, :3] = True
    with intervene_ffn(b, mask, "zero"):
        plain = _logits(b, task, sp["test"].head(24))
    with intervene_ffn(adapted, mask, "zero"):
        assert np.array_equal(_logits(adapted, task, sp["test"].head(24)), plain)


def test_adapter_parameters_are_the_adapters_and_layernorms(tiny_paths):
    b = load_backbone(str(tiny_paths["bert"]))
    add_adapters(b.model, b.family, "houlsby", reduction=4)
    names = [n for n, _ in adapter_parameters(b.model)]
    assert names and all(".adapter." in n or "LayerNorm" in n for n in names)
    assert any("attention.output.dense.adapter.up" in n for n in names)
    assert all(isinstance(m, AdaptedLinear) for n, m in b.model.named_modules() if n.endswith("output.dense"))
    with pytest.raises(ConfigError, match="adapter placement"):
        adapter_sites(b.model, "mlm", "serial")
    with pytest.raises(ConfigError, match="at least 1"):
        add_adapters(b.model, "mlm", "pfeiffer", reduction=0)


@pytest.mark.parametrize("fam", ["roberta", "t5"])
def test_adapter_tuning_trains_only_adapters_and_layernorms(tiny_paths, splits, tmp_path, fam):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    before = {n: p.detach().clone() for n, p in b.model.named_parameters()}
    cfg = WeightTuneConfig("adapter", lr=1e-2, batch_size=16, max_steps=20, eval_every=10, max_length=32,
                           adapter_placement="houlsby", adapter_reduction=4)
    res = tune_weights(b, task, sp["train"], sp["dev"], cfg, tmp_path / "run", progress=False)
    assert all(torch.equal(p, before[n]) for n, p in b.model.named_parameters()), "the input backbone changed"
    after = {n: p.detach() for n, p in res.backbone.model.named_parameters()}
    trained = {n for n, _ in adapter_parameters(res.backbone.model)}
    assert not any(n.startswith(("lm_head.", "cls.")) for n in trained), "the masked-LM head stays frozen"
    frozen = {n: p for n, p in after.items() if n not in trained}
    assert all(torch.equal(p, before[n.replace(".inner.", ".")]) for n, p in frozen.items()), "a frozen weight moved"
    ups = [p for n, p in after.items() if n.endswith("adapter.up.weight")]
    assert ups and any(float(p.abs().sum()) > 0 for p in ups), "W_up moved from zero"
    assert res.trainable_parameters == sum(p.numel() for _, p in adapter_parameters(res.backbone.model))
    again = load_tuned(b, tmp_path / "run")
    assert np.array_equal(_logits(again, task, sp["test"].head(16)), _logits(res.backbone, task, sp["test"].head(16)))


def test_adapter_settings_enter_the_signature_only_for_adapters(tiny_paths, splits):
    """Adding the adapter fields changed no other method's key: they are in an adapter run's signature only."""
    from lib.weight_tuning import weight_signature

    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    lora = weight_signature(WeightTuneConfig("lora", lr=1e-3), b, task, sp["train"], sp["dev"])["config"]
    adapter = weight_signature(WeightTuneConfig("adapter", lr=1e-3), b, task, sp["train"], sp["dev"])["config"]
    assert "adapter_placement" not in lora and "lora_rank" in lora
    assert adapter["adapter_placement"] == "houlsby" and adapter["adapter_reduction"] == 16 and "lora_rank" not in adapter
    with pytest.raises(ConfigError, match="adapter placement"):
        WeightTuneConfig("adapter", lr=1e-3, adapter_placement="parallel")
