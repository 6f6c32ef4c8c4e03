"""Released checkpoint files, assembled here in each released layout from the reduced
reference weights, load through the same front door a person uses (``nufm.load``) and give the
reference outputs; bad files are refused with a message naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import nufm
from helpers.released import reference_file, reference_state, stored_tokens
from nufm.batch import PointBatch
from nufm.errors import InputError
from nufm.models.released.encoders import (
    PANDA_PREPROCESS,
    POLARMAE_PREPROCESS,
    ReleasedPolarMAEEncoder,
    ReleasedPTv3Encoder,
    pimm_grid_coord,
)
from nufm.models.released.files import read_released
from nufm.workflows.load import Pretrained

ATOL = 1e-5


def _meta(path: Path) -> dict:
    return reference_file(path)[0]


_state = reference_state


@pytest.fixture(scope="module")
def panda(reference_models: Callable[[str], Path]):
    """Shuffled-order config (the released setting), the reduced weights and the reference."""
    d = load_file(str(reference_models("panda_reduced_encoder.safetensors")))
    shuffled_file = reference_models("panda_reduced_encoder_shuffled.safetensors")
    return _meta(shuffled_file), _state(d), load_file(str(shuffled_file)), d


def _expected_upcast(ref: dict[str, torch.Tensor], d: dict[str, torch.Tensor]) -> torch.Tensor:
    up = ref["intermediate.enc4.feat"]
    for s in range(3, -1, -1):
        up = torch.cat(
            [
                ref[f"intermediate.enc{s}.feat"],
                up[d[f"output.pooling_inverse.level{s}_to_{s + 1}"]],
            ],
            -1,
        )
    return up


def _check_panda(loaded: object, panda) -> None:
    _, _, ref, d = panda
    assert isinstance(loaded, Pretrained)
    assert isinstance(loaded.encoder, ReleasedPTv3Encoder)
    assert loaded.preprocess == PANDA_PREPROCESS
    batch = PointBatch(coord=ref["input.coord"], feat=ref["input.feat"], offset=ref["input.offset"])
    assert torch.equal(pimm_grid_coord(batch.coord, batch.offset, 0.001), ref["input.grid_coord"])
    torch.manual_seed(2024)  # the reference drew its order permutations after this seed
    with torch.no_grad():
        out = loaded.encoder(batch)
    assert out.level == "point"
    assert torch.allclose(out.feat, _expected_upcast(ref, d), atol=ATOL, rtol=0)


@pytest.mark.reference
def test_pimm_raw_pretraining_checkpoint_with_its_experiment_config(tmp_path: Path, panda) -> None:
    meta, state, _, _ = panda
    exp = tmp_path / "exp" / "panda"
    (exp / "model").mkdir(parents=True)
    raw = {f"module.student.backbone.{k}": v for k, v in state.items()}
    raw |= {f"module.teacher.backbone.{k}": torch.zeros_like(v) for k, v in state.items()}
    raw["module.student.mask_head.mlp.0.weight"] = torch.zeros(8, 48)
    raw["module.teacher.unmask_head.mlp.0.weight"] = torch.zeros(8, 48)
    torch.save({"state_dict": raw, "epoch": 3, "optimizer": {}}, exp / "model" / "model_last.pth")
    backbone = {"type": "PT-v3m2", **meta}
    (exp / "config.py").write_text(
        "weight = None\n"
        f"model = dict(type='Sonata-v1m1', backbone={backbone!r}, teacher_custom=dict(a=-1))\n"
    )
    ckpt = read_released(exp / "model" / "model_last.pth")
    assert (ckpt.format, ckpt.kind) == ("pimm-raw", "ptv3")
    assert "mask_head.mlp.0.weight" in ckpt.ignored
    assert sum(k.startswith("teacher.") for k in ckpt.ignored) == len(state) + 1
    _check_panda(nufm.load(exp / "model" / "model_last.pth"), panda)


@pytest.mark.reference
@pytest.mark.parametrize("prefix", ["", "backbone.", "module.backbone."])
def test_hf_export_folder_with_bare_or_prefixed_keys(tmp_path: Path, panda, prefix: str) -> None:
    meta, state, _, _ = panda
    folder = tmp_path / "panda-export"
    folder.mkdir()
    save_file(
        {prefix + k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors")
    )
    (folder / "config.json").write_text(json.dumps({"backbone": {"type": "PT-v3m2", **meta}}))
    assert read_released(folder).format == "pimm-export"
    _check_panda(nufm.load(folder), panda)


@pytest.mark.reference
def test_sonata_pth_with_embedded_config(tmp_path: Path, panda) -> None:
    meta, state, _, _ = panda
    torch.save({"config": meta, "state_dict": state}, tmp_path / "sonata.pth")
    assert read_released(tmp_path / "sonata.pth").format == "sonata"
    _check_panda(nufm.load(tmp_path / "sonata.pth"), panda)


@pytest.mark.reference
def test_polarmae_lightning_checkpoint(
    tmp_path: Path, reference_models: Callable[[str], Path]
) -> None:
    file = reference_models("polarmae_reduced_encoder.safetensors")
    d, meta = load_file(str(file)), _meta(file)
    ckpt = {f"encoder.{k}": v for k, v in _state(d).items()}
    ckpt["mask_token"] = torch.zeros(192)
    ckpt["decoder.transformer.norm.gamma"] = torch.ones(1, 1, 192)
    torch.save(
        {"state_dict": ckpt, "hyper_parameters": {"encoder": meta}, "epoch": 1, "global_step": 10},
        tmp_path / "last.ckpt",
    )
    loaded = nufm.load(tmp_path / "last.ckpt")
    assert isinstance(loaded, Pretrained)
    assert isinstance(loaded.encoder, ReleasedPolarMAEEncoder)
    assert loaded.preprocess == POLARMAE_PREPROCESS
    assert sorted(read_released(tmp_path / "last.ckpt").ignored) == [
        "decoder.transformer.norm.gamma",
        "mask_token",
    ]
    model = loaded.encoder.model
    valid = d["tokens.emb_mask"]
    tokens = stored_tokens(d)
    with torch.no_grad():
        out = model(model.embed(tokens), model.pos(tokens), valid)
    assert torch.allclose(out[valid], d["output.last_hidden_state"][valid], atol=ATOL, rtol=0)
    # the nufm encoder interface runs end to end on the padded input's events
    lengths = d["input.lengths"]
    pts = torch.cat([d["input.points"][b, : int(lengths[b])] for b in range(2)])
    batch = PointBatch(coord=pts[:, :3], feat=pts, offset=torch.cumsum(lengths, 0))
    with torch.no_grad():
        enc = loaded.encoder(batch)
    assert enc.level == "token" and enc.feat.shape[-1] == 192
    assert enc.tokens is not None and int(enc.tokens.group_idx.max()) < pts.shape[0]


def test_bad_files_are_refused_with_the_file_named(tmp_path: Path) -> None:
    torch.save({"weights": {}}, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=r"odd\.pth: not a released checkpoint"):
        read_released(tmp_path / "odd.pth")
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match=r"trunc\.pth: not a readable torch checkpoint"):
        read_released(tmp_path / "trunc.pth")
    torch.save(
        {"state_dict": {"enc.enc0.block0.norm1.0.weight": torch.ones(3)}}, tmp_path / "x.pth"
    )
    with pytest.raises(InputError, match="no PTv3 stem"):
        read_released(tmp_path / "x.pth")
    stem = {
        "embedding.stem.linear.weight": torch.ones(16, 4),
        "enc.enc0.block0.norm1.0.weight": torch.ones(16),
    }
    torch.save({"state_dict": stem}, tmp_path / "y.pth")
    with pytest.raises(InputError, match="match no released PTv3"):
        read_released(tmp_path / "y.pth")


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    from nufm.models.released.panda import PandaConfig, PTv3Released

    small = PandaConfig(
        enc_depths=(1, 1),
        enc_channels=(16, 32),
        enc_num_head=(2, 4),
        enc_patch_size=(16, 16),
        stride=(2,),
    )
    state = PTv3Released(small).state_dict()
    other = {
        "in_channels": 4,
        "order": ["z"],
        "stride": [2],
        "enc_depths": [1, 1],
        "enc_channels": [16, 48],
        "enc_num_head": [2, 4],
        "enc_patch_size": [16, 16],
        "enc_mode": True,
        "mask_token": True,
        "layer_scale": 1e-5,
    }
    torch.save({"config": other, "state_dict": state}, tmp_path / "wrong.pth")
    with pytest.raises(InputError, match=r"wrong\.pth: the ptv3 weights do not fit"):
        nufm.load(tmp_path / "wrong.pth")
