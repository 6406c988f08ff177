import pytest
import torch

from lib.errors import ConfigError
from lib.models import ModelLoadError, load_backbone
from lib.prompt import init_prompt
from lib.tasks import get_task


@pytest.fixture(scope="module")
def backbones(tiny_paths):
    return {fam: load_backbone(str(p)) for fam, p in tiny_paths.items()}


def test_heads_are_detected(backbones):
    assert {f: b.head for f, b in backbones.items()} == {"bert": "mlm", "roberta": "mlm", "t5": "t5"}
    assert backbones["t5"].family == "t5" and backbones["bert"].family == "mlm"
    for b in backbones.values():
        assert not any(p.requires_grad for p in b.model.parameters()), "backbones are frozen"


def test_verbalizers_are_single_distinct_tokens(backbones):
    for b in backbones.values():
        for name in ("sst2", "mrpc", "mnli_3way", "qnli", "cola", "ethics_deontology"):
            ids = b.task_verbalizer_ids(name)
            assert len(set(ids.tolist())) == get_task(name).num_labels


def _batch(b, texts, pair=None):
    import pandas as pd
    df = pd.DataFrame({"text_a": texts, "label": [0] * len(texts)})
    if pair:
        df.insert(1, "text_b", pair)
    return b.collate(b.encode(df, 16), list(range(len(texts))))


@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_mlm_label_logits_equal_full_vocabulary_logits(backbones, fam):
    b = backbones[fam]
    prompt = init_prompt(b, 5, "random", seed=1)
    batch = _batch(b, ["good movie w1", "bad w2 w3 w4 w5"], ["the film", "a movie is"])
    vid = b.task_verbalizer_ids("sst2")
    mine = b.label_logits(prompt, batch, vid)
    embeds, attn = b.prompt_inputs(prompt, batch)
    kwargs = {}
    if batch.token_type_ids is not None:
        kwargs["token_type_ids"] = torch.cat([torch.zeros(2, 5, dtype=torch.long), batch.token_type_ids], 1)
    full = b.model(inputs_embeds=embeds, attention_mask=attn, **kwargs).logits  # (B, T, vocab)
    torch.testing.assert_close(mine, full[:, 0, vid], rtol=1e-5, atol=1e-5)
    assert torch.equal(embeds[0, 0], b.word_embeddings.weight[b.tokenizer.mask_token_id]), "mask slot at position 0"


def test_t5_label_logits_equal_first_decoder_step(backbones):
    b = backbones["t5"]
    prompt = init_prompt(b, 4, "vocab", seed=2)
    batch = _batch(b, ["good movie", "bad w1 w2 w3"])
    vid = b.task_verbalizer_ids("sst2")
    embeds, attn = b.prompt_inputs(prompt, batch)
    start = torch.full((2, 1), b.config.decoder_start_token_id)
    full = b.model(inputs_embeds=embeds, attention_mask=attn, decoder_input_ids=start).logits
    torch.testing.assert_close(b.label_logits(prompt, batch, vid), full[:, 0, vid], rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_logits(backbones):
    for b in backbones.values():
        prompt = init_prompt(b, 3, "random", seed=3)
        vid = b.task_verbalizer_ids("sst2")
        alone = b.label_logits(prompt, _batch(b, ["good"]), vid)
        padded = b.label_logits(prompt, _batch(b, ["good", "w1 w2 w3 w4 w5 w6 w7 w8"]), vid)[:1]
        torch.testing.assert_close(alone, padded, rtol=1e-4, atol=1e-5)


def test_tied_head_for_bare_encoders(tmp_path, tiny_paths):
    from transformers import BertModel
    enc = BertModel.from_pretrained(tiny_paths["bert"], add_pooling_layer=False)
    enc.save_pretrained(tmp_path / "bare")
    load_backbone(str(tiny_paths["bert"])).tokenizer.save_pretrained(tmp_path / "bare")
    b = load_backbone(str(tmp_path / "bare"))
    assert b.head == "tied"
    prompt = init_prompt(b, 4, seed=0)
    batch = _batch(b, ["good w1"])
    vid = b.task_verbalizer_ids("sst2")
    embeds, attn = b.prompt_inputs(prompt, batch)
    h = b.model(inputs_embeds=embeds, attention_mask=attn).last_hidden_state[:, 0]
    torch.testing.assert_close(b.label_logits(prompt, batch, vid), h @ b.word_embeddings.weight[vid].T)


def test_bad_inputs_give_clear_errors(backbones, tmp_path):
    b = backbones["bert"]
    with pytest.raises(ConfigError, match=r"prompt width 7 does not fit backbone .* \(embedding width 32\)"):
        b.check_prompt(torch.zeros(4, 7))
    with pytest.raises(ConfigError, match=r"prompt length 100 \+ max_length 128 exceeds the 160 positions"):
        b.check_prompt(torch.zeros(100, 32), 128)
    with pytest.raises(ModelLoadError, match=r"cannot load model .*no-such-model"):
        load_backbone(str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="unknown head 'lstm'"):
        load_backbone("x", head="lstm")
    with pytest.raises(ConfigError, match=r"verbalizer word 'goodbad' is 4 tokens .*must be single tokens"):
        b.verbalizer_ids(["goodbad"])
