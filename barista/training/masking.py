"""Spatial masking for pretraining: whole groups at the masking scale, all patches of each.

BaRISTA masks random groups (channels, parcels or lobes) until at least ``ratio`` of a sample's
tokens are masked. Every channel has one token per patch, so the fraction of tokens equals the
fraction of channels, and a masked channel is masked at every patch.

A sample's mask can be drawn from its own generator (:func:`sample_generators`, seeded by the
sample's global position in the batch), so it does not depend on how a batch is split across
processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .common import seed_of


def sample_generators(*keys: object, first: int, n: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by ``(*keys, position)`` for the global positions
    ``first .. first + n - 1``: sample ``i`` of a global batch gets the same mask whichever
    process (and whichever slice of the batch) it lands in."""
    return [torch.Generator().manual_seed(seed_of(*keys, first + i)) for i in range(n)]


def group_mask(group_id: torch.Tensor, cu_channels: torch.Tensor, ratio: float,
               generator: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """Boolean mask over the channels of a packed batch.

    Parameters
    ----------
    group_id : int tensor (channels,)
        Masking group of each channel.
    cu_channels : int tensor (samples + 1,)
        Sample boundaries.
    ratio : float
        Target fraction of each sample's channels (tokens) to mask; at least one group, never
        every group of a sample.
    generator : torch.Generator or sequence of them
        Source of randomness (CPU), so masks are reproducible: one generator for the whole
        batch, or one per sample (see :func:`sample_generators`).
    """
    mask = torch.zeros(group_id.shape[0], dtype=torch.bool)
    groups_cpu = group_id.detach().cpu()
    bounds = cu_channels.tolist()
    n_samples = len(bounds) - 1
    if isinstance(generator, torch.Generator):
        generators = [generator] * n_samples
    else:
        generators = list(generator)
        if len(generators) != n_samples:
            raise ValueError(f"{len(generators)} generators for {n_samples} samples")
    for lo, hi, gen in zip(bounds[:-1], bounds[1:], generators, strict=True):
        groups, inverse, counts = torch.unique(groups_cpu[lo:hi], return_inverse=True,
                                               return_counts=True)
        order = torch.randperm(len(groups), generator=gen)
        covered = torch.cumsum(counts[order], 0)
        n = hi - lo
        # smallest prefix of the shuffled groups reaching the ratio, keeping one group visible
        k = int(torch.searchsorted(covered, torch.tensor(ratio * n - 1e-9))) + 1
        k = min(max(k, 1), max(len(groups) - 1, 1))
        chosen = torch.zeros(len(groups), dtype=torch.bool)
        chosen[order[:k]] = True
        mask[lo:hi] = chosen[inverse]
    return mask.to(group_id.device)
