import json

import pandas as pd
import pytest
import torch

from lib.data import DataConfig, load_splits
from lib.errors import CheckpointError, ConfigError
from lib.evaluation import evaluate, macro_f1
from lib.models import load_backbone
from lib.prompt import load_prompt, save_prompt
from lib.tiny import build_tiny_backbone
from lib.tuning import TuneConfig, batch_indices, grouped_epoch, padding_share, tune_prompt

LEARN = {  # per family: learning rate of a set-up that learns the synthetic task on a tiny random network
    "bert": dict(lr=0.3),
    "roberta": dict(lr=0.1),
    "t5": dict(lr=0.1),
}
MODEL_SEEDS = (0, 1, 2)  # several random networks: the test must not hinge on one lucky draw


@pytest.fixture(scope="module")
def splits(synth):
    task, root = synth
    return task, load_splits(task, DataConfig(data_root=str(root), source="local"))


def small_cfg(**kw):
    base = dict(prompt_length=8, batch_size=16, max_steps=400, eval_every=50, max_length=32, seed=0)
    base.update(kw)
    return TuneConfig(**base)


@pytest.mark.parametrize("fam", sorted(LEARN))
def test_prompt_tuning_learns_a_separable_task(tmp_path, splits, fam):
    """Every one of three random tiny networks learns, with a margin, not just the one in conftest.

    Before the init scale was chosen for a reason (see lib.tiny.INIT_SCALE), tiny RoBERTa learned
    or not depending on the draw; a threshold on one network then flipped with library numerics.
    """
    task, sp = splits
    best, gains = [], []
    for seed in MODEL_SEEDS:
        b = load_backbone(str(build_tiny_backbone(fam, tmp_path / f"{fam}{seed}", seed=seed)))
        before = evaluate(b, torch.zeros(8, b.embed_dim), task, sp["test"], max_length=32).accuracy
        res = tune_prompt(b, task, sp["train"], sp["dev"], small_cfg(**LEARN[fam]), progress=False)
        test = evaluate(b, res.prompt, task, sp["test"], max_length=32)
        best.append(res.best_dev_accuracy)
        gains.append(test.accuracy - before)
    assert min(best) >= 0.85 and sum(best) / len(best) >= 0.9, best
    assert min(gains) > 0.25, gains


@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_tiny_encoder_attention_is_not_saturated(tmp_path, fam):
    """The reason the tiny encoders learn: attention spread enough that a prompt can steer it."""
    b = load_backbone(str(build_tiny_backbone(fam, tmp_path / fam)))
    b.model.set_attn_implementation("eager")
    enc = b.tokenizer(["w1 w2 good w3 the movie", "bad w4 w5 w6 it was"], return_tensors="pt", padding=True)
    with torch.no_grad():
        attentions = b.model(**enc, output_attentions=True).attentions
    largest = [float(a.max(-1).values.mean()) for a in attentions]
    assert max(largest) < 0.6, largest
    saturated = load_backbone(str(build_tiny_backbone(fam, tmp_path / f"{fam}-05", init_scale=0.5)))
    saturated.model.set_attn_implementation("eager")
    with torch.no_grad():
        first = saturated.model(**enc, output_attentions=True).attentions[0]
    assert float(first.max(-1).values.mean()) > 0.8, "the old init scale saturates attention"


def test_runs_are_bitwise_reproducible(tiny_paths, splits):
    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = small_cfg(max_steps=30, eval_every=10, lr=0.1)
    r1 = tune_prompt(b, task, sp["train"], sp["dev"], cfg, progress=False)
    r2 = tune_prompt(b, task, sp["train"], sp["dev"], cfg, progress=False)
    assert torch.equal(r1.prompt, r2.prompt) and r1.history == r2.history
    r3 = tune_prompt(b, task, sp["train"], sp["dev"], small_cfg(max_steps=30, eval_every=10, lr=0.1, seed=1),
                     progress=False)
    assert not torch.equal(r1.prompt, r3.prompt)


class Kill(Exception):
    pass


def _kill_at(step):
    def hook(s, loss):
        if s == step:
            raise Kill
    return hook


