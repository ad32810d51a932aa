"""RPNT building blocks: MRoPE, context-based attention, stochastic causal masking, InfoNCE.

The RPNT paper's public release has three faults (below); each has a test here that
fails under the faulty behaviour (and, where cheap, shows that the faulty variant is caught):

- fault 1 (MRoPE gives every head only the first coordinate):
  ``test_fault1_mrope_every_coordinate_moves_every_head``;
- fault 2 (the "causal" context attention sees the future through its conv and its context):
  ``test_fault2_context_attention_is_causal``;
- fault 3 (the multi-site SSL path never masks its input):
  ``test_fault3_every_ssl_path_masks_the_input``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from barista.models.context_attention import ContextAttention, conv_score_maps, token_grid
from barista.models.mrope import IEEG_BASES, IEEG_COORDINATES, MultiRotary, even_sections
from barista.models.rotary import rotate
from barista.training.causal_masking import (
    apply_mask,
    causal_mask,
    draw_ratios,
    masked_mse,
    masked_poisson_nll,
    robust_ssl_loss,
)
from barista.training.contrastive import ContrastiveLoss, group_info_nce, info_nce

# ---------------------------------------------------------------------------------------- MRoPE


def _ieeg_rotary(head_dim=24):
    return MultiRotary(head_dim, even_sections(head_dim), IEEG_BASES)


def _scores(rot, q, k, coords):
    """Per-head score of token 0's query against token 1's key, (heads,)."""
    qr, kr = rot(q, k, coords)
    return (qr[0] * kr[1]).sum(-1)


def _qk(n_heads=3, head_dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, n_heads, head_dim, generator=g, dtype=torch.float64),
            torch.randn(2, n_heads, head_dim, generator=g, dtype=torch.float64))


COORDS = torch.tensor([[3.0, -41.5, 12.25, 8.0, 2.0, 1.0],  # time, x, y, z (MNI mm), session, task
                       [5.0, -37.0, 20.5, -3.75, 2.0, 1.0]], dtype=torch.float64)


def test_fault1_mrope_every_coordinate_moves_every_head():
    """Fault 1: the RPNT release gave every head only the first coordinate's frequencies, so
    the other coordinates never reached q.k. Here each coordinate, varied alone between two
    tokens, changes the score of every head; the release's angles fail the same check."""
    rot = _ieeg_rotary()
    q, k = _qk()
    base = _scores(rot, q, k, COORDS)
    for c, name in enumerate(IEEG_COORDINATES):
        moved = COORDS.clone()
        moved[1, c] += 1.5  # fractional: MNI millimetres are continuous
        change = (_scores(rot, q, k, moved) - base).abs()
        assert (change > 1e-6).all(), f"{name}: a head's score ignores it ({change})"

    # the release: each head's pairs all use the first coordinate's angle
    def release(q, k, coords):
        a = rot.angles(coords[..., :1].expand_as(coords))[:, None, :]
        return rotate(q, a), rotate(k, a)

    for c in range(1, len(IEEG_COORDINATES)):
        moved = COORDS.clone()
        moved[1, c] += 1.5
        assert torch.allclose(_scores(release, q, k, moved), _scores(release, q, k, COORDS))


def test_mrope_scores_depend_on_coordinate_differences_only():
    rot = _ieeg_rotary()
    q, k = _qk(seed=1)
    base = _scores(rot, q, k, COORDS)
    for c in range(len(IEEG_COORDINATES)):
        shifted = COORDS.clone()
        shifted[:, c] += 17.3
        assert torch.allclose(_scores(rot, q, k, shifted), base, atol=1e-9, rtol=0)
    every = COORDS + torch.tensor([4.0, -12.5, 3.25, 60.0, 7.0, 2.0], dtype=torch.float64)
    assert torch.allclose(_scores(rot, q, k, every), base, atol=1e-9, rtol=0)


def test_mrope_zero_section_is_ignored_and_norms_are_kept():
    rot = MultiRotary(16, {"time": 8, "x": 0, "y": 6}, bases={"time": 10000.0, "y": 500.0})
    q, k = _qk(head_dim=16, seed=2)
    coords = torch.tensor([[1.0, 5.0, -3.0], [4.0, -9.0, 7.0]], dtype=torch.float64)
    moved = coords.clone()
    moved[1, 1] += 30.0  # x: no section
    assert torch.equal(_scores(rot, q, k, moved), _scores(rot, q, k, coords))
    moved[1, 2] += 1.0  # y: a section
    assert not torch.allclose(_scores(rot, q, k, moved), _scores(rot, q, k, coords))
    qr, kr = rot(q, k, coords)
    assert torch.allclose(qr.norm(dim=-1), q.norm(dim=-1), atol=1e-12)
    assert torch.allclose(kr.norm(dim=-1), k.norm(dim=-1), atol=1e-12)
    assert torch.equal(qr[..., 14:], q[..., 14:])  # features past the sections: unrotated


