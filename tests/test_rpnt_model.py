"""The RPNT encoder and objective on packed iEEG batches (barista.models.rpnt,
barista.training.rpnt_pretrain).

What the session / task tests show: MRoPE is relative and samples never attend to each other,
so a session or task id shared by a whole window cancels in every q.k (changing a sample's
recording leaves its states unchanged); the sections are wired, though: session ids that differ
between tokens of one window (a per-token coordinate override) do change the states.
"""

import math
import zlib

import pytest
import torch

import barista.models.context_attention as ca
from barista.models import BaristaEncoder, preset
from barista.models.barista import packed_layout
from barista.models.rpnt import (
    RPNT_PRESETS,
    RpntConfig,
    RpntEncoder,
    batch_coordinates,
    default_sections,
    recording_ids,
    rpnt_preset,
)
from barista.training.finetune import Decoder
from barista.training.rpnt_pretrain import RpntPretrainModel, load_rpnt_encoder, session_groups

P, S = 6, 16  # patches per window, samples per patch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(counts=(3, 5, 4), recordings=None, seed=0, smooth=False):
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts)
    n = int(counts.sum())
    if smooth:  # learnable: a sinusoid per channel, continuous across patches
        t = torch.arange(P * S, dtype=torch.float32) / 32
        freq = 1 + torch.rand(n, 1, generator=g) * 2
        phase = torch.rand(n, 1, generator=g) * 6.28
        x = torch.sin(2 * math.pi * freq * t + phase).reshape(n, P, S)
    else:
        x = torch.randn(n, P, S, generator=g)
    cu = torch.zeros(len(counts) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(counts, 0)
    coords = torch.randn(n, 3, generator=g) * 30
    coords[1] = float("nan")  # a contact without a position
    recordings = recordings or [f"sub-0{i + 1}_ses-01_task-listen_run-01"
                                for i in range(len(counts))]
    return {"x": x, "spatial_id": torch.randint(1, 4, (n,), generator=g),
            "group_id": torch.arange(n), "coords": coords, "n_channels": counts,
            "cu_channels": cu, "label": torch.zeros(len(counts), dtype=torch.long),
            "recording": recordings, "segment": torch.arange(len(counts))}


def _encoder(causal=True, seed=0, **kw):
    torch.manual_seed(seed)
    enc = RpntEncoder(rpnt_preset("demo", patch_samples=S, n_patches=P, dropout=0.0,
                                  causal=causal, **kw))
    return enc.eval()


def _first(batch):
    return slice(0, int(batch["cu_channels"][1]))


# ------------------------------------------------------------------------------ layout


def test_output_layout_is_baristas():
    batch = _batch()
    enc = _encoder()
    out = enc(batch)
    ref = BaristaEncoder(preset("demo", patch_samples=S, n_patches=P, vocab_size=4)).eval()(batch)
    assert out.shape == ref.shape == (batch["x"].shape[0], P, 32)
    # the transformer runs on packed_layout's time-major sequence
    seen = {}

    def keep_input(module, args):
        seen["seq"] = args[0]

    handle = enc.blocks[0].register_forward_pre_hook(keep_input)
    enc(batch)
    handle.remove()
    layout = packed_layout(batch["n_channels"], P)
    tokens = enc.patch_embed(batch["x"]).reshape(-1, 32)
    assert torch.equal(seen["seq"][layout.dest], tokens)
    # with no blocks, state (c, p) is the normed embedding of x[c, p]: channel-major output
    flat = _encoder(n_layers=0)
    assert torch.allclose(flat(batch), flat.norm(flat.patch_embed(batch["x"])), atol=1e-6)
    # BaRISTA's finetuning head runs on it unchanged
    same = _batch(counts=(4, 4))
    logits = Decoder(enc, 4)(same)
    assert logits.shape == (2, 2)


@pytest.mark.parametrize("causal", [True, False])
def test_no_leak_across_packed_samples(causal):
    batch = _batch()
    enc = _encoder(causal)
    out = enc(batch)
    second = slice(int(batch["cu_channels"][1]), int(batch["cu_channels"][2]))
    changed = {**batch, "x": batch["x"].clone(), "coords": batch["coords"].clone()}
    changed["x"][second] = torch.randn_like(changed["x"][second]) * 3
    changed["coords"][second] += 17.0
    out2 = enc(changed)
    first = _first(batch)
    assert torch.allclose(out2[first], out[first], atol=1e-6, rtol=0)
    assert not torch.allclose(out2[second], out[second], atol=1e-3)


def test_causal_states_ignore_later_patches_and_bidirectional_do_not():
    batch = _batch()
    causal, bidir = _encoder(True), _encoder(False)
    out_c, out_b = causal(batch), bidir(batch)
    g = torch.Generator().manual_seed(1)
    for t in (0, 2, 4):
        x = batch["x"].clone()
        x[:, t + 1:] = torch.randn(x[:, t + 1:].shape, generator=g) * 3  # every channel
        changed = {**batch, "x": x}
        out2 = causal(changed)
        assert torch.allclose(out2[:, :t + 1], out_c[:, :t + 1], atol=1e-5, rtol=0), t
        assert not torch.allclose(out2[:, t + 1:], out_c[:, t + 1:], atol=1e-3)
        assert not torch.allclose(bidir(changed)[:, :t + 1], out_b[:, :t + 1], atol=1e-3)


def test_input_mask_zeroes_the_input():
    batch = _batch()
    enc = _encoder()
    g = torch.Generator().manual_seed(2)
    mask = torch.rand(batch["x"].shape[:2], generator=g) < 0.4
    out = enc(batch, input_mask=mask)
    x = batch["x"].clone()
    x[mask] = torch.randn(int(mask.sum()), S, generator=g) * 5
    assert torch.allclose(enc({**batch, "x": x}, input_mask=mask), out, atol=1e-6, rtol=0)
    zeroed = batch["x"].masked_fill(mask[..., None], 0.0)
    assert torch.allclose(enc({**batch, "x": zeroed}), out, atol=1e-6, rtol=0)
    assert not torch.allclose(enc(batch), out, atol=1e-3)


# ------------------------------------------------------------------------------- MRoPE


def test_mrope_positions_reach_the_states():
    batch = _batch()
    enc = _encoder(causal=False)
    out = enc(batch)
    first = _first(batch)
    moved = {**batch, "coords": batch["coords"].clone()}
    moved["coords"][0, 0] += 4.0  # x of channel 0 only
    out2 = enc(moved)
    assert not torch.allclose(out2[1:first.stop], out[1:first.stop], atol=1e-4)
    # the same move does nothing when no head dimension rotates by x, y, z
    blind = _encoder(causal=False, mrope_sections=(16, 0, 0, 0, 0, 0))
    assert torch.allclose(blind(moved), blind(batch), atol=1e-6)
    # relative: shifting every contact by one vector changes nothing
    shifted = {**batch, "coords": batch["coords"] + torch.tensor([37.3, -12.1, 5.7])}
    shifted["coords"][1] = 0.0  # the NaN contact is taken at the origin, shift it too
    shifted["coords"][1] += torch.tensor([37.3, -12.1, 5.7])
    at_origin = {**batch, "coords": torch.nan_to_num(batch["coords"], nan=0.0)}
    assert torch.allclose(enc(at_origin), out, atol=1e-6)
    assert torch.allclose(enc(shifted), out, atol=1e-5)


def test_session_and_task_cancel_within_a_window_but_are_wired():
    batch = _batch()
    enc = _encoder(causal=False)
    out = enc(batch)
    other = {**batch, "recording": ["sub-01_ses-07_task-rest_run-02"] + batch["recording"][1:]}
    assert torch.allclose(enc(other), out, atol=1e-5)  # whole-window ids cancel
    coords = batch_coordinates(batch)
    first_tokens = int(batch["cu_channels"][1]) * P
    for col in (4, 5):  # session, task differing between channels of one window
        varied = coords.clone()
        varied[:P, col] += 3.0  # channel 0 only
        out2 = enc(batch, coords=varied)
        assert not torch.allclose(out2.reshape(-1, 32)[P:first_tokens],
                                  out.reshape(-1, 32)[P:first_tokens], atol=1e-4), col


def test_batch_coordinates_and_entities():
    ids = recording_ids("sub-01_ses-02_task-listen_run-01")
    assert (ids["subject"], ids["session"], ids["session_id"]) == ("01", "02", 2)
    assert ids["task_id"] == zlib.crc32(b"listen") % 1000
    none = recording_ids("sub-03_task-rest_run-1")
    assert none["session_id"] == 0 and none["task_id"] == zlib.crc32(b"rest") % 1000
    named = recording_ids("sub-03_ses-postop_task-rest")
    assert named["session_id"] == zlib.crc32(b"postop") % 1000
    assert recording_ids("sub-03")["task_id"] == 0

    recs = ["sub-01_ses-02_task-listen_run-01", "sub-02_task-rest", "sub-01_ses-3_task-listen"]
    batch = _batch(recordings=recs)
    coords = batch_coordinates(batch, P)
    n = batch["x"].shape[0]
    assert coords.shape == (n * P, 6) and coords.dtype == torch.float64
    grid = coords.reshape(n, P, 6)
    assert torch.equal(grid[:, :, 0], torch.arange(P, dtype=torch.float64).expand(n, P))
    assert torch.equal(grid[1, :, 1:4], torch.zeros(P, 3, dtype=torch.float64))  # NaN -> 0
    assert torch.allclose(grid[0, 3, 1:4], batch["coords"][0].double())
    sessions = grid[:, 0, 4].tolist()
    assert sessions == [2.0] * 3 + [0.0] * 5 + [3.0] * 4
    assert grid[3, 0, 5] == zlib.crc32(b"rest") % 1000
    assert session_groups(recs + ["sub-01_ses-02_task-other"]).tolist() == [0, 1, 2, 0]


# ------------------------------------------------------------------------------ objective


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RpntPretrainModel(rpnt_preset("demo", patch_samples=S, n_patches=P, dropout=0.0,
                                         **kw))


def test_loss_falls_when_overfitting_one_batch():
    batch = _batch(smooth=True)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model(batch, torch.Generator().manual_seed(3))  # the same mask every step
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


def test_objective_is_deterministic_and_masks_the_input():
    batch = _batch()
    a = _model()(batch, torch.Generator().manual_seed(11))
    b = _model()(batch, torch.Generator().manual_seed(11))
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["mask"], b["mask"])
    c = _model()(batch, torch.Generator().manual_seed(12))
    assert not torch.equal(a["mask"], c["mask"])
    mask = a["mask"]
    assert 0 < a["masked_fraction"] < 1 and a["masked_fraction"] == float(mask.float().mean())
    assert mask[:, -1].all()  # the future block covers every channel
    # the loss cannot see the masked input: changing it changes neither states nor loss
    x = batch["x"].clone()
    x[mask] += 10.0
    unmasked_states = _model()({**batch, "x": x}, torch.Generator().manual_seed(11))["states"]
    assert torch.allclose(unmasked_states, a["states"], atol=1e-6)


