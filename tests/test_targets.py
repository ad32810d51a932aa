"""Pretraining targets (barista.training.targets), variants and their plumbing end to end."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_data import make_recording  # noqa: E402

from barista.errors import ConfigError  # noqa: E402
from barista.models import preset  # noqa: E402
from barista.tokens import write_tokens  # noqa: E402
from barista.training.diagnostics import load_masked_latent_model  # noqa: E402
from barista.training.pretrain import (  # noqa: E402
    MaskedLatentModel,
    PretrainConfig,
    load_pretrained,
    pretrain,
    sample_masks,
)
from barista.training.reconstruct import train_head  # noqa: E402
from barista.training.targets import (  # noqa: E402
    SPECTRUM_FLOOR,
    TARGETS,
    SignalTarget,
    log_power,
    target_size,
)
from barista.variants import init_variant, variant_name, variant_options  # noqa: E402

RECS = ["sub-01_ses-01_task-t", "sub-02_ses-01_task-t"]
SMALL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "ffn_hidden": 32, "cnn_blocks": 2}


def test_log_power_of_a_cosine():
    """A cosine of amplitude A at bin k has power A^2 P / 4 there and none elsewhere."""
    p, k, amp = 32, 5, 2.0
    t = torch.arange(p, dtype=torch.float32)
    lp = log_power(amp * torch.cos(2 * math.pi * k * t / p))
    assert lp.shape == (p // 2 + 1,)
    assert float(lp[k]) == pytest.approx(math.log(amp ** 2 * p / 4 + SPECTRUM_FLOOR), rel=1e-5)
    others = torch.cat([lp[:k], lp[k + 1:]])
    assert torch.allclose(others, torch.full_like(others, math.log(SPECTRUM_FLOOR)), atol=1e-3)


@pytest.mark.parametrize("kind", TARGETS)
def test_target_sizes(kind):
    want = {"latent": 16, "raw": 32, "logspec": 17, "raw+logspec": 49}[kind]
    assert target_size(kind, 16, 32) == want


def test_signal_targets_are_the_patch_and_its_standardised_spectrum():
    g = torch.Generator().manual_seed(0)
    patches = torch.randn(200, 32, generator=g).cumsum(-1)  # 1/f^2: bins differ in mean
    raw = SignalTarget("raw", 32)
    assert torch.equal(raw(patches), patches)
    spec = SignalTarget("logspec", 32)
    spec.fit(patches)
    out = spec(patches)
    assert out.shape == (200, 17)
    assert torch.allclose(out.mean(0), torch.zeros(17), atol=1e-4)
    assert torch.allclose(out.std(0), torch.ones(17), atol=1e-3)
    both = SignalTarget("raw+logspec", 32)
    both.load_state_dict(spec.state_dict())
    assert torch.allclose(both(patches), torch.cat([patches, out], -1))
    with pytest.raises(ValueError):
        SignalTarget("latent", 32)


def small_batch(seed=0, n_windows=4, n_channels=6):
    g = torch.Generator().manual_seed(seed)
    n = n_windows * n_channels
    return {"x": torch.randn(n, 4, 32, generator=g), "coords": torch.randn(n, 3, generator=g),
            "spatial_id": torch.zeros(n, dtype=torch.int64),
            "group_id": torch.arange(n_channels).repeat(n_windows),
            "n_channels": torch.full((n_windows,), n_channels),
            "cu_channels": torch.arange(0, n + 1, n_channels, dtype=torch.int32)}


@pytest.mark.parametrize("kind", TARGETS)
def test_model_predicts_each_target_and_learns(kind):
    torch.manual_seed(0)
    config = preset("demo", patch_samples=32, n_patches=4, encode_scale="channel", target=kind,
                    dropout=0.0, **SMALL)
    model = MaskedLatentModel(config, ema_ramp_steps=4)
    batch = small_batch()
    model.prepare([batch])  # the spectrum's scale, from these windows
    mask = sample_masks(batch, 0.3, seed=0, key=0)
    out = model(batch, mask)
    width = target_size(kind, config.d_model, 32)
    assert out["pred"].shape == out["target"].shape == (int(mask.sum()), 4, width)
    if kind != "latent":  # computed from the signal: the EMA tokenizer plays no part
        with torch.no_grad():
            for p in model.target.shadow.parameters():
                p.add_(1.0)
        assert torch.equal(model(batch, mask)["target"], out["target"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(out["loss"].detach())
    for _ in range(40):  # overfit one batch
        loss = model(batch, mask)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.8 * first


def test_variant_names_round_trip():
    assert variant_name(preset("paper")) == "paper"
    for name in ("paper", "prior", "raw", "logspec", "raw+logspec", "prior+raw",
                 "prior+logspec", "prior+raw+logspec"):
        assert variant_name(variant_options(name)) == name
    assert variant_options("prior+raw") == {"attention_prior": "distance", "target": "raw"}
    with pytest.raises(ConfigError, match="spelled 'prior\\+raw'"):
        variant_options("raw+prior")
    with pytest.raises(ConfigError, match="unknown"):
        variant_options("prior+mae")
    assert [init_variant(v) for v in ("paper", "raw", "prior", "prior+raw+logspec")] == [
        "paper", "paper", "prior", "prior"]


def test_variants_of_one_start_share_their_random_init():
    """The target does not change the encoder: same seed, same starting weights."""
    from barista.training.pretrain import initial_encoder

    states = {}
    for name in ("prior", "prior+raw", "prior+logspec"):
        config = preset("demo", patch_samples=32, n_patches=4, encode_scale="channel",
                        **variant_options(name))
        states[name] = initial_encoder(config, seed=2).state_dict()
    for name in ("prior+raw", "prior+logspec"):
        assert all(torch.equal(states["prior"][k], v) for k, v in states[name].items())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    make_recording(root, RECS[0], 6, 40, 0)
    make_recording(root, RECS[1], 4, 40, 1)
    files = sorted((root / "segments").glob("*/channels.parquet"))
    write_tokens(files, "channel", {}, root / "tokens" / "channel")
    return root


def test_pretraining_with_a_spectral_target_and_the_prior_end_to_end(results, tmp_path, caplog):
    """The spectrum's scale is fitted once, saved with the model, restored by every loader;
    resuming needs the same target (it is part of the model config); reconstruction reads the
    predictor's own output width."""
    cfg = PretrainConfig(epochs=2, batch_size=8, warmup_epochs=1, ema_ramp_epochs=1,
                         checkpoint_every=3, device="cpu", seed=1)
    overrides = {**SMALL, **variant_options("prior+raw+logspec")}
    out = tmp_path / "m"
    pretrain(results, out, encode_scale="channel", mask_scale="channel", recordings=RECS,
             size="demo", model_overrides=overrides, cfg=cfg, progress=False)
    model, state = load_masked_latent_model(out / "model.pt")
    assert variant_name(state["config"]) == "prior+raw+logspec"
    fitted = model.signal_target.spec_mean
    assert not torch.all(fitted == 0)  # fitted, not the initial zeros
    from_ckpt, _ = load_masked_latent_model(out / "checkpoint.pt")
    assert torch.equal(from_ckpt.signal_target.spec_mean, fitted)
    encoder, _ = load_pretrained(out / "model.pt")
    assert encoder.prior is not None and not torch.equal(encoder.prior.slope,
                                                         torch.full_like(encoder.prior.slope, 2))
    head, fit = train_head(out / "model.pt", results, recordings=RECS, batch_size=8,
                           device="cpu")
    patch = model.encoder.config.patch_samples
    assert head.in_features == patch + patch // 2 + 1 and math.isfinite(fit["train_r2"])
    # the same folder with another target: the checkpoint is for another model, not resumed
    # (pretraining starts over from step 0 and says so, barista.training.pretrain)
    (out / "model.pt").unlink()
    import logging

    with caplog.at_level(logging.WARNING, logger="barista.training.pretrain"):
        pretrain(results, out, encode_scale="channel", mask_scale="channel", recordings=RECS,
                 size="demo", model_overrides={**SMALL, "target": "raw"}, cfg=cfg,
                 progress=False)
    assert "starting over from step 0" in caplog.text
