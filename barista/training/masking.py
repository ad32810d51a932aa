"""Spatial masking for pretraining: whole groups at the masking scale, all patches of each.

BaRISTA masks random groups (channels, parcels or lobes) until at least ``ratio`` of a sample's
tokens are masked. Every channel has one token per patch, so the fraction of tokens equals the
fraction of channels, and a masked channel is masked at every patch.
"""

from __future__ import annotations

import torch


def group_mask(group_id: torch.Tensor, cu_channels: torch.Tensor, ratio: float,
               generator: torch.Generator) -> torch.Tensor:
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
    generator : torch.Generator
        Source of randomness (CPU), so masks are reproducible.
    """
    mask = torch.zeros(group_id.shape[0], dtype=torch.bool)
    groups_cpu = group_id.detach().cpu()
    bounds = cu_channels.tolist()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        groups, inverse, counts = torch.unique(groups_cpu[lo:hi], return_inverse=True,
                                               return_counts=True)
        order = torch.randperm(len(groups), generator=generator)
        covered = torch.cumsum(counts[order], 0)
        n = hi - lo
        # smallest prefix of the shuffled groups reaching the ratio, keeping one group visible
        k = int(torch.searchsorted(covered, torch.tensor(ratio * n - 1e-9))) + 1
        k = min(max(k, 1), max(len(groups) - 1, 1))
        chosen = torch.zeros(len(groups), dtype=torch.bool)
        chosen[order[:k]] = True
        mask[lo:hi] = chosen[inverse]
    return mask.to(group_id.device)
