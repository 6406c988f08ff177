"""The transfer-method study: its configuration, the permuted-copy ground truth, and one tiny run of every table."""
import numpy as np
import pandas as pd
import pytest
import torch

from lib.errors import ConfigError
from lib.experiments import Experiment
from lib.models import load_backbone
from lib.projector import permuted_copy
from lib.transfer_study import STUDIES, TransferMethods, get_study


def _batch(b):
    enc = b.encode(pd.DataFrame({"text_a": ["a b c", "hello there world"], "label": [0, 1]}), 16)
    return b.collate(enc, [0, 1])


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_permuted_copy_computes_the_same_function_in_another_basis(tiny_paths, family):
    b = load_backbone(str(tiny_paths[family]))
    c, perm = permuted_copy(b, seed=3)
    assert sorted(perm.tolist()) == list(range(b.embed_dim)) and not torch.equal(perm, torch.arange(b.embed_dim))
    p, v = torch.randn(5, b.embed_dim, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 7])
    same = b.label_logits(p, _batch(b), v)
    assert torch.allclose(same, c.label_logits(p[:, perm], _batch(c), v), atol=1e-5)
    assert not torch.allclose(same, c.label_logits(p, _batch(c), v), atol=1e-2), "unpermuted prompts differ on B"
    assert torch.equal(b.word_embeddings.weight[:, perm], c.word_embeddings.weight)


def test_permuted_copy_rejects_t5(tiny_paths):
    with pytest.raises(ConfigError, match="not T5"):
        permuted_copy(load_backbone(str(tiny_paths["t5"])))


def test_study_configuration_is_validated():
    base = STUDIES["mini"]
    with pytest.raises(ConfigError, match="two different tasks"):
        base.replace(pairs=[("sst2", "sst2")])
    with pytest.raises(ConfigError, match="eval_every"):
        base.replace(eval_every=0)
    with pytest.raises(ConfigError, match="unknown beta mode 'max'"):
        base.replace(beta_mode="max")
    with pytest.raises(ConfigError, match=r"both trained on and held out: \['imdb'\]"):
        base.replace(projector_train=("sst2", "imdb"))
    with pytest.raises(ConfigError, match=r"unknown transfer-study field\(s\) \['step'\]"):
        get_study("mini", {"step": 3})
    with pytest.raises(ConfigError, match="unknown transfer study"):
        get_study("nope")
    assert get_study("paper_t5") == STUDIES["paper_t5"] and get_study("paper_t5").projector_target == "paper"
    exp = Experiment("mini", "/nonexistent", progress=False)
    with pytest.raises(ConfigError, match=r"does not tune: \['cola'\]"):
        TransferMethods(exp, base.replace(pairs=[("sst2", "cola")]))
    with pytest.raises(ConfigError, match=r"no prompts for: \[7\]"):
        TransferMethods(exp, base.replace(seeds=(7,)))


@pytest.fixture(scope="module")
def smoke_methods(tmp_path_factory):
    exp = Experiment(Experiment("smoke").profile.replace(seeds=[0], tune={"max_steps": 60, "eval_every": 30}),
                     tmp_path_factory.mktemp("study"), progress=False)
    study = get_study("smoke", {"seeds": (0,), "steps": 20, "eval_every": 10, "projector_seeds": (0,),
                                "projector_distance_steps": 50, "projector_task_steps": 60})
    return TransferMethods(exp, study)


def test_indicator_table_and_correlations(smoke_methods):
    table = smoke_methods.indicator_table()
    assert len(table) == 2 and set(table.source) == {"synthetic", "synthetic_pair"}
    assert ((table.on_all > 0) & (table.on_all <= 1)).all() and (table.euclidean_flat <= 0).all()
    # the indicators are symmetric in (source, target), the transfer is not
    assert table.cosine_flat.nunique() == 1
    corr = smoke_methods.correlation_table()
    assert corr.empty, "two pairs are too few for a rank correlation, so none is reported"


