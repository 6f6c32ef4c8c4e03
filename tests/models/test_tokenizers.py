"""PoLAr-MAE tokenizer and the tokenizer + ViT encoder."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from helpers.events import event_of, make_batch
from nufm.models.encoders import TokenViTConfig, TokenViTEncoder, build_encoder
from nufm.models.tokenizers import (
    MiniPointNet,
    PointMAETokenizer,
    PointMAETokenizerConfig,
    fps_in_groups,
)
from nufm.models.vit import ViTConfig


def _cfg(**kw: object) -> PointMAETokenizerConfig:
    base: dict[str, object] = dict(
        in_channels=1,
        embed_dim=32,
        group_max_points=8,
        group_upscale_points=24,
        pointnet_dims=(16, 32, 32),
        pos_hidden=16,
    )
    base.update(kw)
    return PointMAETokenizerConfig(**base)  # type: ignore[arg-type]


def test_tokens_shapes_and_group_geometry() -> None:
    torch.manual_seed(0)
    batch = make_batch([300, 800])
    cfg = _cfg()
    tok = PointMAETokenizer(cfg).eval()
    t = tok(batch.coord, batch.feat, batch.offset)
    B, G, D = t.feat.shape
    assert (B, D) == (2, 32)
    assert t.pos.shape == (B, G, D) and t.center.shape == (B, G, 3)
    assert t.group_idx.shape == (B, G, 8) and t.valid.shape == (B, G)
    assert int(t.valid.sum(1).max()) == G and bool((t.valid.sum(1) > 0).all())
    assert torch.equal(t.n_dropped, torch.zeros(2, dtype=torch.int64))
    starts = torch.tensor([0, 300])
    for b in range(B):
        idx = t.group_idx[b][t.valid[b]]  # (G_b, K)
        filled = idx >= 0
        assert bool(filled[:, 0].all())
        rows = idx[filled]
        assert bool(((rows >= starts[b]) & (rows < batch.offset[b])).all())
        centers = t.center[b][t.valid[b]]  # (G_b, 3)
        dist = (batch.coord[idx.clamp(min=0)] - centers[:, None]).norm(dim=-1)
        assert bool((dist[filled] <= cfg.group_radius * (1 + 1e-5)).all())
        # Every centre is one of the event's points.
        ev = batch.coord[starts[b] : batch.offset[b]]
        d_center = (centers[:, None] - ev[None]).norm(dim=-1).min(1).values
        assert bool((d_center < 1e-6).all())
        # C-NMS: kept centres are farther apart than the suppression radius.
        pair = (centers[:, None] - centers[None]).norm(dim=-1) + torch.eye(len(centers)) * 10
        assert float(pair.min()) > 2 * cfg.group_radius * cfg.overlap_factor
        # Group points are distinct rows.
        for g in idx:
            g = g[g >= 0]
            assert len(g.unique()) == len(g)
    # Padding tokens are zero and have no points.
    assert bool((t.group_idx[~t.valid] == -1).all())
    assert bool((t.feat[~t.valid] == 0).all())


def test_context_overflow_is_counted_not_crashing() -> None:
    batch = make_batch([300, 800])
    full = PointMAETokenizer(_cfg()).eval()(batch.coord, batch.feat, batch.offset)
    n_full = full.valid.sum(1)
    capped = PointMAETokenizer(_cfg(context_length=5)).eval()(batch.coord, batch.feat, batch.offset)
    n_capped = capped.valid.sum(1)
    assert bool((n_capped == torch.clamp(n_full, max=5)).all())
    assert torch.equal(capped.n_dropped, n_full - n_capped)


def test_fps_seeded_tokenizer() -> None:
    batch = make_batch([300, 800])
    t = PointMAETokenizer(_cfg(num_init_groups=64)).train()(batch.coord, batch.feat, batch.offset)
    assert bool((t.valid.sum(1) <= 64).all()) and bool((t.valid.sum(1) > 0).all())


def test_fps_in_groups_matches_naive_loop() -> None:
    torch.manual_seed(0)
    Q, Ku, k = 6, 20, 5
    pts = torch.randn(Q, Ku, 3)
    n_valid = torch.tensor([20, 12, 5, 3, 7, 1])
    valid = torch.arange(Ku) < n_valid[:, None]
    got = fps_in_groups(pts, valid, k)
    for q in range(Q):
        n = int(n_valid[q])
        if n <= k:
            assert got[q].tolist() == list(range(k))
            continue
        chosen = [0]
        d = torch.full((n,), float("inf"))
        for _ in range(k - 1):
            d = torch.minimum(d, (pts[q, :n] - pts[q, chosen[-1]]).square().sum(-1))
            d[chosen] = -1
            chosen.append(int(d.argmax()))
        assert got[q].tolist() == chosen


def test_minipointnet_ignores_invalid_points() -> None:
    torch.manual_seed(0)
    net = MiniPointNet(4, 16, (8, 16, 16))
    x = torch.randn(5, 6, 4)
    point_valid = torch.rand(5, 6) > 0.4
    point_valid[:, 0] = True
    point_valid[4] = False
    out = net(x, point_valid)
    x2 = x.clone()
    x2[~point_valid] = 100.0
    torch.testing.assert_close(net(x2, point_valid), out)
    assert bool((out[4] == 0).all())  # a group with no valid point pools to zero
    ref = net(x[0:1, point_valid[0]], torch.ones(1, int(point_valid[0].sum()), dtype=torch.bool))
    torch.testing.assert_close(out[0:1], ref, atol=1e-5, rtol=1e-5)


def test_minipointnet_equals_a_dense_per_group_reference() -> None:
    """The packed, segment-max PointNet equals the same layers on each group's valid points
    with plain ``amax``, values and parameter gradients (gaps in the valid slots, an empty
    group)."""
    torch.manual_seed(3)
    net = MiniPointNet(4, 16, (8, 16, 16))
    x = torch.randn(7, 9, 4)
    point_valid = torch.rand(7, 9) > 0.5
    point_valid[2] = False
    out = net(x, point_valid)

    def dense(q: int) -> torch.Tensor:
        if not point_valid[q].any():
            return torch.zeros(16)
        h = net.first(x[q][point_valid[q]])  # (n, 16)
        h = torch.cat([h.amax(0).expand_as(h), h], dim=-1)
        return net.second(h).amax(0)

    want = torch.stack([dense(q) for q in range(7)])
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    w = torch.randn_like(out)
    params = list(net.parameters())
    for a, b in zip(
        torch.autograd.grad((out * w).sum(), params),
        torch.autograd.grad((want * w).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _encoder() -> TokenViTEncoder:
    cfg = TokenViTConfig(
        tokenizer=_cfg(),
        vit=ViTConfig(embed_dim=32, depth=2, num_heads=4, drop_path=0.1),
        return_blocks=(0,),
    )
    enc = build_encoder(cfg)
    assert isinstance(enc, TokenViTEncoder)
    return enc


def test_token_vit_encoder_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    enc = _encoder().train()
    batch = make_batch([300, 800])
    out = enc(batch)
    assert out.level == "token" and out.tokens is not None and out.valid is not None
    assert out.feat.shape == out.tokens.feat.shape and 0 in out.hidden
    out.feat[out.valid].square().mean().backward()
    for _ in range(2):  # more passes: drop-path may drop a block for both events in one
        enc(batch).feat[out.valid].square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_token_vit_encoder_is_batch_independent() -> None:
    torch.manual_seed(0)
    enc = _encoder().eval()
    batch = make_batch([300, 800, 150], seed=3)
    with torch.no_grad():
        together = enc(batch)
        for i in range(3):
            alone = enc(event_of(batch, i))
            a = alone.feat[0][alone.valid[0]]
            b = together.feat[i][together.valid[i]]
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_token_vit_mask_token_replaces_tokens_with_mostly_masked_points() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(_encoder().cfg, mask_token=True)
    enc = build_encoder(cfg).eval()
    assert isinstance(enc, TokenViTEncoder) and enc.mask_token is not None
    batch = make_batch([300, 800], seed=4)
    tokens = enc.tokenize(batch)
    t = int(((tokens.group_idx[0] >= 0).sum(-1)).argmax())  # the fullest token of event 0
    g = tokens.group_idx[0, t]
    members = g[g >= 0]
    assert members.numel() >= 3
    is_masked = torch.zeros(batch.num_points, dtype=torch.bool)
    # token (0, t): mask at most half of its points (not a majority -> kept) ...
    is_masked[members[: members.numel() // 2]] = True
    half = enc.mask_tokens(tokens, is_masked)
    assert not bool((half.feat[0, t] == enc.mask_token).all())
    # ... then all but one (a majority -> replaced)
    is_masked[members[:-1]] = True
    most = enc.mask_tokens(tokens, is_masked)
    # hand-computed rule for every token: more than half of its valid members masked
    member = tokens.group_idx >= 0
    frac = (is_masked[tokens.group_idx.clamp(min=0)] & member).sum(-1) / member.sum(-1).clamp(min=1)
    expect = (frac > 0.5) & tokens.valid
    replaced = (most.feat == enc.mask_token).all(-1)
    assert bool(replaced[0, t]) and torch.equal(replaced, expect)
    torch.testing.assert_close(most.feat[~expect], tokens.feat[~expect])
    torch.testing.assert_close(most.pos, tokens.pos)
    # the encoder's forward applies it; without a mask token it refuses
    out = enc(batch, is_masked=is_masked)
    assert out.feat.shape == tokens.feat.shape
    with pytest.raises(ValueError, match="mask_token"):
        _encoder()(batch, is_masked=is_masked)


def test_token_vit_config_width_mismatch() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        TokenViTConfig(tokenizer=_cfg(), vit=ViTConfig(embed_dim=64, num_heads=4))


def test_tokenizer_rejects_wrong_channels() -> None:
    batch = make_batch([100], channels=4)
    with pytest.raises(ValueError, match="in_channels=1"):
        PointMAETokenizer(_cfg())(batch.coord, batch.feat, batch.offset)


def test_stream_fusion_encoder_uses_both_streams_and_is_batch_independent() -> None:
    from nufm.batch import PointBatch
    from nufm.models.encoders import StreamFusionConfig
    from nufm.models.perceiver import PerceiverConfig

    torch.manual_seed(0)
    cfg = StreamFusionConfig(
        streams=(_cfg(), _cfg()),
        vit=ViTConfig(embed_dim=32, depth=1, num_heads=4),
        perceiver=PerceiverConfig(
            stream_dims=(32, 32), num_latents=4, latent_dim=16, num_heads=2, depth=1
        ),
    )
    enc = build_encoder(cfg).eval()
    base = make_batch([300, 400], seed=2)
    stream = (base.coord[:, 0] > base.coord[:, 0].median()).long()
    batch = PointBatch(coord=base.coord, feat=base.feat, offset=base.offset, stream=stream)
    with torch.no_grad():
        out = enc(batch)
        assert out.level == "latent" and out.feat.shape == (2, 4, 16)
        one = event_of(batch, 1)
        alone = enc(
            PointBatch(coord=one.coord, feat=one.feat, offset=one.offset, stream=stream[300:])
        )
        torch.testing.assert_close(alone.feat[0], out.feat[1], atol=1e-5, rtol=1e-5)
        # Changing the energies of stream-1 points changes the fused latents.
        feat2 = batch.feat.clone()
        feat2[stream == 1] += 1.0
        moved = enc(PointBatch(coord=batch.coord, feat=feat2, offset=batch.offset, stream=stream))
        assert not torch.allclose(moved.feat, out.feat)
    with pytest.raises(ValueError, match=re.escape("batch.stream is None")):
        enc(base)


def _small_cfg() -> PointMAETokenizerConfig:
    return PointMAETokenizerConfig(
        in_channels=4,
        embed_dim=16,
        group_max_points=8,
        group_upscale_points=16,
        context_length=64,
        pointnet_dims=(16, 16, 16),
        pos_hidden=16,
    )


def test_tokens_do_not_depend_on_point_order() -> None:
    torch.manual_seed(0)
    # voxel-like data: points on a lattice, so C-NMS / ball-query ties really occur
    coord = torch.randint(0, 30, (400, 3)).float().unique(dim=0)[:300] * 0.003
    feat = torch.cat([coord, torch.rand(300, 1)], 1)
    offset = torch.tensor([130, 300])
    cfg = _small_cfg()
    tok = PointMAETokenizer(cfg).eval()
    perm = torch.cat([torch.randperm(130), 130 + torch.randperm(170)])  # within events
    a = tok(coord, feat, offset)
    b = tok(coord[perm], feat[perm], offset)
    assert torch.equal(a.valid, b.valid)
    assert torch.equal(a.center, b.center)
    assert torch.allclose(a.feat, b.feat, atol=1e-6)
    # the same points in every group: map b's rows back to the original rows
    back = torch.where(b.group_idx >= 0, perm[b.group_idx.clamp(min=0)], b.group_idx)
    assert torch.equal(a.group_idx.sort(-1).values, back.sort(-1).values)
