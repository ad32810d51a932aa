"""Routing acceptance test: can a masked position find the visible token that predicts it?

A guard for every change to attention, embeddings or masking. Every odd channel of the
synthetic windows is an exact copy of the even one before it (same signal, same position);
each channel is its own masking group, so a masked channel's twin is visible about 70% of the
time and copying it gives an R^2 of about 0.7 against the targets. The default demo model
(``preset("demo")``, its default attention and target) must get past 0.5 within 150 steps.

The paper's attention without the prior stays near 0 here and the prior gets well past 0.5
(docs/model.md, "Pretraining variants"; the measured values are in
docs/notes/pretraining_variants.md, "Routing test").
"""

import pytest
import torch

from barista.models import preset
from barista.training.pretrain import MaskedLatentModel, sample_masks


@pytest.fixture
def one_thread():
    """Small models run fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def twin_batch(gen: torch.Generator, n_windows=16, n_pairs=12, n_patches=8, patch=32) -> dict:
    """Windows of ``2 * n_pairs`` channels where channel ``2i + 1`` copies channel ``2i``:
    z-scored random-walk patches (1/f^2, like field potentials), pairs at random places."""
    n = 2 * n_pairs
    x = torch.randn(n_windows, n_pairs, n_patches, patch, generator=gen).cumsum(-1)
    x = ((x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)).repeat_interleave(2, dim=1)
    coords = (torch.rand(n_pairs, 3, generator=gen) * 120 - 60).repeat_interleave(2, dim=0)
    return {"x": x.reshape(-1, n_patches, patch), "coords": coords.repeat(n_windows, 1),
            "spatial_id": torch.zeros(n_windows * n, dtype=torch.int64),
            "group_id": torch.arange(n).repeat(n_windows),
            "n_channels": torch.full((n_windows,), n),
            "cu_channels": torch.arange(0, (n_windows + 1) * n, n, dtype=torch.int32)}


def test_default_demo_model_routes_a_masked_channel_to_its_visible_copy(one_thread):
    torch.manual_seed(0)
    config = preset("demo", patch_samples=32, n_patches=8, encode_scale="channel")
    model = MaskedLatentModel(config, ema_ramp_steps=24)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    data = torch.Generator().manual_seed(1)
    for step in range(150):
        batch = twin_batch(data)
        out = model(batch, sample_masks(batch, 0.3, seed=0, key=step))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        model.target.update(model.encoder.tokenizer, step + 1)
    model.eval()
    with torch.no_grad():
        batch = twin_batch(torch.Generator().manual_seed(2), n_windows=32)
        out = model(batch, sample_masks(batch, 0.3, seed=0, key="val"))
    width = out["pred"].shape[-1]
    pred, target = out["pred"].reshape(-1, width), out["target"].reshape(-1, width)
    r2 = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    assert r2 > 0.5, f"masked channels are not read from their visible copies: R^2 {r2:.3f}"
