"""Spatial encoders: what a channel's tokens receive to say where the channel is.

``parcel`` and ``lobe`` scales use a learned table over the scale's vocabulary; id 0 (``unknown``)
is a zero vector that never trains. The ``channel`` scale encodes MNI coordinates. The BaRISTA
release sums three learned tables indexed by integer voxel x, y, z; MNI positions are continuous
millimetres, so :class:`CoordinateEmbedding` keeps the three summed 1-mm tables and linearly
interpolates between the two nearest rows. At integer millimetres it is exactly the release's
scheme; between them it varies continuously, so nearby contacts get nearby embeddings.
"""

from __future__ import annotations

import torch
from torch import nn


class TableEmbedding(nn.Module):
    """Learned embedding per token id; id 0 is a fixed zero vector (``padding_idx``)."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.table = nn.Embedding(max(vocab_size, 1), d_model, padding_idx=0)
        nn.init.normal_(self.table.weight, std=0.02)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def forward(self, token_id: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        return self.table(token_id)


class CoordinateEmbedding(nn.Module):
    """Sum of per-axis learned tables over 1-mm bins, interpolated; NaN position -> zeros.

    Parameters
    ----------
    d_model : int
        Embedding width.
    extent_mm : int
        Positions are clamped to [-extent_mm, extent_mm] on each axis (MNI brains fit in 100 mm).
    """

    def __init__(self, d_model: int, extent_mm: int = 100):
        super().__init__()
        self.extent = extent_mm
        self.tables = nn.Parameter(torch.randn(3, 2 * extent_mm + 1, d_model) * 0.02)

    def forward(self, token_id: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(coords).all(dim=-1)
        pos = torch.nan_to_num(coords.float(), nan=0.0).clamp(-self.extent, self.extent)
        pos = pos + self.extent  # row index, fractional
        lo = pos.floor().long().clamp(max=2 * self.extent - 1)
        frac = (pos - lo).unsqueeze(-1)
        out = 0
        for axis in range(3):
            table = self.tables[axis]
            out = out + (1 - frac[:, axis]) * table[lo[:, axis]] + frac[:, axis] * table[
                lo[:, axis] + 1]
        return out * known.unsqueeze(-1)


def spatial_encoder(scale: str, vocab_size: int, d_model: int) -> nn.Module:
    """The encoder for a scale: coordinates for ``channel``, a table otherwise."""
    if scale == "channel":
        return CoordinateEmbedding(d_model)
    return TableEmbedding(vocab_size, d_model)
