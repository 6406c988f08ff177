import pytest
import torch

from lib.data import DataConfig, load_splits
from lib.errors import ConfigError
from lib.evaluation import evaluate
from lib.models import load_backbone
from lib.projector import ProjectorConfig, PromptProjector, train_by_distance, train_by_task


def test_distance_training_reduces_loss_and_keeps_shapes():
    gen = torch.Generator().manual_seed(0)
    mapping = torch.randn(8, 12, generator=gen)
    pairs = [(a, torch.tanh(a @ mapping)) for a in (torch.randn(5, 8, generator=gen) for _ in range(4))]
    proj, losses = train_by_distance(pairs, ProjectorConfig(hidden=32, lr=1e-2, steps=200))
    assert losses[-1] < 0.2 * losses[0]
    assert proj(torch.randn(7, 8)).shape == (7, 12)
    with pytest.raises(ConfigError, match=r"projector expects prompts of shape \(length, 8\)"):
        proj(torch.randn(7, 9))
    with pytest.raises(ConfigError, match="paired prompts need equal lengths"):
        train_by_distance([(torch.zeros(5, 8), torch.zeros(4, 12))])
    with pytest.raises(ConfigError, match="all A prompts must be 8 wide"):
        train_by_distance([(torch.zeros(5, 8), torch.zeros(5, 12)), (torch.zeros(5, 9), torch.zeros(5, 12))])


def test_task_training_through_another_backbone(tiny_paths, synth):
    task, root = synth
    sp = load_splits(task, DataConfig(data_root=str(root), source="local"))
    b = load_backbone(str(tiny_paths["t5"]))
    data = b.encode(sp["train"], 32)
    source = torch.randn(6, 20, generator=torch.Generator().manual_seed(1))  # a 'model A' prompt, width 20
    proj, losses = train_by_task([(source, task, data)], b,
                                 ProjectorConfig(hidden=32, lr=1e-2, steps=60, batch_size=16))
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    projected = proj(source).detach()
    assert projected.shape == (6, b.embed_dim)
    assert evaluate(b, projected, task, sp["test"], max_length=32).accuracy > 0.8
    assert isinstance(proj, PromptProjector)
