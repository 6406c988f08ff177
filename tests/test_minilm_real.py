"""Real-model checks: all-MiniLM-L6-v2 (PyPI package) on the real SST-2 copy in ../shared/data."""
import pytest
import torch

from lib.data import DataConfig, load_splits
from lib.evaluation import evaluate
from lib.models import load_backbone
from lib.skill_neurons import compute_predictivity
from lib.tuning import TuneConfig, tune_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(minilm_available, shared_root, tmp_path_factory):
    sp = load_splits("sst2", DataConfig(data_root=str(shared_root), source="local", max_train=5000, max_dev=500))
    b = load_backbone("all-MiniLM-L6-v2")
    cfg = TuneConfig(prompt_length=20, lr=0.02, batch_size=32, max_steps=300, eval_every=100, max_length=64, seed=0)
    res = tune_prompt(b, "sst2", sp["train"], sp["dev"], cfg, tmp_path_factory.mktemp("minilm"), progress=False)
    return b, sp, res


def test_minilm_backbone_is_the_real_checkpoint(minilm_available):
    b = load_backbone("all-MiniLM-L6-v2")
    assert b.head == "tied" and b.embed_dim == 384 and b.config.num_hidden_layers == 6
    assert sum(p.numel() for p in b.model.parameters()) > 22_000_000


def test_prompt_tuning_on_real_sst2(tuned):
    b, sp, res = tuned
    acc = evaluate(b, res.prompt, "sst2", sp["test"], max_length=64).accuracy
    assert len(sp["test"]) == 872
    assert acc >= 0.70, f"SST-2 validation accuracy {acc:.3f} after {res.steps} steps"


def test_skill_neurons_exist_on_real_sst2(tuned):
    b, sp, res = tuned
    train = b.encode(sp["train"].iloc[:1000], 64)
    test = b.encode(sp["test"], 64)
    scores = compute_predictivity(b, res.prompt, "sst2", train, test, progress=False).per_neuron()
    assert scores.shape == (6, 1536)
    assert float(scores.max()) > 0.7, "a tuned prompt recruits neurons that predict the label"
    assert torch.all(scores >= 0.5)
