"""The BaRISTA encoder: temporal tokenizer + spatial encoding + joint space-time transformer.

Every channel keeps one token per patch (channels are never pooled). Tokens of a sample are
ordered time-major (all channels of patch 0, then of patch 1, ...), carry the rotary angle of
their patch index, and attend to every token of the same sample and no other.

The ``paper`` preset computes what the authors' released encoders compute (their checkpoints
load with :func:`barista.release.load_release` and reproduce the release's outputs;
``tests/test_release.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .prior import PRIORS, AttentionPrior
from .rotary import Rotary
from .spatial import GridEmbedding, mni_grid_ids, spatial_encoder, warn_mni_grid_rows
from .tokenizer import TemporalTokenizer
from .transformer import Layout, Transformer, packed_layout  # noqa: F401 (packed_layout)


@dataclass(frozen=True)
class BaristaConfig:
    """Architecture; ``preset('paper')`` is the release's model (about 0.87 M parameters).

    ``spatial_init``: ``release`` (N(0, 1) table entries, as the release) or ``small`` (norm 0.3,
    sinusoidal channel tables; :mod:`barista.models.spatial`). ``channel_coordinates``: the
    channel-scale encoder, ``lip`` (the release's three integer-indexed tables, rows from
    ``batch["grid_ids"]`` or from MNI mm) or ``mni`` (interpolated 1-mm MNI tables).
    """

    patch_samples: int = 512
    n_patches: int = 12
    encode_scale: str = "parcel"
    vocab_size: int = 1
    d_model: int = 64
    n_layers: int = 12
    n_heads: int = 4
    ffn_hidden: int = 256
    dropout: float = 0.1
    cnn_width: int = 5
    cnn_blocks: int = 5
    kernel_size: int = 3
    predictor_layers: int = 3
    rope_base: float = 10000.0
    attention: str = "auto"
    spatial_init: str = "release"
    channel_coordinates: str = "lip"
    # ablation switches (RPNT components in BaRISTA): "mrope" rotates q, k by patch, MNI x, y, z,
    # session and task instead of adding a spatial table; context_kernel > 0 uses RPNT's
    # bidirectional context-based attention instead of fused attention
    position: str = "rotary"
    context_kernel: int = 0
    # "distance": the learnable spatial-temporal attention prior (barista.models.prior), a
    # departure from the paper (its variants are named in results, docs/model.md); "none": the
    # paper's attention
    attention_prior: str = "none"
    # what the pretraining predictor predicts for a masked patch (barista.training.targets):
    # "latent" is the paper's (the EMA tokenizer's token); "raw", "logspec", "raw+logspec" are
    # variants. It sets the predictor's output width, so it is part of the architecture.
    target: str = "latent"

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "paper": {},
    # CPU-sized; starts its spatial embeddings small and encodes channels by interpolated MNI
    # mm (the demo data have MNI positions only; docs/model.md says why). It also starts with
    # the attention prior: without it a masked position does not find even an exact visible
    # copy of its channel within the demo's budget (tests/test_routing.py); the paper's method
    # is still run by naming variant 'paper' (barista.variants)
    "demo": {"d_model": 32, "n_layers": 2, "n_heads": 2, "ffn_hidden": 64, "cnn_blocks": 3,
             "spatial_init": "small", "channel_coordinates": "mni",
             "attention_prior": "distance"},
}


def preset(name: str, **overrides) -> BaristaConfig:
    """A named size preset (``paper`` or ``demo``) with data-dependent fields filled in."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; one of {sorted(PRESETS)}")
    return replace(BaristaConfig(**PRESETS[name]), **overrides)


