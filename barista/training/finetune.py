"""Finetuning for decoding: a learned weighting over all of a session's tokens -> 2 classes.

The head is built for the channel count of the session it decodes (a weight per channel and
patch), so nothing ties a model to one montage. Freezing policies: ``paper`` freezes the dilated
CNN; ``release`` also freezes the tokenizer's projection and the spatial embeddings (as the
authors' public code does); ``none`` trains everything. The test AUROC is the one at the epoch
with the best validation AUROC, with early stopping.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from ..data import SegmentDataset, make_loader
from ..errors import DataError
from ..models import BaristaEncoder
from .common import autocast, pick_device, seed_everything, seed_of, to_device, warmup_decay
from .folds import CROSS_VALIDATED, chronological_roles, cross_validation_folds, weighted_mean

log = logging.getLogger(__name__)
FREEZE_POLICIES = ("paper", "release", "none")


@dataclass
class FinetuneConfig:
    """Settings (defaults: the paper's)."""

    epochs: int = 30
    batch_size: int = 128
    lr_pretrained: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 5
    warmup_start: float = 0.2
    decay: float = 0.99
    patience: int = 15
    freeze: str = "paper"
    cv_val_fraction: float = 0.1  # window_split chrono: share of each fold's training windows
    seed: int = 0
    device: str = "auto"


class TokenWeightingHead(nn.Module):
    """Bias-free learned weighting over the (channel, patch) tokens -> d -> logits."""

    def __init__(self, n_channels: int, n_patches: int, d_model: int, n_classes: int = 2):
        super().__init__()
        self.weights = nn.Parameter(torch.full((n_channels, n_patches),
                                               1.0 / (n_channels * n_patches)))
        self.classifier = nn.Linear(d_model, n_classes)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states: (samples, channels, patches, d) -> logits (samples, classes)."""
        pooled = torch.einsum("bcpd,cp->bd", states, self.weights.to(states.dtype))
        return self.classifier(pooled)

    def channel_importance(self) -> np.ndarray:
        """Per-channel weight magnitude (L1 over patches): the interpretability view."""
        return self.weights.detach().abs().sum(dim=1).cpu().numpy()


class PooledHead(nn.Module):
    """Channel-count-free head: the mean state over a sample's channels, a learned weighting
    over patches, a linear classifier. For decoding a subject the head never saw (Neuroprobe's
    cross-subject split), where a weight per channel has nothing to stand for."""

    def __init__(self, n_patches: int, d_model: int, n_classes: int = 2):
        super().__init__()
        self.weights = nn.Parameter(torch.full((n_patches,), 1.0 / n_patches))
        self.classifier = nn.Linear(d_model, n_classes)

    def forward(self, states: torch.Tensor, n_channels: torch.Tensor) -> torch.Tensor:
        """states: (channels of the batch, patches, d) -> logits (samples, classes)."""
        sample = torch.repeat_interleave(torch.arange(len(n_channels), device=states.device),
                                         n_channels.to(states.device))
        sums = torch.zeros((len(n_channels), *states.shape[1:]), dtype=states.dtype,
                           device=states.device).index_add_(0, sample, states)
        means = sums / n_channels.to(states.device, states.dtype)[:, None, None]
        return self.classifier(torch.einsum("bpd,p->bd", means, self.weights.to(states.dtype)))

    def channel_importance(self) -> np.ndarray:
        return np.zeros(0)


class Decoder(nn.Module):
    """Encoder + head. ``n_patches`` is the windows' (the encoder's own by default: a model
    pretrained on 3 s windows of 12 patches decodes 1 s windows as 4, its rotary positions
    0..3 a subset of those it was trained on); ``pooled`` picks :class:`PooledHead`."""

    def __init__(self, encoder: BaristaEncoder, n_channels: int, n_patches: int | None = None,
                 pooled: bool = False):
        super().__init__()
        self.encoder = encoder
        c = encoder.config
        n_patches = n_patches or c.n_patches
        self.pooled = pooled
        self.head = PooledHead(n_patches, c.d_model) if pooled else \
            TokenWeightingHead(n_channels, n_patches, c.d_model)

    def forward(self, batch: dict) -> torch.Tensor:
        states = self.encoder(batch)
        if self.pooled:
            return self.head(states, batch["n_channels"])
        b = len(batch["n_channels"])
        return self.head(states.reshape(b, -1, *states.shape[1:]))


def apply_freeze(encoder: BaristaEncoder, policy: str) -> None:
    if policy not in FREEZE_POLICIES:
        raise ValueError(f"freeze policy {policy!r} is not one of {FREEZE_POLICIES}")
    if hasattr(encoder, "frozen_modules"):  # other model families say what they freeze
        for module in encoder.frozen_modules(policy):
            module.requires_grad_(False)
        return
    if policy in ("paper", "release"):
        encoder.tokenizer.cnn.requires_grad_(False)
    if policy == "release":
        encoder.tokenizer.project.requires_grad_(False)
        encoder.spatial.requires_grad_(False)


@torch.no_grad()
def predict(model: Decoder, loader, device) -> tuple[np.ndarray, np.ndarray, float]:
    """Positive-class probabilities, labels and mean loss over a loader."""
    model.eval()
    probs, labels, losses = [], [], []
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device):
            logits = model(batch).float()
        losses.append(float(F.cross_entropy(logits, batch["label"], reduction="sum")))
        probs.append(logits.softmax(-1)[:, 1].cpu().numpy())
        labels.append(batch["label"].cpu().numpy())
    model.train()
    y = np.concatenate(labels) if labels else np.zeros(0)
    return np.concatenate(probs) if probs else np.zeros(0), y, sum(losses) / max(len(y), 1)


def auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUROC, NaN when a split holds a single class."""
    return float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else float("nan")


