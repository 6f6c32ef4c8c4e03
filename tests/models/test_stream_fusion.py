"""Tests of the heterogeneous-detector stream tokenizers and the stream-fusion encoder
(nufm.models.stream_tokenizers, nufm.models.stream_fusion), on FASERCal-like events: a
scintillator voxel grid in 10 modules (stream 0), 25 ECAL cells (1), HCAL cells (2) and muon
hits (3), coordinates in cm / 100."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from helpers.configs import small_fusion_encoder
from nufm.batch import PointBatch
from nufm.config import _build, config_to_dict
from nufm.models.encoders import build_encoder, input_width, with_input_width
from nufm.models.perceiver import PerceiverConfig
from nufm.models.stream_fusion import StreamFusionConfig, StreamFusionEncoder
from nufm.models.stream_tokenizers import (
    PatchTokenizer,
    PatchTokenizerConfig,
    PatchTokens,
    SetTokenizerConfig,
    sincos_3d,
)
from nufm.models.vit import ViTConfig

D = 32
SCINT = small_fusion_encoder(D).streams[0]
"""The scintillator patch stream: 12 x 12 x 10 cubes of 0.01 from (-0.24, -0.24, -1.0), grid
(4, 4, 20) patches, modules of 2 patches along z."""
assert isinstance(SCINT, PatchTokenizerConfig)


def _cfg() -> StreamFusionConfig:
    return small_fusion_encoder(D, depth=2, latents=4)


def _encoder(seed: int = 0) -> StreamFusionEncoder:
    torch.manual_seed(seed)
    enc = build_encoder(_cfg())
    assert isinstance(enc, StreamFusionEncoder)
    return enc.eval()


def _cm(x: float, y: float, z: float) -> list[float]:
    return [x / 100, y / 100, z / 100]


Event = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(coord (n, 3), feat (n, 4), stream (n,)) of one event."""


