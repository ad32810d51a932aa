"""Spatially masked latent reconstruction: BaRISTA's self-supervised pretraining.

For each sample, random groups at the masking scale are masked until 30% of the tokens are; the
encoder sees the mask token (plus the channel's spatial embedding) in their place; a predictor MLP
maps the encoder's states at masked positions to the tokens that an EMA copy of the tokenizer
gives for the real signal (stop-gradient); the loss is their mean squared error.

Training is a pure function of the config and the step: every step seeds its own masks and
dropout from ``(seed, step)``, the data order is a function of ``(seed, epoch)`` and the learning
rate of the step. A checkpoint (model, EMA, predictor, optimizer, scheduler, RNG, step) is written
atomically every ``checkpoint_every`` steps; a killed run started again resumes from it and ends
with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import SegmentDataset, make_loader
from ..errors import DataError
from ..models import BaristaConfig, BaristaEncoder, preset
from .common import (
    atomic_save,
    autocast,
    pick_device,
    rng_state,
    seed_everything,
    seed_of,
    set_rng_state,
    to_device,
    warmup_decay,
)
from .ema import EMA
from .masking import group_mask

log = logging.getLogger(__name__)
HISTORY_FIELDS = ["step", "epoch", "split", "loss", "lr", "ema_momentum", "masked_fraction",
                  "seconds"]


@dataclass
class PretrainConfig:
    """Optimisation settings (defaults: the paper's)."""

    epochs: int = 70
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 5
    decay: float = 0.99
    mask_ratio: float = 0.3
    ema_end: float = 0.996
    ema_ramp_epochs: float = 10
    seed: int = 0
    checkpoint_every: int = 200
    max_steps: int | None = None
    num_workers: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)


class Predictor(nn.Module):
    """MLP with ``n_hidden`` hidden layers (GELU, dropout) from states to target tokens."""

    def __init__(self, d_model: int, n_hidden: int = 3, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_hidden):
            layers += [nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(d_model, d_model))

    def forward(self, x):
        return self.net(x)


class MaskedLatentModel(nn.Module):
    """Encoder + predictor + EMA tokenizer, with the pretraining loss."""

    def __init__(self, config: BaristaConfig, ema_ramp_steps: int = 1, ema_end: float = 0.996):
        super().__init__()
        self.encoder = BaristaEncoder(config)
        self.predictor = Predictor(config.d_model, config.predictor_layers, config.dropout)
        self.target = EMA(self.encoder.tokenizer, end=ema_end, ramp_steps=ema_ramp_steps)

    def forward(self, batch: dict, channel_mask: torch.Tensor) -> dict:
        states = self.encoder(batch, channel_mask=channel_mask)
        pred = self.predictor(states[channel_mask])
        target = self.target(batch["x"][channel_mask])  # stop-gradient by construction
        loss = F.mse_loss(pred.float(), target.float())
        return {"loss": loss, "pred": pred, "target": target, "states": states}


def model_config(results: Path, encode_scale: str, size: str, overrides: dict) -> BaristaConfig:
    """Architecture for a dataset: patch geometry and vocabulary read from its files."""
    vocab = results / "tokens" / encode_scale / "vocab.parquet"
    if not vocab.exists():
        raise DataError(f"{vocab} missing: build the '{encode_scale}' tokens first")
    signal = next((results / "segments").glob("*/signal.parquet"), None)
    if signal is None:
        raise DataError(f"no segments under {results / 'segments'}")
    from ..data import SignalFile

    meta = SignalFile(signal).meta
    return preset(size, patch_samples=meta["patch_samples"], n_patches=meta["n_patches"],
                  encode_scale=encode_scale,
                  vocab_size=int(pd.read_parquet(vocab)["token_id"].max()) + 1, **overrides)


def _masks(batch, ratio, seed, step):
    gen = torch.Generator().manual_seed(seed_of(seed, "mask", step))
    return group_mask(batch["group_id"], batch["cu_channels"], ratio, gen)


@torch.no_grad()
def evaluate(model: MaskedLatentModel, loader, cfg: PretrainConfig, device) -> float:
    """Mean masked-reconstruction loss with masks fixed by (seed, batch index)."""
    model.eval()
    total, n = 0.0, 0
    for i, batch in enumerate(loader):
        batch = to_device(batch, device)
        mask = _masks(batch, cfg.mask_ratio, cfg.seed, f"val{i}")
        with autocast(device):
            out = model(batch, mask)
        total += float(out["loss"]) * int(mask.sum())
        n += int(mask.sum())
    model.train()
    return total / max(n, 1)


