"""Cross-model prompt projector (Su et al. 2022): a 2-layer MLP from backbone A's prompt space to B's.

Trained either by distance minimisation (projected A-prompts close to B-prompts of the same tasks)
or by the task loss through the frozen backbone B; evaluated on tasks held out from training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .errors import ConfigError
from .models import Backbone, Encoded
from .tasks import Task, get_task
from .batching import batch_indices


class PromptProjector(nn.Module):
    """Token-wise MLP width_a -> hidden (tanh) -> width_b, or, with `length`, Su et al.'s projector of
    the flattened prompt: (length * width_a) -> hidden (LeakyReLU) -> (length * width_b)."""

    def __init__(self, width_a: int, width_b: int, hidden: int = 256, length: int | None = None) -> None:
        super().__init__()
        if min(width_a, width_b, hidden) < 1 or (length is not None and length < 1):
            raise ConfigError(f"projector sizes must be positive, got {width_a}, {width_b}, {hidden}, {length}")
        self.width_a, self.width_b, self.length = width_a, width_b, length
        if length is None:
            self.net = nn.Sequential(nn.Linear(width_a, hidden), nn.Tanh(), nn.Linear(hidden, width_b))
        else:
            self.net = nn.Sequential(nn.Linear(length * width_a, hidden), nn.LeakyReLU(),
                                     nn.Linear(hidden, length * width_b))

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        if prompt.dim() != 2 or prompt.shape[1] != self.width_a:
            raise ConfigError(f"projector expects prompts of shape (length, {self.width_a}), got {tuple(prompt.shape)}")
        if self.length is None:
            return self.net(prompt)
        if prompt.shape[0] != self.length:
            raise ConfigError(f"this flattened projector maps prompts of length {self.length}, got {prompt.shape[0]}")
        return self.net(prompt.reshape(-1)).reshape(self.length, self.width_b)


@dataclass(frozen=True)
class ProjectorConfig:
    hidden: int = 256
    lr: float = 1e-3
    steps: int = 500
    batch_size: int = 16
    seed: int = 0
    flat: bool = False  # Su et al.'s projector of the flattened prompt (needs one prompt length)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(f"invalid projector configuration {self}")


def _new(width_a: int, width_b: int, cfg: ProjectorConfig, length: int) -> PromptProjector:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return PromptProjector(width_a, width_b, cfg.hidden, length if cfg.flat else None)


def train_by_distance(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
                      cfg: ProjectorConfig = ProjectorConfig()) -> tuple[PromptProjector, list[float]]:
    """Fit the projector so that project(prompt_A) is close (MSE) to prompt_B of the same task:
    min_phi 1/|T| * sum_t ||g_phi(P^A_t) - P^B_t||_F^2 / (m * d_B)."""
    if not pairs:
        raise ConfigError("distance training needs at least one (prompt_A, prompt_B) pair")
    width_a, width_b = pairs[0][0].shape[-1], pairs[0][1].shape[-1]
    for a, b in pairs:
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
            raise ConfigError(f"paired prompts need equal lengths, got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[1] != width_a or b.shape[1] != width_b:
            raise ConfigError(f"all A prompts must be {width_a} wide and all B prompts {width_b} wide")
    proj = _new(width_a, width_b, cfg, pairs[0][0].shape[0])
    opt = torch.optim.AdamW(proj.parameters(), lr=cfg.lr)
    xs = [a.detach().float() for a, _ in pairs]
    ys = [b.detach().float() for _, b in pairs]
    losses = []
    for _step in range(cfg.steps):
        loss = sum(nn.functional.mse_loss(proj(x), y) for x, y in zip(xs, ys)) / len(xs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return proj, losses


def train_by_task(sources: Sequence[tuple[torch.Tensor, str | Task, Encoded]], backbone_b: Backbone,
                  cfg: ProjectorConfig = ProjectorConfig()) -> tuple[PromptProjector, list[float]]:
    """Fit the projector by the task loss of the projected prompts through the frozen backbone B.

    `sources` holds (prompt tuned on backbone A, its task, that task's training data encoded for B).
    """
    if not sources:
        raise ConfigError("task training needs at least one (prompt, task, data) source")
    width_a = sources[0][0].shape[-1]
    proj = _new(width_a, backbone_b.embed_dim, cfg, sources[0][0].shape[0]).to(backbone_b.device)
    opt = torch.optim.AdamW(proj.parameters(), lr=cfg.lr)
    prepared = [(p.detach().float().to(backbone_b.device), backbone_b.task_verbalizer_ids(get_task(t)), d)
                for p, t, d in sources]
    losses = []
    for step in range(cfg.steps):
        total = torch.zeros((), device=backbone_b.device)
        for k, (prompt, verbalizer, data) in enumerate(prepared):
            batch = backbone_b.collate(data, batch_indices(len(data), cfg.batch_size, cfg.seed + k, step))
            logits = backbone_b.label_logits(proj(prompt), batch, verbalizer)
            total = total + nn.functional.cross_entropy(logits.float(), batch.labels.to(backbone_b.device))
        loss = total / len(prepared)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return proj, losses


def permuted_copy(backbone: Backbone, seed: int = 0) -> tuple[Backbone, torch.Tensor]:
    """A copy of a BERT/RoBERTa backbone whose hidden units are permuted: the same function, another basis.

    Prompt `p` on the original and `p[:, perm]` on the copy give identical logits, so the copy is a
    second 'model' whose prompt space is related to the first by a known linear map: a ground truth
    for the cross-model projector when only one pretrained backbone is available. Returns (copy, perm).
    """
    import copy

    width = backbone.embed_dim
    perm = torch.randperm(width, generator=torch.Generator().manual_seed(int(seed)))
    # which axes of which parameter read or write the residual stream is the family's rule (T5: none known)
    state = {k: backbone.rules.residual_permutation(k, v, perm).clone() for k, v in backbone.model.state_dict().items()}
    model = copy.deepcopy(backbone.model)
    model.load_state_dict(state)
    return Backbone(model, backbone.tokenizer, backbone.head, f"{backbone.name}+permuted(seed={seed})",
                    verbalizer_space=backbone.verbalizer_space, prompt_positions=backbone.prompt_positions), perm