@pytest.mark.parametrize("fam", ["roberta", "t5"])
def test_kill_and_resume_equals_uninterrupted(tiny_paths, splits, tmp_path, fam):
    task, sp = splits
    b = load_backbone(str(tiny_paths[fam]))
    cfg = small_cfg(max_steps=60, eval_every=10, lr=0.05, schedule="warmup_linear", warmup_steps=15)
    full = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "full", progress=False)
    with pytest.raises(Kill):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False, on_step=_kill_at(37))
    assert (tmp_path / "cut/state.pt").is_file()
    assert not list((tmp_path / "cut").glob("*.tmp")) and not list((tmp_path / "cut").glob(".*.tmp"))
    assert json.loads((tmp_path / "cut/metrics.json").read_text())["finished"] is False
    seen = []
    resumed = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False,
                          on_step=lambda s, l: seen.append(s))
    assert seen[0] == 31, "resumes from the last checkpoint (step 30), not from scratch"
    assert torch.equal(resumed.prompt, full.prompt)
    assert resumed.history == full.history and resumed.best_step == full.best_step
    assert torch.equal(load_prompt(tmp_path / "cut/prompt.safetensors"), full.prompt)
    # a finished run is not repeated
    again = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False,
                        on_step=_kill_at(1))
    assert torch.equal(again.prompt, full.prompt)


