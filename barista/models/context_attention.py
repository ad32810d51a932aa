"""Context-based attention (RPNT): a generated 2-D kernel convolved over the attention scores.

For every sample and head, a small ``K x K`` kernel (3 x 3 by default, odd sizes) is generated
from a pooled context of the window and convolved over the score map ``S = q k^T / sqrt(d)``
along (query time, key time) before the softmax, so attention can learn local temporal structure
(diagonal continuity, smoothing over neighbouring steps) that adapts to each window.

Tokens are packed as in :mod:`barista.models.attention`: ``(total_tokens, heads, head_dim)`` with
sample boundaries ``cu_seqlens``; no token attends to, or is convolved with, another sample's
tokens. Each token carries a time index and optionally a stream index (the channel, electrode or
site it comes from): RPNT has one token per time bin (one stream); BaRISTA has one per (channel,
patch), with ``stream = channel`` and ``time = patch``. The kernel slides along the two time axes
of the map, for every (query stream, key stream) pair with the same weights, so one kernel tap
reads the score of the same two streams one step earlier or later, never a neighbouring channel.
Token order inside a sample does not matter; ``(stream, time)`` must be unique per sample.

Steps, per sample and head:

1. context: attention pooling of the sample's token features (default: the values of all heads
   concatenated) with a learned query; a linear layer maps it to ``K x K`` logits per head, a
   softmax over the taps normalises the kernel;
2. scores ``S``; entries that are not allowed (a missing token, and in causal mode a key later
   than its query) are set to 0 *before* the convolution;
3. convolution over the (query time, key time) map, zero padded at the sample's borders;
4. entries not allowed are set to ``-inf`` again, softmax over keys, weighted sum of values.

Causal mode (``causal=True``): the output at time ``t`` depends on nothing after ``t``. The RPNT
release zeroed future scores but convolved with a centred kernel (its lower rows read the scores
of *later queries*, whose ``q`` comes from future inputs) and pooled the context over the whole
window, so its causal model was not causal. Here, in causal mode, every kernel tap reads only
past-or-present query rows and keys (offsets ``-(K-1) .. 0`` on both axes, padding on top and
left), and the kernel used for query time ``t`` is generated from the context pooled over tokens
at times ``<= t`` only (one kernel per sample, head and query time). Bidirectional mode
(``causal=False``, a BaRISTA-style encoder) uses a centred kernel ('same' padding) generated from
the whole window, applied with a grouped ``conv2d`` (groups = samples x heads).

This is a math path: the convolution needs the score map materialised, so memory is
``samples x heads x (streams x times)^2`` per layer, like padded math attention; the fused
SDPA / FlashAttention paths of :mod:`barista.models.attention` cannot be used with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TokenGrid:
    """Where each packed token sits in its sample's dense (stream x time) grid."""

    sample: torch.Tensor  # (tokens,) sample index
    cell: torch.Tensor  # (tokens,) stream * n_times + time, inside the sample
    time: torch.Tensor  # (tokens,) time relative to the sample's first time step
    n_samples: int
    n_streams: int
    n_times: int


def token_grid(time: torch.Tensor, cu_seqlens: torch.Tensor | None = None,
               stream: torch.Tensor | None = None) -> TokenGrid:
    """Place packed tokens on per-sample grids.

    Times are shifted so that each sample starts at 0 (gaps stay gaps); stream ids are
    renumbered ``0 .. n - 1`` per sample in increasing order.
    """
    n, device = time.shape[0], time.device
    if n == 0:
        raise ValueError("no tokens")
    if cu_seqlens is None:
        cu_seqlens = torch.tensor([0, n], device=device)
    cu = cu_seqlens.to(device=device, dtype=torch.long)
    lengths = cu[1:] - cu[:-1]
    if int(cu[0]) != 0 or int(cu[-1]) != n or bool((lengths <= 0).any()):
        raise ValueError(f"cu_seqlens {cu.tolist()} must rise strictly from 0 to {n} tokens")
    n_samples = len(lengths)
    sample = torch.repeat_interleave(torch.arange(n_samples, device=device), lengths)

    def per_sample_min(x: torch.Tensor) -> torch.Tensor:
        init = torch.full((n_samples,), torch.iinfo(torch.long).max, device=device)
        return init.scatter_reduce(0, sample, x, "amin")

    time = time.long()
    t = time - per_sample_min(time)[sample]
    if stream is None:
        c = torch.zeros_like(t)
    else:
        s = stream.long()
        s = s - per_sample_min(s)[sample]
        _, inverse = torch.unique(sample * (int(s.max()) + 1) + s, return_inverse=True)
        c = inverse - per_sample_min(inverse)[sample]
    n_streams, n_times = int(c.max()) + 1, int(t.max()) + 1
    cell = c * n_times + t
    if torch.unique(sample * (n_streams * n_times) + cell).numel() != n:
        raise ValueError("two tokens of one sample share a (stream, time) position")
    return TokenGrid(sample, cell, t, n_samples, n_streams, n_times)


