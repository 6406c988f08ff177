"""The references' choices, pinned: verbalizer ids, prompt position embeddings, epoch budgets, ON
positions, the flattened projector, and which profile uses which (book/differences.md lists them)."""
import math

import pandas as pd
import pytest
import torch

from lib.catalog import PROFILES, STUDIES
from lib.errors import ConfigError
from lib.indicators import activated_neurons
from lib.models import load_backbone
from lib.projector import PromptProjector, ProjectorConfig, train_by_distance
from lib.tasks import get_task
from lib.tuning import TuneConfig, run_signature


def test_roberta_verbalizer_ids_with_and_without_the_leading_space(tiny_paths):
    spaced = load_backbone(str(tiny_paths["roberta"]))
    plain = load_backbone(str(tiny_paths["roberta"]), verbalizer_space=False)
    tok = spaced.tokenizer
    assert tok.convert_ids_to_tokens(spaced.task_verbalizer_ids("sst2").tolist()) == ["Ġnegative", "Ġpositive"]
    assert tok.convert_ids_to_tokens(plain.task_verbalizer_ids("sst2").tolist()) == ["negative", "positive"]
    # Skill-Neuron's tokenizer.encode(word)[1] is the same no-space id
    assert tok.encode("positive")[1] == plain.task_verbalizer_ids("sst2")[1]
    assert spaced.readout == {} and plain.readout == {"verbalizer_space": False}
    bert = load_backbone(str(tiny_paths["bert"]), verbalizer_space=False)  # WordPiece has no leading space
    assert bert.readout == {} and torch.equal(bert.task_verbalizer_ids("sst2"),
                                              load_backbone(str(tiny_paths["bert"])).task_verbalizer_ids("sst2"))


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_zero_prompt_positions_zero_the_prompt_slots_and_keep_the_text_positions(tiny_paths, family):
    backbone = load_backbone(str(tiny_paths[family]), prompt_positions="zero")
    ordinary = load_backbone(str(tiny_paths[family]))
    enc = backbone.encode(pd.DataFrame({"text_a": ["good film", "bad film here"], "label": [1, 0]}), 16)
    batch = backbone.collate(enc, [0, 1])
    prompt = torch.randn(5, backbone.embed_dim, generator=torch.Generator().manual_seed(0))
    table = backbone.encoder.embeddings.position_embeddings
    seen = []
    probe = table.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        states, _ = backbone.encode_prompted(prompt, batch)
    finally:
        probe.remove()
    first = backbone.config.pad_token_id + 1 if family == "roberta" else 0
    width = batch.input_ids.shape[1]
    out = seen[0][0]
    assert torch.count_nonzero(out[:5]) == 0, "e_pos = 0 on every prompt slot"
    assert torch.equal(out[5:], table.weight[first:first + width]), "the text keeps its prompt-free positions"
    assert len(table._forward_hooks) == 0, "the zeroing hook removes itself"
    assert not torch.allclose(states, ordinary.encode_prompted(prompt, batch)[0])
    assert backbone.readout == {"prompt_positions": "zero"}
    with pytest.raises(ConfigError, match="T5's are relative"):
        load_backbone(str(tiny_paths["t5"]), prompt_positions="zero")
    with pytest.raises(ConfigError, match="unknown prompt positions 'none'"):
        load_backbone(str(tiny_paths[family]), prompt_positions="none")


def test_epoch_budget_and_signatures_of_older_prompts(tiny_paths):
    cfg = TuneConfig(max_epochs=2.0, batch_size=16, max_steps=5)
    assert cfg.budgeted(100).max_steps == math.ceil(2 * 100 / 16) == 13
    assert TuneConfig().budgeted(100) == TuneConfig(), "without max_epochs the step budget stands"
    with pytest.raises(ConfigError, match="max_epochs must be positive"):
        TuneConfig(max_epochs=0.0)
    backbone = load_backbone(str(tiny_paths["bert"]))
    data = pd.DataFrame({"text_a": ["a", "b"], "label": [0, 1]})
    plain = run_signature(TuneConfig(), backbone, get_task("sst2"), data, data)
    assert "max_epochs" not in plain["config"] and "readout" not in plain, "older prompts keep their keys"
    assert run_signature(cfg, backbone, get_task("sst2"), data, data)["config"]["max_epochs"] == 2.0
    zero = load_backbone(str(tiny_paths["bert"]), prompt_positions="zero")
    assert run_signature(TuneConfig(), zero, get_task("sst2"), data, data)["readout"] == {"prompt_positions": "zero"}


def test_on_at_the_readout_positions(tiny_paths):
    roberta = load_backbone(str(tiny_paths["roberta"]))
    prompt = torch.randn(6, roberta.embed_dim, generator=torch.Generator().manual_seed(1))
    every = activated_neurons(roberta, prompt)
    at_mask = activated_neurons(roberta, prompt, positions="readout")
    assert every.shape[1] == 6 and at_mask.shape[1] == 1 and torch.equal(at_mask[:, 0], every[:, 0])
    t5 = load_backbone(str(tiny_paths["t5"]))
    decoder = activated_neurons(t5, torch.randn(4, t5.embed_dim), positions="readout")
    assert decoder.shape[1] == 1, "T5: the decoder's first step"
    with pytest.raises(ConfigError, match="unknown ON positions 'mask'"):
        activated_neurons(roberta, prompt, positions="mask")


def test_flattened_projector_maps_whole_prompts():
    proj = PromptProjector(8, 6, hidden=16, length=4)
    assert proj(torch.randn(4, 8)).shape == (4, 6)
    assert proj.net[0].in_features == 32 and isinstance(proj.net[1], torch.nn.LeakyReLU)
    with pytest.raises(ConfigError, match="length 4, got 3"):
        proj(torch.randn(3, 8))
    gen = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(4, 8, generator=gen), torch.randn(4, 6, generator=gen)) for _ in range(3)]
    fitted, losses = train_by_distance(pairs, ProjectorConfig(hidden=32, steps=200, flat=True))
    assert fitted.length == 4 and losses[-1] < 0.1 * losses[0]


def test_paper_profiles_follow_the_references_by_default():
    roberta, t5 = PROFILES["paper"], PROFILES["paper_t5"]
    assert (roberta.verbalizer_space, roberta.prompt_positions, roberta.tune.max_epochs) == (False, "zero", 76.0)
    assert t5.tune.max_epochs == 200.0 and t5.prompt_positions == "ordinary"
    assert roberta.tune.patience is not None, "early stopping on dev"
    assert STUDIES["paper"].projector_target == "paper_t5" and STUDIES["paper_t5"].projector_target == "paper"
    for name in ("paper", "paper_t5"):
        assert STUDIES[name].projector_flat and STUDIES[name].on_positions == "readout"
    mini = PROFILES["mini"]
    assert (mini.verbalizer_space, mini.prompt_positions, mini.tune.max_epochs) == (True, "ordinary", None)
