"""The model families (lib.families): each family's rules on a tiny model of its real class, the registry, and
the rule that no module outside the family package compares model types."""
import ast
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from lib.errors import ConfigError, ModelLoadError
from lib.families import (BERT, HEADS, REGISTERED, REGISTRY, ROBERTA, T5, EncoderDecoder, EncoderMLM, Family,
                          family_for, family_named)
from lib.hooks import ffn_sites
from lib.models import load_backbone
from lib.tasks import get_task

LIB = Path(__file__).resolve().parents[1] / "lib"
EXPECTED = {  # tiny model -> (family, its class, the real model class it loads)
    "bert": (BERT, EncoderMLM, "BertForMaskedLM"),
    "roberta": (ROBERTA, EncoderMLM, "RobertaForMaskedLM"),
    "t5": (T5, EncoderDecoder, "T5ForConditionalGeneration"),
}


@pytest.fixture(scope="module")
def backbones(tiny_paths):
    return {name: load_backbone(str(p)) for name, p in tiny_paths.items()}


def _batch(b):
    df = pd.DataFrame({"text_a": ["good movie w1", "bad w2 w3 w4 w5"], "label": [1, 0]})
    return b.collate(b.encode(df, 16), [0, 1])


# --- the registry -------------------------------------------------------------------------------------
def test_the_registry_maps_each_model_type_to_one_family():
    assert dict(REGISTRY) == {"bert": BERT, "roberta": ROBERTA, "xlm-roberta": ROBERTA, "t5": T5}
    assert sum(len(f.model_types) for f in REGISTERED) == len(REGISTRY), "a model type in two families"
    assert HEADS == ("mlm", "tied", "t5")
    assert family_for("roberta") is ROBERTA and family_named("mlm") is BERT and family_named(T5) is T5
    with pytest.raises(ModelLoadError, match=r"unsupported model type 'gpt2'; supported: bert, roberta, xlm-roberta, "
                                              r"t5"):
        family_for("gpt2")
    with pytest.raises(ConfigError, match=r"unknown model family 'causal'; valid: mlm, t5"):
        family_named("causal")


def test_a_family_must_implement_every_rule():
    class Incomplete(Family):
        key = "x"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete("X", ("x",))
    with pytest.raises(AttributeError):  # one instance per registry entry, shared: immutable
        BERT.leading_space = True  # type: ignore[misc]


def test_task_verbalizers_are_chosen_by_the_family():
    task = get_task("mnli")
    assert task.verbalizer("mlm") == task.verbalizer(ROBERTA) == BERT.label_words(task) == ("yes", "no")
    assert task.verbalizer("t5") == T5.label_words(task) == ("entailment", "contradiction")


# --- each family on its tiny model ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_tiny_model_gets_its_family(backbones, name):
    b = backbones[name]
    family, cls, model_class = EXPECTED[name]
    assert b.rules is family and isinstance(b.rules, cls) and type(b.model).__name__ == model_class
    assert b.family == cls.key and b.head in cls.heads and b.head == cls.heads[0]
    assert b.encoder is family.encoder(b.model)
    assert (family.decoder(b.model) is not None) == (cls.readout_part == "decoder")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_heads_a_family_offers(tiny_paths, name):
    family = EXPECTED[name][0]
    config = load_backbone(str(tiny_paths[name])).config
    for head in family.heads:
        assert family.resolve_head(config, head) == head
    other = next(h for h in HEADS if h not in family.heads)
    with pytest.raises(ConfigError, match=f"model type '{name}'"):
        family.resolve_head(config, other)
    with pytest.raises(ConfigError, match=f"model type '{name}'"):
        load_backbone(str(tiny_paths[name]), head=other)