def test_mrope_layouts_agree_and_match_transformer_angles():
    rot = _ieeg_rotary(16)
    g = torch.Generator().manual_seed(3)
    coords = torch.randn(2, 5, 6, generator=g) * 20  # (batch, seq, n_coords)
    q, k = torch.randn(2, 2, 5, 16, generator=g), torch.randn(2, 2, 5, 16, generator=g)
    qb, kb = rot(q, k, coords)  # (batch, heads, seq, dim)
    packed = lambda t: t.transpose(1, 2).reshape(10, 2, 16)  # noqa: E731
    qp, kp = rot(packed(q), packed(k), coords.reshape(10, 6))
    assert torch.allclose(qp, packed(qb), atol=1e-6) and torch.allclose(kp, packed(kb), atol=1e-6)
    # angles(coords) is what Transformer/Attention take: (tokens, head_dim/2)
    angles = rot.angles(coords.reshape(10, 6))
    assert angles.shape == (10, 8)
    assert torch.allclose(rotate(packed(q), angles[:, None, :]), qp)
    # a contact without a position rotates nothing in the x, y, z sections
    nan = coords.reshape(10, 6).clone()
    nan[0, 1:4] = float("nan")
    assert torch.isfinite(rot.angles(nan)).all()


def test_mrope_rejects_bad_sections():
    with pytest.raises(ValueError):
        MultiRotary(16, [6, 3])
    with pytest.raises(ValueError):
        MultiRotary(16, [10, 8])
    with pytest.raises(KeyError):
        MultiRotary(16, {"time": 8}, bases={"tme": 10.0})

# ---------------------------------------------------------------------------- context attention


def _packed(shapes, n_heads=2, head_dim=8, seed=0):
    """Tokens of samples with (channels, patches) shapes, time-major as BaRISTA packs them."""
    g = torch.Generator().manual_seed(seed)
    time, stream, cu = [], [], [0]
    offset = 0
    for n_ch, n_p in shapes:
        time.append(torch.arange(n_p).repeat_interleave(n_ch))
        stream.append(offset + torch.arange(n_ch).repeat(n_p))
        offset += n_ch
        cu.append(cu[-1] + n_ch * n_p)
    n = cu[-1]
    q, k, v = (torch.randn(n, n_heads, head_dim, generator=g) for _ in range(3))
    return q, k, v, torch.cat(time), torch.cat(stream), torch.tensor(cu, dtype=torch.int32)


def _module(causal, kernel_size=3, n_heads=2, head_dim=8, seed=0, strong=True):
    torch.manual_seed(seed)
    m = ContextAttention(n_heads, head_dim, kernel_size, causal=causal)
    if strong:  # a kernel that really depends on the context
        with torch.no_grad():
            m.generator.weight.normal_(0, 1.0)
            m.pool_query.normal_(0, 1.0)
    return m


def _set_identity(m):
    with torch.no_grad():
        m.generator.weight.zero_()
        m.generator.bias.zero_()
        m.generator.bias.view(m.n_heads, -1)[:, m.identity_tap] = 1e4


@pytest.mark.parametrize("causal", [False, True])
def test_context_attention_identity_kernel_is_plain_attention(causal):
    shapes = [(3, 5), (2, 7), (1, 4)]
    q, k, v, time, stream, cu = _packed(shapes)
    m = _module(causal, kernel_size=5)
    _set_identity(m)
    out = m(q, k, v, time, cu, stream)
    for i in range(len(shapes)):
        lo, hi = int(cu[i]), int(cu[i + 1])
        t = time[lo:hi]
        mask = t[None, :] <= t[:, None] if causal else None
        ref = F.scaled_dot_product_attention(*(x[lo:hi].transpose(0, 1) for x in (q, k, v)),
                                             attn_mask=mask).transpose(0, 1)
        assert torch.allclose(out[lo:hi], ref, atol=1e-5), i


