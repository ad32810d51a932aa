"""Temporal tokenizer: one patch of one channel -> one d-dimensional token.

The BaRISTA release's CNN: ``n_blocks`` residual blocks (dilation ``2**i`` in block ``i``,
kernel 3, length-preserving padding) with widths ``1 -> w -> ... -> w -> 1`` (the release:
``1 -> 5 -> 5 -> 5 -> 5 -> 1``). Each block applies twice ``conv -> layer norm over time ->
GELU`` and adds its input, through a 1x1 projector where the width changes and on the last
block. The patch keeps its length; a bias-free linear layer then projects it to the model
width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedBlock(nn.Module):
    """``x -> r + f(f(x))`` with ``f = GELU(layer_norm_time(conv(.)))`` and ``r`` the input
    (through a 1x1 ``projector`` when there is one).

    The layer norm is parameter-free, over the samples of the patch (eps 1e-5), for each
    channel of each patch separately.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 project: bool):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                               padding=padding)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation,
                               padding=padding)
        self.projector = (nn.Conv1d(in_channels, out_channels, 1)
                          if project or in_channels != out_channels else None)

    @staticmethod
    def _step(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        y = conv(x)
        return F.gelu(F.layer_norm(y, y.shape[-1:], eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        return self._step(self.conv2, self._step(self.conv1, x)) + residual


class TemporalTokenizer(nn.Module):
    """Patches ``(..., patch_samples)`` -> tokens ``(..., d_model)``.

    Parameters
    ----------
    patch_samples : int
        Samples per patch (the paper: 512 = 250 ms at 2048 Hz).
    d_model : int
        Token width.
    width, n_blocks, kernel_size : int
        Hidden CNN channels, residual blocks (dilations 1, 2, 4, ...) and kernel size.
    """

    def __init__(self, patch_samples: int, d_model: int, *, width: int = 5, n_blocks: int = 5,
                 kernel_size: int = 3):
        super().__init__()
        if n_blocks < 1 or kernel_size % 2 == 0:
            raise ValueError(f"the tokenizer needs n_blocks >= 1 and an odd kernel_size, got "
                             f"{n_blocks} and {kernel_size}")
        self.patch_samples = patch_samples
        widths = [1] + [width] * (n_blocks - 1) + [1]
        self.cnn = nn.Sequential(*[
            DilatedBlock(widths[i], widths[i + 1], kernel_size, 2 ** i, project=i == n_blocks - 1)
            for i in range(n_blocks)])
        self.project = nn.Linear(patch_samples, d_model, bias=False)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """The CNN's output, same shape as ``patches`` (cacheable when the CNN is frozen)."""
        lead = patches.shape[:-1]
        x = patches.reshape(-1, 1, self.patch_samples)
        return self.cnn(x).reshape(*lead, self.patch_samples)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(patches))