def test_transfer_runs_curves_and_panda(smoke_methods):
    tm = smoke_methods
    runs, curves = tm.runs_table(), tm.curves_table()
    assert sorted(runs.arm.value_counts().items()) == [("baseline", 2), ("panda", 2), ("transfer", 2)]
    panda = runs[runs.arm == "panda"]
    on = [float(tm.on(s, t, 0)["on"].iloc[-1]) for s, t in zip(panda.source, panda.target)]
    assert np.allclose(panda.beta, on) and (panda.beta > 0).all()
    assert set(curves.step) == {0, 10, 20}
    # a transfer run starts from the source prompt: its step-0 accuracy is that prompt's zero-shot dev accuracy
    from lib.evaluation import evaluate
    exp = tm.exp
    row = runs[(runs.arm == "transfer") & (runs.source == "synthetic")].iloc[0]
    zero_shot = evaluate(exp.backbone, exp.prompt("synthetic", 0), exp.task("synthetic_pair"),
                         exp.encoded("synthetic_pair", "dev"), max_length=exp.max_length("synthetic_pair")).accuracy
    assert row.start_dev == zero_shot
    base = runs[runs.arm == "baseline"].set_index("target")
    for r in runs.itertuples():
        reached = curves[(curves.arm == r.arm) & (curves.target == r.target) & (curves.source == r.source)
                         & (curves.dev_accuracy >= 0.9 * base.loc[r.target, "best_dev"])]
        assert (np.isnan(r.steps_to_90) and reached.empty) or r.steps_to_90 == reached.step.min()
    assert runs.equals(tm.runs_table()), "the table is cached"


def test_projector_table_has_the_exact_map_as_ceiling(smoke_methods):
    proj = smoke_methods.projector_table().set_index("method")
    assert proj.loc["B exact map", "accuracy"] == proj.loc["A on A", "accuracy"]
    assert proj.loc["B task projector", "final_task_loss"] < proj.loc["B task projector", "first_task_loss"]
    assert set(proj.task) == {"synthetic_pair"}


def test_projector_into_another_profiles_backbone(tmp_path):
    """The `paper` study maps into another profile's backbone (t5-base); here the wiring is checked with
    the smoke profile as B (same tiny model, its own tuned prompts)."""
    exp = Experiment("smoke", tmp_path, progress=False)
    study = get_study("smoke", {"seeds": (0,), "projector_target": "smoke", "projector_distance_steps": 30,
                                "projector_task_steps": 5})
    proj = TransferMethods(exp, study).projector_table()
    assert set(proj.method) == {"A on A", "B own prompt", "B init", "B distance projector", "B task projector"}
    own = proj.set_index("method")
    assert own.loc["B own prompt", "accuracy"] == own.loc["A on A", "accuracy"], "B is A here"
    with pytest.raises(ConfigError, match="unknown projector target 'gpt2'"):
        study.replace(projector_target="gpt2")
    assert STUDIES["paper"].projector_target == "paper_t5"


def test_skill_neuron_similarity_known_answers():
    import torch

    from lib.transfer_study import skill_neuron_similarity

    a = torch.tensor([[0.9, 0.8, 0.5, 0.6], [0.55, 0.9, 0.7, 0.6]])
    same = skill_neuron_similarity(a, a, fraction=0.5)
    assert same == {"skill_neuron_overlap": 1.0, "predictivity_spearman": pytest.approx(1.0)}
    b = torch.tensor([[0.5, 0.6, 0.9, 0.8], [0.55, 0.9, 0.6, 0.7]])  # layer 0: disjoint tops; layer 1: one of two
    r = skill_neuron_similarity(a, b, fraction=0.5)
    assert r["skill_neuron_overlap"] == pytest.approx((0 + 0.5) / 2)
    with pytest.raises(ConfigError, match="shapes differ"):
        skill_neuron_similarity(a, b[:1], fraction=0.5)