def _release_causal(m_bi, q, k, v):
    """The release's 'causal' path for one stream: future scores zeroed, centred conv with a
    kernel pooled over the whole window, future re-masked, softmax."""
    n, n_heads, d = q.shape
    present = torch.ones(1, n, dtype=torch.bool)
    kernel = m_bi.kernels(v.reshape(1, n, -1), present, n)  # whole-window context
    s = (q.transpose(0, 1) @ k.transpose(0, 1).transpose(-1, -2)) / math.sqrt(d)
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    s = s.masked_fill(future, 0.0)
    s = conv_score_maps(s[None], kernel.reshape(n_heads, 3, 3), causal=False)[0]
    p = s.masked_fill(future, float("-inf")).softmax(-1)
    return (p @ v.transpose(0, 1)).transpose(0, 1)


def test_fault2_context_attention_is_causal():
    """Fault 2: in the RPNT release the 'causal' context attention convolved the score map with
    a centred kernel (whose lower rows are later queries) and pooled its context over the whole
    window, so outputs at t depended on inputs after t. Here, changing every input after t
    leaves every output at <= t unchanged (1e-6), in packed multi-channel batches; the release's
    computation fails the same check."""
    shapes = [(3, 8), (2, 6)]
    q, k, v, time, stream, cu = _packed(shapes, seed=1)
    m = _module(causal=True)
    out, kernel = m(q, k, v, time, cu, stream, return_kernel=True)
    in_first = torch.arange(q.shape[0]) < int(cu[1])
    g = torch.Generator().manual_seed(5)
    for t in (0, 2, 5):
        later = in_first & (time > t)
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        for x in (q2, k2, v2):
            x[later] = torch.randn(int(later.sum()), *x.shape[1:], generator=g) * 3
        out2, kernel2 = m(q2, k2, v2, time, cu, stream, return_kernel=True)
        past = ~later
        assert torch.allclose(out2[past], out[past], atol=1e-6, rtol=0), t
        assert not torch.allclose(out2[later], out[later], atol=1e-3)
        # the kernel of query time s <= t is generated from the past only
        assert torch.allclose(kernel2[0, :, :t + 1], kernel[0, :, :t + 1], atol=1e-7)
        assert not torch.allclose(kernel2[0, :, t + 1:], kernel[0, :, t + 1:])

    # the check catches the release's behaviour (one stream, RPNT's layout)
    q, k, v, *_ = _packed([(1, 8)], seed=2)
    leaky = _release_causal(_module(causal=False), q, k, v)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[6:] += 2.0
    leaky2 = _release_causal(_module(causal=False), q2, k2, v2)
    assert not torch.allclose(leaky2[:6], leaky[:6], atol=1e-4)


