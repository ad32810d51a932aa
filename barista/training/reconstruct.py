"""Channel-level reconstruction (BaRISTA section 4.4).

A linear head (d -> patch samples) after the pretrained predictor maps predicted tokens back to
raw patches. It is trained with the pretraining masks on the pretraining windows (encoder and
predictor frozen), then evaluated on held-out recordings by masking one channel at a time: the
model sees every other channel and must reconstruct the masked one's every patch. Windows are
z-scored per channel, so R^2 is close to 1 - MSE; it is computed exactly per channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import SegmentDataset, make_loader
from ..models import BaristaConfig, BaristaEncoder
from .common import pick_device, seed_everything, seed_of, to_device
from .masking import group_mask
from .pretrain import Predictor


def _load(path, device):
    state = torch.load(path, map_location=device, weights_only=False)
    encoder = BaristaEncoder(BaristaConfig(**state["config"]))
    encoder.load_state_dict(state["encoder"])
    predictor = Predictor(encoder.config.d_model, encoder.config.predictor_layers)
    predictor.load_state_dict(state["predictor"])
    return encoder.to(device).eval(), predictor.to(device).eval(), state


def train_head(model_path: str | Path, results: str | Path, *, recordings: list[str] | None,
               epochs: int = 5, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
               mask_ratio: float = 0.3, device: str = "auto") -> tuple[nn.Module, list[float]]:
    """Fit the linear d -> patch head on masked pretraining windows; returns head, losses."""
    dev = pick_device(device)
    encoder, predictor, state = _load(model_path, dev)
    encoder.requires_grad_(False)
    predictor.requires_grad_(False)
    seed_everything(seed)
    head = nn.Linear(encoder.config.d_model, encoder.config.patch_samples).to(dev)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    ds = SegmentDataset(results, "pretrain", encode_scale=state["encode_scale"],
                        mask_scale=state["mask_scale"], roles=("train",), recordings=recordings)
    loader = make_loader(ds, batch_size, seed=seed)
    losses, step = [], 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            batch = to_device(batch, dev)
            gen = torch.Generator().manual_seed(seed_of(seed, "recon", step))
            mask = group_mask(batch["group_id"], batch["cu_channels"], mask_ratio, gen)
            with torch.no_grad():
                pred = predictor(encoder(batch, channel_mask=mask)[mask])
            loss = F.mse_loss(head(pred), batch["x"][mask])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            step += 1
    return head.eval(), losses


@torch.no_grad()
def evaluate_channels(model_path: str | Path, head: nn.Module, results: str | Path, *,
                      recording: str, max_windows: int = 64, batch_size: int = 32,
                      device: str = "auto") -> pd.DataFrame:
    """MSE and R^2 per channel of one recording, masking one channel at a time."""
    dev = pick_device(device)
    encoder, predictor, state = _load(model_path, dev)
    ds = SegmentDataset(results, "pretrain", encode_scale=state["encode_scale"],
                        split_kind=None, recordings=[recording])
    keep = np.linspace(0, len(ds) - 1, min(max_windows, len(ds))).round().astype(int)
    subset = torch.utils.data.Subset(ds, np.unique(keep).tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size,
                                         collate_fn=make_loader(ds, 1).collate_fn)
    channels = ds.files[recording].channels
    sse = np.zeros(len(channels))
    sst = np.zeros(len(channels))
    count = np.zeros(len(channels))
    for batch in loader:
        batch = to_device(batch, dev)
        n = len(channels)
        b = len(batch["n_channels"])
        for c in range(n):
            mask = torch.zeros(b * n, dtype=torch.bool, device=dev)
            mask[c::n] = True  # channel c of every sample in the batch
            pred = head(predictor(encoder(batch, channel_mask=mask)[mask]))
            truth = batch["x"][mask]
            sse[c] += float(((pred - truth) ** 2).sum())
            sst[c] += float(((truth - truth.mean(dim=(1, 2), keepdim=True)) ** 2).sum())
            count[c] += truth.numel()
    return pd.DataFrame({"channel": channels, "mse": sse / count, "r2": 1 - sse / sst})
