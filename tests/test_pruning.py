import pytest
import torch

from lib.data import DataConfig, load_splits
from lib.errors import ConfigError
from lib.evaluation import predict_logits
from lib.hooks import ffn_sites, intervene_ffn
from lib.models import load_backbone
from lib.prompt import init_prompt
from lib.pruning import count_parameters, keep_mask, prune_ffn
from lib.tiny import build_planted_backbone, planted_prompt

FAMILIES = ("bert", "roberta", "t5")


@pytest.fixture(scope="module")
def setup(tiny_paths, synth):
    task, root = synth
    test = load_splits(task, DataConfig(data_root=str(root), source="local"), ("test",))["test"].iloc[:24]
    out = {}
    for fam in FAMILIES:
        b = load_backbone(str(tiny_paths[fam]))
        assert b.head == ("t5" if fam == "t5" else "mlm")
        out[fam] = (b, init_prompt(b, 4, seed=0), b.encode(test, 32), b.task_verbalizer_ids(task))
    return out


def _logits(b, prompt, enc, verbalizer) -> torch.Tensor:
    return torch.as_tensor(predict_logits(b, prompt, enc, verbalizer, batch_size=8))


def _scores(seed: int = 1) -> torch.Tensor:
    return torch.rand(2, 64, generator=torch.Generator().manual_seed(seed))


