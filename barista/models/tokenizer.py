"""Temporal tokenizer: one patch of one channel -> one d-dimensional token.

A dilated 1-D CNN (BaRISTA: 5 residual blocks of 5 channels, kernel 3, dilations 1..16) keeps the
patch length, then a bias-free linear layer projects the patch to the model width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedBlock(nn.Module):
    """Conv -> parameter-free layer norm over time -> GELU, with a residual connection."""

    def __init__(self, width: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = F.layer_norm(y, y.shape[-1:])  # over time, no affine parameters
        return x + F.gelu(y)


class TemporalTokenizer(nn.Module):
    """Patches ``(..., patch_samples)`` -> tokens ``(..., d_model)``.

    Parameters
    ----------
    patch_samples : int
        Samples per patch (the paper: 512 = 250 ms at 2048 Hz).
    d_model : int
        Token width.
    width, n_blocks, kernel_size : int
        CNN channels, residual blocks (dilations 1, 2, 4, ...) and kernel size.
    """

    def __init__(self, patch_samples: int, d_model: int, *, width: int = 5, n_blocks: int = 5,
                 kernel_size: int = 3):
        super().__init__()
        self.patch_samples = patch_samples
        self.cnn = nn.Sequential(
            nn.Conv1d(1, width, 1),
            *[DilatedBlock(width, kernel_size, 2 ** i) for i in range(n_blocks)],
            nn.Conv1d(width, 1, 1),
        )
        self.project = nn.Linear(patch_samples, d_model, bias=False)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """The CNN's output, same shape as ``patches`` (cacheable when the CNN is frozen)."""
        lead = patches.shape[:-1]
        x = patches.reshape(-1, 1, self.patch_samples)
        return self.cnn(x).reshape(*lead, self.patch_samples)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(patches))
