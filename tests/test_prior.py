"""The spatial-temporal attention prior (barista.models.prior) and its use in packed attention."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from barista.models import BaristaEncoder, attention, preset
from barista.models.attention import packed_attention
from barista.models.barista import packed_layout
from barista.models.prior import AttentionPrior


def layout_batch(coords_per_sample, n_patches=3, patch=16, seed=0):
    """A packed batch whose samples have the given contact positions (mm)."""
    g = torch.Generator().manual_seed(seed)
    counts = [len(c) for c in coords_per_sample]
    total = sum(counts)
    cu = torch.zeros(len(counts) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(counts), 0)
    return {"x": torch.randn(total, n_patches, patch, generator=g),
            "coords": torch.tensor([p for c in coords_per_sample for p in c],
                                   dtype=torch.float32),
            "spatial_id": torch.zeros(total, dtype=torch.int64),
            "group_id": torch.arange(total), "n_channels": torch.tensor(counts),
            "cu_channels": cu}


def bias_of(prior, batch, n_patches):
    layout = packed_layout(batch["n_channels"], n_patches)
    return prior(batch["coords"], layout.channel, layout.patch), layout


def test_bias_values_on_a_known_layout():
    """Two contacts 10 mm apart, three patches, time-major tokens (c0p0, c1p0, c0p1, ...)."""
    prior = AttentionPrior(2, slope=0.5, same_patch=1.5)
    with torch.no_grad():
        prior.slope[1] = -1.0
        prior.same_patch[1] = -0.25
    batch = layout_batch([[[0, 0, 0], [6, 8, 0]]])  # 10 mm
    bias, layout = bias_of(prior, batch, 3)
    block = bias.block([0], 6).detach()
    assert block.shape == (1, 2, 6, 6)
    for h, (a, b) in enumerate([(0.5, 1.5), (-1.0, -0.25)]):
        for i in range(6):
            for j in range(6):
                ci, cj = int(layout.channel[i]), int(layout.channel[j])
                dist = 0.0 if ci == cj else 10.0
                same = float(layout.patch[i] == layout.patch[j])
                want = -math.log1p(math.exp(a)) * dist / 10 + b * same
                assert float(block[0, h, i, j]) == pytest.approx(want, abs=1e-6)


def test_unknown_positions_get_the_mean_distance():
    prior = AttentionPrior(1, slope=0.0, same_patch=0.0)
    batch = layout_batch([[[0, 0, 0], [3, 4, 0], [float("nan")] * 3]])  # known pair: 5 mm
    block = bias_of(prior, batch, 1)[0].block([0], 3)[0, 0].detach()
    per_10mm = -math.log(2.0)  # -softplus(0)
    assert float(block[0, 1]) == pytest.approx(per_10mm * 0.5)
    # mean over the known pairs (5, 5 mm and the zero self-distances): 10 / 4 = 2.5 mm
    assert float(block[0, 2]) == pytest.approx(per_10mm * 0.25)
    assert float(block[2, 2]) == pytest.approx(per_10mm * 0.25)


def test_samples_at_the_same_places_share_one_bias_block():
    prior = AttentionPrior(2)
    same = layout_batch([[[0, 0, 0], [5, 0, 0]]] * 3)
    other = layout_batch([[[0, 0, 0], [5, 0, 0]], [[0, 0, 0], [50, 0, 0]]])
    assert bias_of(prior, same, 2)[0].block([0, 4, 8], 4).shape[0] == 1
    assert bias_of(prior, other, 2)[0].block([0, 4], 4).shape[0] == 2


def reference_attention(q, k, v, cu, bias):
    """softmax(q k / sqrt d + bias) v, one sample at a time."""
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (t[lo:hi].transpose(0, 1) for t in (q, k, v))
        scores = qs @ ks.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores + bias.block([lo], hi - lo)[0]
        out[lo:hi] = (scores.softmax(-1) @ vs).transpose(0, 1)
    return out


@pytest.mark.parametrize("impl", ["bucketed", "padded"])
def test_biased_packed_attention_matches_per_sample_attention(impl):
    # samples 0 and 2 share a length (one bucket) but not their places; sample 1 is shorter
    batch = layout_batch([[[0, 0, 0], [4, 0, 0], [30, 0, 0]], [[0, 0, 0], [9, 9, 9]],
                          [[1, 2, 3], [60, 0, 0], [0, 3, 0]]])
    prior = AttentionPrior(2)
    bias, layout = bias_of(prior, batch, 3)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(len(layout.channel), 2, 8, generator=g) for _ in range(3))
    got = packed_attention(q, k, v, layout.cu_tokens, impl=impl, bias=bias)
    want = reference_attention(q, k, v, layout.cu_tokens, bias)
    assert torch.allclose(got, want, atol=1e-5)


def prior_encoder(**kw):
    cfg = preset("demo", patch_samples=16, n_patches=3, encode_scale="channel", dropout=0.0,
                 attention_prior="distance", **kw)
    torch.manual_seed(0)
    return BaristaEncoder(cfg).eval()


@pytest.mark.parametrize("impl", ["bucketed", "padded"])
def test_no_leakage_across_samples_with_the_prior(impl):
    enc = prior_encoder(attention=impl)
    batch = layout_batch([[[0, 0, 0], [4, 0, 0], [8, 0, 0]], [[0, 0, 0], [4, 0, 0], [8, 0, 0]]])
    with torch.no_grad():
        a = enc(batch)
        changed = {**batch, "x": batch["x"].clone(), "coords": batch["coords"].clone()}
        changed["x"][3:] += 5.0
        changed["coords"][3:] += 20.0  # another place, so the bucket gets one block per sample
        b = enc(changed)
    assert torch.allclose(a[:3], b[:3], atol=1e-5)
    assert not torch.allclose(a[3:], b[3:], atol=1e-3)


def test_a_steep_slope_cuts_attention_to_far_contacts():
    """With softplus(a) ~ 50 per 10 mm, contacts 50 mm apart cannot see each other: changing one
    contact's signal leaves the other's states unchanged, through every layer."""
    enc = prior_encoder()
    places = [[[0, 0, 0], [50, 0, 0], [0, 50, 0]]]
    batch = layout_batch(places)
    with torch.no_grad():
        enc.prior.slope.fill_(50.0)
        a = enc(batch)
        changed = {**batch, "x": batch["x"].clone()}
        changed["x"][1] += 3.0
        b = enc(changed)
        enc.prior.slope.fill_(-5.0)  # a gentle slope: far contacts do see each other
        c = enc(batch)
        d = enc(changed)
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[2], b[2], atol=1e-6)
    assert not torch.allclose(a[1], b[1], atol=1e-3)
    assert not torch.allclose(c[0], d[0], atol=1e-4)


@pytest.mark.parametrize("impl", ["bucketed", "padded"])
def test_gradient_reaches_both_prior_parameters(impl):
    enc = prior_encoder(attention=impl)
    enc.train()
    batch = layout_batch([[[0, 0, 0], [4, 0, 0], [20, 0, 0]], [[0, 0, 0], [7, 0, 0]]])
    enc(batch).pow(2).sum().backward()
    for p in (enc.prior.slope, enc.prior.same_patch):
        assert p.grad is not None and torch.all(p.grad != 0) and torch.isfinite(p.grad).all()


def test_prior_leaves_the_other_initial_weights_unchanged():
    """Variants with and without the prior start from the same weights (paired baselines)."""
    cfg = preset("demo", patch_samples=16, n_patches=3, encode_scale="channel",
                 attention_prior="none")
    torch.manual_seed(3)
    plain = BaristaEncoder(cfg).state_dict()
    torch.manual_seed(3)
    with_prior = BaristaEncoder(preset("demo", patch_samples=16, n_patches=3,
                                       encode_scale="channel", attention_prior="distance"))
    state = with_prior.state_dict()
    assert set(state) - set(plain) == {"prior.slope", "prior.same_patch"}
    assert all(torch.equal(plain[k], state[k]) for k in plain)


def test_paper_preset_has_no_prior():
    assert BaristaEncoder(preset("paper", vocab_size=4)).prior is None


def test_varlen_with_a_bias_falls_back_to_bucketed_and_says_so_once(caplog):
    batch = layout_batch([[[0, 0, 0], [4, 0, 0]], [[0, 0, 0], [9, 0, 0], [1, 1, 1]]])
    bias, layout = bias_of(AttentionPrior(2), batch, 2)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(len(layout.channel), 2, 8, generator=g) for _ in range(3))
    attention._say_no_bias_in_varlen.cache_clear()
    with caplog.at_level(logging.INFO, logger="barista.models.attention"):
        a = packed_attention(q, k, v, layout.cu_tokens, impl="varlen", bias=bias)
        packed_attention(q, k, v, layout.cu_tokens, impl="varlen", bias=bias)
    assert torch.allclose(a, packed_attention(q, k, v, layout.cu_tokens, impl="bucketed",
                                              bias=bias))
    said = [r for r in caplog.records if "varlen" in r.getMessage()]
    assert len(said) == 1  # once per process, not once per layer and step


def test_prior_rejects_context_attention_and_unknown_names():
    with pytest.raises(ValueError, match="context_kernel"):
        BaristaEncoder(preset("demo", attention_prior="distance", context_kernel=3))
    with pytest.raises(ValueError, match="attention_prior"):
        BaristaEncoder(preset("demo", attention_prior="near"))


def test_sdpa_broadcasts_a_shared_block():
    """A (1, heads, n, n) block applies to every sample of a bucket (what the sharing relies
    on)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 4, generator=g) for _ in range(3))
    mask = torch.randn(1, 2, 5, 5, generator=g)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.expand(3, -1, -1, -1))
    assert torch.allclose(a, b, atol=1e-6)