def test_label_tokens_follow_each_tokenizer(backbones):
    """WordPiece: the word itself; byte-level BPE: 'Ġword' when the backbone asks for a leading space;
    sentencepiece: the first piece, '▁' alone skipped."""
    bert, roberta, t5 = (backbones[n] for n in ("bert", "roberta", "t5"))
    for space in (True, False):
        tok = BERT.label_token(bert.tokenizer, "positive", space=space, name="b")
        assert bert.tokenizer.convert_ids_to_tokens(tok) == "positive"
        tok = ROBERTA.label_token(roberta.tokenizer, "positive", space=space, name="r")
        assert roberta.tokenizer.convert_ids_to_tokens(tok) == ("Ġpositive" if space else "positive")
        tok = T5.label_token(t5.tokenizer, "positive", space=space, name="t")
        assert t5.tokenizer.convert_ids_to_tokens(tok) == "▁positive"
    with pytest.raises(ConfigError, match="masked-LM verbalizers must be single tokens"):
        BERT.label_token(bert.tokenizer, "goodbad", space=False, name="b")
    with pytest.raises(ConfigError, match="is empty"):
        T5.label_token(t5.tokenizer, "", space=False, name="t")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_where_the_prompt_and_the_readout_slot_go(backbones, name):
    b = backbones[name]
    rules = b.rules
    prompt = torch.randn(4, b.embed_dim, generator=torch.Generator().manual_seed(0))
    fed = rules.fill_slot(b, prompt)
    mask_id = b.tokenizer.mask_token_id
    assert torch.equal(fed[rules.slot_rows:], prompt[rules.slot_rows:]), "rows after the slot are the prompt's"
    if rules.slot_rows:
        assert torch.equal(fed[0], b.word_embeddings.weight[mask_id]), "the <mask> slot is row 0"
    else:
        assert torch.equal(fed, prompt) and mask_id is None
    embeds, attn = b.prompt_inputs(prompt, _batch(b))
    assert torch.equal(embeds[0, :4], fed) and attn[:, :4].all(), "the prompt goes before the text"
    vid = b.task_verbalizer_ids("sst2")
    with torch.no_grad():
        states, attn = b.encode_prompted(prompt, _batch(b))
        assert torch.equal(rules.read_labels(b, states, attn, vid), b.label_logits(prompt, _batch(b), vid))
    if rules.slot_rows:
        with torch.no_grad():
            torch.testing.assert_close(b.label_logits(prompt, _batch(b), vid, slot_only=True),
                                       b.mask_slot_logits(states[:, 0], vid), rtol=1e-5, atol=1e-5)
    else:
        with pytest.raises(ConfigError, match="first decoder step"):
            b.mask_slot_logits(states[:, 0], vid)
        assert rules.slot_only_logits(b, prompt, _batch(b), vid) is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_positions(backbones, name):
    b = backbones[name]
    if b.rules.relative_positions:
        assert b.max_positions is None
        return
    first = b.rules.first_position(b.config)
    assert first == (b.config.pad_token_id + 1 if name == "roberta" else 0)
    assert b.max_positions == b.config.max_position_embeddings - first


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_which_module_is_the_ffn_neuron(backbones, name):
    b = backbones[name]
    parts = ["encoder"] + (["decoder"] if b.rules.readout_part == "decoder" else [])
    for part in parts:
        sites = ffn_sites(b, part)
        assert len(sites) == 2 and {s.width for s in sites} == {64}
        assert all(s.reads_input == isinstance(b.rules, EncoderDecoder) for s in sites)
    projections = b.rules.ffn_projections(b.model)
    every = {id(s.module) for part in parts for s in ffn_sites(b, part)}
    assert set(projections) == every, "each site has its projections"
    for inputs, output in projections.values():
        assert all(isinstance(p, nn.Linear) for p in [*inputs, output]) and output.in_features == 64


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tuning_targets_exist_in_the_model(backbones, name):
    from lib.adapters import adapter_sites

    b = backbones[name]
    linears = [n for n, m in b.model.named_modules() if isinstance(m, nn.Linear)]
    for target in b.rules.lora_targets:
        assert any(n.endswith("." + target) for n in linears), target
    assert adapter_sites(b.model, b.rules, "pfeiffer") and adapter_sites(b.model, b.family, "houlsby")
    has_bias = any(n.endswith(".bias") for n, _ in b.model.named_parameters())
    assert has_bias == b.rules.has_bias
    assert b.rules.peft_task_type(None) == b.rules.peft_task_types[0]


def test_the_tied_readout_of_a_bare_encoder(tmp_path):
    from lib.tiny import build_planted_backbone

    path, _ = build_planted_backbone(tmp_path / "planted")
    b = load_backbone(str(path))
    assert b.rules is BERT and b.head == "tied" and b.head_transform is None
    hidden = torch.randn(3, b.embed_dim, generator=torch.Generator().manual_seed(1))
    vid = b.task_verbalizer_ids("sst2")
    assert torch.equal(b.mask_slot_logits(hidden, vid), hidden @ b.word_embeddings.weight[vid].T)


def test_only_the_encoder_mlm_family_permutes_the_residual_stream(backbones):
    from lib.projector import permuted_copy

    b = backbones["bert"]
    copy, perm = permuted_copy(b, seed=0)
    prompt = torch.randn(3, b.embed_dim, generator=torch.Generator().manual_seed(2))
    vid = b.task_verbalizer_ids("sst2")
    with torch.no_grad():
        torch.testing.assert_close(copy.label_logits(prompt[:, perm], _batch(b), vid),
                                   b.label_logits(prompt, _batch(b), vid), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="not T5"):
        permuted_copy(backbones["t5"])


# --- family rules live in the family package only ---------------------------------------------------------
FAMILY_WORDS = frozenset({t for f in REGISTERED for t in f.model_types} | {f.key for f in REGISTERED} | set(HEADS))
FAMILY_ATTRIBUTES = frozenset({"model_type", "family", "head"})
OUTSIDE = ("families/", "tiny.py")  # the family package, and the test bed that builds one tiny model per family


def _family_checks(source: str) -> list[tuple[int, str]]:
    """(line, code) of every model-type string check in a module: a string literal that names a model type,
    a family key or a readout head ('t5', 'roberta', 'mlm', ...), wherever it is used (a comparison, a
    membership test, a lookup table keyed by family), and every comparison of a `.model_type`, `.family` or
    `.head` attribute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in FAMILY_WORDS:
            found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Compare) and any(isinstance(o, ast.Attribute) and o.attr in FAMILY_ATTRIBUTES
                                                   for o in (node.left, *node.comparators)):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_check_finds_model_type_comparisons():
    code = '''
if backbone.head == "t5": pass
x = "t5" if cfg.model_type in ("roberta", "xlm-roberta") else "mlm"
TARGETS = {"mlm": ["query"], "t5": ["q"]}
same = a.family != b.family
fine = profile == "paper_t5" or name.startswith("roberta-") or m == "bitfit"
'''
    assert sorted({line for line, _ in _family_checks(code)}) == [2, 3, 4, 5], "line 6 checks no model type"


def test_no_model_type_string_checks_outside_the_family_package():
    """Every family-specific rule lives in lib/families: a module elsewhere that compares model types (or keys a
    table by them) is a rule that adding a family would have to find and edit."""
    hits = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel.startswith(OUTSIDE):
            continue
        hits += [f"lib/{rel}:{line}: {code}" for line, code in _family_checks(path.read_text(encoding="utf-8"))]
    assert not hits, "model-type checks outside lib/families:\n" + "\n".join(hits)
