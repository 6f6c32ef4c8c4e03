"""The released PTv3 (Panda / Sonata) against the reference outputs of a reduced Panda-Base
(``panda_reduced_encoder*.safetensors``, made by running pimm), the pimm preprocessing, and the
full-size builds against the key/shape manifests of the released checkpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.released import reference_file, reference_state
from nufm.models.released.panda import (
    PandaConfig,
    PandaSegmentor,
    PandaSegmentorConfig,
    PTv3Released,
    RefSubMConv3d,
    panda_preprocess,
)
from nufm.models.sparse_conv import neighbour_map

ATOL = 1e-5


_load = reference_file
_state = reference_state


def _run(model: PTv3Released, d: dict[str, torch.Tensor]):
    with torch.no_grad():
        return model(d["input.coord"], d["input.feat"], d["input.grid_coord"], d["input.offset"])


@pytest.fixture(scope="module")
def reduced(reference_models: Callable[[str], Path]) -> tuple[dict, dict[str, torch.Tensor]]:
    return _load(reference_models("panda_reduced_encoder.safetensors"))


@pytest.mark.reference
def test_every_level_matches_the_reference_without_shuffling(reduced) -> None:
    meta, d = reduced
    cfg = PandaConfig.from_reference(meta).deterministic()
    model = PTv3Released(cfg).eval()
    model.load_state_dict(_state(d), strict=True)
    out = _run(model, d)
    for s, level in enumerate(out.levels):
        ref = d[f"intermediate.enc{s}.feat"]
        assert level.feat.shape == ref.shape
        assert torch.allclose(level.feat, ref, atol=ATOL, rtol=0), s
        assert torch.equal(level.code, d[f"intermediate.enc{s}.serialized_code"])
        assert torch.equal(level.grid_coord, d[f"intermediate.enc{s}.grid_coord"])
        assert torch.equal(level.offset, d[f"intermediate.enc{s}.offset"])
        if s:
            assert torch.equal(level.inverse, d[f"output.pooling_inverse.level{s - 1}_to_{s}"])
    assert torch.allclose(out.feat, d["output.final_feat"], atol=ATOL, rtol=0)
    assert out.upcast().shape == (d["input.coord"].shape[0], sum(cfg.enc_channels))


@pytest.mark.reference
def test_released_order_shuffling_is_reproduced_draw_for_draw(
    reduced, reference_models: Callable[[str], Path]
) -> None:
    _, d = reduced
    meta, shuffled = _load(reference_models("panda_reduced_encoder_shuffled.safetensors"))
    vectors = json.loads(reference_models("panda_reduced_vectors.json").read_text())
    shuffled_info = vectors["files"]["panda_reduced_encoder_shuffled.safetensors"]
    log = shuffled_info["randperm_calls_in_forward"]
    cfg = PandaConfig.from_reference(meta)
    assert cfg.shuffle_orders and cfg.pool_shuffle_orders
    model = PTv3Released(cfg).eval()
    model.load_state_dict(_state(d), strict=True)
    torch.manual_seed(2024)
    out = _run(model, shuffled)
    torch.manual_seed(2024)
    assert [torch.randperm(4).tolist() for _ in range(5)] == log  # the draws the model made
    for s, level in enumerate(out.levels):
        ref = shuffled[f"intermediate.enc{s}.feat"]
        assert torch.allclose(level.feat, ref, atol=ATOL, rtol=0), s
    unshuffled = d["intermediate.enc4.feat"]
    assert float((out.feat - unshuffled).abs().max()) > 0.1  # shuffling changes eval outputs


@pytest.mark.reference
def test_flash_path_patching_and_bf16_rounding(
    reduced, reference_models: Callable[[str], Path]
) -> None:
    """The reference's flash run (emulated kernel, bf16 q/k/v) agrees to bf16 precision; the
    last level (one event smaller than the patch) needs the flash patching rule."""
    _, d = reduced
    meta, flash = _load(reference_models("panda_reduced_encoder_flashpath.safetensors"))
    cfg = replace(PandaConfig.from_reference(meta).deterministic(), flash_bf16=True)
    assert cfg.enable_flash and cfg.enc_patch_size[-1] == 400
    model = PTv3Released(cfg).eval()
    model.load_state_dict(_state(d), strict=True)
    out = _run(model, flash)
    for s, level in enumerate(out.levels):
        ref = flash[f"intermediate.enc{s}.feat"]
        err = float((level.feat - ref).abs().max())
        assert err < 0.02 * float(ref.abs().max()), (s, err)  # bf16 has 8 bits of mantissa
    math_path = PTv3Released(replace(cfg, enable_flash=False)).eval()
    math_path.load_state_dict(_state(d), strict=True)
    other = _run(math_path, flash)
    assert float((other.feat - flash["intermediate.enc4.feat"]).abs().max()) > 0.2


@pytest.mark.reference
def test_pimm_preprocessing_reproduces_the_stored_input(reduced) -> None:
    _, d = reduced
    ends = d["input.offset"].tolist()
    starts = [0, *ends[:-1]]
    for s, e in zip(starts, ends, strict=True):
        coord, feat, grid = panda_preprocess(
            d["input.raw_xyz_voxel"][s:e].numpy(), d["input.raw_energy_mev"][s:e].numpy()
        )
        assert np.array_equal(grid, d["input.grid_coord"][s:e].numpy())
        assert np.array_equal(coord, d["input.coord"][s:e].numpy())
        assert np.allclose(feat, d["input.feat"][s:e].numpy(), atol=1e-6, rtol=0)


MANIFESTS = [
    ("panda_manifest.json", "panda_base", "backbone"),
    ("panda_manifest.json", "panda_semantic", "segmentor"),
    ("panda_manifest.json", "panda_semantic_linear_probe", "segmentor"),
    ("sonata_manifest.json", "sonata_base", "backbone"),
]


@pytest.mark.reference
@pytest.mark.parametrize(("file", "entry", "kind"), MANIFESTS)
def test_full_size_builds_match_the_released_manifests(
    reference_models: Callable[[str], Path], file: str, entry: str, kind: str
) -> None:
    manifest = json.loads(reference_models(file).read_text())[entry]
    with torch.device("meta"):
        if kind == "backbone":
            model = PTv3Released(PandaConfig.from_reference(manifest["config"]))
        else:
            model = PandaSegmentor(PandaSegmentorConfig.from_reference(manifest["config"]))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k["key"]: k["shape"] for k in manifest["keys"]}
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]


def test_reference_sparse_conv_layout_is_a_cross_correlation() -> None:
    """``W[:, a, b, c, :]`` takes the voxel at offset (a-1, b-1, c-1), checked on a dense grid."""
    torch.manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    keep = torch.rand(grid.shape[0]) < 0.6
    grid = grid[keep]
    feat = torch.randn(grid.shape[0], 2)
    conv = RefSubMConv3d(2, 3)
    with torch.no_grad():
        conv.weight.normal_()
        conv.bias.normal_()
        out = conv(feat, neighbour_map(grid, torch.tensor([grid.shape[0]])))
    dense = torch.zeros(2, 6, 6, 6)
    dense[:, grid[:, 0] + 1, grid[:, 1] + 1, grid[:, 2] + 1] = feat.T
    w = conv.weight.detach()
    for i, (x, y, z) in enumerate(grid.tolist()):
        ref = conv.bias.detach().clone()
        for a in range(3):
            for b in range(3):
                for c in range(3):
                    ref += w[:, a, b, c, :] @ dense[:, x + a, y + b, z + c]
        assert torch.allclose(out[i], ref, atol=1e-5), i


def _random_model_and_points(seed: int):
    cfg = PandaConfig(
        enc_depths=(1, 1, 2),
        enc_channels=(16, 16, 32),
        enc_num_head=(2, 2, 4),
        enc_patch_size=(32, 32, 16),
        stride=(2, 2),
    ).deterministic()
    gen = torch.Generator().manual_seed(seed)
    model = PTv3Released(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    pts = [torch.randint(0, 40, (n, 3), generator=gen) for n in (300, 200)]
    grid = torch.cat([torch.unique(p, dim=0) for p in pts])
    offset = torch.cumsum(torch.tensor([len(torch.unique(p, dim=0)) for p in pts]), 0)
    coord = grid.float() * 0.001
    feat = torch.cat([coord, torch.rand(grid.shape[0], 1, generator=gen)], 1)
    return model, coord, feat, grid, offset


def test_outputs_do_not_depend_on_the_thread_count() -> None:
    """The reference's CPU sparse conv is wrong with > 1 thread; nufm's must not be."""
    model, coord, feat, grid, offset = _random_model_and_points(0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = model(coord, feat, grid, offset).feat
        torch.set_num_threads(max(2, threads))
        with torch.no_grad():
            many = [model(coord, feat, grid, offset).feat for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    for out in many:
        assert torch.allclose(out, one, atol=1e-5, rtol=1e-5)


def test_segmentor_decoder_returns_per_point_logits() -> None:
    backbone = PandaConfig(
        enc_depths=(1, 1, 1),
        enc_channels=(16, 16, 32),
        enc_num_head=(2, 2, 4),
        enc_patch_size=(32, 32, 16),
        stride=(2, 2),
        dec_depths=(1, 1),
        dec_channels=(16, 16),
        dec_num_head=(2, 2),
        dec_patch_size=(32, 32),
        enc_mode=False,
        mask_token=False,
        layer_scale=0.0,
    ).deterministic()
    _, coord, feat, grid, offset = _random_model_and_points(1)
    seg = PandaSegmentor(PandaSegmentorConfig(backbone=backbone, backbone_out_channels=16)).eval()
    with torch.no_grad():
        logits = seg(coord, feat, grid, offset)
        alone = seg(
            coord[: int(offset[0])], feat[: int(offset[0])], grid[: int(offset[0])], offset[:1]
        )
    assert logits.shape == (coord.shape[0], 5)
    assert bool(torch.isfinite(logits).all())
    # the flash patching keeps events independent: event 0 alone gives its batched logits
    assert torch.allclose(alone, logits[: int(offset[0])], atol=1e-5)


def test_config_refuses_options_it_cannot_reproduce() -> None:
    base = {
        "in_channels": 4,
        "order": ["z"],
        "stride": [2],
        "enc_depths": [1, 1],
        "enc_channels": [16, 32],
        "enc_num_head": [2, 4],
        "enc_patch_size": [16, 16],
        "enc_mode": True,
    }
    assert PandaConfig.from_reference(base).layer_scale is None
    with pytest.raises(ValueError, match="enable_rpe=True is not supported"):
        PandaConfig.from_reference({**base, "enable_rpe": True})
    with pytest.raises(ValueError, match="unknown option 'foo'"):
        PandaConfig.from_reference({**base, "foo": 1})
    with pytest.raises(ValueError, match="lacks \\['enc_channels'\\]"):
        PandaConfig.from_reference({k: v for k, v in base.items() if k != "enc_channels"})


def test_drop_path_rises_over_encoder_blocks_and_only_acts_in_training() -> None:
    cfg = replace(_random_model_and_points(0)[0].cfg, drop_path=0.3)
    model = PTv3Released(cfg)
    rates = [m.drop_path.p for m in model.modules() if hasattr(m, "cpe")]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    _, coord, feat, grid, offset = _random_model_and_points(0)
    model.eval()
    with torch.no_grad():
        a, b = (model(coord, feat, grid, offset).feat for _ in range(2))
    assert torch.equal(a, b)  # deterministic config, no stochastic depth in eval
    model.train()
    with torch.no_grad():
        c = model(coord, feat, grid, offset).feat
    assert not torch.allclose(a, c)
