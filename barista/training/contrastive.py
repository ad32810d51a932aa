"""Contrastive term of RPNT's robust self-supervised learning: InfoNCE over cosine similarities.

RPNT adds a site-contrastive InfoNCE term (temperature 0.1, weight 0.1) to its multi-site
pretraining: embeddings that share a site are positives, every other embedding of the batch is a
negative. For intracranial data the groups are regions or sessions (:func:`group_info_nce`). The
two-view form (:func:`info_nce`: row ``i`` of one view matches row ``i`` of the other, e.g. the
same window seen through two regions) is the symmetric CLIP-style loss.

Both are symmetric: with labels, the similarity matrix and the positive pairs are symmetric, so
the loss averaged over anchors equals the one averaged over targets; with two views, the
cross-entropy of view 1 -> view 2 and of view 2 -> view 1 are averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric two-view InfoNCE: ``z1[i]`` and ``z2[i]`` are positives, other rows negatives.

    ``z1``, ``z2``: (n, d). Returns the mean of the cross-entropies of
    ``cos(z1, z2) / temperature`` with labels ``0 .. n-1``, row-wise and column-wise.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"views must both be (n, d), got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    logits = _cosine(z1, z2) / temperature
    labels = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def group_info_nce(z: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1
                   ) -> torch.Tensor:
    """InfoNCE with group labels: embeddings with the same label are positives.

    For anchor ``i`` with positives ``P(i) = {j != i: groups[j] == groups[i]}``:
    ``l_i = -1/|P(i)| sum_{p in P(i)} log softmax_{j != i}(cos(z_i, z_j) / temperature)[p]``,
    averaged over the anchors that have a positive (0, with a gradient path, when none has).

    ``z``: (n, d); ``groups``: (n,) integer labels (site, region or session ids).
    """
    if z.dim() != 2 or groups.shape != z.shape[:1]:
        raise ValueError(f"need z (n, d) and groups (n,), got {tuple(z.shape)} and "
                         f"{tuple(groups.shape)}")
    n = z.shape[0]
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (_cosine(z, z) / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = logits.log_softmax(dim=1)
    positive = (groups[:, None] == groups[None, :]) & ~self_pair
    n_pos = positive.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return z.sum() * 0.0
    per_anchor = -torch.where(positive, log_prob, 0.0).sum(1)[anchors] / n_pos[anchors]
    return per_anchor.mean()


class ContrastiveLoss(nn.Module):
    """Weighted InfoNCE term: ``weight * InfoNCE`` (RPNT: temperature 0.1, weight 0.1).

    Call with ``(z, groups=labels)`` for the group form or ``(z1, z2=z2)`` for two views.
    """

    def __init__(self, temperature: float = 0.1, weight: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature, self.weight = temperature, weight

    def forward(self, z: torch.Tensor, groups: torch.Tensor | None = None,
                z2: torch.Tensor | None = None) -> torch.Tensor:
        if (groups is None) == (z2 is None):
            raise ValueError("give exactly one of groups (labels) or z2 (a second view)")
        if z2 is not None:
            return self.weight * info_nce(z, z2, self.temperature)
        return self.weight * group_info_nce(z, groups, self.temperature)
