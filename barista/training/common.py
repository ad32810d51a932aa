"""Shared training utilities: devices, seeding, schedules, atomic checkpoints, batch transfer."""

from __future__ import annotations

import contextlib
import os
import random
import zlib
from pathlib import Path

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slower and less precise)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_of(*keys: object) -> int:
    """A 63-bit seed from ints and strings, stable across processes."""
    h = 0
    for k in keys:
        h = zlib.crc32(str(k).encode(), h)
    return h


def seed_everything(seed: int) -> None:
    """Python and torch global RNGs (numpy randomness in barista uses explicit Generators)."""
    random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def warmup_decay(step: int, steps_per_epoch: int, warmup_epochs: float, decay: float,
                 start_factor: float = 0.0) -> float:
    """LR factor: linear warm-up from ``start_factor`` over ``warmup_epochs``, then ``decay`` per
    epoch (BaRISTA: 5 warm-up epochs then x0.99 per epoch)."""
    warm = warmup_epochs * steps_per_epoch
    if step < warm:
        return start_factor + (1.0 - start_factor) * (step + 1) / warm
    epochs_after = (step - warm) // max(steps_per_epoch, 1)
    return decay ** epochs_after


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` through a temporary file, so a kill never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
