"""Exponential moving average of a module, the stop-gradient target of pretraining."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``module`` that trails it: ``p_ema <- m p_ema + (1 - m) p``.

    The momentum ramps linearly from ``start`` to ``end`` over ``ramp_steps`` steps (BaRISTA:
    0 -> 0.996 over the first 10 epochs), then stays at ``end``.
    """

    def __init__(self, module: nn.Module, end: float = 0.996, ramp_steps: int = 1,
                 start: float = 0.0):
        super().__init__()
        self.shadow = copy.deepcopy(module)
        self.shadow.requires_grad_(False)
        self.start, self.end, self.ramp_steps = start, end, max(int(ramp_steps), 1)

    def momentum(self, step: int) -> float:
        t = min(step / self.ramp_steps, 1.0)
        return self.start + t * (self.end - self.start)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> float:
        m = self.momentum(step)
        for ema_p, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - m)
        for ema_b, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            ema_b.copy_(b)
        return m

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.shadow(*args, **kwargs)