def finetune(results: str | Path, encoder: BaristaEncoder, *, recording: str, task: str,
             mask_scale: str | None, window_split: str = "random",
             cfg: FinetuneConfig | None = None,
             spatial_ids: dict[str, np.ndarray] | None = None) -> dict:
    """Finetune ``encoder`` on one recording's task; returns metrics.

    ``window_split`` is ``random`` or ``chronoK`` (one split; ``encoder`` is finetuned in place)
    or ``chrono``: every chronological fold in turn, each from a fresh copy of ``encoder``
    (:mod:`barista.training.folds`), with ``auroc`` the test-size-weighted mean over folds.

    Returns a dict with ``metrics`` (test/val AUROC at the best validation epoch, best epoch),
    ``curve`` (one row per epoch, and per fold) and ``importance`` (per-channel head weight
    magnitude, averaged over folds). ``spatial_ids`` replaces the encode scale's token ids
    (an encoder with a vocabulary of its own, such as a released one; see
    :class:`~barista.data.SegmentDataset`).
    """
    cfg = cfg or FinetuneConfig()
    device = pick_device(cfg.device)
    seed_everything(seed_of(cfg.seed, recording, task))
    scale = encoder.config.encode_scale
    if window_split == CROSS_VALIDATED:
        return _cross_validated(results, encoder, recording, task, mask_scale, cfg, device,
                                spatial_ids)
    sets = {role: SegmentDataset(results, task, encode_scale=scale, mask_scale=mask_scale,
                                 split=window_split, roles=(role,), recordings=[recording],
                                 spatial_ids=spatial_ids)
            for role in ("train", "val", "test")}
    for role, ds in sets.items():
        if len(ds) == 0:
            raise DataError(f"{recording}: no '{task}' windows in the {window_split} {role} split")
    apply_freeze(encoder, cfg.freeze)
    for ds in sets.values():
        _load_windows(ds, encoder, device)
    return _fit(encoder, sets, recording, cfg, device)


def _cross_validated(results, encoder, recording, task, mask_scale, cfg, device,
                     spatial_ids=None) -> dict:
    """Every chronological fold from the same starting weights; the windows are read (and
    their frozen CNN features computed) once for all folds."""
    windows = SegmentDataset(results, task, encode_scale=encoder.config.encode_scale,
                             mask_scale=mask_scale, split=None, recordings=[recording],
                             spatial_ids=spatial_ids)
    if len(windows) == 0:
        raise DataError(f"{recording}: no '{task}' windows to finetune on")
    roles = chronological_roles(results, recording, task).reindex(windows.index["segment"])
    folds = cross_validation_folds(roles, windows.index["label"].to_numpy(),
                                   val_fraction=cfg.cv_val_fraction, seed=cfg.seed,
                                   recording=recording, task=task)
    start = copy.deepcopy(encoder.state_dict())
    apply_freeze(encoder, cfg.freeze)
    _load_windows(windows, encoder, device)
    outs = []
    for k, (fold, positions) in enumerate(folds.items()):
        encoder.load_state_dict(start)
        seed_everything(seed_of(cfg.seed, recording, task, fold))
        sets = {role: windows.subset(pos) for role, pos in positions.items()}
        out = _fit(encoder, sets, recording, cfg, device, seed=seed_of(cfg.seed, fold))
        out["curve"].insert(0, "fold", k)
        outs.append(out)
    sizes = [o["metrics"]["n_test"] for o in outs]
    metrics = {
        "auroc": weighted_mean([o["metrics"]["auroc"] for o in outs], sizes),
        "val_auroc": float(np.nanmean([o["metrics"]["val_auroc"] for o in outs])),
        "best_epoch": float(np.mean([o["metrics"]["best_epoch"] for o in outs])),
        "epochs_run": float(np.mean([o["metrics"]["epochs_run"] for o in outs])),
        "n_train": float(np.mean([o["metrics"]["n_train"] for o in outs])),
        "n_test": int(sum(sizes)), "n_folds": len(outs)}
    importance = pd.concat([o["importance"] for o in outs])
    importance = importance.groupby("channel", sort=False, as_index=False)["weight"].mean()
    return {"metrics": metrics, "curve": pd.concat([o["curve"] for o in outs],
                                                   ignore_index=True),
            "importance": importance}


