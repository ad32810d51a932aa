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
from torch import nn

from ..data import SegmentDataset, collate_packed, make_loader
from .common import pick_device, seed_everything, seed_of, to_device
from .masking import group_mask
from .pretrain import build_predictor, load_pretrained


def _load(path, device):
    """The online encoder and the predictor exactly as pretraining left them."""
    encoder, state = load_pretrained(path, device, tokenizer="online")
    predictor = build_predictor(encoder.config)
    predictor.load_state_dict(state["predictor"])
    return encoder.to(device).eval(), predictor.to(device).eval(), state


@torch.no_grad()
def train_head(model_path: str | Path, results: str | Path, *, recordings: list[str] | None,
               epochs: int = 1, batch_size: int = 32, ridge: float = 1e-3, seed: int = 0,
               mask_ratio: float = 0.3, device: str = "auto") -> tuple[nn.Module, dict]:
    """Fit the linear d -> patch head on masked pretraining windows.

    A linear head has a closed-form optimum, so it is solved exactly (ridge regression on the
    accumulated normal equations over ``epochs`` passes of fresh masks) rather than by a few
    noisy gradient steps. Returns the head and its training MSE and R^2.
    """
    dev = pick_device(device)
    encoder, predictor, state = _load(model_path, dev)
    seed_everything(seed)
    # the head reads the predictor's output: a token (the paper's latent target) or, for the
    # other targets, the predicted patch or spectrum
    d, p = predictor.net[-1].out_features, encoder.config.patch_samples
    ds = SegmentDataset(results, "pretrain", encode_scale=state["encode_scale"],
                        mask_scale=state["mask_scale"], roles=("train",), recordings=recordings)
    loader = make_loader(ds, batch_size, seed=seed)
    xtx = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=dev)
    xty = torch.zeros(d + 1, p, dtype=torch.float64, device=dev)
    yty, ysum, n, step = 0.0, torch.zeros(p, dtype=torch.float64, device=dev), 0, 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            batch = to_device(batch, dev)
            gen = torch.Generator().manual_seed(seed_of(seed, "recon", step))
            mask = group_mask(batch["group_id"], batch["cu_channels"], mask_ratio, gen)
            pred = predictor(encoder(batch, channel_mask=mask)[mask]).reshape(-1, d).double()
            target = batch["x"][mask].reshape(-1, p).double()
            x = torch.cat([pred, torch.ones(len(pred), 1, dtype=pred.dtype, device=dev)], 1)
            xtx += x.T @ x
            xty += x.T @ target
            yty += float((target ** 2).sum())
            ysum += target.sum(0)
            n += len(target)
            step += 1
    reg = ridge * torch.trace(xtx[:d, :d]) / d * torch.eye(d + 1, dtype=xtx.dtype, device=dev)
    reg[d, d] = 0  # the bias is not shrunk
    weights = torch.linalg.solve(xtx + reg, xty)
    head = nn.Linear(d, p).to(dev)
    head.weight.copy_(weights[:d].T.float())
    head.bias.copy_(weights[d].float())
    sse = yty - 2 * float((weights * xty).sum()) + float((weights * (xtx @ weights)).sum())
    sst = yty - float((ysum ** 2).sum()) / n
    return head.eval(), {"train_mse": sse / (n * p), "train_r2": 1 - sse / sst}


@torch.no_grad()
def evaluate_channels(model_path: str | Path, head: nn.Module, results: str | Path, *,
                      recording: str, max_windows: int = 64, batch_size: int = 32,
                      device: str = "auto") -> pd.DataFrame:
    """MSE and R^2 per channel of one recording, masking one channel at a time."""
    dev = pick_device(device)
    encoder, predictor, state = _load(model_path, dev)
    ds = SegmentDataset(results, "pretrain", encode_scale=state["encode_scale"],
                        split=None, recordings=[recording])
    keep = np.linspace(0, len(ds) - 1, min(max_windows, len(ds))).round().astype(int)
    subset = torch.utils.data.Subset(ds, np.unique(keep).tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size,
                                         collate_fn=collate_packed)
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
