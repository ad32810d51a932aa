"""The RPNT encoder for intracranial EEG, on the same packed batches as BaRISTA.

RPNT (Fang et al., arXiv 2601.17641) embeds each
time bin of spiking with ``Linear(units -> d)``. Here one token is one patch of one contact:
``Linear(patch_samples -> d)`` over the raw patch (no CNN, no spatial table), so a window of
``C`` channels and ``P`` patches gives ``C x P`` tokens, exactly BaRISTA's tokens. Position and
metadata reach the model only through MRoPE: every head's queries and keys are rotated by six
coordinates per token (:data:`barista.models.mrope.IEEG_COORDINATES`: patch index, MNI x, y, z in
mm, session, task; see :func:`batch_coordinates`). The blocks are BaRISTA's pre-norm blocks
(RMSNorm, GeGLU) with :class:`~barista.models.context_attention.ContextAttention` in place of
plain attention: a generated ``K x K`` kernel is convolved over the (query patch x key patch)
score map of every (query channel, key channel) pair. Samples are packed (``cu_seqlens``) and
never attend to each other.

Causal mode (``RpntConfig.causal``, on in both presets as in RPNT's pretraining): a token at
patch ``t`` sees tokens of every channel at patches ``<= t`` and nothing later (the kernel and
its context included), so the state of patch ``t`` is unchanged by any input after ``t``.

``RpntEncoder.forward`` returns ``(channels, patches, d)`` in the channel-major order of
``batch["x"]``, the same tensor layout and order as :class:`~barista.models.barista.BaristaEncoder`,
so :class:`barista.training.finetune.Decoder` works on it unchanged; internally tokens run
time-major per sample as in :func:`~barista.models.barista.packed_layout`.

Session and task ids are constant inside a window and samples do not attend to each other, so
(MRoPE being relative) their rotations cancel in every ``q . k`` of this encoder: their sections
act as unrotated feature pairs, and changing a whole sample's session or task leaves its states
unchanged. They would matter for tokens of different sessions or tasks that attend to each other
(tested with a per-token coordinate override).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .context_attention import ContextAttention
from .mrope import (  # noqa: F401 (recording_ids, batch_coordinates: RPNT's coordinates)
    IEEG_BASES,
    IEEG_COORDINATES,
    MultiRotary,
    batch_coordinates,
    default_sections,
    even_sections,
    recording_ids,
)
from .rotary import rotate
from .transformer import GeGLU, Layout, packed_layout

#: Freezing policies of :meth:`RpntEncoder.frozen_modules` (those of BaRISTA's finetuning).
FREEZE_POLICIES = ("paper", "release", "none")


@dataclass(frozen=True)
class RpntConfig:
    """Architecture and objective of RPNT on iEEG patches; ``rpnt_preset('paper')`` for the
    default size.

    ``causal``: causal context attention (RPNT pretrains causally; a bidirectional encoder is
    ``causal=False``). ``mrope_sections``: features of every head per coordinate, in the order
    of :data:`~barista.models.mrope.IEEG_COORDINATES`; ``None`` -> :func:`default_sections`.
    ``mrope_bases`` / ``mrope_scales``: per coordinate; MNI axes are scaled by 0.1 (radians per
    mm of the fastest pair), as RPNT scales its site positions. ``contrast_by``: ``session``
    (one embedding per sample, positives share subject and session) or ``region`` (one per
    sample and region, positives share ``spatial_id``). ``encode_scale``: the token scale whose
    ``spatial_id`` the batches carry (the regions of ``contrast_by='region'``, and what
    finetuning loads); the encoder itself does not read ``spatial_id``.
    """

    patch_samples: int = 512
    n_patches: int = 12
    d_model: int = 64
    n_layers: int = 12
    n_heads: int = 4
    ffn_hidden: int = 256
    dropout: float = 0.1
    kernel_size: int = 3
    causal: bool = True
    mrope_sections: tuple[int, ...] | None = None
    mrope_bases: tuple[float, ...] = tuple(IEEG_BASES[c] for c in IEEG_COORDINATES)
    mrope_scales: tuple[float, ...] = (1.0, 0.1, 0.1, 0.1, 1.0, 1.0)
    contrastive_weight: float = 0.1
    temperature: float = 0.1
    mask_ratio_range: tuple[float, float] = (0.01, 0.99)
    contrast_by: str = "session"
    encode_scale: str = "parcel"

    def __post_init__(self):
        # lists (from JSON or YAML) -> tuples, so equal configs compare equal
        for name in ("mrope_sections", "mrope_bases", "mrope_scales", "mask_ratio_range"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.contrast_by not in ("session", "region"):
            raise ValueError(f"contrast_by must be 'session' or 'region', got "
                             f"{self.contrast_by!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads "
                             f"{self.n_heads}")
        for name in ("mrope_bases", "mrope_scales") + (
                ("mrope_sections",) if self.mrope_sections is not None else ()):
            if len(getattr(self, name)) != len(IEEG_COORDINATES):
                raise ValueError(f"{name} needs one value per coordinate {IEEG_COORDINATES}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def sections(self) -> tuple[int, ...]:
        """Resolved MRoPE sections (``mrope_sections`` or :func:`default_sections`)."""
        if self.mrope_sections is not None:
            return tuple(int(s) for s in self.mrope_sections)
        return default_sections(self.head_dim)

    def to_dict(self) -> dict:
        return asdict(self)


RPNT_PRESETS = {
    # BaRISTA's paper size (d 64, 12 layers, 4 heads, GeGLU 256): 0.86 M encoder parameters
    # with 512-sample patches (BaRISTA's encoder: 0.83 M)
    "paper": {},
    # BaRISTA's demo size: 100 steps of 32 windows x 40 channels x 8 x 64-sample patches take
    # about 47 s of one CPU thread (BaRISTA's demo: about 41 s)
    "demo": {"d_model": 32, "n_layers": 2, "n_heads": 2, "ffn_hidden": 64},
}


def rpnt_preset(name: str, **overrides) -> RpntConfig:
    """A named size preset (``paper`` or ``demo``) with fields replaced by ``overrides``."""
    if name not in RPNT_PRESETS:
        raise KeyError(f"unknown RPNT preset {name!r}; one of {sorted(RPNT_PRESETS)}")
    return replace(RpntConfig(**RPNT_PRESETS[name]), **overrides)


# ------------------------------------------------------------------------------- modules


class ContextSelfAttention(nn.Module):
    """Multi-head self-attention: MRoPE on q and k, then :class:`ContextAttention`."""

    def __init__(self, d_model: int, n_heads: int, kernel_size: int, causal: bool,
                 dropout: float):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        # no dropout on the attention probabilities (BaRISTA's blocks have none either):
        # dropout acts on the attention output and in the feed-forward
        self.attend = ContextAttention(n_heads, self.head_dim, kernel_size, causal)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, angles: torch.Tensor, layout: Layout) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.n_heads, self.head_dim).unbind(1)
        a = angles[:, None, :]  # shared by the heads
        q, k = rotate(q, a), rotate(k, a)
        o = self.attend(q, k, v, layout.patch, layout.cu_tokens, stream=layout.channel)
        return self.dropout(self.out(o.reshape(n, -1)))


class RpntBlock(nn.Module):
    """Pre-norm block: RMSNorm -> context self-attention, RMSNorm -> GeGLU, residuals."""

    def __init__(self, c: RpntConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(c.d_model)
        self.attn = ContextSelfAttention(c.d_model, c.n_heads, c.kernel_size, c.causal,
                                         c.dropout)
        self.norm2 = nn.RMSNorm(c.d_model)
        self.ffn = GeGLU(c.d_model, c.ffn_hidden, c.dropout)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x, angles, layout):
        x = x + self.attn(self.norm1(x), angles, layout)
        return x + self.dropout(self.ffn(self.norm2(x)))


class RpntEncoder(nn.Module):
    """Packed batch (``x``: channels x patches x samples) -> token states (channels x patches
    x d).

    Attributes: ``patch_embed`` (``Linear(patch_samples -> d)``), ``rotary``
    (:class:`~barista.models.mrope.MultiRotary`), ``blocks``, ``norm`` (final RMSNorm).
    """

    def __init__(self, config: RpntConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Linear(c.patch_samples, c.d_model)
        self.rotary = MultiRotary(c.head_dim, dict(zip(IEEG_COORDINATES, c.sections,
                                                       strict=True)),
                                  list(c.mrope_bases), list(c.mrope_scales))
        self.blocks = nn.ModuleList(RpntBlock(c) for _ in range(c.n_layers))
        self.norm = nn.RMSNorm(c.d_model)

    def frozen_modules(self, policy: str) -> list[nn.Module]:
        """Modules a finetuning policy freezes.

        ``paper``: the patch embedding (as BaRISTA's ``paper`` policy freezes its tokenizer
        CNN); ``release``: the same (RPNT has no spatial table to freeze as well); ``none``:
        nothing (RPNT's own protocol finetunes everything).
        """
        if policy not in FREEZE_POLICIES:
            raise ValueError(f"freeze policy {policy!r} is not one of {FREEZE_POLICIES}")
        return [] if policy == "none" else [self.patch_embed]

    def forward(self, batch: dict, input_mask: torch.Tensor | None = None,
                coords: torch.Tensor | None = None, layout: Layout | None = None
                ) -> torch.Tensor:
        """Encode a packed batch.

        Parameters
        ----------
        batch : dict
            From :func:`barista.data.collate_packed`: ``x``, ``coords``, ``n_channels`` and
            (for the session / task coordinates) ``recording``.
        input_mask : bool tensor (channels, patches), optional
            Entries whose input patch is zeroed before the embedding (RPNT's masking).
        coords : tensor (channels * patches, 6), optional
            Per-token coordinates, channel-major; default :func:`batch_coordinates`.

        Returns
        -------
        states : tensor (channels, patches, d)
            Final-norm output in the channel-major order of ``batch["x"]`` (BaRISTA's order).
        """
        x = batch["x"]
        n_ch, n_p = x.shape[0], x.shape[1]
        if layout is None:
            layout = packed_layout(batch["n_channels"].to(x.device), n_p)
        if input_mask is not None:
            x = x.masked_fill(input_mask.to(x.device)[..., None], 0.0)
        h = self.patch_embed(x).reshape(n_ch * n_p, -1)
        seq = torch.empty_like(h)
        seq[layout.dest] = h
        if coords is None:
            coords = batch_coordinates(batch, n_p)
        angles = torch.empty((n_ch * n_p, self.rotary.head_dim // 2), dtype=torch.float64,
                             device=x.device)
        angles[layout.dest] = self.rotary.angles(coords.to(x.device, torch.float64))
        for block in self.blocks:
            seq = block(seq, angles, layout)
        return self.norm(seq)[layout.dest].reshape(n_ch, n_p, -1)
