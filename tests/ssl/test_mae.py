"""MaskedAutoencoder: shapes/metrics, gradients, visible-only encoding, batch independence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers.events import descriptor_case, event_of, preprocessed_batch
from nufm.batch import PointBatch
from nufm.models.geometric import descriptor_key
from nufm.presets import PRESETS
from nufm.ssl.mae import EnergyInfillHead, MAEConfig, MaskedAutoencoder
from nufm.ssl.masking import random_token_mask


def _tiny(**kw: object) -> MAEConfig:
    cfg = PRESETS["mae-tiny"].objective
    assert isinstance(cfg, MAEConfig)
    return dataclasses.replace(cfg, **kw)


@pytest.mark.parametrize("with_energy", [False, True])
def test_mae_forward_backward_all_params_get_grads(with_energy: bool) -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny(chamfer_with_energy=with_energy)).train()
    batch = preprocessed_batch(2)
    out = model(batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert set(out.metrics) >= {"chamfer", "energy", "n_masked"}
    n_tok = int(out.metrics["n_tokens"])
    assert n_tok > 4
    tokens = model.encoder.tokenize(batch)
    expected = sum(int(0.6 * int(n)) for n in tokens.valid.sum(1))
    assert int(out.metrics["n_masked"]) == expected
    assert all(not v.requires_grad for v in out.metrics.values())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def _visible_alone(model: MaskedAutoencoder, tokens, visible: torch.Tensor, b: int):
    """Reference: event b's visible tokens run through the ViT as a batch of their own."""
    keep = visible[b]
    feat, pos = tokens.feat[b, keep][None], tokens.pos[b, keep][None]  # (1, Gv, D)
    return model.encoder.vit(feat, pos, None).feat[0]  # (Gv, D)


def test_mae_encoder_sees_only_visible_tokens() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny()).eval()
    batch = preprocessed_batch(2)
    with torch.no_grad():
        tokens = model.encoder.tokenize(batch)
        is_masked = random_token_mask(tokens.valid, 0.6)
        visible = tokens.valid & ~is_masked
        a = model.encoder.encode_tokens(tokens, is_masked).feat
        noisy = dataclasses.replace(
            tokens,
            feat=torch.where(is_masked[..., None], torch.randn_like(tokens.feat) * 5, tokens.feat),
        )
        b = model.encoder.encode_tokens(noisy, is_masked).feat
        rows = model.encoder.encode_rows(tokens, visible, tokens.feat[visible])  # packed path
        alone = [_visible_alone(model, tokens, visible, e) for e in range(2)]
    torch.testing.assert_close(rows, a[visible], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a[visible], b[visible])
    assert float(a[~visible].abs().max()) == 0.0
    for e in range(2):
        torch.testing.assert_close(a[e][visible[e]], alone[e], atol=1e-5, rtol=1e-4)


def test_mae_visible_encoding_is_batch_independent() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny()).eval()
    batch = preprocessed_batch(3)
    with torch.no_grad():
        tokens = model.encoder.tokenize(batch)
        torch.manual_seed(5)
        is_masked = random_token_mask(tokens.valid, 0.6)
        together = model.encoder.encode_tokens(tokens, is_masked).feat
        one = event_of(batch, 1)
        t1 = model.encoder.tokenize(one)
        G1 = t1.valid.shape[1]
        alone = model.encoder.encode_tokens(t1, is_masked[1:2, :G1]).feat
    vis = (tokens.valid & ~is_masked)[1, :G1]
    torch.testing.assert_close(alone[0][vis], together[1, :G1][vis], atol=1e-5, rtol=1e-4)


def _brute_chamfer(pred: np.ndarray, target: np.ndarray) -> float:
    d = ((pred[:, None] - target[None]) ** 2).sum(-1)  # (n, m) squared distances
    return float(d.min(1).mean() + d.min(0).mean())


def test_mae_context_loss_matches_brute_force() -> None:
    """Each visible token's context target is every point of its event within the radius
    (fewer than context_points here, so FPS keeps them all), in units of the radius; the loss
    is the mean Chamfer distance to the first n predicted points, n = that count."""
    torch.manual_seed(0)
    R, M = 0.05, 48
    model = MaskedAutoencoder(
        _tiny(
            context_weight=1.0,
            context_radius=R,
            context_points=M,
            context_candidates=M,
        )
    )
    assert model.context_head is not None
    gen = torch.Generator().manual_seed(1)
    coord = torch.rand(70, 3, generator=gen) * 0.12  # event 0: rows 0-39, event 1: 40-69
    energy = torch.rand(70, generator=gen)
    feat = torch.cat([torch.zeros(70, 3), energy[:, None]], dim=1)
    batch = PointBatch(coord=coord, feat=feat, offset=torch.tensor([40, 70]))
    rows = [0, 7, 45]
    center, center_offset = coord[rows], torch.tensor([2, 3])
    tok = torch.randn(3, model.cfg.encoder.vit.embed_dim, generator=gen, requires_grad=True)
    loss = model.context_loss(batch, center, center_offset, tok)
    pred = model.context_head(tok).reshape(3, M, 3).detach().numpy()
    expected = []
    for q, r in enumerate(rows):
        lo, hi = (0, 40) if r < 40 else (40, 70)
        pts = coord[lo:hi].numpy()
        is_near = np.linalg.norm(pts - pts[r - lo], axis=1) < R
        target = (pts[is_near] - pts[r - lo]) / R
        assert 1 <= len(target) <= M
        expected.append(_brute_chamfer(pred[q, : len(target)], target))
    assert float(loss.detach()) == pytest.approx(np.mean(expected), rel=1e-5)
    loss.backward()  # the loss trains the encoder output it is given
    assert tok.grad is not None and float(tok.grad.abs().sum()) > 0