#: Longest window (time steps) for which per-row kernels are applied as a matrix product.
MATRIX_MAX_TIMES = 16


def row_kernel_matrix(kernel: torch.Tensor, n_times: int, offset: int) -> torch.Tensor:
    """Per-row kernels ``(G, T, K, K)`` as matrices ``W`` ``(G, T*T, T*T)``: the zero-padded
    convolution of a flattened ``T x T`` map ``m`` is ``m @ W`` (tap ``(u, v)`` of row ``t``
    reads ``m[t + u - offset, s + v - offset]``)."""
    groups, _, ksize, _ = kernel.shape
    device = kernel.device
    t, s, u, v = torch.meshgrid(*(torch.arange(n, device=device)
                                  for n in (n_times, n_times, ksize, ksize)), indexing="ij")
    ti, si = t + u - offset, s + v - offset
    ok = (ti >= 0) & (ti < n_times) & (si >= 0) & (si < n_times)
    src, dst = (ti * n_times + si)[ok], (t * n_times + s)[ok]
    values = kernel[:, t[ok], u[ok], v[ok]]  # (G, taps that land inside the map)
    w = kernel.new_zeros(groups, n_times * n_times, n_times * n_times)
    index = (torch.arange(groups, device=device)[:, None], src[None], dst[None])
    return w.index_put(index, values, accumulate=True)


def conv_score_maps(maps: torch.Tensor, kernel: torch.Tensor, causal: bool) -> torch.Tensor:
    """Convolve score maps with one kernel per group, zero padded, output the same size.

    Parameters
    ----------
    maps : tensor (N, G, T, T)
        ``N`` maps per group (query time x key time), ``G`` groups (samples x heads).
    kernel : tensor (G, K, K) or (G, T, K, K)
        One kernel per group, or one per group and query row (row ``t`` of the output uses
        ``kernel[:, t]``). Tap ``(u, v)`` reads ``maps[..., t + u - o, s + v - o]`` with
        ``o = K // 2`` (centred) or ``o = K - 1`` (causal: only rows ``<= t`` and columns
        ``<= s``).
    """
    ksize = kernel.shape[-1]
    o = ksize - 1 if causal else ksize // 2
    if kernel.dim() == 3:
        padded = F.pad(maps, (o, ksize - 1 - o, o, ksize - 1 - o))
        return F.conv2d(padded, kernel[:, None].to(maps.dtype), groups=maps.shape[1])
    n_times = maps.shape[-2]
    if n_times <= MATRIX_MAX_TIMES:
        # short windows: the convolution as one batched matmul with a (T^2 x T^2) matrix per
        # group, several times faster on CPU than the tap loop over tiny 2-D maps
        n, groups = maps.shape[:2]
        w = row_kernel_matrix(kernel.to(maps.dtype), n_times, o)
        flat = maps.reshape(n, groups, n_times * n_times)
        return torch.einsum("ngp,gpq->ngq", flat, w).reshape(maps.shape)
    padded = F.pad(maps, (o, ksize - 1 - o, o, ksize - 1 - o))
    out = torch.zeros_like(maps)
    kernel = kernel.to(maps.dtype)
    for u in range(ksize):
        for v in range(ksize):
            out = out + kernel[None, :, :, u, v, None] * padded[..., u:u + n_times,
                                                                  v:v + n_times]
    return out


