"""PTv3: shapes, gradients, batch independence, patch attention vs full attention, eval
determinism, parameter count of the Panda-Base preset (meta device)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from helpers.events import event_of, make_batch
from nufm.geometry.serialize import serialization_order
from nufm.models.encoders import PTv3Encoder, build_encoder
from nufm.models.presets import PTV3_PRESETS
from nufm.models.ptv3 import PTv3, PTv3Config, SerializedAttention, make_patch_plan


def _tiny(**kw: object) -> PTv3Config:
    base = dataclasses.replace(
        PTV3_PRESETS["tiny"],
        enc_channels=(16, 32, 32, 64),
        enc_num_head=(2, 2, 4, 4),
        dec_channels=(16, 32, 32),
        dec_num_head=(2, 2, 4),
        enc_patch_size=(32,) * 4,
        dec_patch_size=(32,) * 3,
        grid_size=1.0 / 665.1,
    )
    return dataclasses.replace(base, **kw)


def test_ptv3_decoder_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    cfg = _tiny(mask_token=True, layer_scale=0.1)
    model = PTv3(cfg).train()
    batch = make_batch([200, 300], channels=4)
    is_masked = torch.rand(500) < 0.3
    out = model(batch.coord, batch.feat, batch.offset, is_masked=is_masked)
    assert out.feat.shape == (500, 16) and torch.equal(out.offset, batch.offset)
    assert out.deep_feat.shape[1] == 64
    assert int(out.deep_offset[-1]) == out.deep_feat.shape[0] < 500
    assert out.point_to_deep.shape == (500,) and int(out.point_to_deep.max()) < len(out.deep_feat)
    out.feat.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_ptv3_enc_mode_upcast_widths() -> None:
    batch = make_batch([200, 300], channels=4)
    for upcast, width in (("concat", 16 + 32 + 32 + 64), ("last", 64)):
        cfg = _tiny(enc_mode=True, enc_upcast=upcast)
        enc = build_encoder(cfg)
        assert isinstance(enc, PTv3Encoder) and enc.out_dim == width
        out = enc.eval()(batch)
        assert out.level == "point" and out.feat.shape == (500, width)
        assert out.ptv3 is not None
        deep = out.ptv3.deep_feat[out.ptv3.point_to_deep]
        torch.testing.assert_close(out.feat[:, -64:], deep)


def test_ptv3_is_batch_independent_in_eval() -> None:
    torch.manual_seed(0)
    model = PTv3(_tiny()).eval()
    batch = make_batch([200, 300, 80], seed=5, channels=4)
    with torch.no_grad():
        together = model(batch.coord, batch.feat, batch.offset).feat
        start = 0
        for i in range(3):
            one = event_of(batch, i)
            alone = model(one.coord, one.feat, one.offset).feat
            end = int(batch.offset[i])
            torch.testing.assert_close(alone, together[start:end], atol=1e-5, rtol=1e-5)
            start = end


def test_ptv3_eval_is_deterministic_and_training_shuffles_orders() -> None:
    torch.manual_seed(0)
    model = PTv3(_tiny(drop_path=0.0))
    batch = make_batch([200, 250], channels=4)
    model.eval()
    with torch.no_grad():
        a = model(batch.coord, batch.feat, batch.offset).feat
        b = model(batch.coord, batch.feat, batch.offset).feat
    assert torch.equal(a, b)
    assert model._orders() == list(model.cfg.order)
    model.train()
    seen = {tuple(model._orders()) for _ in range(20)}
    assert len(seen) > 1


def _full_attention(att: SerializedAttention, feat: torch.Tensor) -> torch.Tensor:
    N, C = feat.shape
    H = att.num_heads
    qkv = att.qkv(feat).reshape(N, 3, H, C // H).permute(1, 2, 0, 3)  # (3, H, N, C/H)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (H, N, C/H)
    return att.proj(out.transpose(0, 1).reshape(N, C))


def test_patch_attention_with_large_patch_equals_full_attention() -> None:
    torch.manual_seed(0)
    att = SerializedAttention(16, 4).eval()
    sizes = [37, 90, 64]
    offset = torch.cumsum(torch.tensor(sizes), 0)
    N = int(offset[-1])
    grid = torch.randint(0, 50, (N, 3))
    feat = torch.randn(N, 16)
    order, inverse = serialization_order(grid, offset, 16, ("z", "hilbert"))
    for k in range(2):
        plan = make_patch_plan(order[k], inverse[k], offset, patch_size=128)
        out = att(feat, plan)
        start = 0
        for end in offset.tolist():
            ref = _full_attention(att, feat[start:end])
            torch.testing.assert_close(out[start:end], ref, atol=1e-5, rtol=1e-5)
            start = end


def test_patch_attention_small_patches_match_manual_patching() -> None:
    torch.manual_seed(0)
    att = SerializedAttention(8, 2).eval()
    offset = torch.tensor([10])  # patch 4: patches [0:4], [4:8], [8:10] + 2 duplicates of [6:8]
    feat = torch.randn(10, 8)
    order = torch.randperm(10)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(10)
    out = att(feat, make_patch_plan(order, inverse, offset, patch_size=4))
    ser = feat[order]  # serialized
    expect = torch.empty(10, 8)
    expect[:4] = _full_attention(att, ser[:4])
    expect[4:8] = _full_attention(att, ser[4:8])
    last = _full_attention(att, torch.cat([ser[8:10], ser[6:8]]))
    expect[8:10] = last[:2]
    torch.testing.assert_close(out[order], expect, atol=1e-5, rtol=1e-5)


def _n_params(cfg: PTv3Config) -> int:
    with torch.device("meta"):
        model = PTv3(cfg)
    return sum(p.numel() for p in model.parameters())


def test_panda_base_preset_has_about_90m_parameters() -> None:
    n = _n_params(PTV3_PRESETS["panda-base"])
    assert abs(n - 90.8e6) / 90.8e6 < 0.15, n
    assert 1e6 < _n_params(PTV3_PRESETS["tiny"]) < 8e6


def test_ptv3_config_validation() -> None:
    with pytest.raises(ValueError, match="stride needs"):
        PTv3Config(stride=(2, 2))
    with pytest.raises(ValueError, match="in_channels=4"):
        batch = make_batch([50], channels=1)
        PTv3(_tiny())(batch.coord, batch.feat, batch.offset)


def test_ptv3_runs_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = PTv3(_tiny()).train()
    batch = make_batch([120, 90], channels=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch.coord, batch.feat, batch.offset)
    assert out.feat.shape == (210, 16) and torch.isfinite(out.feat).all()
    out.feat.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