def _load_windows(ds: SegmentDataset, encoder: BaristaEncoder, device) -> None:
    """Keep a session's windows in memory (few, read every epoch), with the frozen CNN's output
    computed once instead of every epoch."""
    cnn = getattr(encoder, "tokenizer", None)  # RPNT embeds patches linearly: nothing to cache
    frozen_cnn = cnn is not None and not any(p.requires_grad for p in cnn.cnn.parameters())
    if not frozen_cnn:
        ds.load_into_memory()
        return
    cnn.to(device).eval()

    @torch.no_grad()
    def with_features(sample):
        return {**sample, "features": cnn.features(sample["x"].to(device)).cpu()}

    ds.load_into_memory(with_features)


def _fit(encoder: BaristaEncoder, sets: dict, recording: str, cfg: FinetuneConfig, device,
         seed: int | None = None, pooled: bool = False) -> dict:
    """Train a new head (and the unfrozen encoder) on ``sets['train']``; early stopping on
    ``val``; the test AUROC (and accuracy) of the best validation epoch. The head is sized by
    the training windows (channels, patches); ``pooled`` uses :class:`PooledHead`."""
    seed = cfg.seed if seed is None else seed
    n_channels, n_patches = sets["train"][0]["x"].shape[:2]
    model = Decoder(encoder, n_channels, n_patches, pooled=pooled).to(device)
    groups = [
        {"params": [p for p in model.encoder.parameters() if p.requires_grad],
         "lr": cfg.lr_pretrained},
        {"params": list(model.head.parameters()), "lr": cfg.lr_head},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    train_loader = make_loader(sets["train"], cfg.batch_size, seed=seed_of(seed, "ft"))
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_decay(
        s, steps_per_epoch, cfg.warmup_epochs, cfg.decay, start_factor=cfg.warmup_start))
    eval_loaders = {r: make_loader(sets[r], cfg.batch_size, shuffle=False)
                    for r in ("val", "test")}

    curve, best, best_state, since_best, step = [], None, None, 0, 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        train_loader.sampler.set_epoch(epoch)
        total = 0.0
        for batch in train_loader:
            batch = to_device(batch, device)
            torch.manual_seed(seed_of(seed, "dropout", step))
            with autocast(device):
                loss = F.cross_entropy(model(batch).float(), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch["label"])
            step += 1
        val_p, val_y, val_loss = predict(model, eval_loaders["val"], device)
        test_p, test_y, _ = predict(model, eval_loaders["test"], device)
        row = {"epoch": epoch, "train_loss": total / len(sets["train"]), "val_loss": val_loss,
               "val_auroc": auroc(val_y, val_p), "test_auroc": auroc(test_y, test_p),
               "seconds": time.perf_counter() - t0}
        curve.append(row)
        score = (np.nan_to_num(row["val_auroc"], nan=-1.0), -val_loss)
        if best is None or score > best[0]:
            best, since_best = (score, row), 0
            best_state = copy.deepcopy(model.head.state_dict())
            best_accuracy = float(np.mean((test_p > 0.5) == test_y)) if len(test_y) else np.nan
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    model.head.load_state_dict(best_state)
    chosen = best[1]
    metrics = {"auroc": chosen["test_auroc"], "val_auroc": chosen["val_auroc"],
               "test_accuracy": best_accuracy,
               "best_epoch": chosen["epoch"], "epochs_run": len(curve),
               "n_train": len(sets["train"]), "n_test": len(sets["test"])}
    weights = model.head.channel_importance()
    names = sets["train"].channel_names(sets["train"].index["recording"].iloc[0]) \
        if len(weights) else []
    importance = pd.DataFrame({"channel": names, "weight": weights})
    return {"metrics": metrics, "curve": pd.DataFrame(curve), "importance": importance}