class ContextAttention(nn.Module):
    """Attention whose scores are convolved with a kernel generated from the window's context.

    Parameters
    ----------
    n_heads, head_dim : int
        Shape of the queries, keys and values.
    kernel_size : int
        Odd kernel size ``K`` (RPNT: 3, 9 in its largest model).
    causal : bool
        Keys later than the query are invisible, and nothing after ``t`` reaches time ``t``
        (see the module docstring).
    d_context : int, optional
        Width of the context features; default ``n_heads * head_dim`` (the values).
    dropout : float
        Dropout on the attention probabilities (training only).

    The generator starts near plain attention: the identity tap (``identity_tap``) gets logit
    ``log(K^2)``, about half the kernel's weight, the other taps share the rest.
    """

    def __init__(self, n_heads: int, head_dim: int, kernel_size: int = 3, causal: bool = False,
                 d_context: int | None = None, dropout: float = 0.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.n_heads, self.head_dim, self.kernel_size = n_heads, head_dim, kernel_size
        self.causal = causal
        self.d_context = d_context or n_heads * head_dim
        self.pool_query = nn.Parameter(torch.zeros(self.d_context))  # 0: mean pooling at init
        self.generator = nn.Linear(self.d_context, n_heads * kernel_size ** 2)
        nn.init.normal_(self.generator.weight, std=0.02)
        with torch.no_grad():
            bias = self.generator.bias.view(n_heads, kernel_size ** 2)
            bias.zero_()
            bias[:, self.identity_tap] = math.log(kernel_size ** 2)
        self.dropout = nn.Dropout(dropout)

    @property
    def identity_tap(self) -> int:
        """Flat index of the tap at offset (0, 0): the centre, or the last tap when causal."""
        k = self.kernel_size
        return k * k - 1 if self.causal else (k // 2) * k + k // 2

    def kernels(self, context: torch.Tensor, present: torch.Tensor, n_times: int
                ) -> torch.Tensor:
        """Kernels from dense context features.

        ``context`` (samples, streams * times, d_context) and ``present`` (samples,
        streams * times) on the dense grid -> ``(samples, heads, 1, K, K)``, or in causal mode
        ``(samples, heads, times, K, K)`` where row ``t`` pools only tokens at times ``<= t``.
        """
        n_samples, n_cells, _ = context.shape
        cell_time = torch.arange(n_cells, device=context.device) % n_times
        logits = (context @ self.pool_query.to(context.dtype)) / math.sqrt(self.d_context)
        allowed = present[:, None, :]
        if self.causal:
            rows = torch.arange(n_times, device=context.device)
            allowed = allowed & (cell_time[None, None, :] <= rows[None, :, None])
        weights = logits[:, None, :].masked_fill(~allowed, float("-inf")).softmax(-1)
        pooled = weights @ context  # (samples, 1 or times, d_context)
        k = self.kernel_size
        taps = self.generator(pooled).view(n_samples, -1, self.n_heads, k * k).softmax(-1)
        return taps.view(n_samples, -1, self.n_heads, k, k).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, time: torch.Tensor,
                cu_seqlens: torch.Tensor | None = None, stream: torch.Tensor | None = None,
                context: torch.Tensor | None = None, return_kernel: bool = False):
        """Attend within each packed sample.

        Parameters
        ----------
        q, k, v : tensor (tokens, heads, head_dim)
            Packed queries, keys and values (rotary embeddings already applied).
        time : int tensor (tokens,)
            Time step (patch, bin) of each token.
        cu_seqlens : int tensor (samples + 1,), optional
            Sample boundaries; default: one sample.
        stream : int tensor (tokens,), optional
            Channel / electrode / site of each token; default: one token per time step.
        context : tensor (tokens, d_context), optional
            Features pooled into the kernel context; default: ``v`` with heads concatenated.
        return_kernel : bool
            Also return the kernels, ``(samples, heads, 1 or times, K, K)``.

        Returns
        -------
        out : tensor (tokens, heads, head_dim)
        """
        n, n_heads, head_dim = q.shape
        grid = token_grid(time, cu_seqlens, stream)
        n_samples, n_times = grid.n_samples, grid.n_times
        n_streams = grid.n_streams
        cells = n_streams * n_times

        def dense(x: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros((n_samples, cells) + tuple(x.shape[1:]))
            out[grid.sample, grid.cell] = x
            return out

        present = dense(torch.ones(n, dtype=torch.bool, device=q.device))
        ctx = v.reshape(n, -1) if context is None else context
        kernel = self.kernels(dense(ctx), present, n_times)

        qd, kd, vd = (dense(t).transpose(1, 2) for t in (q, k, v))  # (samples, heads, cells, d)
        scores = (qd @ kd.transpose(-1, -2)) / math.sqrt(head_dim)
        cell_time = torch.arange(cells, device=q.device) % n_times
        keys_ok = present[:, None, None, :]
        if self.causal:
            keys_ok = keys_ok & (cell_time[None, :] <= cell_time[:, None])  # key time <= query
        # zero what must not be seen before the convolution, so no tap can read it
        scores = scores.masked_fill(~(keys_ok & present[:, None, :, None]), 0.0)

        groups = n_samples * n_heads
        maps = (scores.view(n_samples, n_heads, n_streams, n_times, n_streams, n_times)
                .permute(2, 4, 0, 1, 3, 5).reshape(n_streams ** 2, groups, n_times, n_times))
        ksize = self.kernel_size
        if self.causal:
            maps = conv_score_maps(maps, kernel.reshape(groups, n_times, ksize, ksize), True)
        else:
            maps = conv_score_maps(maps, kernel.reshape(groups, ksize, ksize), False)
        scores = (maps.view(n_streams, n_streams, n_samples, n_heads, n_times, n_times)
                  .permute(2, 3, 0, 4, 1, 5).reshape(n_samples, n_heads, cells, cells))

        scores = scores.masked_fill(~keys_ok, float("-inf"))
        probs = self.dropout(scores.softmax(-1))
        out = (probs @ vd).transpose(1, 2)[grid.sample, grid.cell]
        return (out, kernel) if return_kernel else out
