import pytest
import torch

from lib.data import DataConfig, load_splits
from lib.errors import ConfigError
from lib.models import load_backbone
from lib.tuning import TuneConfig, tune_prompt


@pytest.fixture(scope="module")
def setup(tiny_paths, synth):
    task, root = synth
    sp = load_splits(task, DataConfig(data_root=str(root), source="local"))
    b = load_backbone(str(tiny_paths["bert"]))
    cfg = TuneConfig(prompt_length=8, lr=0.1, batch_size=16, max_steps=40, eval_every=20, max_length=32)
    source = tune_prompt(b, task, sp["train"], sp["dev"], cfg, progress=False).prompt
    transfer = TuneConfig(**{**cfg.__dict__, "init": "source", "seed": 3})
    return b, task, sp, source, transfer


def test_beta_zero_equals_vanilla_transfer_exactly(setup):
    b, task, sp, source, cfg = setup
    vanilla = tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, progress=False)
    panda0 = tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, teacher_prompt=source,
                         distill_beta=0.0, progress=False)
    assert torch.equal(vanilla.prompt, panda0.prompt) and vanilla.history == panda0.history
    panda = tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, teacher_prompt=source,
                        distill_beta=5.0, progress=False)
    assert not torch.equal(panda.prompt, vanilla.prompt), "distillation changes the updates"


def test_distillation_is_part_of_the_checkpoint_signature(setup, tmp_path):
    b, task, sp, source, cfg = setup
    tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, source_prompt=source, progress=False)
    from lib.errors import CheckpointError
    with pytest.raises(CheckpointError, match="another configuration"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, tmp_path, source_prompt=source, teacher_prompt=source,
                    distill_beta=1.0, progress=False)


def test_bad_distillation_arguments(setup):
    b, task, sp, source, cfg = setup
    with pytest.raises(ConfigError, match="distill_beta needs a teacher_prompt"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, distill_beta=1.0, progress=False)
    with pytest.raises(ConfigError, match="non-negative"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, teacher_prompt=source,
                    distill_beta=-1.0, progress=False)
    with pytest.raises(ConfigError, match="prompt width 5 does not fit"):
        tune_prompt(b, task, sp["train"], sp["dev"], cfg, source_prompt=source, teacher_prompt=torch.zeros(8, 5),
                    distill_beta=1.0, progress=False)
