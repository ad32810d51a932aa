"""Model components: each test fails if the component is wrong, not only if shapes are."""

import math

import pytest
import torch

from barista.errors import DataError
from barista.models import BaristaEncoder, preset
from barista.models.attention import packed_attention
from barista.models.barista import packed_layout
from barista.models.rotary import Rotary, rotate, rotate_half
from barista.models.spatial import (
    INIT_NORM,
    CoordinateEmbedding,
    GridEmbedding,
    TableEmbedding,
    mni_grid_ids,
)
from barista.models.tokenizer import TemporalTokenizer
from barista.training.ema import EMA
from barista.training.masking import group_mask


def make_batch(n_channels=(3, 5), n_patches=4, patch=16, vocab=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(n_channels)
    cu = torch.zeros(len(n_channels) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(n_channels), 0)
    return {
        "x": torch.randn(total, n_patches, patch, generator=g),
        "spatial_id": torch.randint(0, vocab, (total,), generator=g),
        "group_id": torch.randint(0, 3, (total,), generator=g),
        "coords": torch.randn(total, 3, generator=g) * 40,
        "n_channels": torch.tensor(n_channels),
        "cu_channels": cu,
        "label": torch.zeros(len(n_channels), dtype=torch.long),
    }


def tiny(scale="parcel", **kw):
    """The paper's model at demo size (the prior has its own tests, tests/test_prior.py)."""
    kw.setdefault("attention_prior", "none")
    cfg = preset("demo", patch_samples=16, n_patches=4, encode_scale=scale, vocab_size=6,
                 dropout=0.0, **kw)
    torch.manual_seed(0)
    return BaristaEncoder(cfg).eval()


def test_paper_preset_size():
    n = sum(p.numel() for p in BaristaEncoder(preset("paper", vocab_size=150)).parameters())
    assert 0.80e6 < n < 0.90e6  # the paper: about 0.87 M with the predictor


def test_tokenizer_keeps_patches_independent_and_is_residual_cnn():
    tok = TemporalTokenizer(32, 8, n_blocks=5)
    x = torch.randn(4, 32)
    y = tok(x)
    x2 = x.clone()
    x2[1] += 1.0
    y2 = tok(x2)
    assert torch.allclose(y[[0, 2, 3]], y2[[0, 2, 3]]) and not torch.allclose(y[1], y2[1])
    assert tok.project.bias is None


def test_tokenizer_is_the_release_cnn():
    """Widths 1->5->5->5->5->1, two dilated convs per block (dilation 2^i), a 1x1 projector on
    the residual where the width changes and on the last block; each conv followed by a
    parameter-free layer norm over time and GELU. Computed here step by step."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    tok = TemporalTokenizer(64, 8, width=5, n_blocks=5)
    widths = [(b.conv1.in_channels, b.conv1.out_channels) for b in tok.cnn]
    assert widths == [(1, 5), (5, 5), (5, 5), (5, 5), (5, 1)]
    assert [b.conv1.dilation[0] for b in tok.cnn] == [1, 2, 4, 8, 16]
    assert [b.conv2.dilation[0] for b in tok.cnn] == [1, 2, 4, 8, 16]
    assert [b.projector is not None for b in tok.cnn] == [True, False, False, False, True]
    x = torch.randn(3, 1, 64)
    h = x
    for i, b in enumerate(tok.cnn):
        r = h if b.projector is None else F.conv1d(h, b.projector.weight, b.projector.bias)
        for conv in (b.conv1, b.conv2):
            h = F.conv1d(h, conv.weight, conv.bias, dilation=2 ** i, padding=2 ** i)
            h = F.gelu((h - h.mean(-1, keepdim=True))
                       / (h.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt())
        h = h + r
    assert torch.allclose(tok.features(x[:, 0]), h[:, 0], atol=1e-5)
    assert torch.allclose(tok(x[:, 0]), h[:, 0] @ tok.project.weight.T, atol=1e-5)
    # the demo's three blocks: 1 -> 5 -> 5 -> 1
    demo = TemporalTokenizer(64, 8, width=5, n_blocks=3)
    assert [(b.conv1.in_channels, b.conv1.out_channels) for b in demo.cnn] == [
        (1, 5), (5, 5), (5, 1)]


def test_paper_backbone_has_the_release_choices():
    """qkv with a bias, RMSNorm eps 1e-8, half-split rotary pairing: the release's backbone."""
    enc = BaristaEncoder(preset("paper", vocab_size=10))
    block = enc.transformer.blocks[0]
    assert block.attn.qkv.bias is not None and block.attn.out.bias is not None
    assert block.norm1.eps == block.norm2.eps == enc.transformer.norm.eps == 1e-8
    assert block.attn.rotate is rotate_half
    assert block.ffn.gate_value.bias is not None and block.ffn.out.bias is not None


def test_unknown_token_is_a_fixed_zero():
    emb = TableEmbedding(5, 8)
    ids = torch.tensor([0, 1, 0, 3])
    out = emb(ids)
    assert torch.all(out[0] == 0) and torch.all(out[2] == 0)
    out.sum().backward()
    assert torch.all(emb.table.weight.grad[0] == 0) and torch.any(emb.table.weight.grad[1] != 0)


def test_coordinate_embedding_interpolates_and_matches_integer_tables():
    emb = CoordinateEmbedding(12, extent_mm=10, init="small")
    a = emb(None, torch.tensor([[1.0, 2.0, 3.0]]))
    expected = emb.tables[0, 11] + emb.tables[1, 12] + emb.tables[2, 13]
    assert torch.allclose(a[0], expected)
    mid = emb(None, torch.tensor([[1.5, 2.0, 3.0]]))
    b = emb(None, torch.tensor([[2.0, 2.0, 3.0]]))
    assert torch.allclose(mid, (a + b) / 2, atol=1e-6)
    assert torch.all(emb(None, torch.tensor([[float("nan")] * 3])) == 0)


def test_rotary_scores_depend_only_on_relative_offset():
    rot = Rotary(16)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)

    def score(pq, pk):
        return float(rotate(q, rot(torch.tensor(pq))) @ rotate(k, rot(torch.tensor(pk))))

    assert score(3, 1) == pytest.approx(score(7, 5), abs=1e-5)
    assert score(0, 0) == pytest.approx(float(q @ k), abs=1e-5)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3  # the rotation really rotates
    assert torch.allclose(rotate(q, rot(torch.tensor(5))).norm(), q.norm())


