"""Spatial encoders: what a channel's tokens receive to say where the channel is.

``parcel`` and ``lobe`` scales use a learned table over the scale's vocabulary; id 0 (``unknown``)
is a zero vector that never trains. The ``channel`` scale has two schemes
(``BaristaConfig.channel_coordinates``):

- ``lip`` (the release's, :class:`GridEmbedding`): three learned tables of 200 rows, one per
  axis, indexed by integer grid coordinates and summed. The release's rows are Brain Treebank's
  integer L, I, P contact coordinates; batches carry them as ``batch["grid_ids"]``
  ``(channels, 3)``. Data with MNI positions only get rows from :func:`mni_grid_ids`
  (``round(mm) + 100`` per MNI x, y, z, clipped to 0..199): a fine scheme for a model trained on
  them, but *not* the places the released channel tables were trained on.
- ``mni`` (:class:`CoordinateEmbedding`): the same three summed tables over 1-mm MNI bins,
  linearly interpolated between the two nearest rows, so positions vary continuously.

Initialisation (``BaristaConfig.spatial_init``): ``release`` starts every table entry N(0, 1),
as the release does (row norm ~sqrt(d), larger than a token, and still that large after the
release's pretraining). ``small`` starts every embedding at norm :data:`INIT_NORM`, about a fifth
of a demo token, with the channel tables from sinusoids of the position (similarity falling with
distance from the first step). The demo uses ``small``: started as large as a token, the place
drowned the signal on a controlled task where 80% of a masked channel's variance is a waveform
every other channel carries (``test_pretraining_learns_a_shared_component_quickly``; the
measurements are in docs/notes/latent_objective_small_scale.md).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..errors import DataError

log = logging.getLogger(__name__)

INIT_NORM = 0.3  # starting norm of every spatial embedding with init "small"
SPATIAL_INITS = ("release", "small")
CHANNEL_COORDINATES = ("lip", "mni")
GRID_SIZE = 200  # rows per axis of the release's channel tables


def _check_init(init: str) -> None:
    if init not in SPATIAL_INITS:
        raise ValueError(f"spatial_init {init!r} is not one of {SPATIAL_INITS}")


class TableEmbedding(nn.Module):
    """Learned embedding per token id; id 0 is a fixed zero vector (``padding_idx``)."""

    def __init__(self, vocab_size: int, d_model: int, init: str = "small"):
        super().__init__()
        _check_init(init)
        self.table = nn.Embedding(max(vocab_size, 1), d_model, padding_idx=0)
        std = 1.0 if init == "release" else INIT_NORM / math.sqrt(d_model)
        nn.init.normal_(self.table.weight, std=std)
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
    init : str
        ``small`` (sinusoids, norm :data:`INIT_NORM`) or ``release`` (N(0, 1) entries).
    """

    def __init__(self, d_model: int, extent_mm: int = 100, init: str = "small"):
        super().__init__()
        _check_init(init)
        self.extent = extent_mm
        tables = (sinusoidal_tables(extent_mm, d_model) if init == "small"
                  else torch.randn(3, 2 * extent_mm + 1, d_model))
        self.tables = nn.Parameter(tables)

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


class GridEmbedding(nn.Module):
    """The release's channel encoder: ``sum_a axes[a][ids[:, a]]`` over three axes.

    ``ids`` ``(channels, 3)`` are integer rows in ``0 .. size - 1``; ``-1`` on any axis marks a
    contact without a position, which gets the zero vector. ``axes.{0,1,2}`` hold the release's
    ``subcomponent_embeddings.{0,1,2}`` (L, I, P).
    """

    def __init__(self, d_model: int, size: int = GRID_SIZE, init: str = "small"):
        super().__init__()
        _check_init(init)
        self.size = size
        self.axes = nn.ModuleList(nn.Embedding(size, d_model) for _ in range(3))
        if init == "small":  # rows are millimetres -size/2 .. size/2 - 1 (mni_grid_ids)
            tables = sinusoidal_tables(size // 2, d_model)[:, :size]
            with torch.no_grad():
                for axis, table in zip(self.axes, tables, strict=True):
                    axis.weight.copy_(table)
        # "release": nn.Embedding's own start, N(0, 1) per entry

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        if ids.dim() != 2 or ids.shape[1] != 3:
            raise DataError(f"grid ids must be (channels, 3) integers, got shape "
                            f"{tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < -1 or int(ids.max()) >= self.size):
            raise DataError(f"grid ids range from {int(ids.min())} to {int(ids.max())}; the "
                            f"channel tables have rows 0..{self.size - 1} (-1 = no position)")
        known = (ids >= 0).all(dim=1, keepdim=True)
        rows = ids.clamp(min=0)
        out = sum(axis(rows[:, a]) for a, axis in enumerate(self.axes))
        return out * known


def mni_grid_ids(coords: torch.Tensor, size: int = GRID_SIZE) -> torch.Tensor:
    """Grid rows of MNI positions: ``round(mm) + size // 2`` per x, y, z, clipped to
    ``0 .. size - 1``; a contact with a non-finite coordinate gets ``-1`` (no position)."""
    known = torch.isfinite(coords).all(dim=-1, keepdim=True)
    rows = torch.nan_to_num(coords.double(), nan=0.0, posinf=0.0, neginf=0.0).round() + size // 2
    rows = rows.clamp(0, size - 1).long()
    return torch.where(known, rows, torch.full_like(rows, -1))


_warned_mni_rows = False


def warn_mni_grid_rows() -> None:
    """Say once per process that channel-table rows were derived from MNI millimetres."""
    global _warned_mni_rows
    if not _warned_mni_rows:
        _warned_mni_rows = True
        log.warning(
            "channel-scale grid rows derived from MNI mm (row = round(mm) + %d per x, y, z, "
            "clipped to 0..%d): the batch has no 'grid_ids'. The authors' released channel "
            "tables (chans_chans) were trained on Brain Treebank's integer L, I, P voxel "
            "frame, so with MNI-derived rows they do not encode the same places.",
            GRID_SIZE // 2, GRID_SIZE - 1)


def spatial_encoder(scale: str, vocab_size: int, d_model: int, *, init: str = "small",
                    channel_coordinates: str = "mni") -> nn.Module:
    """The encoder for a scale: coordinates for ``channel``, a table otherwise."""
    if scale == "channel":
        if channel_coordinates not in CHANNEL_COORDINATES:
            raise ValueError(f"channel_coordinates {channel_coordinates!r} is not one of "
                             f"{CHANNEL_COORDINATES}")
        if channel_coordinates == "lip":
            return GridEmbedding(d_model, init=init)
        return CoordinateEmbedding(d_model, init=init)
    return TableEmbedding(vocab_size, d_model, init=init)