class BaristaEncoder(nn.Module):
    """Packed batch (``x``: channels x patches x samples) -> token states (tokens x d)."""

    def __init__(self, config: BaristaConfig):
        super().__init__()
        self.config = config
        c = config
        self.tokenizer = TemporalTokenizer(c.patch_samples, c.d_model, width=c.cnn_width,
                                           n_blocks=c.cnn_blocks, kernel_size=c.kernel_size)
        self.spatial = spatial_encoder(c.encode_scale, c.vocab_size, c.d_model,
                                       init=c.spatial_init,
                                       channel_coordinates=c.channel_coordinates)
        self.mask_token = nn.Parameter(torch.randn(c.d_model) * 0.02)
        if c.position not in ("rotary", "mrope"):
            raise ValueError(f"position {c.position!r} is not 'rotary' or 'mrope'")
        head_dim = c.d_model // c.n_heads
        self.rotary = Rotary(head_dim, c.rope_base)
        self.mrope = None
        if c.position == "mrope":
            from .mrope import IEEG_BASES, IEEG_COORDINATES, MultiRotary, default_sections

            self.mrope = MultiRotary(
                head_dim, dict(zip(IEEG_COORDINATES, default_sections(head_dim), strict=True)),
                [IEEG_BASES[k] for k in IEEG_COORDINATES], [1.0, 0.1, 0.1, 0.1, 1.0, 1.0])
        self.transformer = Transformer(c.d_model, c.n_layers, c.n_heads, c.ffn_hidden, c.dropout,
                                       c.context_kernel)
        if c.attention_prior not in PRIORS:
            raise ValueError(f"attention_prior {c.attention_prior!r} is not one of {PRIORS}")
        if c.attention_prior != "none" and c.context_kernel:
            raise ValueError("attention_prior needs the fused attention; it does not combine "
                             "with context_kernel > 0")
        # built last and from constants: the other weights are the same with or without it
        self.prior = AttentionPrior(c.n_heads) if c.attention_prior == "distance" else None

    def spatial_embedding(self, batch: dict) -> torch.Tensor:
        """(channels, d): the encoding-scale embedding of every channel in the batch.

        The ``lip`` channel encoder reads ``batch["grid_ids"]`` (channels, 3) when the batch has
        it, else rows from the MNI ``coords`` (:func:`~barista.models.spatial.mni_grid_ids`,
        with a one-time warning).
        """
        if isinstance(self.spatial, GridEmbedding):
            ids = batch.get("grid_ids")
            if ids is None:
                warn_mni_grid_rows()
                ids = mni_grid_ids(batch["coords"], self.spatial.size)
            return self.spatial(ids.to(batch["x"].device))
        return self.spatial(batch["spatial_id"], batch["coords"])

    def forward(self, batch: dict, channel_mask: torch.Tensor | None = None,
                layout: Layout | None = None, tokens: torch.Tensor | None = None):
        """Encode a packed batch.

        Parameters
        ----------
        batch : dict
            From :func:`barista.data.collate_packed`: ``x``, ``spatial_id``, ``coords``,
            ``n_channels`` (and ``grid_ids`` for the ``lip`` channel encoder, when known).
        channel_mask : bool tensor (channels,), optional
            Channels whose every token is replaced by the mask token (plus its spatial
            embedding): the model never sees their signal.
        tokens : tensor (channels, patches, d), optional
            Tokenizer output when the caller already computed it.

        Returns
        -------
        states : tensor (channels, patches, d)
            Transformer output, back in channel-major order.
        """
        x = batch["x"]
        n_ch, n_p = x.shape[0], x.shape[1]
        if layout is None:
            layout = packed_layout(batch["n_channels"].to(x.device), n_p)
        if tokens is None and "features" in batch:  # CNN output cached by the caller
            tokens = self.tokenizer.project(batch["features"])
        elif tokens is None:
            tokens = self.tokenizer(x)
        if channel_mask is not None:
            tokens = torch.where(channel_mask[:, None, None], self.mask_token.to(tokens.dtype),
                                 tokens)
        if self.mrope is None:
            h = tokens + self.spatial_embedding(batch)[:, None, :].to(tokens.dtype)
            angles = self.rotary(layout.patch)
        else:  # where a token is comes from the rotation alone
            from .mrope import batch_coordinates

            h = tokens
            angles = torch.empty((n_ch * n_p, self.mrope.head_dim // 2), dtype=torch.float64,
                                 device=x.device)
            angles[layout.dest] = self.mrope.angles(
                batch_coordinates(batch, n_p).to(x.device, torch.float64))
        seq = torch.empty((n_ch * n_p, h.shape[-1]), dtype=h.dtype, device=h.device)
        seq[layout.dest] = h.reshape(n_ch * n_p, -1)
        grid = {"time": layout.patch, "stream": layout.channel} if self.config.context_kernel \
            else None
        bias = None if self.prior is None else self.prior(
            batch["coords"].to(x.device), layout.channel, layout.patch)
        out = self.transformer(seq, angles, layout.cu_tokens, layout.max_tokens,
                               self.config.attention, grid, bias)
        return out[layout.dest].reshape(n_ch, n_p, -1)
