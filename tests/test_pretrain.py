"""Pretraining end to end on a small results folder: resumption, history, outputs."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_data import make_recording  # noqa: E402

from barista.tokens import write_tokens  # noqa: E402
from barista.training.pretrain import PretrainConfig, load_pretrained, pretrain  # noqa: E402

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


def run(results, out, **kw):
    cfg = PretrainConfig(epochs=3, batch_size=8, warmup_epochs=1, ema_ramp_epochs=1,
                         checkpoint_every=3, device="cpu", seed=4)
    return pretrain(results, out, encode_scale="parcel", mask_scale="parcel", recordings=RECS,
                    size="demo", model_overrides=SMALL, cfg=cfg, progress=False, **kw)


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


def run_rpnt(results, out, **kw):
    from barista.training.rpnt_pretrain import RPNT

    cfg = PretrainConfig(epochs=2, batch_size=8, warmup_epochs=1, lr=3e-3, grad_clip=1.0,
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