@pytest.mark.parametrize("contrast_by", ["session", "region"])
def test_contrastive_term_needs_positives(contrast_by):
    model = _model(contrast_by=contrast_by)
    if contrast_by == "session":
        lonely = _batch()  # three subjects: no positive pair
        paired = _batch(recordings=["sub-01_ses-01_task-a", "sub-02_ses-01_task-a",
                                    "sub-01_ses-01_task-b"])
    else:
        lonely = _batch(counts=(2, 2))
        lonely["spatial_id"] = torch.tensor([1, 2, 3, 4])
        paired = _batch()
    out = model(lonely, torch.Generator().manual_seed(0))
    assert out["contrastive"].item() == 0.0
    assert torch.allclose(out["loss"], out["reconstruction"])
    out = model(paired, torch.Generator().manual_seed(0))
    assert out["contrastive"].item() > 0
    w = model.config.contrastive_weight
    assert torch.allclose(out["loss"], out["reconstruction"] + w * out["contrastive"])
    out["loss"].backward()
    assert model.project.weight.grad.abs().sum() > 0


def test_downstream_state_round_trip_and_freezing(tmp_path):
    model = _model()
    path = tmp_path / "rpnt.pt"
    torch.save(model.state_for_downstream(), path)
    encoder, state = load_rpnt_encoder(path)
    assert state["model"] == "rpnt" and RpntConfig(**state["config"]) == model.config
    batch = _batch()
    assert torch.equal(encoder.eval()(batch), model.encoder.eval()(batch))
    assert encoder.frozen_modules("paper") == [encoder.patch_embed]
    assert encoder.frozen_modules("release") == [encoder.patch_embed]
    assert encoder.frozen_modules("none") == []
    with pytest.raises(ValueError):
        encoder.frozen_modules("all")


