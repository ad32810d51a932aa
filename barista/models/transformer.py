"""Pre-norm transformer over packed token sequences (RMSNorm, rotary attention, GeGLU).

The defaults are the BaRISTA release's backbone: ``qkv`` with a bias (the trained key bias is
large and, once rotated, not softmax-invariant), half-split rotary pairing
(:func:`~barista.models.rotary.rotate_half`), RMSNorm eps 1e-8, GeGLU with biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import packed_attention
from .context_attention import ContextAttention
from .rotary import PAIRINGS

#: RMSNorm eps of the BaRISTA release (torch's default is the dtype's machine epsilon).
NORM_EPS = 1e-8


class GeGLU(nn.Module):
    """``W2 dropout(GELU(x W) * x V)``: the gated feed-forward of BaRISTA's backbone.

    ``gate_value`` holds ``W`` (rows ``:hidden``) and ``V`` (rows ``hidden:``) in one layer: the
    release's ``gate_proj`` and ``up_proj`` stacked.
    """

    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.gate_value = nn.Linear(d_model, 2 * hidden)
        self.out = nn.Linear(hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.gate_value(x).chunk(2, dim=-1)
        return self.out(self.dropout(F.gelu(gate) * value))


class Attention(nn.Module):
    """Multi-head self-attention with rotary angles supplied per token.

    ``context_kernel`` > 0 swaps the fused attention for RPNT's bidirectional context-based
    attention (a K x K kernel per sample and head over the score map; an ablation switch), which
    needs each token's patch and channel (``grid``). ``qkv`` rows are ``[q; k; v]``, each
    ``(head, head_dim)``; ``pairing`` names the rotary pairing (:data:`PAIRINGS`).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, context_kernel: int = 0,
                 *, qkv_bias: bool = True, pairing: str = "half"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if pairing not in PAIRINGS:
            raise ValueError(f"rotary pairing {pairing!r} is not one of {sorted(PAIRINGS)}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.rotate = PAIRINGS[pairing]
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=qkv_bias)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.context = (ContextAttention(n_heads, self.head_dim, context_kernel, causal=False)
                        if context_kernel else None)

    def forward(self, x, angles, cu_seqlens, max_len=None, impl="auto", grid=None, bias=None):
        q, k, v = self.qkv(x).view(x.shape[0], 3, self.n_heads, self.head_dim).unbind(1)
        if angles is not None:  # (tokens, head_dim/2) or (tokens, heads, head_dim/2)
            a = angles if angles.dim() == 3 else angles[:, None, :]
            q, k = self.rotate(q, a), self.rotate(k, a)
        if self.context is not None:
            o = self.context(q, k, v, grid["time"], cu_seqlens, stream=grid["stream"])
        else:
            o = packed_attention(q, k, v, cu_seqlens, max_len, impl=impl, bias=bias)
        return self.dropout(self.out(o.reshape(x.shape[0], -1)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn_hidden: int, dropout: float,
                 context_kernel: int = 0, *, norm_eps: float = NORM_EPS, **attention):
        super().__init__()
        self.norm1 = nn.RMSNorm(d_model, eps=norm_eps)
        self.attn = Attention(d_model, n_heads, dropout, context_kernel, **attention)
        self.norm2 = nn.RMSNorm(d_model, eps=norm_eps)
        self.ffn = GeGLU(d_model, ffn_hidden, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, angles, cu_seqlens, max_len=None, impl="auto", grid=None, bias=None):
        x = x + self.attn(self.norm1(x), angles, cu_seqlens, max_len, impl, grid, bias)
        return x + self.dropout(self.ffn(self.norm2(x)))


class Transformer(nn.Module):
    """Stack of pre-norm blocks with a final RMSNorm; tokens are ``(total_tokens, d_model)``.

    ``norm_eps``, ``qkv_bias`` and ``pairing`` default to the release's choices."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, ffn_hidden: int,
                 dropout: float, context_kernel: int = 0, *, norm_eps: float = NORM_EPS,
                 qkv_bias: bool = True, pairing: str = "half"):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, ffn_hidden, dropout, context_kernel, norm_eps=norm_eps,
                  qkv_bias=qkv_bias, pairing=pairing)
            for _ in range(n_layers))
        self.norm = nn.RMSNorm(d_model, eps=norm_eps)

    def forward(self, x, angles, cu_seqlens, max_len=None, impl="auto", grid=None, bias=None):
        """``bias``: an additive attention bias shared by every layer (the attention prior,
        :class:`barista.models.prior.TokenBias`), or None."""
        for block in self.blocks:
            x = block(x, angles, cu_seqlens, max_len, impl, grid, bias)
        return self.norm(x)


@dataclass
class Layout:
    """Where each token of a packed batch comes from.

    ``dest[row]`` is the token position of channel-major row ``row = channel * P + patch``.
    """

    dest: torch.Tensor
    channel: torch.Tensor  # global channel index of each token (time-major order)
    patch: torch.Tensor  # patch index of each token
    cu_tokens: torch.Tensor  # int32, sample boundaries on the token axis
    max_tokens: int


def packed_layout(n_channels: torch.Tensor, n_patches: int) -> Layout:
    """Token layout of a batch whose samples have ``n_channels[b]`` channels."""
    device = n_channels.device
    n_channels = n_channels.long()
    offsets = torch.cumsum(n_channels, 0) - n_channels
    total = int(n_channels.sum())
    sample = torch.repeat_interleave(torch.arange(len(n_channels), device=device), n_channels)
    local = torch.arange(total, device=device) - offsets[sample]  # channel within its sample
    p = torch.arange(n_patches, device=device)
    # row (g, p) -> token P*offset + p*C + c
    dest = (n_patches * offsets[sample][:, None] + p[None, :] * n_channels[sample][:, None]
            + local[:, None]).reshape(-1)
    channel = torch.empty_like(dest)
    channel[dest] = torch.arange(total, device=device).repeat_interleave(n_patches)
    patch = torch.empty_like(dest)
    patch[dest] = p.repeat(total)
    cu = torch.zeros(len(n_channels) + 1, dtype=torch.int32, device=device)
    cu[1:] = torch.cumsum(n_channels * n_patches, 0)
    return Layout(dest, channel, patch, cu, int(n_channels.max()) * n_patches)
