"""Stochastic causal masking (RPNT's robust SSL) for packed batches, and losses on masked entries.

Per batch, a time ratio ``r_t`` and a channel ratio ``r_c`` are drawn uniformly from
``ratio_range`` (RPNT: [0.01, 0.99]) with a seeded :class:`torch.Generator`. In every sample

- the last ``ceil(r_t * n_patches)`` patches (at least 1, fewer than all) are masked on every
  channel: a contiguous block of future patches that a causal model must predict from the past;
- ``round(r_c * n_channels)`` random channels (at least 1, fewer than all; a single-channel
  sample keeps its channel) are masked at every patch.

The mask is their union over ``(channels, patches)``, channel-major like ``batch["x"]`` of
:func:`barista.data.collate_packed` (samples concatenated along the channel axis with their own
channel counts). :func:`apply_mask` zeroes masked entries of the input; the reconstruction losses
(:func:`masked_mse`, :func:`masked_poisson_nll`) count masked entries only.

:func:`robust_ssl_loss` is the whole objective and the one path for every kind of batch: the
input is always masked before the encoder sees it, with or without the contrastive term. (The
RPNT release's multi-site path fed the unmasked input, so it trained a plain auto-encoder.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .contrastive import group_info_nce

DEFAULT_RATIO_RANGE = (0.01, 0.99)


@dataclass
class CausalMask:
    """A drawn mask and what it was drawn from."""

    mask: torch.Tensor  # bool (channels, patches), True = masked
    time_ratio: float
    channel_ratio: float
    n_future: int  # masked patches at the end of every sample
    masked_channels: torch.Tensor  # bool (channels,): channels masked at every patch
    cu_channels: torch.Tensor  # int64 (samples + 1,)


def draw_ratios(generator: torch.Generator,
                ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE) -> tuple[float, float]:
    """``(time_ratio, channel_ratio)``, each uniform on ``ratio_range``."""
    lo, hi = ratio_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 <= lo <= hi <= 1, got {ratio_range}")
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    r = lo + (hi - lo) * u
    return float(r[0]), float(r[1])


def n_future_patches(time_ratio: float, n_patches: int) -> int:
    """``ceil(time_ratio * n_patches)`` clamped to ``[1, n_patches - 1]``."""
    if n_patches < 2:
        raise ValueError(f"causal masking needs at least 2 patches, got {n_patches}")
    n = math.ceil(round(time_ratio * n_patches, 9))  # 0.25 * 12 is 3, not 4
    return min(max(n, 1), n_patches - 1)


def n_masked_channels(channel_ratio: float, n_channels: int) -> int:
    """``round(channel_ratio * n_channels)`` (half up) clamped to ``[1, n_channels - 1]``;
    0 for a single-channel sample, which keeps its only channel."""
    if n_channels < 2:
        return 0
    n = math.floor(channel_ratio * n_channels + 0.5)
    return min(max(n, 1), n_channels - 1)


def causal_mask(n_channels: torch.Tensor | Sequence[int], n_patches: int,
                generator: torch.Generator,
                ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE, *,
                time_ratio: float | None = None,
                channel_ratio: float | None = None) -> CausalMask:
    """Draw the ratios (unless given) and the mask of a packed batch.

    Parameters
    ----------
    n_channels : int tensor or list (samples,)
        Channels of each sample, in packing order.
    n_patches : int
        Patches per channel (the same for the whole batch).
    generator : torch.Generator
        CPU generator: the ratios and the channel choice are reproducible.
    time_ratio, channel_ratio : float, optional
        Use these instead of drawing (the generator still picks the channels).
    """
    counts = [int(c) for c in (n_channels.tolist() if torch.is_tensor(n_channels)
                               else n_channels)]
    if any(c < 1 for c in counts):
        raise ValueError(f"every sample needs a channel, got counts {counts}")
    drawn_t, drawn_c = draw_ratios(generator, ratio_range)
    r_t = drawn_t if time_ratio is None else float(time_ratio)
    r_c = drawn_c if channel_ratio is None else float(channel_ratio)
    n_future = n_future_patches(r_t, n_patches)
    cu = torch.zeros(len(counts) + 1, dtype=torch.long)
    cu[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.long), 0)
    channels = torch.zeros(int(cu[-1]), dtype=torch.bool)
    for lo, count in zip(cu[:-1].tolist(), counts, strict=True):
        chosen = torch.randperm(count, generator=generator)[:n_masked_channels(r_c, count)]
        channels[lo + chosen] = True
    mask = channels[:, None].repeat(1, n_patches)
    mask[:, n_patches - n_future:] = True
    return CausalMask(mask, r_t, r_c, n_future, channels, cu)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.shape[:mask.dim()] != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not lead tensor {tuple(like.shape)}")
    return mask.to(like.device).reshape(mask.shape + (1,) * (like.dim() - mask.dim()))


def apply_mask(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``x`` (channels, patches, ...) with masked (channel, patch) entries set to ``fill``."""
    return torch.where(_expand(mask, x), torch.as_tensor(fill, dtype=x.dtype, device=x.device),
                       x)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked entries only (``mask`` leads ``pred``'s shape).

    Unmasked entries contribute neither to the value nor to the gradient, whatever they hold.
    """
    m = _expand(mask, pred).expand_as(pred)
    target = target.to(pred.dtype).expand_as(pred)
    diff = torch.where(m, pred, target) - target  # exactly 0 off the mask, NaN-safe gradient
    return (diff ** 2).sum() / m.sum().clamp(min=1)


def masked_poisson_nll(log_rate: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor
                       ) -> torch.Tensor:
    """Poisson negative log-likelihood (log-rate input) over masked entries: RPNT's spike loss."""
    m = _expand(mask, log_rate).expand_as(log_rate)
    safe = torch.where(m, log_rate, 0.0)
    counts = torch.where(m, counts.to(log_rate.dtype).expand_as(log_rate), 0.0)
    nll = F.poisson_nll_loss(safe, counts, log_input=True, full=False, reduction="none")
    return torch.where(m, nll, 0.0).sum() / m.sum().clamp(min=1)


@dataclass
class SSLLoss:
    """The terms of :func:`robust_ssl_loss`."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    contrastive: torch.Tensor | None
    mask: CausalMask


def robust_ssl_loss(encode: Callable[[torch.Tensor, CausalMask],
                                     tuple[torch.Tensor, torch.Tensor | None]],
                    x: torch.Tensor, n_channels: torch.Tensor | Sequence[int],
                    generator: torch.Generator, *, groups: torch.Tensor | None = None,
                    target: torch.Tensor | None = None,
                    ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE,
                    reconstruction: str = "mse", contrastive_weight: float = 0.1,
                    temperature: float = 0.1) -> SSLLoss:
    """Masked reconstruction (+ group contrastive term) for one packed batch.

    Parameters
    ----------
    encode : callable ``(masked_x, mask) -> (prediction, embeddings)``
        The model. It receives the input with every masked entry zeroed (and the mask, e.g. to
        put a mask token there); ``prediction`` has ``target``'s shape; ``embeddings``
        (samples, d) feed the contrastive term, or ``None``.
    x : tensor (channels, patches, ...)
        Packed input.
    groups : int tensor (samples,), optional
        Site / region / session of each sample; adds ``contrastive_weight`` x
        :func:`~barista.training.contrastive.group_info_nce` of the embeddings.
    target : tensor, optional
        What to reconstruct (default ``x``).
    reconstruction : ``"mse"`` or ``"poisson"``
        Loss on the masked entries (Poisson: prediction is a log rate, target counts).
    """
    m = causal_mask(n_channels, x.shape[1], generator, ratio_range)
    pred, emb = encode(apply_mask(x, m.mask), m)
    target = x if target is None else target
    if reconstruction == "mse":
        rec = masked_mse(pred, target, m.mask)
    elif reconstruction == "poisson":
        rec = masked_poisson_nll(pred, target, m.mask)
    else:
        raise ValueError(f"unknown reconstruction loss {reconstruction!r}; mse or poisson")
    con = None
    loss = rec
    if groups is not None:
        if emb is None:
            raise ValueError("groups given but the encoder returned no embeddings")
        con = group_info_nce(emb, groups.to(emb.device), temperature)
        loss = rec + contrastive_weight * con
    return SSLLoss(loss, rec, con, m)
