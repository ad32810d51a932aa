"""Rotary position embedding (RoPE) on one integer position per token.

Query and key feature pairs are rotated by ``position * base^(-2i/d)``; the dot product of a
rotated query and key then depends on the positions only through their difference.

Two pairings of the features: :func:`rotate` pairs neighbours ``(2i, 2i+1)`` (RPNT's MRoPE);
:func:`rotate_half` pairs ``(i, i + d/2)``, the "rotate_half" convention of the BaRISTA release
(and of LLaMA-style code). Both give relative scores, but not the same ones: weights trained with
one pairing only reproduce with the same pairing.
"""

from __future__ import annotations

import torch
from torch import nn


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive feature pairs of ``x`` (..., d) by ``angles`` (..., d/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


def rotate_half(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate feature ``i`` of ``x`` (..., d) with feature ``i + d/2`` by ``angles[..., i]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


#: Rotation of each pairing, by the name :class:`~barista.models.transformer.Attention` takes.
PAIRINGS = {"interleaved": rotate, "half": rotate_half}


class Rotary(nn.Module):
    """Angles for head dimension ``head_dim`` from positions ``(tokens,)``."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``(tokens, head_dim/2)`` angles; broadcast over heads by the caller."""
        return positions.float().unsqueeze(-1) * self.inv_freq
