import numpy as np
import pandas as pd
import pytest
import torch

from lib.analyses import (clean_vs_adversarial, layer_distribution, percentile_ranks,
                          suppression_curve, task_specificity)
from lib.data import DataConfig, load_splits
from lib.errors import ConfigError
from lib.evaluation import evaluate
from lib.hooks import ffn_sites, intervene_ffn, record_ffn
from lib.models import load_backbone
from lib.prompt import init_prompt
from lib.skill_neurons import (BinarySubtask, aggregate_seeds, binary_subtasks, compute_predictivity,
                               iter_activations, predictivity_store_all, top_global, top_per_layer)
from lib.tiny import build_planted_backbone, planted_prompt


@pytest.fixture(scope="module")
def backbones(tiny_paths):
    return {fam: load_backbone(str(p)) for fam, p in tiny_paths.items()}


@pytest.fixture(scope="module")
def data(synth):
    task, root = synth
    return task, load_splits(task, DataConfig(data_root=str(root), source="local"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, data):
    path, neuron = build_planted_backbone(tmp_path_factory.mktemp("planted"))
    b = load_backbone(str(path))
    return b, planted_prompt(b), neuron


def _handles(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- module discovery and shapes ---------------------------------------------------------------
def test_sites_and_shapes(backbones, data):
    task, sp = data
    for fam, b in backbones.items():
        sites = ffn_sites(b)
        assert len(sites) == 2 and all(s.width == 64 for s in sites), fam
        assert [s.reads_input for s in sites] == [fam == "t5"] * 2
        prompt = init_prompt(b, 6, seed=0)
        enc = b.encode(sp["test"].iloc[:5], 32)
        (_, acts), = list(iter_activations(b, prompt, enc, batch_size=8))
        assert acts.shape == (5, 2, 6, 64)
        assert (acts >= 0).all() if fam == "t5" else (acts >= -0.2).all()  # after ReLU / GELU
    assert len(ffn_sites(backbones["t5"], "decoder")) == 2
    with pytest.raises(ConfigError, match="has no decoder"):
        ffn_sites(backbones["bert"], "decoder")


def test_recorded_activation_is_the_post_nonlinearity_value(backbones, data):
    b = backbones["roberta"]
    task, sp = data
    prompt = init_prompt(b, 4, seed=1)
    batch = b.collate(b.encode(sp["test"].iloc[:3], 32), [0, 1, 2])
    inter = ffn_sites(b)[1].module
    seen = {}
    handle = inter.dense.register_forward_hook(lambda m, a, out: seen.setdefault("pre", out.detach()))
    try:
        with record_ffn(b, positions=[0, 2]) as rec:
            b.label_logits(prompt, batch, b.task_verbalizer_ids(task))
    finally:
        handle.remove()
    expected = torch.nn.functional.gelu(seen["pre"])[:, [0, 2]]
    torch.testing.assert_close(rec.stacked()[:, 1], expected)


def test_hooks_are_removed_after_exit_and_after_exceptions(backbones, data):
    task, sp = data
    for b in backbones.values():
        before = _handles(b.model)
        with record_ffn(b):
            assert _handles(b.model) > before
        with pytest.raises(RuntimeError, match="boom"):
            with intervene_ffn(b, {0: [1, 2]}):
                raise RuntimeError("boom")
        with pytest.raises(ValueError):
            with record_ffn(b, positions=[0]):
                with intervene_ffn(b, {1: [3]}, "noise"):
                    raise ValueError
        assert _handles(b.model) == before


def test_interventions_change_only_the_chosen_neurons(backbones, data):
    task, sp = data
    b = backbones["t5"]
    prompt = init_prompt(b, 4, seed=2)
    enc = b.encode(sp["test"].iloc[:4], 32)
    base = next(iter_activations(b, prompt, enc))[1]
    # intervening on layer 0 neurons is visible in layer 0's recorded activation (hooks compose)
    with intervene_ffn(b, {0: [3, 7]}, "zero"):
        z = next(iter_activations(b, prompt, enc))[1]
    assert torch.all(z[:, 0, :, [3, 7]] == 0)
    keep = [i for i in range(64) if i not in (3, 7)]
    torch.testing.assert_close(z[:, 0, :, keep], base[:, 0, :, keep])
    baseline = torch.full((2, 64), 0.25)
    with intervene_ffn(b, {1: [5]}, "mean", baseline=baseline):
        m = next(iter_activations(b, prompt, enc))[1]
    assert torch.all(m[:, 1, :, 5] == 0.25)
    with intervene_ffn(b, {0: [1]}, "noise", std=0.1, seed=3):
        n1 = next(iter_activations(b, prompt, enc))[1]
    with intervene_ffn(b, {0: [1]}, "noise", std=0.1, seed=3):
        n2 = next(iter_activations(b, prompt, enc))[1]
    assert torch.equal(n1, n2) and not torch.equal(n1[:, 0, :, 1], base[:, 0, :, 1])
    with pytest.raises(ConfigError, match="needs a baseline"):
        with intervene_ffn(b, {0: [1]}, "mean"):
            pass
    with pytest.raises(ConfigError, match=r"neuron mask has shape \(3, 64\), expected"):
        with intervene_ffn(b, torch.zeros(3, 64, dtype=torch.bool)):
            pass
    with pytest.raises(ConfigError, match="unknown intervention 'ablate'"):
        with intervene_ffn(b, {0: [1]}, "ablate"):
            pass


# --- the planted neuron -----------------------------------------------------------------------
def test_planted_neuron_is_found_and_is_causal(planted, data):
    b, prompt, neuron = planted
    task, sp = data
    train, test = b.encode(sp["train"], 64), b.encode(sp["test"], 64)
    assert evaluate(b, prompt, task, test).accuracy == 1.0
    pred = compute_predictivity(b, prompt, task, train, test, progress=False)
    scores = pred.per_neuron()
    assert scores.shape == (1, 64)
    assert scores[0, neuron] > 0.99
    assert int(torch.argmax(scores[0])) == neuron
    assert sorted(scores[0].tolist())[-2] < 0.8, "no other neuron carries the label"
    chance = max(np.mean(test.labels == 0), np.mean(test.labels == 1))
    with intervene_ffn(b, {0: [neuron]}):
        assert abs(evaluate(b, prompt, task, test).accuracy - chance) < 0.05
    other = (neuron + 17) % 64
    with intervene_ffn(b, {0: [other]}):
        assert evaluate(b, prompt, task, test).accuracy == 1.0
    curve = suppression_curve(b, prompt, task, test, scores, fractions=(0.0, 1 / 64), n_random=5, seed=1)
    skill = curve.query("kind == 'skill'").set_index("fraction")["accuracy"]
    rnd = curve.query("kind == 'random' and fraction > 0")["accuracy"]
    assert skill[0.0] == 1.0 and skill[1 / 64] < 0.6 and rnd.mean() > 0.9


# --- streamed == all in memory ----------------------------------------------------------------
@pytest.mark.parametrize("fam", ["bert", "t5"])
def test_streamed_equals_store_all(backbones, data, fam):
    task, sp = data
    b = backbones[fam]
    prompt = init_prompt(b, 5, seed=4)
    train, ev = b.encode(sp["train"], 32), b.encode(sp["test"], 32)
    thr, acc = predictivity_store_all(b, prompt, task, train, ev, batch_size=16)
    streamed = compute_predictivity(b, prompt, task, train, ev, batch_size=16, progress=False)
    torch.testing.assert_close(streamed.thresholds, thr, rtol=0, atol=1e-12)
    assert torch.equal(streamed.accuracy, acc)


def test_three_way_tasks_use_the_references_binary_subtasks(backbones, tmp_path):
    names = [s.name for s in binary_subtasks("mnli_3way")]
    assert names == ["entailment_vs_contradiction", "neutral_vs_rest"]
    assert binary_subtasks("sst2") == [BinarySubtask("sst2", (1,), (0,))]
    st = binary_subtasks("mnli_3way")[0]
    assert st.binary_labels(np.array([0, 1, 2])).tolist() == [1, -1, 0]
    b = backbones["bert"]
    df = pd.DataFrame({"text_a": ["good w1", "bad w2", "w3 w4", "good", "bad w5", "w6"],
                       "text_b": ["a", "the", "is", "it", "and", "a"], "label": [0, 2, 1, 0, 2, 1]})
    enc = b.encode(df, 16)
    pred = compute_predictivity(b, init_prompt(b, 3, seed=0), "mnli_3way", enc, enc, progress=False)
    assert pred.accuracy.shape == (2, 2, 3, 64) and pred.n_eval == [4, 6]
    assert pred.per_neuron("neutral_vs_rest").shape == (2, 64)


# --- selection and analyses -------------------------------------------------------------------
def test_selection_is_per_layer_or_global_and_deterministic():
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.5], [0.6, 0.95, 0.55, 0.8]])
    assert top_per_layer(scores, k=1).tolist() == [[True, False, False, False], [False, True, False, False]]
    assert top_per_layer(scores, fraction=0.5).sum(dim=1).tolist() == [2, 2]
    assert top_global(scores, k=3).tolist() == [[True, False, False, False], [False, True, False, True]]
    assert top_per_layer(scores, k=2)[0].tolist() == [True, False, True, False]  # ties: lower index first
    with pytest.raises(ConfigError, match="exactly one of fraction or k"):
        top_per_layer(scores)
    with pytest.raises(ConfigError, match=r"scores must be \(layers, neurons\)"):
        top_global(torch.zeros(3))
    dist = layer_distribution(scores, fraction=3 / 8)
    assert dist["n_selected"].tolist() == [1, 2] and dist["share"].sum() == pytest.approx(1.0)
    agg = aggregate_seeds([scores, 1 - scores])
    assert torch.allclose(agg, torch.full_like(agg, 0.5, dtype=torch.float64))
    with pytest.raises(ConfigError, match="different shapes"):
        aggregate_seeds([scores, scores[:1]])