def test_config_presets_and_sections():
    assert set(RPNT_PRESETS) == {"paper", "demo"}
    paper = rpnt_preset("paper")
    assert (paper.d_model, paper.n_layers, paper.n_heads, paper.causal) == (64, 12, 4, True)
    assert paper.contrastive_weight == 0.1 and paper.temperature == 0.1
    assert paper.mask_ratio_range == (0.01, 0.99) and paper.kernel_size == 3
    assert RpntConfig(**{**paper.to_dict(), "mask_ratio_range": [0.1, 0.5]}).mask_ratio_range \
        == (0.1, 0.5)
    assert default_sections(16) == (6, 2, 2, 2, 2, 2)
    assert default_sections(32) == (10, 6, 6, 6, 2, 2)
    assert sum(default_sections(8)) <= 8
    with pytest.raises(KeyError):
        rpnt_preset("huge")
    with pytest.raises(ValueError):
        rpnt_preset("demo", contrast_by="site")


def test_row_kernel_matrix_equals_tap_loop(monkeypatch):
    """conv_score_maps applies per-row kernels of short windows as a matrix product; it must
    equal the tap loop used for long ones."""
    g = torch.Generator().manual_seed(0)
    maps, kern = torch.randn(3, 4, 7, 7, generator=g), torch.randn(4, 7, 3, 3, generator=g)
    fast = {c: ca.conv_score_maps(maps, kern, c) for c in (True, False)}
    monkeypatch.setattr(ca, "MATRIX_MAX_TIMES", 0)
    for causal in (True, False):
        assert torch.allclose(fast[causal], ca.conv_score_maps(maps, kern, causal), atol=1e-5)
