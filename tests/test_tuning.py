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
from lib.tuning import TuneConfig, batch_indices, tune_prompt

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