def test_task_specificity_and_clean_vs_adversarial():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 200, generator=gen)
    spec = task_specificity(a, a)
    assert spec["spearman"].tolist() == pytest.approx([1.0] * 3) and spec.attrs["mean"] == pytest.approx(1.0)
    assert task_specificity(a, -a).attrs["mean"] == pytest.approx(-1.0)
    same = clean_vs_adversarial(a, a, fractions=(0.05,))
    assert (same["overlap"] == 1.0).all() and (same["adv_percentile"] > 95).all()
    flipped = clean_vs_adversarial(a, 1 - a, fractions=(0.05,))
    assert (flipped["overlap"] == 0.0).all() and (flipped["adv_percentile"] < 5.5).all()
    ranks = percentile_ranks(torch.tensor([[0.1, 0.3, 0.2, 0.4]]))
    assert ranks.tolist() == [[25.0, 75.0, 50.0, 100.0]]
    with pytest.raises(ConfigError, match="score shapes differ"):
        clean_vs_adversarial(a, a[:2])


def test_suppression_selects_neurons_on_dev_and_suppresses_on_test(smoke_run, monkeypatch):
    """Selecting and testing on one split would let the selection's noise count as an effect."""
    import lib.chapters as chapters
    from lib.experiments import Experiment

    root, _ = smoke_run
    exp = Experiment("smoke", root / "results", progress=False)
    monkeypatch.setattr(chapters, "cached", lambda exp, name, args, compute: compute())
    splits_asked, seen = [], {}
    original = exp.mean_scores

    def recording_mean_scores(task, eval_task=None, split="test"):
        splits_asked.append(split)
        return original(task, eval_task, split)

    def recording_curve(backbone, prompt, task, encoded, scores, *args, **kwargs):
        seen.update(encoded=encoded, scores=scores)
        return pd.DataFrame({"fraction": [0.0]})

    monkeypatch.setattr(exp, "mean_scores", recording_mean_scores)
    monkeypatch.setattr(chapters, "suppression_curve", recording_curve)
    chapters.suppression_table(exp, tasks=("synthetic",))
    assert splits_asked and set(splits_asked) == {"dev"}
    assert seen["encoded"] is exp.encoded("synthetic", "test")
    assert torch.equal(seen["scores"], original("synthetic", split="dev"))
    assert not torch.equal(seen["scores"], original("synthetic", split="test"))
    with pytest.raises(ConfigError, match="'dev' or 'test'"):
        exp.neuron_scores("synthetic", 0, split="train")