def test_rotate_half_pairs_i_with_i_plus_half():
    """The release's pairing: feature i turns with feature i + d/2, at the angle of pair i."""
    d = 8
    angles = torch.zeros(d // 2)
    angles[1] = 0.3
    e1 = torch.zeros(d)
    e1[1] = 1.0
    out = rotate_half(e1, angles)
    expected = torch.zeros(d)
    expected[1], expected[1 + d // 2] = math.cos(0.3), math.sin(0.3)
    assert torch.allclose(out, expected, atol=1e-7)
    # the interleaved pairing turns feature 1 with feature 0 instead
    inter = rotate(e1, torch.tensor([0.3, 0.0, 0.0, 0.0]))
    assert inter[0] == pytest.approx(-math.sin(0.3)) and inter[5] == 0
    # scores stay relative with either pairing
    rot = Rotary(16)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)

    def score(pq, pk):
        return float(rotate_half(q, rot(torch.tensor(pq))) @ rotate_half(k, rot(torch.tensor(pk))))

    assert score(3, 1) == pytest.approx(score(7, 5), abs=1e-5)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3


@pytest.mark.parametrize("impl", ["bucketed", "padded"])
def test_packed_attention_matches_per_sample_attention(impl):
    g = torch.Generator().manual_seed(1)
    lengths = [5, 3, 5, 2]
    q, k, v = (torch.randn(sum(lengths), 2, 8, generator=g) for _ in range(3))
    cu = torch.tensor([0, 5, 8, 13, 15], dtype=torch.int32)
    out = packed_attention(q, k, v, cu, impl=impl)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1))
        assert torch.allclose(out[a:b], ref.transpose(0, 1), atol=1e-5)


