"""PoLAr-MAE-Pretrain: the full-size build against the released manifest, the token masking,
the slot embedding against hand-computed values, what each head may see, and the loader of
its Lightning checkpoint."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nufm.errors import InputError
from nufm.models.released.files import load_polarmae_pretrain
from nufm.models.released.polarmae import PolarMAEConfig, slot_embedding
from nufm.models.released.polarmae_pretrain import (
    PolarMAEPretrain,
    PolarMAEPretrainConfig,
    random_token_mask,
)

TINY = PolarMAEConfig(
    width=32, depth=2, num_heads=2, group_max_points=8, group_radius=0.05, pos_hidden=16
)


@pytest.mark.reference
def test_full_size_model_matches_the_released_manifest(
    reference_models: Callable[[str], Path],
) -> None:
    entry = json.loads(reference_models("polarmae_manifest.json").read_text())["polarmae_pretrain"]
    assert entry["decoder_config"]["transformer_kwargs"]["depth"] == 4
    cfg = PolarMAEPretrainConfig(
        encoder=PolarMAEConfig.from_encoder_config(entry["encoder_config"]),
        masking_ratio=entry["encoder_config"]["masking_ratio"],
    )
    assert cfg == PolarMAEPretrainConfig()  # the defaults are the released pretraining config
    with torch.device("meta"):
        model = PolarMAEPretrain(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k["key"]: k["shape"] for k in entry["keys"]}
    assert len(shapes) == entry["num_keys"] == 233
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"] == 29_570_080


def test_slot_embedding_by_hand() -> None:
    emb = slot_embedding(3, 8)  # half = 4 frequencies exp(-j ln(1e4) / 3), j = 0..3
    freq = [1.0, 10 ** (-4 / 3), 10 ** (-8 / 3), 1e-4]
    for k in range(3):
        want = [math.sin(k * w) for w in freq] + [math.cos(k * w) for w in freq]
        assert torch.allclose(emb[k], torch.tensor(want), atol=1e-6)


def test_random_token_mask_hides_the_share_of_each_event() -> None:
    valid = torch.zeros(3, 10, dtype=torch.bool)
    for b, n in enumerate((10, 7, 1)):
        valid[b, :n] = True
    g = torch.Generator().manual_seed(0)
    hidden, kept = random_token_mask(valid, 0.6, g)
    assert hidden.sum(1).tolist() == [6, 4, 0]  # int(0.6 n)
    assert torch.equal(hidden | kept, valid) and not bool((hidden & kept).any())
    again, _ = random_token_mask(valid, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(hidden, again)
    # every real token is hidden sometimes: the choice is not a fixed prefix
    seen = torch.zeros_like(valid)
    for _ in range(50):
        seen |= random_token_mask(valid, 0.6, g)[0]
    assert torch.equal(seen[:2], valid[:2])
    nothing, everything = random_token_mask(valid, 0.0)
    assert not bool(nothing.any()) and torch.equal(everything, valid)


def _tiny_model_and_tokens(seed: int = 0):
    torch.manual_seed(seed)
    model = PolarMAEPretrain(PolarMAEPretrainConfig(encoder=TINY, decoder_depth=2)).eval()
    for p in model.parameters():  # O(1) weights so that every path matters
        torch.nn.init.normal_(p, std=0.3)
    # two events: points along lines, normalised units, energy last
    t = torch.linspace(-0.4, 0.4, 60)[:, None]
    a = torch.cat([t * torch.tensor([[1.0, 0.2, 0.0]]), torch.rand(60, 1)], 1)
    b = torch.cat([t * torch.tensor([[0.0, 1.0, 0.5]]), torch.rand(60, 1)], 1)
    points = torch.stack([a, torch.cat([b[:45], torch.zeros(15, 4)])])
    lengths = torch.tensor([60, 45])
    return model, model.encoder.tokenize(points, lengths)


def test_reconstruction_shapes_and_what_each_head_sees() -> None:
    model, tokens = _tiny_model_and_tokens()
    valid = tokens.token_valid
    assert valid.sum(1).min() >= 4
    hidden, _ = random_token_mask(valid, 0.5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        rec = model(tokens, hidden)
    M = int(hidden.sum())
    assert rec.points.shape == (M, 8, 4) and rec.energy.shape == (M, 8)
    assert torch.equal(rec.target, tokens.groups[hidden])
    # the hidden groups' points reach the energy head (through the patch encoder) but not the
    # point prediction: the encoder sees only the kept tokens
    changed = tokens.groups.clone()
    changed[hidden] = changed[hidden] + 0.5
    tokens2 = type(tokens)(changed, tokens.point_valid, tokens.centres, tokens.grouping_idx, valid)
    with torch.no_grad():
        rec2 = model(tokens2, hidden)
    assert torch.allclose(rec2.points, rec.points, atol=1e-6)
    assert float((rec2.energy - rec.energy).abs().max()) > 1e-3
    # a kept group's points reach the point prediction
    tokens3 = type(tokens)(
        tokens.groups + 0.5 * (~hidden)[..., None, None],
        tokens.point_valid,
        tokens.centres,
        tokens.grouping_idx,
        valid,
    )
    with torch.no_grad():
        assert float((model(tokens3, hidden).points - rec.points).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="padded slot"):
        model(tokens, ~valid)


def _save_ckpt(model: PolarMAEPretrain, path: Path, drop: str = "") -> None:
    state = {k: v for k, v in model.state_dict().items() if k != drop}
    hp = {
        "encoder": {
            "arch": "vit_tiny",
            "masking_ratio": 0.5,
            "transformer_kwargs": {"depth": 1},
            "tokenizer_kwargs": {"group_max_points": 8},
        },
        "decoder": {"arch": "vit_tiny", "transformer_kwargs": {"depth": 2, "postnorm": True}},
    }
    torch.save({"state_dict": state, "hyper_parameters": hp, "global_step": 3}, path)


def test_lightning_checkpoint_loads_every_key(tmp_path: Path) -> None:
    enc = PolarMAEConfig.from_encoder_config(
        {
            "arch": "vit_tiny",
            "transformer_kwargs": {"depth": 1},
            "tokenizer_kwargs": {"group_max_points": 8},
        }
    )
    torch.manual_seed(3)
    model = PolarMAEPretrain(PolarMAEPretrainConfig(encoder=enc, decoder_depth=2))
    for p in model.parameters():
        torch.nn.init.normal_(p)
    _save_ckpt(model, tmp_path / "last.ckpt")
    loaded, report = load_polarmae_pretrain(tmp_path / "last.ckpt")
    assert loaded.cfg == PolarMAEPretrainConfig(encoder=enc, decoder_depth=2, masking_ratio=0.5)
    assert len(report.loaded) == len(model.state_dict()) and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a missing key is named; an encoder-only file is sent to nufm.load
    _save_ckpt(model, tmp_path / "bad.ckpt", drop="energy_decoder.bias")
    with pytest.raises(InputError, match=r"(?s)bad\.ckpt.*missing energy_decoder\.bias"):
        load_polarmae_pretrain(tmp_path / "bad.ckpt")
    enc_only = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    torch.save({"state_dict": enc_only, "hyper_parameters": {}}, tmp_path / "enc.ckpt")
    with pytest.raises(InputError, match=r"enc\.ckpt: no PoLAr-MAE decoder.*nufm\.load"):
        load_polarmae_pretrain(tmp_path / "enc.ckpt")
