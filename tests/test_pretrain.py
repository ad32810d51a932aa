"""Pretraining end to end on a small results folder: resumption, history, outputs."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from test_data import make_recording  # noqa: E402

from barista.data import SegmentDataset  # noqa: E402
from barista.models import preset  # noqa: E402
from barista.tokens import write_tokens  # noqa: E402
from barista.training.diagnostics import (  # noqa: E402
    load_masked_latent_model,
    masked_latent_scores,
)
from barista.training.pretrain import (  # noqa: E402
    MaskedLatentModel,
    PretrainConfig,
    load_pretrained,
    pretrain,
    sample_masks,
)

RECS = ["sub-01_ses-01_task-t", "sub-02_ses-01_task-t"]
SMALL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "ffn_hidden": 32, "cnn_blocks": 2}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    make_recording(root, RECS[0], 6, 40, 0)
    make_recording(root, RECS[1], 4, 40, 1)
    files = sorted((root / "segments").glob("*/channels.parquet"))
    for scale in ("channel", "parcel"):
        write_tokens(files, scale, {}, root / "tokens" / scale)
    return root


def run(results, out, lr=1e-3, **kw):
    cfg = PretrainConfig(epochs=3, batch_size=8, warmup_epochs=1, ema_ramp_epochs=1,
                         checkpoint_every=3, device="cpu", seed=4, lr=lr)
    return pretrain(results, out, encode_scale="parcel", mask_scale="parcel", recordings=RECS,
                    size="demo", model_overrides=SMALL, cfg=cfg, progress=False, **kw)


def test_random_init_baseline_is_where_pretraining_starts(results, tmp_path):
    """With a zero learning rate one step changes nothing: the model pretraining writes is its
    starting point, which the random-init baseline must reproduce weight for weight."""
    from barista.models import BaristaConfig
    from barista.training.pretrain import initial_encoder, load_pretrained

    cfg = PretrainConfig(epochs=1, max_steps=1, batch_size=8, lr=0.0, weight_decay=0.0,
                         device="cpu", seed=4)
    pretrain(results, tmp_path, encode_scale="parcel", mask_scale="parcel", recordings=RECS,
             size="demo", model_overrides=SMALL, cfg=cfg, progress=False)
    start, state = load_pretrained(tmp_path / "model.pt", tokenizer="online")
    config = BaristaConfig(**state["config"])
    twin, other = initial_encoder(config, 4).state_dict(), initial_encoder(config, 5).state_dict()
    for name, value in start.state_dict().items():
        assert torch.equal(value, twin[name]), name
    assert any(not torch.equal(v, other[k]) for k, v in twin.items())  # the seed matters


def test_resume_equals_uninterrupted(results, tmp_path):
    whole = run(results, tmp_path / "whole")
    stopped = run(results, tmp_path / "killed", stop_after=5)  # mid-epoch, between checkpoints
    assert stopped == {"stopped_at": 5}
    assert not (tmp_path / "killed" / "model.pt").exists()
    resumed = run(results, tmp_path / "killed")
    assert resumed["steps"] == whole["steps"] == 3 * 8
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)
    for part in ("encoder", "ema_tokenizer", "predictor"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    ha = pd.read_parquet(tmp_path / "whole" / "history.parquet")
    hb = pd.read_parquet(tmp_path / "killed" / "history.parquet")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))


def test_history_and_schedule(results, tmp_path):
    run(results, tmp_path / "m")
    hist = pd.read_parquet(tmp_path / "m" / "history.parquet")
    train = hist[hist["split"] == "train"]
    assert train["step"].tolist() == list(range(1, 25))
    assert train["ema_momentum"].is_monotonic_increasing
    assert train["ema_momentum"].iloc[-1] == pytest.approx(0.996)
    lr = train["lr"].to_numpy()
    assert lr[:8].argmax() == 7 and lr[8] == pytest.approx(1e-3)  # warm-up then decay
    assert lr[16] == pytest.approx(0.99e-3)
    assert set(hist["split"]) == {"train", "val"}
    assert 0.25 < train["masked_fraction"].mean() < 0.6


def test_downstream_gets_the_ema_tokenizer(results, tmp_path):
    run(results, tmp_path / "m")
    encoder, state = load_pretrained(tmp_path / "m" / "model.pt")
    for name, tensor in encoder.tokenizer.state_dict().items():
        assert torch.equal(tensor, state["ema_tokenizer"][name])
    assert not torch.equal(state["ema_tokenizer"]["project.weight"],
                           state["encoder"]["tokenizer.project.weight"])


def run_rpnt(results, out, lr=3e-3, **kw):
    from barista.training.rpnt_pretrain import RPNT

    cfg = PretrainConfig(epochs=2, batch_size=8, warmup_epochs=1, lr=lr, grad_clip=1.0,
                         checkpoint_every=3, device="cpu", seed=4)
    return pretrain(results, out, encode_scale="parcel", mask_scale=None, recordings=RECS,
                    size="demo", model_overrides={**SMALL_RPNT, "dropout": 0.0}, cfg=cfg,
                    progress=False, objective=RPNT, **kw)


SMALL_RPNT = {"d_model": 16, "n_layers": 1, "n_heads": 2, "ffn_hidden": 32}


def test_rpnt_runs_in_the_shared_loop_and_resumes(results, tmp_path):
    """RPNT pretrains through the same loop (history, checkpoints, resume) as BaRISTA."""
    from barista.training.rpnt_pretrain import load_rpnt_encoder

    whole = run_rpnt(results, tmp_path / "whole")
    assert run_rpnt(results, tmp_path / "killed", stop_after=3) == {"stopped_at": 3}
    run_rpnt(results, tmp_path / "killed")
    a, _ = load_rpnt_encoder(tmp_path / "whole" / "model.pt")
    b, state = load_rpnt_encoder(tmp_path / "killed" / "model.pt")
    assert state["model"] == "rpnt" and whole["steps"] == 2 * 8
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"{name} differs after resume"
    hist = pd.read_parquet(tmp_path / "whole" / "history.parquet")
    train = hist[hist["split"] == "train"]
    # stochastic causal masking: the masked fraction varies from step to step
    assert train["masked_fraction"].nunique() > 3
    assert train["masked_fraction"].between(0.0, 1.0, inclusive="neither").all()


@pytest.mark.parametrize("runner", [run, run_rpnt], ids=["barista", "rpnt"])
def test_changed_config_starts_over_instead_of_resuming(results, tmp_path, caplog, runner):
    """checkpoint.pt stays in the model folder; a rerun with another pretrain.lr (as Snakemake
    starts after a config change) must not resume it (which returned the old model, bit for
    bit) but train anew: the weights equal a fresh run's with the new value."""
    runner(results, tmp_path / "m", lr=1e-3)
    old = torch.load(tmp_path / "m" / "model.pt", weights_only=False)
    with caplog.at_level("WARNING", logger="barista.training.pretrain"):
        runner(results, tmp_path / "m", lr=2e-3)
    assert "starting over" in caplog.text and "checkpoint.pt" in caplog.text
    runner(results, tmp_path / "fresh", lr=2e-3)
    new = torch.load(tmp_path / "m" / "model.pt", weights_only=False)
    fresh = torch.load(tmp_path / "fresh" / "model.pt", weights_only=False)
    part = "encoder"
    assert any(not torch.equal(t, old[part][k]) for k, t in new[part].items())
    for name, tensor in fresh[part].items():
        assert torch.equal(tensor, new[part][name]), name
    hist = pd.read_parquet(tmp_path / "m" / "history.parquet")  # the new run's steps, once
    assert hist.loc[hist["split"] == "train", "step"].tolist() == list(range(1, new["steps"] + 1))