def test_packed_batch_leaks_nothing_across_samples():
    model = tiny()
    batch = make_batch()
    out = model(batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["x"][3:] = torch.randn_like(changed["x"][3:])  # sample 2 only
    changed["spatial_id"][3:] = 5
    out2 = model(changed)
    assert torch.allclose(out[:3], out2[:3], atol=1e-6)
    assert not torch.allclose(out[3:], out2[3:])


def test_time_major_layout():
    lay = packed_layout(torch.tensor([2, 3]), 2)
    # sample 0: tokens c0p0 c1p0 c0p1 c1p1, then sample 1: c2p0 c3p0 c4p0 c2p1 ...
    assert lay.channel.tolist() == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4]
    assert lay.patch.tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    assert lay.cu_tokens.tolist() == [0, 4, 10]


def test_model_uses_time_position():
    model = tiny()
    batch = make_batch(n_channels=(2,))
    out = model(batch)
    swapped = {**batch, "x": batch["x"][:, [1, 0, 2, 3]]}
    out2 = model(swapped)
    # swapping two patches' content does not just swap the outputs: position matters
    assert not torch.allclose(out[:, [1, 0]], out2[:, [0, 1]], atol=1e-4)


def test_masked_channels_are_invisible():
    model = tiny()
    batch = make_batch()
    mask = torch.zeros(8, dtype=torch.bool)
    mask[[1, 4]] = True
    out = model(batch, channel_mask=mask)
    changed = {**batch, "x": batch["x"].clone()}
    changed["x"][[1, 4]] = torch.randn(2, 4, 16) * 10
    assert torch.allclose(out, model(changed, channel_mask=mask), atol=1e-6)


def test_group_mask_masks_whole_groups_about_30_percent():
    g = torch.Generator().manual_seed(0)
    n = 200
    groups = torch.arange(n) // 4  # 50 groups of 4 channels
    cu = torch.tensor([0, 100, 200], dtype=torch.int32)
    fractions = []
    for _ in range(20):
        mask = group_mask(groups, cu, 0.3, g)
        for grp in groups.unique():
            sel = mask[groups == grp]
            assert sel.all() or not sel.any()  # whole groups only
        for a, b in ((0, 100), (100, 200)):
            fractions.append(float(mask[a:b].float().mean()))
    assert all(0.3 <= f < 0.3 + 4 / 100 + 1e-9 for f in fractions)
    assert len({tuple(group_mask(groups, cu, 0.3, g).tolist()) for _ in range(5)}) > 1


def test_group_mask_lobe_scale_masks_big_groups():
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([0] * 10 + [1] * 5 + [2] * 5)
    sizes = {0: 10, 1: 5, 2: 5}
    for _ in range(10):
        mask = group_mask(groups, torch.tensor([0, 20], dtype=torch.int32), 0.3, g)
        chosen = set(groups[mask].tolist())
        assert int(mask.sum()) == sum(sizes[c] for c in chosen)  # never a partial group
        assert 6 <= int(mask.sum()) < 20  # at least 30%, never everything
        # groups are added until the ratio is reached: without the last one it fell short
        assert any(int(mask.sum()) - sizes[c] < 6 for c in chosen)


def test_ema_lags_by_momentum_and_gets_no_gradient():
    online = torch.nn.Linear(3, 2)
    ema = EMA(online, end=0.9, ramp_steps=10)
    assert ema.momentum(0) == 0.0 and ema.momentum(5) == pytest.approx(0.45)
    assert ema.momentum(100) == pytest.approx(0.9)
    start = ema.shadow.weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema.update(online, 100)  # momentum 0.9
    assert torch.allclose(ema.shadow.weight, 0.9 * start + 0.1 * online.weight)
    out = ema(torch.randn(4, 3))
    assert not out.requires_grad
    assert all(not p.requires_grad for p in ema.shadow.parameters())