def test_context_attention_bidirectional_sees_the_future():
    q, k, v, time, stream, cu = _packed([(3, 6)], seed=3)
    m = _module(causal=False)
    out = m(q, k, v, time, cu, stream)
    v2 = v.clone()
    v2[time > 3] += 1.0
    out2 = m(q, k, v2, time, cu, stream)
    assert not torch.allclose(out2[time <= 3], out[time <= 3], atol=1e-3)
    causal = _module(causal=True)
    assert not torch.allclose(causal(q, k, v, time, cu, stream), out, atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_context_attention_kernel_per_sample_and_no_leak(causal):
    q, k, v, time, stream, cu = _packed([(2, 5), (2, 5)], seed=4)
    half = int(cu[1])
    m = _module(causal)
    out, kernel = m(q, k, v, time, cu, stream, return_kernel=True)
    assert torch.allclose(kernel.sum((-1, -2)), torch.ones(kernel.shape[:3]), atol=1e-6)
    # different contexts -> different kernels, per sample
    assert not torch.allclose(kernel[0], kernel[1], atol=1e-4)
    # same tokens -> same kernel and outputs (the stream ids differ: renumbered per sample)
    same = [x.clone() for x in (q, k, v)]
    for x in same:
        x[half:] = x[:half]
    out_s, kernel_s = m(*same, time, cu, stream, return_kernel=True)
    assert torch.allclose(kernel_s[0], kernel_s[1]) and torch.allclose(out_s[:half],
                                                                        out_s[half:], atol=1e-6)
    # changing sample 1 leaves sample 0 alone (no attention, conv or context across samples)
    q2, v2 = q.clone(), v.clone()
    q2[half:] += 5.0
    v2[half:] *= -3.0
    out2, kernel2 = m(q2, k, v2, time, cu, stream, return_kernel=True)
    assert torch.allclose(out2[:half], out[:half], atol=1e-6, rtol=0)
    assert torch.allclose(kernel2[0], kernel[0], atol=1e-7)
    assert not torch.allclose(out2[half:], out[half:], atol=1e-3)


def test_context_attention_kernel_slides_along_time_within_a_stream():
    """A delta at offset (-1, -1) (causal) makes the score of (c, t) -> (c', s) the raw score of
    (c, t-1) -> (c', s-1): it moves along time, never to a neighbouring channel."""
    n_ch, n_p, d = 2, 4, 8
    q, k, v, time, stream, cu = _packed([(n_ch, n_p)], n_heads=1, head_dim=d, seed=6)
    m = ContextAttention(1, d, 3, causal=True)
    with torch.no_grad():
        m.generator.weight.zero_()
        m.generator.bias.zero_()
        m.generator.bias[1 * 3 + 1] = 1e4  # tap (1, 1): offsets (-1, -1)
    out = m(q, k, v, time, cu, stream)
    raw = (q[:, 0] @ k[:, 0].T) / math.sqrt(d)
    index = {(int(c), int(t)): i for i, (c, t) in enumerate(zip(stream, time, strict=True))}
    expected = torch.full_like(raw, float("-inf"))
    for (c, t), i in index.items():
        for (c2, s), j in index.items():
            if s <= t:
                expected[i, j] = raw[index[c, t - 1], index[c2, s - 1]] if t and s else 0.0
    ref = expected.softmax(-1) @ v[:, 0]
    assert torch.allclose(out[:, 0], ref, atol=1e-5)


def test_context_attention_token_order_and_row_kernels():
    # token order inside a sample does not matter
    q, k, v, time, stream, cu = _packed([(3, 4)], seed=7)
    m = _module(causal=True)
    perm = torch.randperm(q.shape[0], generator=torch.Generator().manual_seed(0))
    out = m(q, k, v, time, cu, stream)
    out_p = m(q[perm], k[perm], v[perm], time[perm], cu, stream[perm])
    assert torch.allclose(out_p, out[perm], atol=1e-6)
    # the per-query-row path equals a grouped conv2d when all rows share a kernel
    g = torch.Generator().manual_seed(1)
    maps, kern = torch.randn(4, 6, 5, 5, generator=g), torch.randn(6, 3, 3, generator=g)
    for causal in (False, True):
        rows = conv_score_maps(maps, kern[:, None].expand(6, 5, 3, 3), causal)
        assert torch.allclose(rows, conv_score_maps(maps, kern, causal), atol=1e-5)
    # duplicate (stream, time) positions are refused
    with pytest.raises(ValueError):
        token_grid(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError):
        ContextAttention(2, 8, kernel_size=4)


def test_context_attention_gradients_flow():
    q, k, v, time, stream, cu = _packed([(2, 4), (3, 3)], seed=8)
    q.requires_grad_(True)
    m = _module(causal=True, strong=False)
    m(q, k, v, time, cu, stream).square().sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert m.generator.weight.grad.abs().sum() > 0 and m.pool_query.grad.abs().sum() > 0

# ------------------------------------------------------------------------ causal masking + SSL


def test_causal_mask_future_block_and_channels_follow_the_ratios():
    counts = [3, 5, 8, 1]
    for seed in range(20):
        cm = causal_mask(counts, 12, torch.Generator().manual_seed(seed))
        n_future = min(max(math.ceil(cm.time_ratio * 12), 1), 11)
        assert cm.n_future == n_future
        for lo, hi, n_ch in zip(cm.cu_channels[:-1], cm.cu_channels[1:], counts, strict=True):
            m = cm.mask[lo:hi]
            full_columns = m.all(0).nonzero().flatten().tolist()
            assert full_columns == list(range(12 - n_future, 12))  # contiguous, at the end
            rows = m.all(1)
            assert torch.equal(rows, cm.masked_channels[lo:hi])
            expected = 0 if n_ch == 1 else min(max(math.floor(cm.channel_ratio * n_ch + .5), 1),
                                                n_ch - 1)
            assert int(rows.sum()) == expected
            # nothing else is masked
            assert torch.equal(m, rows[:, None] | (torch.arange(12) >= 12 - n_future)[None])
    given = causal_mask([8, 5], 12, torch.Generator().manual_seed(0), time_ratio=0.25,
                        channel_ratio=0.5)
    assert given.n_future == 3 and given.masked_channels.tolist().count(True) == 4 + 3
    tiny = causal_mask([4], 12, torch.Generator().manual_seed(0), time_ratio=0.0,
                       channel_ratio=1.0)
    assert tiny.n_future == 1 and int(tiny.masked_channels.sum()) == 3  # at least 1, not all


def test_causal_mask_ratios_cover_the_range_uniformly():
    g = torch.Generator().manual_seed(123)
    draws = torch.tensor([draw_ratios(g) for _ in range(2000)], dtype=torch.float64)
    assert draws.min() >= 0.01 and draws.max() <= 0.99
    n = draws.shape[0]
    for r in draws.T:  # Kolmogorov-Smirnov against U(0.01, 0.99), 1% level
        u = (r.sort().values - 0.01) / 0.98
        i = torch.arange(1, n + 1, dtype=torch.float64)
        ks = torch.maximum(i / n - u, u - (i - 1) / n).max()
        assert ks < 1.63 / math.sqrt(n)
        assert r.min() < 0.03 and r.max() > 0.97
    assert abs(float(torch.corrcoef(draws.T)[0, 1])) < 0.1  # drawn independently
    g = torch.Generator().manual_seed(0)
    narrow = torch.tensor([draw_ratios(g, (0.4, 0.6)) for _ in range(200)])
    assert narrow.min() >= 0.4 and narrow.max() <= 0.6


def test_causal_mask_is_deterministic_per_seed():
    a = causal_mask([6, 9], 10, torch.Generator().manual_seed(7))
    b = causal_mask([6, 9], 10, torch.Generator().manual_seed(7))
    assert torch.equal(a.mask, b.mask) and a.time_ratio == b.time_ratio
    others = [causal_mask([6, 9], 10, torch.Generator().manual_seed(s)).mask for s in range(8)]
    assert any(not torch.equal(a.mask, o) for o in others)


def test_masked_losses_ignore_unmasked_entries():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(7, 6, 4, generator=g)
    cm = causal_mask([3, 4], 6, g)
    pred = torch.randn(7, 6, 4, generator=g, requires_grad=True)
    loss = masked_mse(pred, target, cm.mask)
    expanded = cm.mask[..., None].expand_as(target)
    assert torch.allclose(loss, ((pred - target)[expanded] ** 2).mean())
    other = pred.detach().clone()
    other[~cm.mask] = float("nan")
    assert torch.equal(masked_mse(other, target, cm.mask), loss.detach())
    loss.backward()
    assert (pred.grad[~cm.mask] == 0).all() and (pred.grad[cm.mask] != 0).any()
    counts = torch.poisson(torch.full((7, 6, 4), 2.0), generator=g)
    nll = masked_poisson_nll(pred.detach(), counts, cm.mask)
    assert torch.equal(masked_poisson_nll(other, counts, cm.mask), nll)
    assert torch.equal(apply_mask(target, cm.mask)[cm.mask], torch.zeros_like(target[cm.mask]))
    assert torch.equal(apply_mask(target, cm.mask)[~cm.mask], target[~cm.mask])


def test_fault3_every_ssl_path_masks_the_input():
    """Fault 3: the RPNT release's multi-site path (with the site-contrastive term) never masked
    its input, so it trained a plain auto-encoder. Here the multi-site path (group labels,
    contrastive term on) and the single-site path both hand the encoder the masked input: zeros
    on every masked entry, the signal elsewhere; changing the signal under the mask changes
    nothing the encoder sees. A path passing ``x`` unmasked fails these checks."""
    g = torch.Generator().manual_seed(0)
    counts = [3, 5, 4, 6]
    x = torch.randn(sum(counts), 8, 16, generator=g) + 3.0
    sites = torch.tensor([0, 1, 0, 1])
    seen = []

    def encode(masked_x, mask):
        seen.append(masked_x.clone())
        pooled = torch.stack([masked_x[a:b].mean((0, 1)) for a, b in
                              zip(mask.cu_channels[:-1], mask.cu_channels[1:], strict=True)])
        return masked_x * 0.5, pooled

    for groups in (sites, None):
        out = robust_ssl_loss(encode, x, counts, torch.Generator().manual_seed(1), groups=groups)
        m = out.mask.mask
        for lo, hi in zip(out.mask.cu_channels[:-1], out.mask.cu_channels[1:], strict=True):
            assert m[lo:hi].any() and not m[lo:hi].all()  # every sample masked, never all
        assert (seen[-1][m] == 0).all() and torch.equal(seen[-1][~m], x[~m])
        x2 = x + 10.0 * m[..., None]  # only the signal under the mask changes
        out2 = robust_ssl_loss(encode, x2, counts, torch.Generator().manual_seed(1),
                               groups=groups)
        assert torch.equal(out2.mask.mask, m) and torch.equal(seen[-1], seen[-2])
        if groups is None:
            assert out.contrastive is None and torch.equal(out.loss, out.reconstruction)
        else:
            assert torch.allclose(out.loss, out.reconstruction + 0.1 * out.contrastive)
    # the objective the release's multi-site path optimised would be 0 for an identity model
    ident = robust_ssl_loss(lambda mx, mk: (mx, None), x, counts, torch.Generator())
    assert ident.loss > 1.0

# ---------------------------------------------------------------------------------- contrastive


def test_info_nce_hand_computed():
    eye = torch.eye(2)
    assert math.isclose(float(info_nce(eye, eye, temperature=1.0)), math.log(1 + math.exp(-1)),
                        rel_tol=1e-6)
    assert math.isclose(float(info_nce(eye, eye, temperature=0.5)), math.log(1 + math.exp(-2)),
                        rel_tol=1e-6)
    # groups: cosines 0-1 .6, 0-2 0, 0-3 .8, 1-2 .8, 1-3 .96, 2-3 .6; temperature 0.5
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]]) * 3.0  # scale-free
    groups = torch.tensor([0, 0, 1, 1])
    e = math.exp
    anchors = [1.2 - math.log(e(1.2) + e(0.0) + e(1.6)), 1.2 - math.log(e(1.2) + e(1.6) + e(1.92)),
               1.2 - math.log(e(0.0) + e(1.6) + e(1.2)), 1.2 - math.log(e(1.6) + e(1.92) + e(1.2))]
    expected = -sum(anchors) / 4
    assert math.isclose(float(group_info_nce(z, groups, 0.5)), expected, rel_tol=1e-5)


