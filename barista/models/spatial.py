"""Spatial encoders: what a channel's tokens receive to say where the channel is.

``parcel`` and ``lobe`` scales use a learned table over the scale's vocabulary; id 0 (``unknown``)
is a zero vector that never trains. The ``channel`` scale encodes MNI coordinates. The BaRISTA
release sums three learned tables indexed by integer voxel x, y, z; MNI positions are continuous
millimetres, so :class:`CoordinateEmbedding` keeps the three summed 1-mm tables and linearly
interpolates between the two nearest rows. At integer millimetres it is exactly the release's
scheme; between them it varies continuously.

Initialisation matters as much as the scheme. Masked pretraining must learn to read a masked
channel from its neighbours, which needs embeddings whose similarity says how near two contacts
are: the coordinate tables start from sinusoids of the position (each axis in its own block of
dimensions, wavelengths 7-200 mm), so the dot product of two embeddings is largest at zero
distance and falls over the first tens of millimetres from the first step, and then train
freely. Every spatial embedding starts *small beside a token* (norm :data:`INIT_NORM`, about
a fifth of a demo token's): a visible token is then mostly its signal, and after the
scale-free RMSNorm a masked position (mask token plus spatial embedding) is still mostly
its place. Started as large as a token (norm sqrt 3), the place drowned the signal: on a
controlled task where 80% of a masked channel's variance is a waveform every other channel
carries, the demo model reached a latent R^2 of 0.02 after 100 steps, against 0.30 with
this start (``test_pretraining_learns_a_shared_component_quickly``; docs/model.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_NORM = 0.3  # starting norm of every spatial embedding (a token's is about 1-2)


class TableEmbedding(nn.Module):
    """Learned embedding per token id; id 0 is a fixed zero vector (``padding_idx``)."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.table = nn.Embedding(max(vocab_size, 1), d_model, padding_idx=0)
        nn.init.normal_(self.table.weight, std=INIT_NORM / math.sqrt(d_model))
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
        self.tables = nn.Parameter(sinusoidal_tables(extent_mm, d_model))

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


def sinusoidal_tables(extent_mm: int, d_model: int, min_wavelength_mm: float = 7.0,
                      max_wavelength_mm: float = 200.0) -> torch.Tensor:
    """Starting values of :class:`CoordinateEmbedding`'s tables, ``(3, 2 * extent + 1, d)``.

    Axis ``a`` fills its own block of ``2 * n`` dimensions (``n = d // 6`` frequencies, as
    many as fit three blocks) with ``sin, cos(2 pi p / wavelength)`` at wavelengths spaced
    geometrically from ``min_wavelength_mm`` to ``max_wavelength_mm``, scaled so each block
    has the same norm; spare dimensions start at zero. The dot product of the embeddings of two
    positions is then ``INIT_NORM**2 / 3 * sum_a mean_k cos(2 pi delta_a / wavelength_k)``: a
    function of their displacement only, largest at zero and falling with distance. The whole
    embedding starts with norm :data:`INIT_NORM` (each block ``INIT_NORM / sqrt 3``).
    """
    n_freq = d_model // 6
    if n_freq < 1:
        raise ValueError(f"d_model {d_model} is too small for coordinate embeddings (>= 6)")
    position = torch.arange(-extent_mm, extent_mm + 1, dtype=torch.float64)
    wavelength = torch.logspace(math.log10(min_wavelength_mm), math.log10(max_wavelength_mm),
                                n_freq, dtype=torch.float64)
    angle = 2 * math.pi * position[:, None] / wavelength[None, :]
    block = torch.cat([angle.sin(), angle.cos()], dim=1) * (INIT_NORM / math.sqrt(3 * n_freq))
    tables = torch.zeros(3, len(position), d_model, dtype=torch.float64)
    for axis in range(3):
        tables[axis, :, 2 * n_freq * axis:2 * n_freq * (axis + 1)] = block
    return tables.float()


def spatial_encoder(scale: str, vocab_size: int, d_model: int) -> nn.Module:
    """The encoder for a scale: coordinates for ``channel``, a table otherwise."""
    if scale == "channel":
        return CoordinateEmbedding(d_model)
    return TableEmbedding(vocab_size, d_model)
