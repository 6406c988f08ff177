"""The order of training batches: a pure function of (seed, step), so that a resumed run draws the batches
an uninterrupted one draws (`lib.training_loop`), and any step's batch can be recomputed without replaying
the run (the benchmarks measure padding this way, the projector draws its batches this way).

Epochs are seeded permutations. Length-grouped batches (HF Trainer's `group_by_length`) draw examples of
similar length together, which removes most padding (a batch is padded to its longest example) while the
batches stay random draws of the epoch.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch

from .errors import ConfigError

# Batches per length-sorted group: a group of GROUP_BATCHES x batch_size shuffled examples is sorted by
# length and cut into batches (HF Trainer's LengthGroupedSampler uses 50), so batches stay random draws
# of the epoch while their members have similar lengths.
GROUP_BATCHES = 50


def batch_indices(n: int, batch_size: int, seed: int, step: int,
                  lengths: tuple[int, ...] | None = None) -> list[int]:
    """Indices of the batch at `step`: epochs are seeded permutations, a pure function of the step.

    With `lengths` (one per example), the epoch's batches are length-grouped (`grouped_epoch`);
    without, batch k of an epoch is slice k of the permutation.
    """
    per_epoch = math.ceil(n / batch_size)
    epoch, pos = divmod(step, per_epoch)
    if lengths is not None:
        if len(lengths) != n:
            raise ConfigError(f"lengths has {len(lengths)} entries for {n} examples")
        return list(grouped_epoch(tuple(lengths), batch_size, seed, epoch)[pos])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[pos * batch_size: (pos + 1) * batch_size].tolist()


@functools.lru_cache(maxsize=8)
def grouped_epoch(lengths: tuple[int, ...], batch_size: int, seed: int, epoch: int) -> tuple[tuple[int, ...], ...]:
    """The batches of one epoch, length-grouped: the epoch's seeded permutation (the one random batches
    use) is cut into groups of `GROUP_BATCHES` x batch_size examples, each group is sorted by length
    (longest first, ties in permutation order) and cut into batches, and the batches' order is shuffled
    with a second seeded permutation, so a long batch is as likely early as late. Every example appears
    once per epoch; the epoch has ceil(n / batch_size) batches, as with random batches.
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    span = GROUP_BATCHES * batch_size
    batches: list[tuple[int, ...]] = []
    for start in range(0, n, span):
        group = sorted(perm[start: start + span], key=lambda i: -lengths[i])  # stable: ties keep perm order
        batches += [tuple(group[k: k + batch_size]) for k in range(0, len(group), batch_size)]
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919_743))
    return tuple(batches[k] for k in order.tolist())


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of the token positions of `batches` that are padding, each batch padded to its longest:
    1 - sum(lengths) / sum(len(batch) * max length in batch)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if len(b))
    return 1.0 - real / padded if padded else 0.0


__all__ = ["GROUP_BATCHES", "batch_indices", "grouped_epoch", "padding_share"]