def test_loss_falls_when_overfitting_one_batch():
    from barista.training.pretrain import MaskedLatentModel

    torch.manual_seed(0)
    # the paper's attention: the demo preset's prior confines attention to near contacts,
    # which these randomly placed contacts (40 mm apart) rarely are, so memorising is slower
    cfg = preset("demo", patch_samples=16, n_patches=4, encode_scale="parcel", vocab_size=6,
                 dropout=0.0, attention_prior="none")
    model = MaskedLatentModel(cfg, ema_ramp_steps=1, ema_end=1.0)  # fixed target
    batch = make_batch(n_channels=(6, 6))
    mask = group_mask(batch["group_id"], batch["cu_channels"], 0.3,
                      torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    # the release's CNN starts with smaller target tokens and falls slower early on: 100 steps
    # (0.18 -> 0.005) where the old CNN needed 60
    for _ in range(100):
        loss = model(batch, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert math.isfinite(losses[-1])


def test_normalised_targets_leave_no_collapse_shortcut():
    """With ``target_norm`` the loss does not fall by shrinking the target tokens: scaling the
    EMA tokenizer's projection leaves it unchanged (without it, the loss scales with the square)."""
    from barista.training.pretrain import MaskedLatentModel

    batch = make_batch(n_channels=(6, 6))
    mask = group_mask(batch["group_id"], batch["cu_channels"], 0.3,
                      torch.Generator().manual_seed(0))
    cfg = preset("demo", patch_samples=16, n_patches=4, encode_scale="parcel", vocab_size=6,
                 dropout=0.0)
    losses = {}
    for norm in (False, True):
        torch.manual_seed(0)
        model = MaskedLatentModel(cfg, target_norm=norm).eval()
        with torch.no_grad():
            model.predictor.net[-1].weight.zero_()  # predicts the bias: a constant token
            out = model(batch, mask)
            assert torch.allclose(out["target"].pow(2).mean(-1), torch.ones(1), atol=1e-3) \
                or not norm
            model.target.shadow.project.weight.mul_(0.5)
            losses[norm] = (out["loss"].item(), model(batch, mask)["loss"].item())
    assert losses[True][1] == pytest.approx(losses[True][0], rel=2e-3)
    assert losses[False][1] < 0.5 * losses[False][0]


def test_barista_with_mrope_reads_place_from_coordinates_not_tables():
    """Ablation: BaRISTA with MRoPE instead of the spatial table."""
    model = tiny(position="mrope")
    batch = make_batch(n_channels=(3, 5))
    with torch.no_grad():
        base = model(batch)
        # the token table is not used: other token ids change nothing
        other_ids = {**batch, "spatial_id": (batch["spatial_id"] + 1) % 6}
        assert torch.allclose(model(other_ids), base, atol=1e-6)
        # moving channel 4 (sample 2) changes the other channels of its sample only
        moved = {**batch, "coords": batch["coords"].clone()}
        moved["coords"][4, 0] += 15.0
        out = model(moved)
    assert torch.allclose(out[:3], base[:3], atol=1e-6)
    assert not torch.allclose(out[[3, 5, 6, 7]], base[[3, 5, 6, 7]], atol=1e-4)
    # shifting every coordinate of a sample by the same offset leaves it unchanged (relative)
    shifted = {**batch, "coords": batch["coords"] + torch.tensor([5.0, -3.0, 2.0])}
    with torch.no_grad():
        assert torch.allclose(model(shifted), base, atol=1e-4)


def test_barista_with_context_attention_keeps_samples_apart():
    """Ablation: BaRISTA with RPNT's context-based attention instead of fused attention."""
    plain, context = tiny(), tiny(context_kernel=3)
    batch = make_batch(n_channels=(3, 5))
    with torch.no_grad():
        context.load_state_dict(plain.state_dict(), strict=False)
        a, b = context(batch), plain(batch)
        assert not torch.allclose(a, b, atol=1e-4)  # the kernel acts on the scores
        changed = {**batch, "x": batch["x"].clone()}
        changed["x"][3:] += 1.0
        assert torch.allclose(context(changed)[:3], a[:3], atol=1e-6)


def test_coordinate_embedding_starts_with_similarity_falling_with_distance():
    """Sinusoidal start: nearby contacts get similar embeddings, and similarity depends on the
    displacement only, so masked pretraining can find a channel's neighbours."""
    emb = CoordinateEmbedding(32, init="small")

    def sim(a, b):
        e = emb(None, torch.tensor([a, b], dtype=torch.float32))
        return float((e[0] @ e[1]).detach())

    origin = [-40.0, -20.0, 8.0]
    near = [-43.5, -20.0, 8.0]  # the next contact on a shaft
    assert sim(origin, origin) == pytest.approx(INIT_NORM ** 2, rel=1e-4)  # three equal blocks
    assert sim(origin, origin) > sim(origin, near) > sim(origin, [-60.0, -20.0, 8.0]) \
        > sim(origin, [0.0, 30.0, 50.0])
    # shifting both positions leaves the similarity unchanged (integer mm: exact rows)
    assert sim([-40.0, -20.0, 8.0], [-44.0, -20.0, 9.0]) == pytest.approx(
        sim([10.0, 5.0, -30.0], [6.0, 5.0, -29.0]), abs=1e-5)
    # the tables stay parameters: the start is a start
    emb(None, torch.tensor([origin])).sum().backward()
    assert emb.tables.grad is not None and emb.tables.grad.abs().sum() > 0


def test_table_embeddings_start_as_large_as_coordinate_embeddings():
    """With init ``small`` every spatial embedding starts at the same norm, small beside a token
    but far above the mask token's, so a masked position is mostly its place; id 0 is the
    untrained zero."""
    emb = TableEmbedding(200, 64, init="small")
    norms = emb.table.weight[1:].norm(dim=1)
    assert float(norms.mean().detach()) == pytest.approx(INIT_NORM, rel=0.05)
    torch.manual_seed(0)
    mask_token = BaristaEncoder(preset("demo", d_model=64)).mask_token
    assert float(mask_token.norm().detach()) < INIT_NORM / 1.5
    assert torch.all(emb.table.weight[0] == 0)


def test_release_spatial_start_is_unit_normal_and_demo_keeps_small():
    """``spatial_init: release`` starts every table entry N(0, 1) (row norm about sqrt(d)),
    row 0 zero; the paper preset uses it, the demo preset names its departure."""
    torch.manual_seed(0)
    emb = TableEmbedding(400, 64, init="release")
    rows = emb.table.weight[1:].detach()
    assert float(rows.std()) == pytest.approx(1.0, rel=0.05)
    assert float(rows.norm(dim=1).mean()) == pytest.approx(8.0, rel=0.05)
    assert torch.all(emb.table.weight[0] == 0)
    grid = GridEmbedding(64, init="release")
    assert float(grid.axes[0].weight.detach().std()) == pytest.approx(1.0, rel=0.05)
    paper, demo = preset("paper"), preset("demo")
    assert (paper.spatial_init, paper.channel_coordinates) == ("release", "lip")
    assert (demo.spatial_init, demo.channel_coordinates) == ("small", "mni")
    with pytest.raises(ValueError, match="spatial_init"):
        TableEmbedding(5, 8, init="large")


def test_grid_embedding_sums_three_integer_rows():
    """The release's channel encoder: one row per axis, summed; -1 = no position -> zero."""
    grid = GridEmbedding(8, init="release")
    ids = torch.tensor([[3, 150, 7], [0, 199, 2], [-1, 5, 5]])
    out = grid(ids)
    w = [a.weight for a in grid.axes]
    assert torch.allclose(out[0], w[0][3] + w[1][150] + w[2][7])
    assert torch.allclose(out[1], w[0][0] + w[1][199] + w[2][2])
    assert torch.all(out[2] == 0)
    with pytest.raises(DataError, match="0..199"):
        grid(torch.tensor([[0, 200, 1]]))


def test_mni_grid_rows_round_and_clip():
    coords = torch.tensor([[-40.4, 12.6, 0.0], [-150.0, 99.7, 120.0],
                           [float("nan"), 1.0, 2.0]])
    assert mni_grid_ids(coords).tolist() == [[60, 113, 100], [0, 199, 199], [-1, -1, -1]]


def test_lip_channel_encoder_reads_grid_ids_or_falls_back_to_mni_rows(caplog):
    cfg = preset("demo", patch_samples=16, n_patches=4, encode_scale="channel",
                 channel_coordinates="lip", dropout=0.0)
    torch.manual_seed(0)
    model = BaristaEncoder(cfg).eval()
    batch = make_batch(n_channels=(3, 5))
    ids = mni_grid_ids(batch["coords"])
    with torch.no_grad():
        emb = model.spatial_embedding({**batch, "grid_ids": ids})
        assert torch.allclose(emb, model.spatial(ids))
        with caplog.at_level("WARNING"):
            import barista.models.spatial as spatial

            spatial._warned_mni_rows = False
            fallback = model.spatial_embedding(batch)
        assert torch.allclose(fallback, emb)
        assert "Brain Treebank" in caplog.text and "round(mm) + 100" in caplog.text
        other = {**batch, "grid_ids": (ids + 1).clamp(max=199)}
        assert not torch.allclose(model(other), model({**batch, "grid_ids": ids}))
