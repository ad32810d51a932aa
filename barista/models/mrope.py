"""Multidimensional rotary position embedding (MRoPE): RoPE over several coordinates at once.

RPNT rotates queries and keys by experimental metadata as well as time. Every head's dimension is
split into sections, one per coordinate (for intracranial data: time patch, electrode x, y, z in
MNI mm, session id, task id). Feature pair ``i`` of coordinate ``c``'s section (``d_c`` features,
``d_c / 2`` pairs) is rotated by the angle

    coordinate_c * scale_c * base_c ** (-2 i / d_c)

so the rotated dot product ``q_m . k_n`` of a head depends on every coordinate, and on each only
through the difference ``coordinate_c(m) - coordinate_c(n)``. Coordinates are floats: MNI
millimetres need no rounding.

The sections live inside every head. The RPNT release gave each head only the first
coordinate's frequencies (a coordinate constant inside a window), so the rotation cancelled in
``q . k`` and the model saw no position at all; ``tests/test_rpnt_components.py`` checks that every
coordinate changes every head's scores.

Relative encoding has a consequence worth knowing: a coordinate that is the same for every token
of an attention window (the session or task id in a single-window self-attention) cancels in
``q . k`` exactly like a plain RoPE position shared by all tokens. Those sections carry signal only
where tokens with different values attend to each other (windows mixing sessions or tasks,
cross-attention to tokens of other recordings).

Layouts: :meth:`MultiRotary.angles` gives ``(..., tokens, head_dim / 2)`` angles, the same
contract as :class:`barista.models.rotary.Rotary`, so they can be passed as the ``angles`` of
:class:`barista.models.transformer.Transformer` (packed ``(total_tokens, heads, head_dim)``
queries). :meth:`MultiRotary.forward` rotates packed ``(tokens, heads, head_dim)`` or batched
``(batch, heads, seq, head_dim)`` queries and keys directly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .rotary import rotate

#: Coordinates of an intracranial token, in the order of the last axis of ``coords``.
IEEG_COORDINATES = ("time", "x", "y", "z", "session", "task")
#: Bases per coordinate: long wavelengths for time, millimetre-to-brain scales for MNI axes,
#: short ranges for the categorical ids (as RPNT's bases 10 / 100 / 1000 / 10000).
IEEG_BASES = {"time": 10000.0, "x": 1000.0, "y": 1000.0, "z": 1000.0, "session": 100.0,
              "task": 10.0}


def even_sections(head_dim: int, names: Sequence[str] = IEEG_COORDINATES) -> dict[str, int]:
    """Split ``head_dim`` into one even-sized section per coordinate, the first ones larger.

    ``even_sections(16, ("time", "x", "y", "z"))`` -> ``{"time": 4, "x": 4, "y": 4, "z": 4}``.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
    pairs, n = head_dim // 2, len(names)
    return {name: 2 * (pairs // n + (i < pairs % n)) for i, name in enumerate(names)}


def _per_coordinate(value, names: list[str], default: float, what: str) -> list[float]:
    if value is None:
        return [default] * len(names)
    if isinstance(value, (int, float)):
        return [float(value)] * len(names)
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise KeyError(f"{what} for unknown coordinates {sorted(unknown)}; known: {names}")
        return [float(value.get(name, default)) for name in names]
    value = [float(v) for v in value]
    if len(value) != len(names):
        raise ValueError(f"{len(value)} {what} for {len(names)} coordinates")
    return value


class MultiRotary(nn.Module):
    """Rotary embedding over ``n_coords`` coordinates, each with its own section of every head.

    Parameters
    ----------
    head_dim : int
        Features per head (even).
    sections : dict name -> int, or list of int
        Features of each head given to each coordinate, in the order of the last axis of
        ``coords``; each even, total at most ``head_dim`` (features beyond the total are left
        unrotated). A section of size 0 means the coordinate is ignored. A list names the
        coordinates ``"0"``, ``"1"``, ...
    bases : float, dict or list, optional
        Base of each coordinate's frequencies (default 10000).
    scales : float, dict or list, optional
        Factor applied to each coordinate before rotation (default 1; RPNT scales site
        positions by 0.1).

    Non-finite coordinates (a contact without a position) are taken as 0: no rotation in that
    section.
    """

    def __init__(self, head_dim: int, sections: Mapping[str, int] | Sequence[int],
                 bases: float | Mapping[str, float] | Sequence[float] | None = None,
                 scales: float | Mapping[str, float] | Sequence[float] | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        if isinstance(sections, Mapping):
            names, sizes = list(sections), [int(s) for s in sections.values()]
        else:
            sizes = [int(s) for s in sections]
            names = [str(i) for i in range(len(sizes))]
        if any(s < 0 or s % 2 for s in sizes):
            raise ValueError(f"sections must be even and non-negative, got {sizes} for {names}")
        if sum(sizes) > head_dim:
            raise ValueError(f"sections sum to {sum(sizes)} > head_dim {head_dim}")
        self.head_dim, self.names, self.sizes = head_dim, names, sizes
        base = _per_coordinate(bases, names, 10000.0, "bases")
        scale = _per_coordinate(scales, names, 1.0, "scales")
        inv_freq = torch.zeros(head_dim // 2, dtype=torch.float64)
        coord = torch.zeros(head_dim // 2, dtype=torch.long)
        start = 0
        for c, size in enumerate(sizes):
            i = torch.arange(size // 2, dtype=torch.float64)
            inv_freq[start:start + size // 2] = scale[c] * base[c] ** (-2 * i / size)
            coord[start:start + size // 2] = c
            start += size // 2
        # pairs past the last section keep inv_freq 0: angle 0, no rotation
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("coord_index", coord, persistent=False)

    @property
    def n_coords(self) -> int:
        return len(self.names)

    def angles(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., tokens, n_coords)`` coordinates -> ``(..., tokens, head_dim / 2)`` angles.

        Angles are float64 for float64 coordinates, float32 otherwise.
        """
        if coords.shape[-1] != self.n_coords:
            raise ValueError(f"coords has {coords.shape[-1]} coordinates, expected "
                             f"{self.n_coords} ({self.names})")
        dtype = torch.float64 if coords.dtype == torch.float64 else torch.float32
        c = torch.nan_to_num(coords.to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
        return c[..., self.coord_index] * self.inv_freq.to(dtype)

    def forward(self, q: torch.Tensor, k: torch.Tensor, coords: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate queries and keys.

        Parameters
        ----------
        q, k : tensor
            Packed ``(tokens, heads, head_dim)`` (as in :mod:`barista.models.attention`) or
            batched ``(batch, heads, seq, head_dim)``.
        coords : tensor
            ``(tokens, n_coords)`` for packed inputs; ``(batch, seq, n_coords)`` or
            ``(seq, n_coords)`` for batched ones.
        """
        a = self.angles(coords)
        if q.dim() == 3:
            a = a.unsqueeze(-2)  # (tokens, 1, head_dim/2): shared by the heads
        elif q.dim() == 4:
            a = a.unsqueeze(-3)  # (batch, 1, seq, head_dim/2)
        else:
            raise ValueError(f"q must be (tokens, heads, dim) or (batch, heads, seq, dim), "
                             f"got shape {tuple(q.shape)}")
        return rotate(q, a), rotate(k, a)


def default_sections(head_dim: int) -> tuple[int, ...]:
    """MRoPE sections of a head (time, x, y, z, session, task).

    Session and task get one feature pair each (they are constant inside a window, see the
    module docstring); x, y and z an equal share of the rest; time what is left (at least as
    much as one axis). Heads with fewer than 6 pairs fall back to
    :func:`even_sections`. ``default_sections(16)`` ->
    ``(6, 2, 2, 2, 2, 2)``; ``default_sections(32)`` -> ``(10, 6, 6, 6, 2, 2)``.
    """
    pairs = head_dim // 2
    if head_dim % 2 or pairs < 6:
        return tuple(even_sections(head_dim).values())
    per_axis = (pairs - 2) // 4
    time = pairs - 2 - 3 * per_axis
    return (2 * time, 2 * per_axis, 2 * per_axis, 2 * per_axis, 2, 2)


_ENTITY = re.compile(r"(?:^|_)([a-zA-Z0-9]+)-([a-zA-Z0-9]+)")


def recording_ids(recording: str) -> dict[str, int | str]:
    """Subject, session and task of a BIDS basename, with the integer ids MRoPE uses.

    ``session_id``: the integer of the ``ses-`` entity (``ses-02`` -> 2), ``crc32(label) % 1000``
    when it is not numeric (``ses-postop``), 0 without one. ``task_id``: ``crc32(label) % 1000``,
    0 without a task. Also ``subject``, ``session``, ``task``: the labels (``""`` if absent).
    """
    ents: dict[str, str] = {}
    for key, value in _ENTITY.findall(recording):
        ents.setdefault(key, value)
    ses, task = ents.get("ses", ""), ents.get("task", "")
    if not ses:
        session_id = 0
    elif ses.isdigit():
        session_id = int(ses)
    else:
        session_id = zlib.crc32(ses.encode()) % 1000
    task_id = zlib.crc32(task.encode()) % 1000 if task else 0
    return {"subject": ents.get("sub", ""), "session": ses, "task": task,
            "session_id": session_id, "task_id": task_id}


def batch_coordinates(batch: dict, n_patches: int | None = None) -> torch.Tensor:
    """Per-token MRoPE coordinates ``(channels * patches, 6)``, float64.

    Columns: patch index, MNI x, y, z (mm; NaN -> 0), session id, task id (from the
    sample's ``recording``, :func:`recording_ids`; 0 without ``recording``). Rows are
    channel-major (``channel * n_patches + patch``), the order of the encoder's output.
    """
    x = batch["x"]
    n_patches = x.shape[1] if n_patches is None else n_patches
    n_ch, device = x.shape[0], x.device
    counts = batch["n_channels"].to(device).long()
    recordings = batch.get("recording") or [""] * len(counts)
    ids = [recording_ids(r) for r in recordings]
    meta = torch.tensor([[i["session_id"], i["task_id"]] for i in ids], dtype=torch.float64,
                        device=device).reshape(-1, 2)
    meta = meta.repeat_interleave(counts, dim=0)  # (channels, 2)
    xyz = torch.nan_to_num(batch["coords"].to(device, torch.float64), nan=0.0, posinf=0.0,
                           neginf=0.0)
    per_channel = torch.cat([xyz, meta], dim=1)  # (channels, 5)
    patch = torch.arange(n_patches, device=device, dtype=torch.float64)
    out = torch.empty((n_ch, n_patches, 6), dtype=torch.float64, device=device)
    out[:, :, 0] = patch
    out[:, :, 1:] = per_channel[:, None, :]
    return out.reshape(n_ch * n_patches, 6)