# --- keep_mask ---------------------------------------------------------------------------------
def test_keep_mask_known_answers():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.2], [0.8, 0.3, 0.6, 0.4, 0.95]])
    top = keep_mask(scores, 0.4)  # k = round(2.0) = 2 per layer
    assert top.tolist() == [[False, True, False, True, False], [True, False, False, False, True]]
    assert keep_mask(scores, 0.01).sum(1).tolist() == [1, 1]  # at least one neuron per layer
    assert keep_mask(scores, 1.0).all()
    rand = keep_mask(scores, 0.6, how="random", seed=3)
    assert rand.sum(1).tolist() == [3, 3]
    assert torch.equal(rand, keep_mask(scores, 0.6, how="random", seed=3))
    wide = torch.zeros(4, 200)
    draws = [keep_mask(wide, 0.1, how="random", seed=s) for s in (0, 1)]
    assert all(d.sum(1).tolist() == [20] * 4 for d in draws) and not torch.equal(*draws)
    state = torch.random.get_rng_state()
    keep_mask(wide, 0.1, how="random", seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # no global RNG use


@pytest.mark.parametrize("kwargs, match", [
    ({"fraction": 0.0}, r"\(0, 1\]"), ({"fraction": 1.5}, r"\(0, 1\]"), ({"fraction": -0.1}, r"\(0, 1\]"),
    ({"fraction": 0.5, "how": "bottom"}, "unknown pruning selection 'bottom'; valid: random, top"),
])
def test_keep_mask_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        keep_mask(_scores(), **kwargs)


def test_keep_mask_bad_shape():
    for bad in (torch.rand(64), torch.rand(2, 3, 4), torch.zeros(2, 0)):
        with pytest.raises(ConfigError, match=r"\(layers, width\)"):
            keep_mask(bad, 0.5)


# --- prune_ffn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fam", FAMILIES)
def test_pruned_equals_zeroed(setup, fam):
    """Removing the neurons computes exactly what zeroing their activations computes."""
    b, prompt, enc, verbalizer = setup[fam]
    for fraction, how in ((0.3, "top"), (0.1, "random"), (0.5, "random")):
        keep = keep_mask(_scores(), fraction, how=how)
        with intervene_ffn(b, ~keep, mode="zero"):
            zeroed = _logits(b, prompt, enc, verbalizer)
        pruned = _logits(prune_ffn(b, keep), prompt, enc, verbalizer)
        torch.testing.assert_close(pruned, zeroed, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(pruned, _logits(b, prompt, enc, verbalizer), atol=1e-3)  # pruning did something


@pytest.mark.parametrize("fam", FAMILIES)
def test_wrong_neurons_are_detected(setup, fam):
    """The comparison above can fail: keeping other neurons than those left unzeroed changes the logits."""
    b, prompt, enc, verbalizer = setup[fam]
    keep = keep_mask(_scores(), 0.3)
    with intervene_ffn(b, ~keep, mode="zero"):
        zeroed = _logits(b, prompt, enc, verbalizer)
    shifted = keep.roll(1, dims=1)  # same count per layer, (mostly) other neurons
    with pytest.raises(AssertionError):
        torch.testing.assert_close(_logits(prune_ffn(b, shifted), prompt, enc, verbalizer), zeroed,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fam", FAMILIES)
def test_pruned_model_is_smaller_and_original_unchanged(setup, fam):
    b, prompt, enc, verbalizer = setup[fam]
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    logits = _logits(b, prompt, enc, verbalizer)
    n_params = count_parameters(b)
    keep = keep_mask(_scores(), 0.2)  # k = round(12.8) = 13
    pruned = prune_ffn(b, keep)
    assert [s.width for s in ffn_sites(pruned)] == [13, 13] and [s.width for s in ffn_sites(b)] == [64, 64]
    per_neuron = 2 * b.embed_dim + (1 if fam != "t5" else 0)  # input row (+ its bias) and output column
    assert count_parameters(pruned) == n_params - 2 * (64 - 13) * per_neuron
    assert (pruned.name, pruned.head, pruned.tokenizer, pruned.readout) == (b.name, b.head, b.tokenizer, b.readout)
    assert all(torch.equal(before[k], v) for k, v in b.model.state_dict().items())
    torch.testing.assert_close(_logits(b, prompt, enc, verbalizer), logits, atol=0, rtol=0)
    if fam == "t5":  # the decoder is pruned only when asked
        assert [s.width for s in ffn_sites(pruned, "decoder")] == [64, 64]
        dec = prune_ffn(b, keep, part="decoder")
        assert [s.width for s in ffn_sites(dec, "decoder")] == [13, 13] and ffn_sites(dec)[0].width == 64


@pytest.mark.parametrize("fam", FAMILIES)
def test_keeping_everything_changes_nothing(setup, fam):
    b, prompt, enc, verbalizer = setup[fam]
    pruned = prune_ffn(b, keep_mask(_scores(), 1.0))
    assert count_parameters(pruned) == count_parameters(b)
    torch.testing.assert_close(_logits(pruned, prompt, enc, verbalizer), _logits(b, prompt, enc, verbalizer),
                               atol=0, rtol=0)


def test_prune_bad_masks(setup):
    b = setup["bert"][0]
    with pytest.raises(ConfigError, match="expected \\(layers, width\\) = \\(2, 64\\)"):
        prune_ffn(b, torch.ones(3, 64, dtype=torch.bool))
    uneven = keep_mask(_scores(), 0.5)
    uneven[0, uneven[0].nonzero()[0]] = False
    with pytest.raises(ConfigError, match=r"same number .* got \[31, 32\]"):
        prune_ffn(b, uneven)
    with pytest.raises(ConfigError, match=r"got \[0, 0\]"):
        prune_ffn(b, torch.zeros(2, 64, dtype=torch.bool))
    with pytest.raises(ConfigError, match="has no decoder"):
        prune_ffn(b, keep_mask(_scores(), 0.5), part="decoder")


def test_planted_neuron_alone_keeps_the_skill(tmp_path, synth):
    """Ground truth: keeping only the planted neuron keeps every prediction; keeping any one other
    neuron leaves the two label logits exactly equal (chance)."""
    task, root = synth
    path, neuron = build_planted_backbone(tmp_path / "planted")
    b = load_backbone(str(path))
    prompt, verbalizer = planted_prompt(b), b.task_verbalizer_ids(task)
    enc = b.encode(load_splits(task, DataConfig(data_root=str(root), source="local"), ("test",))["test"], 32)
    full = _logits(b, prompt, enc, verbalizer)
    scores = torch.zeros(1, 64)
    scores[0, neuron] = 1.0
    skill = _logits(prune_ffn(b, keep_mask(scores, 1 / 64)), prompt, enc, verbalizer)
    assert torch.equal(skill.argmax(1), full.argmax(1)) and (skill.argmax(1).numpy() == enc.labels).all()
    other = _logits(prune_ffn(b, keep_mask(-scores, 1 / 64)), prompt, enc, verbalizer)  # neuron 0 (or 1)
    torch.testing.assert_close(other[:, 0], other[:, 1], atol=0, rtol=0)


def test_gated_t5_pruned_equals_zeroed(setup):
    """T5 v1.1 FFNs (`T5DenseGatedActDense`): both gate and input rows go with the output column."""
    from transformers import T5ForConditionalGeneration

    from lib.models import Backbone

    b, prompt, enc, verbalizer = setup["t5"]
    settings = {k: v for k, v in b.config.to_dict().items() if k not in ("is_gated_act", "dense_act_fn")}
    config = b.config.__class__(**{**settings, "feed_forward_proj": "gated-gelu"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gated = Backbone(T5ForConditionalGeneration(config), b.tokenizer, "t5", "tiny-t5-gated")
    keep = keep_mask(_scores(), 0.3, how="random")
    with intervene_ffn(gated, ~keep, mode="zero"):
        zeroed = _logits(gated, prompt, enc, verbalizer)
    pruned = prune_ffn(gated, keep)
    ffn = pruned.model.encoder.block[0].layer[1].DenseReluDense
    assert (ffn.wi_0.out_features, ffn.wi_1.out_features, ffn.wo.in_features) == (19, 19, 19)
    torch.testing.assert_close(_logits(pruned, prompt, enc, verbalizer), zeroed, atol=1e-5, rtol=1e-5)
