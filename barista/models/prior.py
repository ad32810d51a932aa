"""Spatial-temporal attention prior: a learnable additive bias on the attention scores.

Masked pretraining asks a masked position (the mask token plus its spatial embedding: no
content) to find the few visible tokens that predict it, a contact's nearest neighbours at the
same patch, among hundreds. At initialisation the query-key scores carry no notion of "near",
so little of a masked position's attention lands on its nearest neighbours at the same patch,
and on the demo the model does not leave that state within its budget (docs/model.md,
"Pretraining variants"; measurements in docs/notes/pretraining_variants.md). This prior adds,
for every head ``h`` and every pair of tokens ``i, j`` of one sample,

    bias[h, i, j] = -softplus(a_h) * distance_mm(i, j) / 10 + b_h * [patch(i) == patch(j)]

to the scaled scores before the softmax: two learnable scalars per head, shared by every
layer, computed from the contacts' coordinates and the patch indices only (never from the
signal, so nothing of a masked channel leaks). ``softplus`` keeps the distance term a penalty
(nearer is never worse); ``b_h`` may grow or shrink the same-patch preference. Pairs where
either contact has no position (NaN coordinates) get the sample's mean distance between
positioned contacts: neither favoured nor shunned.

The bias is the same for every sample whose channels sit at the same positions (all windows
of one recording), so a bucket of such samples gets one ``(1, heads, n, n)`` bias that SDPA
broadcasts, instead of one per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIORS = ("none", "distance")
DISTANCE_SCALE_MM = 10.0  # the slope is per 10 mm: contacts on a shaft sit 3-5 mm apart


class AttentionPrior(nn.Module):
    """``-softplus(a_h) * d / 10 mm + b_h * [same patch]``, one ``(a_h, b_h)`` per head.

    Parameters
    ----------
    n_heads : int
        Attention heads.
    slope, same_patch : float
        Starting ``a_h`` and ``b_h`` (the same for every head). The defaults (2, 2) give a
        penalty of 0.75 at 3.5 mm and 6.4 at 30 mm and a same-patch bonus of 2: nearby contacts
        at the same patch dominate a masked query's attention from the first step.
    """

    def __init__(self, n_heads: int, slope: float = 2.0, same_patch: float = 2.0):
        super().__init__()
        # constants, not random draws: adding the prior leaves every other initial weight of
        # the encoder unchanged (same seed, same weights), so variants pair with one start
        self.slope = nn.Parameter(torch.full((n_heads,), float(slope)))
        self.same_patch = nn.Parameter(torch.full((n_heads,), float(same_patch)))

    def forward(self, coords: torch.Tensor, channel: torch.Tensor,
                patch: torch.Tensor) -> TokenBias:
        """The bias of a packed batch, computed per attention bucket on demand.

        ``coords`` (channels, 3) in mm; ``channel`` and ``patch`` give each token's channel
        (row of ``coords``) and patch index, in the token order of the packed sequence.
        """
        return TokenBias(self, coords, channel, patch)

    def pair_bias(self, pos: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """``(k, heads, n, n)`` bias of ``k`` samples of ``n`` tokens each, from the tokens'
        positions ``(k, n, 3)`` and patch indices ``(k, n)``."""
        known = torch.isfinite(pos).all(-1)
        dist = torch.cdist(torch.nan_to_num(pos.float()), torch.nan_to_num(pos.float()))
        pair_known = known[:, :, None] & known[:, None, :]
        if not bool(pair_known.all()):
            n_known = pair_known.sum((1, 2), keepdim=True).clamp(min=1)
            mean = (dist * pair_known).sum((1, 2), keepdim=True) / n_known
            dist = torch.where(pair_known, dist, mean)
        same = (patch[:, :, None] == patch[:, None, :]).to(dist.dtype)
        slope = F.softplus(self.slope)[None, :, None, None]
        bonus = self.same_patch[None, :, None, None]
        return -slope * (dist[:, None] / DISTANCE_SCALE_MM) + bonus * same[:, None]


class TokenBias:
    """The prior's bias for one packed batch; attention asks it for the samples it stacks.

    ``block(starts, n)`` gives the bias among the first ``n`` tokens of the samples that start
    at token ``starts`` (a bucket of equal-length samples, or a padded batch, where tokens
    past a sample's end are padding for the caller to mask): ``(1, heads, n, n)`` when the
    samples have their channels at the same positions, else ``(k, heads, n, n)``. Blocks are
    cached by ``(starts, n)``, so the layers of one forward pass share them (and their
    gradient).
    """

    def __init__(self, prior: AttentionPrior, coords: torch.Tensor, channel: torch.Tensor,
                 patch: torch.Tensor):
        self.prior, self.coords, self.channel, self.patch = prior, coords, channel, patch
        self._cache: dict[tuple, torch.Tensor] = {}

    def block(self, starts: list[int], n: int) -> torch.Tensor:
        key = (tuple(starts), n)
        if key not in self._cache:
            device = self.channel.device
            index = (torch.tensor(starts, device=device)[:, None]
                     + torch.arange(n, device=device)).clamp(max=len(self.channel) - 1)
            pos = self.coords[self.channel[index]]  # (k, n, 3)
            patch = self.patch[index]
            same_place = torch.equal(torch.nan_to_num(pos, nan=1e9),
                                     torch.nan_to_num(pos[:1], nan=1e9).expand_as(pos))
            if same_place and torch.equal(patch, patch[:1].expand_as(patch)):
                pos, patch = pos[:1], patch[:1]
            self._cache[key] = self.prior.pair_bias(pos, patch)
        return self._cache[key]