def test_mae_context_term_in_the_step() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny(context_weight=0.5)).train()
    out = model(preprocessed_batch(2))
    assert float(out.metrics["context"]) > 0
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # off by default: no head, so older checkpoints keep loading
    assert not any(k.startswith("context_head") for k in MaskedAutoencoder(_tiny()).state_dict())


def test_mae_config_validation() -> None:
    with pytest.raises(ValueError, match="context_points"):
        _tiny(context_weight=1.0, context_points=300, context_candidates=256)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(mask_ratio=1.0)


def test_config_saved_before_the_removed_options_still_loads() -> None:
    from nufm.config import config_to_dict, objective_config_from_dict

    old = config_to_dict(MAEConfig()) | {
        "mask_block": 0.0,
        "latent_weight": 0.0,
        "latent_blocks": 3,
        "context_with_energy": False,
    }
    assert objective_config_from_dict(old) == MAEConfig()
    with pytest.raises(ValueError, match=r"latent_weight=1\.0 was removed"):
        objective_config_from_dict(old | {"latent_weight": 1.0})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['mask_blocks'\]"):
        objective_config_from_dict(old | {"mask_blocks": 0.0})


def test_energy_head_equals_its_concatenated_form() -> None:
    """The head splits ``out.fc1`` by input block so the group terms run once per group: it must
    equal ``out`` on the concatenation [phi(x_k), max_j phi(x_j), W t] it is defined by, values
    and gradients, at the valid slots; the empty ones are 0."""
    torch.manual_seed(0)
    head = EnergyInfillHead(token_dim=24, hidden=16)
    token = torch.randn(9, 24, requires_grad=True)
    rel = torch.randn(9, 7, 3)
    valid = torch.rand(9, 7) < 0.7
    valid[0] = False  # a group with no real point: the max term is 0
    got = head(token, rel, valid)
    p = head.point_embed(rel)  # (Q, K, h)
    g = p.masked_fill(~valid[..., None], float("-inf")).amax(1)
    g = torch.where(valid.any(1, keepdim=True), g, torch.zeros_like(g))
    t = head.token_proj(token)
    z = torch.cat([p, g[:, None].expand(-1, 7, -1), t[:, None].expand(-1, 7, -1)], dim=-1)
    want = head.out(z)[..., 0]
    assert got.shape == (9, 7)
    torch.testing.assert_close(got[valid], want[valid], atol=1e-6, rtol=1e-5)
    assert bool((got[~valid] == 0).all())  # empty slots are not computed
    g_got = torch.autograd.grad(got.sum(), [token, *head.parameters()])
    g_want = torch.autograd.grad((want * valid).sum(), [token, *head.parameters()])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_mae_descriptor_loss_is_the_mse_of_standardised_group_means() -> None:
    """Hand-made case: each hidden group's target is the mean of its points' descriptors
    (empty slots excluded), standardised per channel over the hidden groups; the loss is the
    MSE of the head's prediction against it and trains the decoder output it is given."""
    torch.manual_seed(0)
    ks = (4, 8)
    model = MaskedAutoencoder(_tiny(descriptor_weight=1.0, descriptor_ks=ks)).train()
    assert model.descriptor_head is not None and model.descriptor_norm is not None
    assert model.descriptor_ks == ks
    batch, desc, gen = descriptor_case(ks)  # (30, 12) descriptors
    group_idx = torch.tensor([[0, 1, 2, -1], [3, 4, -1, -1], [5, 6, 7, 8]])
    hidden = torch.randn(3, model.cfg.decoder.embed_dim, generator=gen, requires_grad=True)
    loss = model.descriptor_loss(batch, hidden, group_idx)
    means = torch.stack([desc[[0, 1, 2]].mean(0), desc[[3, 4]].mean(0), desc[5:9].mean(0)])
    std = means.std(0, correction=0)
    target = (means - means.mean(0)) / torch.sqrt(std**2 + model.descriptor_norm.eps)
    pred = model.descriptor_head(hidden).double()
    expected = float(((pred - target) ** 2).mean().detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert hidden.grad is not None and float(hidden.grad.abs().sum()) > 0
    # the pipeline's descriptors are read instead of being computed (same values)
    piped = dataclasses.replace(batch, descriptors=desc.float(), descriptor_key=descriptor_key(ks))
    model.descriptor_norm.reset_running_stats()
    again = model.descriptor_loss(piped, hidden.detach(), group_idx)
    assert float(again.detach()) == pytest.approx(float(loss.detach()), rel=1e-5)


@pytest.mark.parametrize("tokens", ["hidden", "visible"])
def test_mae_descriptor_term_in_the_step(tokens: str) -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny(descriptor_weight=0.5, descriptor_tokens=tokens)).train()
    assert model.descriptor_head is not None
    width = model.cfg.decoder.embed_dim if tokens == "hidden" else model.cfg.encoder.vit.embed_dim
    assert model.descriptor_head.in_features == width
    out = model(preprocessed_batch(2))
    assert float(out.metrics["descriptor"]) > 0
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # off by default: no head, so older checkpoints keep loading
    off = MaskedAutoencoder(_tiny())
    assert off.descriptor_ks == ()
    assert not any(k.startswith("descriptor_") for k in off.state_dict())
    with pytest.raises(ValueError, match="descriptor_ks"):
        _tiny(descriptor_weight=1.0, descriptor_ks=(1, 8))
    with pytest.raises(ValueError, match="descriptor_weight"):
        _tiny(descriptor_weight=-1.0)
    with pytest.raises(ValueError, match="descriptor_tokens"):
        _tiny(descriptor_weight=1.0, descriptor_tokens="all")