def pretrain(results: str | Path, out_dir: str | Path, *, encode_scale: str, mask_scale: str,
             recordings: list[str] | None, size: str = "paper", model_overrides: dict | None = None,
             cfg: PretrainConfig | None = None, progress: bool = True,
             stop_after: int | None = None) -> dict:
    """Pretrain one (encode scale, mask scale) pair; write ``model.pt`` and ``history``.

    ``stop_after`` ends the run after that many steps without finishing it (for tests of
    resumption, as if the process had been killed).
    """
    results, out_dir = Path(results), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg or PretrainConfig()
    device = pick_device(cfg.device)
    config = model_config(results, encode_scale, size, model_overrides or {})
    train = SegmentDataset(results, "pretrain", encode_scale=encode_scale,
                           mask_scale=mask_scale, roles=("train",), recordings=recordings)
    val = SegmentDataset(results, "pretrain", encode_scale=encode_scale, mask_scale=mask_scale,
                         roles=("val",), recordings=recordings)
    if len(train) == 0:
        raise DataError(f"no pretraining windows in {results} for recordings {recordings}")
    loader = make_loader(train, cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
                         drop_last=len(train) > cfg.batch_size)
    val_loader = make_loader(val, cfg.batch_size, shuffle=False)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    seed_everything(cfg.seed)
    model = MaskedLatentModel(config, ema_ramp_steps=int(cfg.ema_ramp_epochs * steps_per_epoch),
                              ema_end=cfg.ema_end).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_decay(s, steps_per_epoch, cfg.warmup_epochs, cfg.decay))

    ckpt_path, history_path = out_dir / "checkpoint.pt", out_dir / "history.csv"
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["config"] != config.to_dict():
            raise DataError(f"{ckpt_path} was written for another model config; delete it to "
                            "start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = state["step"]
        log.info("resuming %s from step %d", out_dir, step)
    _truncate_history(history_path, step)

    def save_checkpoint():
        atomic_save({"config": config.to_dict(), "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": rng_state(), "step": step}, ckpt_path)

    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc=f"pretrain "
               f"{encode_scale}/{mask_scale}", unit="step")
    model.train()
    with open(history_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, HISTORY_FIELDS)
        if fh.tell() == 0:
            writer.writeheader()
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            loader.sampler.set_epoch(epoch, start=start * cfg.batch_size)
            for batch in loader:
                t0 = time.perf_counter()
                batch = to_device(batch, device)
                mask = _masks(batch, cfg.mask_ratio, cfg.seed, step)
                torch.manual_seed(seed_of(cfg.seed, "dropout", step))
                with autocast(device):
                    out = model(batch, mask)
                lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                scheduler.step()
                momentum = model.target.update(model.encoder.tokenizer, step + 1)
                step += 1
                writer.writerow({"step": step, "epoch": epoch, "split": "train",
                                 "loss": out["loss"].item(), "lr": lr,
                                 "ema_momentum": momentum,
                                 "masked_fraction": float(mask.float().mean()),
                                 "seconds": time.perf_counter() - t0})
                bar.update()
                bar.set_postfix(loss=f"{out['loss'].item():.4f}")
                end_of_epoch = step % steps_per_epoch == 0
                if end_of_epoch and len(val):
                    writer.writerow({"step": step, "epoch": epoch, "split": "val",
                                     "loss": evaluate(model, val_loader, cfg, device)})
                if step % cfg.checkpoint_every == 0 or end_of_epoch or step == total_steps:
                    fh.flush()
                    save_checkpoint()
                if stop_after is not None and step >= stop_after:
                    fh.flush()
                    save_checkpoint()
                    bar.close()
                    return {"stopped_at": step}
                if step >= total_steps:
                    break
    bar.close()
    history = pd.read_csv(history_path)
    history.to_parquet(out_dir / "history.parquet", index=False)
    final = {"config": config.to_dict(), "encoder": model.encoder.state_dict(),
             "ema_tokenizer": model.target.shadow.state_dict(),
             "predictor": model.predictor.state_dict(), "encode_scale": encode_scale,
             "mask_scale": mask_scale, "recordings": recordings, "steps": step}
    atomic_save(final, out_dir / "model.pt")
    train_loss = history[history["split"] == "train"]["loss"]
    summary = {"encode_scale": encode_scale, "mask_scale": mask_scale, "steps": step,
               "epochs": cfg.epochs, "first_loss": float(train_loss.iloc[0]),
               "final_loss": float(train_loss.tail(max(steps_per_epoch, 1)).mean()),
               "n_parameters": sum(p.numel() for p in model.encoder.parameters()),
               "device": str(device), "n_train_windows": len(train)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _truncate_history(path: Path, step: int) -> None:
    """Drop history rows past the checkpoint, so a resumed run logs each step once."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    rows = pd.read_csv(path)
    rows[rows["step"] <= step].to_csv(path, index=False)


def load_pretrained(path: str | Path, device="cpu",
                    tokenizer: str = "ema") -> tuple[BaristaEncoder, dict]:
    """Encoder of a ``model.pt``: by default the EMA tokenizer plus the pretrained backbone,
    as downstream models start (``tokenizer="online"`` keeps the online tokenizer)."""
    state = torch.load(path, map_location=device, weights_only=False)
    encoder = BaristaEncoder(BaristaConfig(**state["config"]))
    encoder.load_state_dict(state["encoder"])
    if tokenizer == "ema":
        encoder.tokenizer.load_state_dict(state["ema_tokenizer"])
    return encoder, state