def _event(
    seed: int, n_scint: int = 60, n_hcal: int = 5, n_muon: int = 3, modules: tuple[int, ...] = ()
) -> Event:
    """A FASERCal-like event: voxel centres on the 1 cm grid (only in ``modules`` when given),
    the 25 ECAL cells, ``n_hcal`` HCAL cells and ``n_muon`` muon hits, rows shuffled."""
    g = torch.Generator().manual_seed(seed)
    zs = torch.cat([torch.arange(20 * m, 20 * m + 20) for m in modules]) if modules else None
    vx = torch.randint(0, 48, (n_scint, 2), generator=g)
    if zs is None:
        vz = torch.randint(0, 200, (n_scint, 1), generator=g)
    else:
        vz = zs[torch.randint(0, len(zs), (n_scint, 1), generator=g)]
    vox = torch.cat([vx, vz], 1).unique(dim=0).float()
    scint = (vox + 0.5 - torch.tensor([24.0, 24.0, 100.0])) / 100  # (n, 3)
    ij = torch.stack(torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij"), -1)
    ecal = torch.cat([(ij.reshape(25, 2) - 2) * 0.121, torch.full((25, 1), 1.24)], 1)
    hcal = torch.rand(n_hcal, 3, generator=g) * torch.tensor([1.0, 1.0, 1.0]) + torch.tensor(
        [-0.5, -0.5, 1.5]
    )
    muon = torch.rand(n_muon, 3, generator=g) * 1.2 - 0.6
    muon[:, 2] = 2.7 + 0.15 * torch.randint(0, 10, (n_muon,), generator=g)
    parts = [scint, ecal, hcal, muon]
    coord = torch.cat(parts)
    stream = torch.cat([torch.full((len(p),), s) for s, p in enumerate(parts)])
    feat = torch.cat([coord, torch.rand(len(coord), 1, generator=g) * 2 - 1], 1)
    perm = torch.randperm(len(coord), generator=g)
    return coord[perm], feat[perm], stream[perm]


def _batch(events: list[Event]) -> PointBatch:
    counts = torch.tensor([len(e[0]) for e in events])
    return PointBatch(
        coord=torch.cat([e[0] for e in events]),
        feat=torch.cat([e[1] for e in events]),
        offset=torch.cumsum(counts, 0),
        stream=torch.cat([e[2] for e in events]),
    )


# --- (a) patch bookkeeping by hand -----------------------------------------------------------


def test_patch_assignment_by_hand() -> None:
    tok = PatchTokenizer(SCINT)
    assert SCINT.voxels_per_patch == (12, 12, 10)
    assert (SCINT.slots_per_patch, SCINT.num_patches, SCINT.num_modules) == (1440, 320, 10)
    # event 0: B, A, A2; event 1: C (voxel centres, cm)
    coord = torch.tensor(
        [
            _cm(0.5, -12.5, 5.5),  # voxel (24, 11, 105): patch (2, 0, 10), slot (0, 11, 5)
            _cm(-23.5, -23.5, -99.5),  # voxel (0, 0, 0): patch 0, slot 0
            _cm(-22.5, -23.5, -98.5),  # voxel (1, 0, 1): patch 0, slot (1, 0, 1)
            _cm(23.5, 23.5, 99.5),  # voxel (47, 47, 199): patch (3, 3, 19), slot (11, 11, 9)
        ]
    )
    feat = torch.randn(4, 4)
    out = tok(coord, feat, torch.tensor([3, 4]))
    assert torch.equal(out.patch_index, torch.tensor([[0, (2 * 4 + 0) * 20 + 10], [319, -1]]))
    assert torch.equal(out.module_index, torch.tensor([[0, 5], [9, -1]]))
    assert torch.equal(out.valid, torch.tensor([[True, True], [True, False]]))
    assert torch.equal(out.point_token, torch.tensor([1, 0, 0, 0]))
    assert torch.equal(out.point_slot, torch.tensor([(0 * 12 + 11) * 10 + 5, 0, 121, 1439]))
    torch.testing.assert_close(
        out.center[0], torch.tensor([[-0.18, -0.18, -0.95], [0.06, -0.18, 0.05]])
    )
    # position: sin-cos of the in-module patch position (2, 0, 10 % 2) + module 5's embedding
    want = sincos_3d(torch.tensor([[2, 0, 0]]), D)[0] + tok.module_embed[5]
    torch.testing.assert_close(out.pos[0, 1], want)
    # embedding = LayerNorm(b + sum_i W[slot_i] @ (1, feat_i)) of the patch's voxels
    W = tok.voxel_weight.reshape(1440, 5, D)
    ones = torch.ones(4, 1)
    x = torch.cat([ones, feat], 1)  # (4, 5)
    patch0 = x[1] @ W[0] + x[2] @ W[121] + tok.bias
    torch.testing.assert_close(out.feat[0, 0], tok.norm(patch0))
    torch.testing.assert_close(out.feat[1, 0], tok.norm(x[3] @ W[1439] + tok.bias))


def test_points_outside_the_grid_are_an_error_naming_count_and_stream() -> None:
    tok = PatchTokenizer(SCINT)
    coord = torch.tensor([_cm(0.5, 0.5, 0.5), _cm(30.0, 0.0, 0.0), _cm(0.0, 0.0, -101.0)])
    with pytest.raises(ValueError, match=re.escape("2 of 3 points lie outside")):
        tok(coord, torch.zeros(3, 4), torch.tensor([3]))
    coord, feat, stream = _event(0)
    coord[torch.nonzero(stream == 0)[0, 0], 0] = 0.3  # one voxel off the side
    with pytest.raises(ValueError, match=re.escape("stream 0: PatchTokenizer: 1 of")):
        _encoder()(_batch([(coord, feat, stream)]))


# --- (b) shapes, config ----------------------------------------------------------------------


def test_shapes() -> None:
    enc = _encoder()
    batch = _batch([_event(1), _event(2, n_scint=90, n_hcal=0)])
    with torch.no_grad():
        out = enc(batch)
        streams = enc.tokenize(batch)
        fused = enc.encode(streams)
    assert out.level == "latent" and out.feat.shape == (2, 4, D)
    assert torch.equal(out.offset, batch.offset)
    G = streams[0].tokens.feat.shape[1]
    assert out.hidden[0].shape == (2, G, D)
    assert all(out.hidden[s].shape == (2, 1, D) for s in (1, 2, 3))
    assert fused.streams[0].summary is not None and fused.streams[0].summary.shape == (2, 10, D)
    assert torch.equal(fused.streams[2].valid, torch.tensor([[True], [False]]))
    tok = streams[0].tokens
    assert isinstance(tok, PatchTokens)
    assert streams[0].rows.shape == tok.point_slot.shape == tok.point_token.shape
    assert torch.equal(batch.stream[streams[0].rows], torch.zeros_like(streams[0].rows))
    queries = torch.randn(2, 7, D)
    assert enc.decode_queries(queries, out.feat).shape == (2, 7, D)


def test_config_checks_and_input_width() -> None:
    cfg = _cfg()
    assert cfg.token_dims == (D,) * 5 and input_width(cfg) == 4
    wider = with_input_width(cfg, 6)
    assert isinstance(wider, StreamFusionConfig)
    assert all(c.in_channels == 6 for c in wider.streams)
    with pytest.raises(ValueError, match="stream_dims"):
        StreamFusionConfig(
            streams=cfg.streams,
            vit=cfg.vit,
            perceiver=PerceiverConfig(stream_dims=(D,) * 4, latent_dim=D, num_heads=2),
        )
    with pytest.raises(ValueError, match="in_channels differ"):
        StreamFusionConfig(
            streams=(SCINT, SetTokenizerConfig(in_channels=3, embed_dim=D)),
            vit=cfg.vit,
            perceiver=PerceiverConfig(stream_dims=(D,) * 3, latent_dim=D, num_heads=2),
        )
    # a saved config (checkpoint / config.yaml) reads back with every stream's tokenizer type
    assert _build(StreamFusionConfig, config_to_dict(cfg), "encoder") == cfg
    with pytest.raises(ValueError, match="module_depth_patches"):
        PatchTokenizerConfig(grid_shape=(1, 1, 5), module_depth_patches=2)
    with pytest.raises(ValueError, match="whole number"):
        PatchTokenizerConfig(patch_size=(0.1, 0.1, 0.105), voxel_size=(0.01, 0.01, 0.01))


# --- (c) gradients ----------------------------------------------------------------------------


def test_every_parameter_gets_a_gradient() -> None:
    enc = _encoder().train()
    batch = _batch([_event(3), _event(4, n_hcal=0, n_muon=0)])
    out = enc(batch)
    decoded = enc.decode_queries(torch.randn(2, 3, D), out.feat)
    loss = out.feat.square().mean() + decoded.square().mean()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --- (d), (e) batch independence, empty streams ----------------------------------------------


def _assert_same_event(enc: StreamFusionEncoder, alone: PointBatch, batch: PointBatch) -> None:
    with torch.no_grad():
        a, b = enc.encode(enc.tokenize(alone)), enc.encode(enc.tokenize(batch))
    torch.testing.assert_close(a.latents[0], b.latents[0], atol=1e-5, rtol=1e-5)
    for sa, sb in zip(a.streams, b.streams, strict=True):
        G = sa.valid.shape[1]
        assert torch.equal(sa.valid[0], sb.valid[0, :G]) and not sb.valid[0, G:].any()
        torch.testing.assert_close(sa.feat[0], sb.feat[0, :G], atol=1e-5, rtol=1e-5)
        if sa.summary is not None and sb.summary is not None:
            torch.testing.assert_close(sa.summary[0], sb.summary[0], atol=1e-5, rtol=1e-5)


def test_batch_independence() -> None:
    enc = _encoder()
    e0, e1 = _event(5, n_scint=40), _event(6, n_scint=150, n_hcal=12, n_muon=8)
    _assert_same_event(enc, _batch([e0]), _batch([e0, e1]))
    with torch.no_grad():  # and the other event really is different
        both = enc(_batch([e0, e1])).feat
    assert not torch.allclose(both[0], both[1], atol=1e-3)


def test_empty_hcal_and_muon_streams() -> None:
    enc = _encoder()
    e0 = _event(7, n_hcal=0, n_muon=0)
    _assert_same_event(enc, _batch([e0]), _batch([e0, _event(8)]))
    # and when no event of the batch has them
    _assert_same_event(enc, _batch([e0]), _batch([e0, _event(9, n_hcal=0, n_muon=0)]))
    with torch.no_grad():
        fused = enc.encode(enc.tokenize(_batch([e0, _event(8)])))
    assert torch.equal(fused.streams[2].valid[:, 0], torch.tensor([False, True]))
    assert torch.isfinite(fused.latents).all()
    # an event without scintillator voxels, alone (no patch token in the batch) and batched
    e_none = _event(13, n_scint=0)
    _assert_same_event(enc, _batch([e_none]), _batch([e_none, _event(14)]))


# --- (f) masking ------------------------------------------------------------------------------


def test_hidden_patches_do_not_reach_the_latents() -> None:
    enc = _encoder()
    batch = _batch([_event(10, n_scint=120), _event(11, n_scint=80)])
    streams = enc.tokenize(batch)
    tok = streams[0].tokens
    assert isinstance(tok, PatchTokens)
    g = torch.Generator().manual_seed(0)
    is_masked = (torch.rand(tok.valid.shape, generator=g) < 0.6) & tok.valid  # (B, G)
    assert is_masked.any() and (tok.valid & ~is_masked).any()
    rows = streams[0].rows
    event = batch.batch_index[rows]  # (N_0,)
    point_hidden = is_masked[event, tok.point_token]  # (N_0,)

    def encode(feat: torch.Tensor) -> torch.Tensor:
        b = PointBatch(coord=batch.coord, feat=feat, offset=batch.offset, stream=batch.stream)
        with torch.no_grad():
            return enc.encode(enc.tokenize(b), {0: is_masked}).latents

    ref = encode(batch.feat)
    feat = batch.feat.clone()
    feat[rows[point_hidden]] += torch.randn(int(point_hidden.sum()), 4, generator=g) * 3
    torch.testing.assert_close(encode(feat), ref, atol=0.0, rtol=0.0)
    feat = batch.feat.clone()
    feat[rows[~point_hidden]] += 1.0  # visible patches do matter
    assert not torch.allclose(encode(feat), ref, atol=1e-4)
    with torch.no_grad():
        fused = enc.encode(streams, {0: is_masked})
    assert torch.equal(fused.streams[0].valid, tok.valid & ~is_masked)
    assert (fused.streams[0].feat[is_masked] == 0).all()


# --- (g) per-module attention -----------------------------------------------------------------


def test_module_blocks_attend_within_a_module_only() -> None:
    enc = _encoder()
    coord, feat, stream = _event(12, n_scint=80, modules=(2, 5))
    module = torch.floor((coord[:, 2] + 1.0) / 0.2).long()  # (n,) module of scintillator voxels
    in5 = (stream == 0) & (module == 5)
    assert ((stream == 0) & (module == 2)).any() and in5.any()
    feat2 = feat.clone()
    feat2[in5, 3] = -feat2[in5, 3]  # other charges in module 5
    extra = torch.tensor([_cm(20.5, -20.5, 10.5)])  # a voxel in a new patch of module 5
    e2 = (
        torch.cat([coord, extra]),
        torch.cat([feat2, torch.cat([extra, torch.ones(1, 1)], 1)]),
        torch.cat([stream, torch.zeros(1, dtype=torch.long)]),
    )

    def by_patch(ev: Event) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            streams = enc.tokenize(_batch([ev]))
            f = enc.encode(streams).streams[0]
        tok = streams[0].tokens
        assert isinstance(tok, PatchTokens) and f.summary is not None
        assert f.summary_valid is not None
        feats = {int(p): f.feat[0, i] for i, p in enumerate(tok.patch_index[0]) if p >= 0}
        mods = {
            int(p): int(m) for p, m in zip(tok.patch_index[0], tok.module_index[0], strict=True)
        }
        return (
            {p: v for p, v in feats.items() if mods[p] == 2},
            f.summary[0],
            f.summary_valid[0],
        )

    a2, a_sum, a_valid = by_patch((coord, feat, stream))
    b2, b_sum, b_valid = by_patch(e2)
    assert torch.equal(a_valid, b_valid) and a_valid[2] and a_valid[5] and a_valid.sum() == 2
    assert a2.keys() == b2.keys() and len(a2) > 0
    for p in a2:
        torch.testing.assert_close(a2[p], b2[p], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a_sum[2], b_sum[2], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a_sum[5], b_sum[5], atol=1e-3)


# --- (g) per-point output and the cross-detector core ----------------------------------------


def _one_stream_cfg() -> StreamFusionConfig:
    """One point-group stream (LArTPC-like points) around the test encoder's ViT and Perceiver,
    with per-token output (``point_stream=0``)."""
    from nufm.models.encoders import with_detector_inputs
    from nufm.models.tokenizers import PointMAETokenizerConfig

    tok = PointMAETokenizerConfig(
        in_channels=4, embed_dim=8, group_radius=0.1, group_max_points=8,
        group_upscale_points=16, pointnet_dims=(8, 16, 16), pos_hidden=8,
    )  # fmt: skip
    inputs = StreamFusionConfig(
        streams=(tok,),
        vit=ViTConfig(embed_dim=8, depth=1, num_heads=1),
        perceiver=PerceiverConfig(stream_dims=(8,), num_latents=2, latent_dim=8, num_heads=1),
        point_stream=0,
    )
    out = with_detector_inputs(_cfg(), inputs)
    assert isinstance(out, StreamFusionConfig)
    return out


def _cloud(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coord = torch.rand(n, 3, generator=g) * 0.6 - 0.3
    return coord, torch.cat([coord, torch.rand(n, 1, generator=g)], 1)


def test_point_stream_gives_tokens_with_the_mean_latent() -> None:
    """A one-stream encoder reads a batch without stream ids; with ``point_stream`` it gives
    (B, G, D + L_D) token features: the stream's encoded tokens, then the event's mean latent;
    0 on padding; each event's features independent of the other events of the batch."""
    from nufm.models.base import PointFeatures

    cfg = _one_stream_cfg()
    assert cfg.vit == _cfg().vit and cfg.perceiver.stream_dims == (D,)
    torch.manual_seed(0)
    enc = build_encoder(cfg).eval()
    clouds = [_cloud(1, 90), _cloud(2, 40)]
    batch = PointBatch(
        coord=torch.cat([c for c, _ in clouds]),
        feat=torch.cat([f for _, f in clouds]),
        offset=torch.tensor([90, 130]),
    )
    with torch.no_grad():
        out = enc(batch)
        latents = enc.encode(enc.tokenize(batch)).latents  # (B, L, D)
    assert out.level == "token" and enc.out_dim == 2 * D
    assert out.valid is not None and out.tokens is not None
    B, G = out.valid.shape
    assert out.feat.shape == (B, G, 2 * D)
    torch.testing.assert_close(out.feat[..., :D], out.hidden[0] * out.valid[..., None])
    want = latents.mean(1, keepdim=True).expand(B, G, D) * out.valid[..., None]
    torch.testing.assert_close(out.feat[..., D:], want)
    assert not out.feat[~out.valid].any()
    for b, (coord, feat) in enumerate(clouds):
        alone = PointBatch(coord=coord, feat=feat, offset=torch.tensor([len(coord)]))
        with torch.no_grad():
            single = enc(alone)
        g = int(single.valid.sum())  # type: ignore[union-attr]
        torch.testing.assert_close(single.feat[0, :g], out.feat[b, :g], atol=1e-5, rtol=1e-5)
    assert PointFeatures()(out, batch).shape == (130, 2 * D)
    with pytest.raises(ValueError, match="point-group stream"):
        dataclasses.replace(_cfg(), point_stream=0)  # stream 0 is a patch stream
    with pytest.raises(ValueError, match=r"batch\.stream is None"):
        _encoder().tokenize(dataclasses.replace(batch, stream=None))


def test_fusion_core_carries_over_to_another_stream_layout() -> None:
    """The core of a FASERCal encoder (ViT, latents, cross and self blocks) has the same
    tensors in the encoder of a one-stream detector built by ``with_detector_inputs``; only
    the input embeddings (tokenizers, per-stream projections and embeddings) differ."""
    from nufm.models.encoders import core_prefixes

    source = build_encoder(_cfg()).state_dict()
    target = build_encoder(_one_stream_cfg()).state_dict()
    prefixes = core_prefixes(_cfg())
    core = {k for k in source if k.startswith(prefixes)}
    assert core == {k for k in target if k.startswith(prefixes)} and len(core) > 20
    for k in core:
        assert source[k].shape == target[k].shape, k
    rest = {k.split(".")[0] + "." + k.split(".")[1] for k in target if k not in core}
    assert rest == {
        "tokenizers.0", "perceiver.stream_proj", "perceiver.stream_embed", "perceiver.decoder",
    }  # fmt: skip