def test_checkpoint_errors(tiny_paths, splits, tmp_path):
    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = small_cfg(max_steps=20, eval_every=10)
    with pytest.raises(Kill):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False, on_step=_kill_at(15))
    with pytest.raises(CheckpointError, match=r"another configuration \(config\.lr: 0\.001 here, 0\.5 asked\); "
                                              r"that run is kept as it is: pass another out_dir"):
        tune_prompt(b, task, sp["train"], sp["dev"], small_cfg(max_steps=20, eval_every=10, lr=0.5), tmp_path,
                    progress=False)
    (tmp_path / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*state\.pt"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
    (tmp_path / "p.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*p\.safetensors"):
        load_prompt(tmp_path / "p.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_prompt(tmp_path / "absent.safetensors")


def test_prompt_files_round_trip_exactly(tmp_path):
    p = torch.randn(7, 13, generator=torch.Generator().manual_seed(0))
    save_prompt(tmp_path / "p.safetensors", p)
    assert torch.equal(load_prompt(tmp_path / "p.safetensors"), p)


def test_bad_training_input(tiny_paths, splits):
    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    with pytest.raises(ConfigError, match="cannot encode an empty dataset"):
        tune_prompt(b, task, sp["train"].iloc[:0], sp["dev"], small_cfg(), progress=False)
    bad = sp["train"].assign(label=2)
    with pytest.raises(ConfigError, match=r"train labels outside 0\.\.1"):
        tune_prompt(b, task, bad, sp["dev"], small_cfg(), progress=False)
    with pytest.raises(ConfigError, match="unknown schedule 'cosine'"):
        TuneConfig(schedule="cosine")
    with pytest.raises(ConfigError, match="needs warmup_steps"):
        TuneConfig(schedule="warmup_linear")
    with pytest.raises(ConfigError, match=r"unknown TuneConfig field\(s\) \['learning_rate'\]"):
        TuneConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match=r"prompt width 16 does not fit"):
        tune_prompt(b, task, sp["train"], sp["dev"], small_cfg(init="source"), progress=False,
                    source_prompt=torch.zeros(8, 16))


def test_batch_order_is_a_function_of_the_step():
    seen = [i for s in range(4) for i in batch_indices(10, 3, seed=5, step=s)]
    assert sorted(seen) == list(range(10)), "one epoch visits every example once"
    assert batch_indices(10, 3, 5, 2) == batch_indices(10, 3, 5, 2)
    assert batch_indices(10, 3, 5, 4) != batch_indices(10, 3, 5, 0)


def test_macro_f1_by_hand():
    y = pd.Series([0, 0, 1, 1, 1]).to_numpy()
    p = pd.Series([0, 1, 1, 1, 0]).to_numpy()
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 1 -> 2/3
    assert macro_f1(y, p, 2) == pytest.approx((0.5 + 2 / 3) / 2)


def test_transfer_evaluation_on_a_same_type_task(tiny_paths, splits, tmp_path):
    from lib.tiny import synthetic_task
    task, sp = splits
    other = synthetic_task(tmp_path, name="synthetic_pair", pair=True, n_train=50, n_test=60, seed=3)
    b = load_backbone(str(tiny_paths["t5"]))
    res = tune_prompt(b, task, sp["train"], sp["dev"], small_cfg(lr=0.1, max_steps=200), progress=False)
    target = load_splits(other, DataConfig(data_root=str(tmp_path), source="local"), ("test",))["test"]
    out = evaluate(b, res.prompt, other, target, max_length=32)
    assert out.n == 60 and 0.0 <= out.macro_f1 <= 1.0 and len(out.predictions) == 60


# --- length-grouped batches, signatures, early stopping on resume, finished-run integrity ------------------
def test_length_grouped_batches_cover_each_epoch_once_and_are_a_function_of_the_step():
    lengths = tuple(int(x) for x in torch.randint(3, 60, (203,), generator=torch.Generator().manual_seed(1)))
    per_epoch = -(-203 // 8)
    for epoch in range(2):
        seen = [i for s in range(epoch * per_epoch, (epoch + 1) * per_epoch)
                for i in batch_indices(203, 8, 3, s, lengths)]
        assert sorted(seen) == list(range(203)), "one epoch visits every example once"
    assert batch_indices(203, 8, 3, 5, lengths) == batch_indices(203, 8, 3, 5, lengths)
    assert batch_indices(203, 8, 3, 5, lengths) != batch_indices(203, 8, 4, 5, lengths), "the seed matters"
    assert len(grouped_epoch(lengths, 8, 3, 0)) == per_epoch


def test_length_grouped_batches_hold_less_padding_than_random_ones():
    lengths = [int(x) for x in torch.randint(3, 60, (2000,), generator=torch.Generator().manual_seed(2))]
    steps = range(2000 // 16)
    grouped = [batch_indices(2000, 16, 0, s, tuple(lengths)) for s in steps]
    random_ = [batch_indices(2000, 16, 0, s) for s in steps]
    assert padding_share(lengths, grouped) < 0.05 < 0.3 < padding_share(lengths, random_)


def test_padding_share_by_hand():
    # batch [0, 1]: lengths 2, 4 -> 8 positions, 6 real; batch [2]: 5 -> 5, 5 real. 1 - 11/13
    assert padding_share([2, 4, 5], [[0, 1], [2]]) == pytest.approx(2 / 13)
    assert padding_share([3, 3], [[0, 1]]) == 0.0


def test_signatures_keep_the_keys_of_random_batch_prompts_and_version_the_new_ones(tiny_paths, splits):
    from lib.tuning import prompt_code_version, run_signature

    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    old = run_signature(small_cfg(batch_order="random", last_layer="all"), b, task, sp["train"], sp["dev"])
    assert {"batch_order", "last_layer"}.isdisjoint(old["config"]) and "code" not in old, \
        "prompts tuned before the options keep their key"
    new = run_signature(small_cfg(), b, task, sp["train"], sp["dev"])
    assert new["config"]["batch_order"] == "length_grouped" and new["config"]["last_layer"] == "slot"
    assert new["code"] == prompt_code_version()
    half = run_signature(small_cfg(batch_order="random"), b, task, sp["train"], sp["dev"])
    assert half["config"]["last_layer"] == "slot" and "code" in half and half != old
    with pytest.raises(ConfigError, match="unknown batch order 'sorted'"):
        TuneConfig(batch_order="sorted")
    with pytest.raises(ConfigError, match="unknown last_layer 'none'"):
        TuneConfig(last_layer="none")


@pytest.mark.parametrize("fam", ["bert", "roberta"])
def test_the_slot_only_last_layer_gives_the_same_logits_and_gradients(tiny_paths, fam):
    from lib.hooks import ffn_sites
    from lib.models import Batch

    b = load_backbone(str(tiny_paths[fam]))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0  # padded keys must stay masked in the hand-computed last layer
    batch = Batch(ids, mask, torch.zeros_like(ids), torch.tensor([0, 1, 0, 1]))
    vid = torch.tensor([7, 11])
    prompt = torch.randn(5, b.embed_dim, generator=g, requires_grad=True)
    full = b.label_logits(prompt, batch, vid)
    slot = b.label_logits(prompt, batch, vid, slot_only=True)
    grads = [torch.autograd.grad(x.square().sum(), prompt)[0] for x in (full, slot)]
    assert torch.allclose(full, slot, atol=1e-5) and not torch.equal(full, torch.zeros_like(full))
    assert torch.allclose(*grads, atol=1e-5)
    assert len(b.encoder.encoder.layer) == 2, "the layers are restored"
    # an FFN hook on the last layer needs every position: then the whole model runs
    site = ffn_sites(b)[-1]
    seen = []
    handle = site.module.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        b.label_logits(prompt, batch, vid, slot_only=True)
    finally:
        handle.remove()
    assert seen == [5 + 9]


def test_the_code_version_of_prompts_follows_code_not_comments(tmp_path):
    import shutil
    from pathlib import Path

    from lib import code_identity

    pkg = tmp_path / "lib"
    shutil.copytree(Path(code_identity.__file__).resolve().parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    roots = code_identity.FAMILIES["prompts"]

    def now() -> str:
        code_identity.definitions.cache_clear()
        return code_identity.identity(roots, pkg)

    before = now()
    text = (pkg / "tuning.py").read_text()
    (pkg / "tuning.py").write_text(text + "\n# a comment only\n")
    assert now() == before
    (pkg / "tuning.py").write_text(text)
    batching = (pkg / "batching.py").read_text()
    (pkg / "batching.py").write_text(batching.replace("GROUP_BATCHES = 50", "GROUP_BATCHES = 49"))
    assert now() != before, "the grouping constant the loop uses"
    (pkg / "batching.py").write_text(batching)
    loop = (pkg / "training_loop.py").read_text()
    assert "bad_evals >= patience" in loop
    (pkg / "training_loop.py").write_text(loop.replace("bad_evals >= patience", "bad_evals > patience"))
    assert now() != before, "the shared training loop (early stopping)"
    code_identity.definitions.cache_clear()


@pytest.mark.parametrize("name,value", [("batch_size", 10 ** 12), ("max_length", 10 ** 6),
                                        ("eval_batch_size", 10 ** 9)])
def test_absurd_sizes_fail_at_once(name, value):
    with pytest.raises(ConfigError, match=f"{name} must be at most"):
        TuneConfig(**{name: value})


def _stop_before_the_final_metrics(monkeypatch, module):
    """A kill between early stopping's last checkpoint and the final metrics.json (finished: true)."""
    real = module.write_json

    def write_json(path, payload, *a, **kw):
        if isinstance(payload, dict) and payload.get("finished") is True:
            raise Kill
        return real(path, payload, *a, **kw)
    monkeypatch.setattr(module, "write_json", write_json)


def test_a_run_killed_after_early_stopping_resumes_to_the_same_prompt(tiny_paths, splits, tmp_path, monkeypatch):
    import lib.tuning as tuning

    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = small_cfg(max_steps=300, eval_every=10, patience=2, lr=0.3)
    full = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "full", progress=False)
    assert full.stopped_early and full.steps < 300, "the set-up must stop early for the test to mean anything"
    with monkeypatch.context() as m:
        _stop_before_the_final_metrics(m, tuning)
        with pytest.raises(Kill):
            tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False)
    assert json.loads((tmp_path / "cut/metrics.json").read_text())["finished"] is False
    steps = []
    resumed = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path / "cut", progress=False,
                          on_step=lambda s, l: steps.append(s))
    assert steps == [], "the resumed run stops where the uninterrupted one stopped"
    assert torch.equal(resumed.prompt, full.prompt) and resumed.steps == full.steps and resumed.stopped_early
    assert torch.equal(load_prompt(tmp_path / "cut/prompt.safetensors"), load_prompt(tmp_path / "full/prompt.safetensors"))


def test_a_finished_run_whose_prompt_was_replaced_or_whose_metrics_lack_fields_is_refused(tiny_paths, splits, tmp_path):
    task, sp = splits
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = small_cfg(max_steps=10, eval_every=5)
    res = tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
    save_prompt(tmp_path / "prompt.safetensors", res.prompt + 1)
    with pytest.raises(CheckpointError, match=r"prompt\.safetensors is not the prompt this run saved"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
    save_prompt(tmp_path / "prompt.safetensors", res.prompt)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    del metrics["history"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CheckpointError, match="has a metrics.json without history"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, progress=False)
