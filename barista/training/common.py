"""Shared training utilities: devices, seeding, schedules, atomic checkpoints, batch transfer,
and the process group of multi-process (``torchrun``) training."""

from __future__ import annotations

import contextlib
import os
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


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
    """Python, torch CPU and (when CUDA is in use) the current CUDA device's RNG states; only
    the current device's, so a checkpoint resumes on a machine with another GPU count."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list | tuple):  # older checkpoints: every visible device's state
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)]
        torch.cuda.set_rng_state(cuda)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torch.distributed`` process group (world size 1: alone).

    ``rank`` 0 is the main process, which alone writes files; collectives are no-ops alone.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if not self.enabled:
            return
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def sum(self, values) -> torch.Tensor:
        """Element-wise sum over ranks of a list of numbers or tensor (float64, on this rank's
        device, as NCCL needs)."""
        if torch.is_tensor(values):
            out = values.detach().to(self.device, torch.float64)
        else:
            out = torch.stack([torch.as_tensor(v).detach().to(self.device, torch.float64)
                               for v in values])
        if self.enabled:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def close(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment.

    With ``WORLD_SIZE`` > 1 (or a group already initialised by the caller), every rank uses
    ``cuda:LOCAL_RANK`` when ``device`` resolves to CUDA (backend NCCL), else the CPU (gloo);
    rendezvous is ``env://`` (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, all
    set by ``torchrun``). Otherwise this process is alone on ``pick_device(device)``.
    """
    dev = pick_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return Distributed(device=dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        if dev.type == "cuda":
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                       device=dev, owns_group=owns)