def test_run_fingerprint_follows_settings_and_input_files(results):
    """The fingerprint changes with a training setting or a rewritten input file, and not with
    settings that leave the parameters alone (checkpoint interval, device)."""
    import os

    from barista.training.pretrain import run_fingerprint

    def fp(**kw):
        cfg = PretrainConfig(**{"seed": 4, **kw})
        return run_fingerprint(results, "parcel", "parcel", RECS, {"d_model": 16}, cfg,
                               "barista")

    base = fp()
    assert fp(checkpoint_every=7, device="cuda", num_workers=2) == base
    assert fp(lr=2e-3) != base and fp(seed=5) != base and fp(epochs=3) != base
    signal = results / "segments" / RECS[1] / "signal.parquet"
    st = signal.stat()
    os.utime(signal, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new segment run
    try:
        assert fp() != base
    finally:
        os.utime(signal, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fp() == base


# --- diagnostics (barista.training.diagnostics) ---------------------------------------------


def windows(results):
    return SegmentDataset(results, "pretrain", encode_scale="parcel", mask_scale="parcel",
                          roles=("train", "val"), recordings=RECS)


class Fixed(nn.Module):
    """Predicts its targets exactly (oracle), as zeros, or with unit noise added."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, batch, mask):
        target = batch["x"][mask][..., :3]  # any per-token target
        if self.mode == "oracle":
            pred = target
        elif self.mode == "zero":
            pred = torch.zeros_like(target)
        else:
            pred = target + torch.randn_like(target)
        return {"pred": pred, "target": target}


def test_latent_r2_is_one_for_an_oracle_and_not_positive_for_a_constant(results):
    data = windows(results)
    assert masked_latent_scores(Fixed("oracle"), data)["latent_r2"] == pytest.approx(1.0)
    zero = masked_latent_scores(Fixed("zero"), data)
    assert zero["latent_r2"] <= 0 and zero["prediction_variance"] == 0
    noisy = masked_latent_scores(Fixed("noise"), data)["latent_r2"]
    assert noisy < 0.5  # unit noise on unit-variance targets halves R^2 or worse


def test_loader_reads_model_and_checkpoint_alike(results, tmp_path):
    run(results, tmp_path / "m")
    from_model, state = load_masked_latent_model(tmp_path / "m" / "model.pt")
    from_ckpt, _ = load_masked_latent_model(tmp_path / "m" / "checkpoint.pt")
    assert state["steps"] == 24 and not from_model.training
    for a, b in zip(from_model.state_dict().values(), from_ckpt.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # the EMA target really is the EMA copy, not the online tokenizer
    online = dict(from_model.encoder.tokenizer.named_parameters())
    shadow = dict(from_model.target.shadow.named_parameters())
    assert any(not torch.equal(online[k], shadow[k]) for k in online)
    a = masked_latent_scores(from_model, windows(results))
    b = masked_latent_scores(from_ckpt, windows(results))
    assert a == b  # masks are seeded: same model, same tokens, same score


def shared_component_batch(generator: torch.Generator, n_windows=16, n_channels=24,
                           shared=2.0) -> dict:
    """Windows whose channels all carry one waveform (amplitude ``shared``) plus their own unit
    noise: 80% of a masked channel's signal is on view in every other channel, same patch."""
    x = shared * torch.randn(n_windows, 1, 8, 32, generator=generator) \
        + torch.randn(n_windows, n_channels, 8, 32, generator=generator)
    coords = torch.rand(n_windows * n_channels, 3, generator=generator) * 120 - 60
    return {"x": x.reshape(-1, 8, 32), "coords": coords,
            "spatial_id": torch.zeros(n_windows * n_channels, dtype=torch.int64),
            "group_id": torch.arange(n_channels).repeat(n_windows),
            "n_channels": torch.full((n_windows,), n_channels),
            "cu_channels": torch.arange(0, (n_windows + 1) * n_channels, n_channels,
                                        dtype=torch.int32)}


def test_pretraining_learns_a_shared_component_quickly():
    """The demo model must learn within 100 steps to fill a masked channel from a waveform
    that every visible channel shows at the same patch. With spatial embeddings started as
    large as a token (norm sqrt 3) the place drowned the signal: the latent R^2 here was 0.02
    after 100 steps (0.30 now), the plateau that kept demo pretraining at a constant output."""
    torch.manual_seed(0)
    config = preset("demo", patch_samples=32, n_patches=8, encode_scale="channel")
    model = MaskedLatentModel(config, ema_ramp_steps=24)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    data = torch.Generator().manual_seed(1)
    for step in range(100):
        batch = shared_component_batch(data)
        out = model(batch, sample_masks(batch, 0.3, seed=0, key=step))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        model.target.update(model.encoder.tokenizer, step + 1)
    model.eval()
    with torch.no_grad():
        batch = shared_component_batch(torch.Generator().manual_seed(2), n_windows=64)
        out = model(batch, sample_masks(batch, 0.3, seed=0, key="val"))
    pred, target = out["pred"].reshape(-1, 32), out["target"].reshape(-1, 32)
    r2 = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    assert r2 > 0.15, float(r2)


def test_model_of_an_older_architecture_is_refused_naming_the_file(tmp_path):
    """A model.pt whose tensors do not fit the current encoder (the CNN before the release's,
    say) fails naming the file, not with a bare state_dict error."""
    from barista.errors import DataError

    cfg = preset("demo", patch_samples=16, n_patches=4, encode_scale="parcel", vocab_size=6)
    model = MaskedLatentModel(cfg)
    encoder = model.encoder.state_dict()
    old_cnn = {k: v for k, v in encoder.items() if not k.startswith("tokenizer.cnn.")}
    old_cnn["tokenizer.cnn.0.weight"] = torch.zeros(5, 1, 1)  # the old 1x1 stem
    path = tmp_path / "model.pt"
    torch.save({"config": cfg.to_dict(), "encoder": old_cnn,
                "ema_tokenizer": model.target.shadow.state_dict()}, path)
    with pytest.raises(DataError, match=r"model\.pt does not fit the current BaRISTA "
                                        r"architecture.*pretrain again"):
        load_pretrained(path)