def test_info_nce_prefers_aligned_and_temperature_sharpens():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(16, 8, generator=g)
    z2 = z1 + 0.1 * torch.randn(16, 8, generator=g)
    shuffled = z2[torch.roll(torch.arange(16), 1)]
    assert info_nce(z1, z2) < info_nce(z1, shuffled)
    groups = torch.arange(8).repeat(2)
    centres = torch.randn(8, 8, generator=g)
    z = centres[groups] + 0.1 * torch.randn(16, 8, generator=g)
    wrong = torch.arange(16) // 2  # pairs rows of different centres
    assert group_info_nce(z, groups) < group_info_nce(z, wrong)
    # lower temperature: sharper softmax -> aligned loss falls, misaligned loss grows
    assert info_nce(z1, z2, 0.05) < info_nce(z1, z2, 0.5) < info_nce(z1, z2, 5.0)
    assert info_nce(z1, shuffled, 0.05) > info_nce(z1, shuffled, 0.5)
    assert group_info_nce(z, groups, 0.05) < group_info_nce(z, groups, 0.5)


def test_contrastive_loss_weight_and_gradients():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 4, generator=g, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = ContrastiveLoss()(z, groups=groups)  # temperature 0.1, weight 0.1
    assert torch.allclose(loss, 0.1 * group_info_nce(z, groups, 0.1))
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z2 = torch.randn(6, 4, generator=g, requires_grad=True)
    ContrastiveLoss(0.2, 1.0)(z.detach(), z2=z2).backward()
    assert z2.grad.abs().sum() > 0
    lonely = group_info_nce(z, torch.arange(6))  # no positives: 0, still differentiable
    assert float(lonely.detach()) == 0.0 and lonely.requires_grad
    with pytest.raises(ValueError):
        ContrastiveLoss()(z)


def test_context_attention_on_barista_layout_matches_packed_attention():
    """Drop-in check: with BaRISTA's packed layout (time = patch, stream = channel) and the
    identity kernel, bidirectional context attention equals ``packed_attention``."""
    from barista.models.attention import packed_attention
    from barista.models.barista import packed_layout

    layout = packed_layout(torch.tensor([3, 5, 2]), 4)
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(len(layout.patch), 2, 8, generator=g) for _ in range(3))
    m = _module(causal=False)
    _set_identity(m)
    out = m(q, k, v, layout.patch, layout.cu_tokens, layout.channel)
    ref = packed_attention(q, k, v, layout.cu_tokens, impl="bucketed")
    assert torch.allclose(out, ref, atol=1e-5)
