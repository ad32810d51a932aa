"""Attention over packed sequences: samples of different lengths share one token axis.

``cu_seqlens`` (int32, ``n_samples + 1``) holds where each sample starts. No token ever attends
to another sample's tokens. Three implementations give the same result:

- ``varlen``: FlashAttention's variable-length kernel (CUDA, fp16/bf16), no padding at all;
- ``bucketed``: samples of equal length are stacked and go through fused
  ``scaled_dot_product_attention`` together, no padding (the default elsewhere; samples of one
  recording share a channel count, so buckets are large);
- ``padded``: pad to the longest sample and run masked math attention: the naive baseline the
  benchmarks compare against.

An additive float bias on the scores (the attention prior, :mod:`barista.models.prior`) is
passed as an object with ``block(starts, n)``, asked once per bucket (or once for the padded
batch). FlashAttention's varlen kernel takes no bias: with one, ``varlen`` (chosen or picked by
``auto``) falls back to ``bucketed`` and says so once in the log.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

IMPLEMENTATIONS = ("auto", "varlen", "bucketed", "padded")
log = logging.getLogger(__name__)


def _segments(cu_seqlens: torch.Tensor) -> tuple[list[int], list[int]]:
    cu = cu_seqlens.tolist()
    return cu[:-1], [b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]


def bucketed_attention(q, k, v, cu_seqlens, dropout_p=0.0, bias=None):
    """q, k, v: (tokens, heads, head_dim) -> (tokens, heads, head_dim); ``bias``: see the
    module docstring."""
    starts, lengths = _segments(cu_seqlens)
    out = torch.empty_like(q)
    by_length: dict[int, list[int]] = {}
    for s, n in zip(starts, lengths, strict=True):
        by_length.setdefault(n, []).append(s)
    for n, group in by_length.items():
        idx = (torch.tensor(group, device=q.device)[:, None]
               + torch.arange(n, device=q.device)).reshape(-1)
        # (samples, heads, n, head_dim)
        qs, ks, vs = (t[idx].reshape(len(group), n, *t.shape[1:]).transpose(1, 2)
                      for t in (q, k, v))
        mask = None if bias is None else bias.block(group, n).to(q.dtype)
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=dropout_p)
        out[idx] = o.transpose(1, 2).reshape(len(group) * n, *q.shape[1:])
    return out


def padded_attention(q, k, v, cu_seqlens, dropout_p=0.0, bias=None):
    """Baseline: pad every sample to the longest, mask the padding, math attention."""
    starts, lengths = _segments(cu_seqlens)
    n_max = max(lengths)
    pos = torch.arange(n_max, device=q.device)
    valid = pos[None, :] < torch.tensor(lengths, device=q.device)[:, None]
    idx = (torch.tensor(starts, device=q.device)[:, None] + pos).clamp(max=q.shape[0] - 1)

    def pad(t):
        return (t[idx] * valid[..., None, None]).transpose(1, 2)  # (b, heads, n_max, dim)

    mask = valid[:, None, None, :]  # keys that exist
    if bias is not None:  # padding keys get -inf, real ones the prior's bias
        mask = bias.block(starts, n_max).to(q.dtype).masked_fill(~mask, float("-inf"))
    with sdpa_kernel(SDPBackend.MATH):
        o = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask,
                                           dropout_p=dropout_p)
    o = o.transpose(1, 2)
    return o[valid].reshape(-1, *q.shape[1:])


@functools.cache
def _varlen_attn():
    """FlashAttention varlen (torch >= 2.9); imported on first CUDA use (it costs ~1 s)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # pragma: no cover - older torch
        return None
    return varlen_attn


@functools.cache
def _say_no_bias_in_varlen() -> None:
    log.info("attention: FlashAttention's varlen kernel takes no additive bias; the attention "
             "prior runs the bucketed implementation instead")


def packed_attention(q, k, v, cu_seqlens, max_len: int | None = None, *, impl: str = "auto",
                     dropout_p: float = 0.0, bias=None):
    """Dispatch to an implementation; ``auto`` picks ``varlen`` where it applies."""
    if impl == "auto":
        fast = (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and dropout_p == 0.0
                and _varlen_attn() is not None)
        impl = "varlen" if fast else "bucketed"
    if impl == "varlen" and bias is not None:
        _say_no_bias_in_varlen()
        impl = "bucketed"
    if impl == "varlen":
        varlen_attn = _varlen_attn()
        if max_len is None:
            max_len = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)
    if impl == "bucketed":
        return bucketed_attention(q, k, v, cu_seqlens, dropout_p, bias)
    if impl == "padded":
        return padded_attention(q, k, v, cu_seqlens, dropout_p, bias)
    raise ValueError(f"unknown attention implementation {impl!r}; one of {IMPLEMENTATIONS}")
