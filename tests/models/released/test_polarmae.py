"""The released PoLAr-MAE encoder against the reference outputs of a reduced model
(``polarmae_reduced_encoder.safetensors``, made by running the public PoLAr-MAE code), and the
two normalisations against hand-computed cases."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers.released import reference_file, reference_state, stored_tokens
from nufm.models.released.polarmae import (
    MaskedBatchNorm1d,
    PolarMAEConfig,
    PolarMAEEncoder,
    masked_layer_norm,
)

ATOL = 1e-5


def test_masked_layer_norm_uses_one_mean_and_std_over_valid_tokens_and_channels() -> None:
    x = torch.tensor([[[1.0, 3.0], [100.0, -7.0]], [[5.0, 7.0], [0.0, 0.0]]])  # (2, 2, 2)
    valid = torch.tensor([[True, False], [True, False]])
    vals = torch.tensor([1.0, 3.0, 5.0, 7.0])  # mean 4, population variance 5
    sigma = math.sqrt(5.0 + 1e-13) + 1e-13
    y = masked_layer_norm(x, valid)
    assert torch.allclose(y[0, 0], (torch.tensor([1.0, 3.0]) - 4) / sigma)
    assert torch.allclose(y[1, 0], (torch.tensor([5.0, 7.0]) - 4) / sigma)
    assert torch.allclose(y[0, 1], (torch.tensor([100.0, -7.0]) - 4) / sigma)  # padded: same map
    assert torch.allclose(y[valid].mean(), (vals.mean() - 4) / sigma)


def test_masked_batchnorm_turns_padded_points_into_the_bias() -> None:
    bn = MaskedBatchNorm1d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_mean.copy_(torch.tensor([1.0, 0.0, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 3, 5)
    valid = torch.tensor([[[True, True, False, False, False]], [[True] * 5]])
    y = bn(x, valid)
    ref = (x - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + 1e-5)
    ref = ref * bn.weight[:, None] + bn.bias[:, None]
    assert torch.allclose(y[1], ref[1])
    assert torch.allclose(y[0, :, :2], ref[0, :, :2])
    assert torch.equal(y[0, :, 2:], bn.bias[:, None].expand(3, 3).detach())
    assert "num_batches_tracked" not in bn.state_dict()


def test_config_from_the_reference_hyper_parameters() -> None:
    cfg = PolarMAEConfig.from_encoder_config(
        {"arch": "vit_small", "num_channels": 4, "tokenizer_kwargs": {"group_radius": 0.0075}}
    )
    assert (cfg.width, cfg.depth, cfg.num_heads, cfg.group_radius) == (384, 12, 6, 0.0075)
    with pytest.raises(ValueError, match="unknown arch 'vit_huge'"):
        PolarMAEConfig.from_encoder_config({"arch": "vit_huge"})


def _reference(path: Path) -> tuple[PolarMAEEncoder, dict[str, torch.Tensor]]:
    meta, stored = reference_file(path)
    model = PolarMAEEncoder(PolarMAEConfig.from_encoder_config(meta)).eval()
    model.load_state_dict(reference_state(stored), strict=True)
    return model, stored


@pytest.mark.reference
def test_every_stored_stage_matches_the_reference(
    reference_models: Callable[[str], Path],
) -> None:
    model, d = _reference(reference_models("polarmae_reduced_encoder.safetensors"))
    valid = d["tokens.emb_mask"]
    tokens = stored_tokens(d)
    with torch.no_grad():
        x = model.embed(tokens)
        pos = model.pos(tokens)
        hidden = model(d["tokens.x"], d["tokens.pos_embed"], valid, return_hidden=True)
        combined = model.combine_layers(hidden, valid, [0, 1])
    assert torch.allclose(x, d["tokens.x"], atol=ATOL, rtol=0)  # padded tokens are 0 in both
    assert torch.allclose(pos[valid], d["tokens.pos_embed"][valid], atol=ATOL, rtol=0)
    assert torch.allclose(hidden[0][valid], d["output.hidden_state.0"][valid], atol=ATOL, rtol=0)
    last = d["output.last_hidden_state"]
    assert torch.allclose(hidden[-1][valid], last[valid], atol=ATOL, rtol=0)
    assert torch.allclose(combined, d["output.combined_layers_0_1"], atol=ATOL, rtol=0)


@pytest.mark.reference
def test_each_event_alone_matches_and_differs_from_the_batched_run(
    reference_models: Callable[[str], Path],
) -> None:
    model, d = _reference(reference_models("polarmae_reduced_encoder.safetensors"))
    valid = d["tokens.emb_mask"]
    for b in range(2):
        n = int(valid[b].sum())
        sl = slice(b, b + 1)
        with torch.no_grad():
            alone = model(d["tokens.x"][sl, :n], d["tokens.pos_embed"][sl, :n], valid[sl, :n])
        ref = d[f"output.single_event_{b}.last_hidden_state"][:n]
        assert torch.allclose(alone[0], ref, atol=ATOL, rtol=0)
        batched = d["output.last_hidden_state"][b, :n]
        assert float((alone[0] - batched).abs().max()) > 0.1  # the batch coupling is real


@pytest.mark.reference
def test_grouping_of_the_stored_centres_is_exact(
    reference_models: Callable[[str], Path],
) -> None:
    model, d = _reference(reference_models("polarmae_reduced_encoder.safetensors"))
    points, lengths, valid = d["input.points"], d["input.lengths"], d["tokens.emb_mask"]
    centre_idx = []
    for b in range(2):
        centres = d["tokens.centers"][b, : int(valid[b].sum())]
        d2 = ((points[b, : int(lengths[b]), None, :3] - centres[None]) ** 2).sum(-1)
        assert bool((d2.min(0).values == 0).all())  # every centre is an input point
        centre_idx.append(d2.argmin(0))
    tokens = model.group(points, lengths, centre_idx)
    assert torch.equal(tokens.grouping_idx[valid], d["tokens.grouping_idx"][valid])
    assert torch.equal(tokens.point_valid[valid], d["tokens.point_mask"][valid])
    assert torch.allclose(tokens.groups[valid], d["tokens.groups"][valid], atol=ATOL, rtol=0)
    with torch.no_grad():
        assert torch.allclose(model.embed(tokens), d["tokens.x"], atol=ATOL, rtol=0)


@pytest.mark.reference
def test_full_size_encoder_matches_the_released_manifest(
    reference_models: Callable[[str], Path],
) -> None:
    manifests = json.loads(reference_models("polarmae_manifest.json").read_text())
    encoder = manifests["polarmae_pretrain_encoder_only"]
    cfg = PolarMAEConfig.from_encoder_config(manifests["polarmae_pretrain"]["encoder_config"])
    assert cfg == PolarMAEConfig()  # the defaults are PoLAr-MAE-Pretrain's encoder
    with torch.device("meta"):
        model = PolarMAEEncoder(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k["key"]: k["shape"] for k in encoder["keys"]}
    assert sum(p.numel() for p in model.parameters()) == encoder["num_parameters"]
    # the Lightning checkpoints hold the same encoder under "encoder."
    for entry in ("polarmae_pretrain", "polarmae_semantic_fft"):
        keys = {k["key"].removeprefix("encoder."): k["shape"] for k in manifests[entry]["keys"]}
        assert {k: keys[k] for k in shapes} == shapes


@pytest.mark.reference
def test_full_size_semantic_model_matches_the_released_manifest(
    reference_models: Callable[[str], Path],
) -> None:
    from nufm.models.released.polarmae_semantic import PolarMAESegmentor, PolarMAESegmentorConfig

    entry = json.loads(reference_models("polarmae_manifest.json").read_text())[
        "polarmae_semantic_fft"
    ]
    encoder = PolarMAEConfig.from_encoder_config(entry["encoder_config"])
    cfg = PolarMAESegmentorConfig.from_hyper_parameters(entry["config"], encoder)
    assert cfg == PolarMAESegmentorConfig()  # the defaults are the released fine-tune config
    with torch.device("meta"):
        model = PolarMAESegmentor(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k["key"]: k["shape"] for k in entry["keys"]}
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]
