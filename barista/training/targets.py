"""What the predictor of masked pretraining is scored against, for each masked patch.

``latent`` is the paper's: the token an EMA copy of the tokenizer gives the real patch
(:class:`barista.training.ema.EMA`, handled by the pretraining model). The others are computed
from the signal itself and need no EMA copy (one is still kept, so downstream models start
from the same kind of tokenizer in every variant):

- ``raw``: the patch's samples (masked-autoencoder style). The windows are z-scored per
  channel, so every sample has unit variance on average and needs no scaling.
- ``logspec``: the patch's log power spectrum, ``log(|rfft|^2 / P + 1e-3)`` over its
  ``P // 2 + 1`` frequency bins, standardised per bin by the mean and spread over a fixed set
  of training windows (:meth:`SignalTarget.fit`). Unstandardised, bins differ in mean by up to
  8 (1/f power) and the MSE would be spent on learning those offsets: Adam moves an output bias
  by about one learning rate per step, 1e-3, so a demo run never would. The floor 1e-3 is a
  thousandth of a z-scored patch's average power per bin; it keeps the log of an empty bin
  (a patch mean near 0 in the first bin) from running to -inf.
- ``raw+logspec``: both, concatenated (MSE over all of them).

Why these: the paper's latent target, a random-start CNN's token of the masked patch, is what
the neighbours predict worst (docs/model.md, "Pretraining variants"); the raw patch is well
predicted by its neighbours on the demo data, and the log spectrum carries band power, which
the simulated speech response lives in.
"""

from __future__ import annotations

import torch
from torch import nn

TARGETS = ("latent", "raw", "logspec", "raw+logspec")
SPECTRUM_FLOOR = 1e-3


def log_power(patches: torch.Tensor) -> torch.Tensor:
    """``(..., P)`` patches -> ``(..., P // 2 + 1)`` log power per frequency bin."""
    spectrum = torch.fft.rfft(patches.float(), dim=-1)
    return torch.log(spectrum.abs().pow(2) / patches.shape[-1] + SPECTRUM_FLOOR)


def target_size(kind: str, d_model: int, patch_samples: int) -> int:
    """Width of the predictor's output for a target kind."""
    sizes = {"latent": d_model, "raw": patch_samples, "logspec": patch_samples // 2 + 1}
    sizes["raw+logspec"] = sizes["raw"] + sizes["logspec"]
    if kind not in sizes:
        raise ValueError(f"pretraining target {kind!r} is not one of {TARGETS}")
    return sizes[kind]


class SignalTarget(nn.Module):
    """Targets computed from the masked patches themselves (``raw``, ``logspec`` or both).

    The per-bin mean and spread of the log spectrum are buffers: saved with the model, so a
    resumed run or a reloaded model scores against exactly the same targets.
    """

    def __init__(self, kind: str, patch_samples: int):
        super().__init__()
        if kind not in TARGETS or kind == "latent":
            raise ValueError(f"signal target {kind!r} is not one of {TARGETS[1:]}")
        self.kind = kind
        n_bins = patch_samples // 2 + 1
        self.register_buffer("spec_mean", torch.zeros(n_bins))
        self.register_buffer("spec_std", torch.ones(n_bins))

    @property
    def spectral(self) -> bool:
        return "logspec" in self.kind

    @torch.no_grad()
    def fit(self, patches: torch.Tensor) -> None:
        """Per-bin mean and standard deviation of the log spectrum of ``patches`` (..., P)."""
        if not self.spectral:
            return
        lp = log_power(patches).reshape(-1, self.spec_mean.shape[0]).double()
        if len(lp) < 2:
            raise ValueError("SignalTarget.fit needs at least two patches")
        self.spec_mean.copy_(lp.mean(0).float())
        self.spec_std.copy_(lp.std(0).clamp(min=1e-3).float())

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(..., P)`` masked patches -> ``(..., size)`` targets (no gradient needed)."""
        parts = []
        if "raw" in self.kind:
            parts.append(patches.float())
        if self.spectral:
            parts.append((log_power(patches) - self.spec_mean) / self.spec_std)
        return torch.cat(parts, dim=-1)
