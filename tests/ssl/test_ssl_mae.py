"""MaskedAutoencoder: shapes/metrics, gradients, visible-only encoding, batch independence."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nufm.ssl.build import OBJECTIVE_PRESETS
from nufm.ssl.mae import MAEConfig, MaskedAutoencoder
from nufm.ssl.masking import random_token_mask
from ssl_helpers import event_of, preprocessed_batch


def _tiny(**kw: object) -> MAEConfig:
    cfg = OBJECTIVE_PRESETS["mae-tiny"]
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


def test_mae_encoder_sees_only_visible_tokens() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny()).eval()
    batch = preprocessed_batch(2)
    with torch.no_grad():
        tokens = model.encoder.tokenize(batch)
        is_masked = random_token_mask(tokens.valid, 0.6)
        visible = tokens.valid & ~is_masked
        a = model._encode_visible(tokens, visible)
        noisy = dataclasses.replace(tokens, feat=torch.where(is_masked[..., None],
                                                             torch.randn_like(tokens.feat) * 5,
                                                             tokens.feat))
        b = model._encode_visible(noisy, visible)
        full = model.encoder.encode_tokens(tokens, is_masked).feat  # attention-mask path
    torch.testing.assert_close(a[visible], b[visible])
    assert float(a[~visible].abs().max()) == 0.0
    torch.testing.assert_close(a[visible], full[visible], atol=1e-5, rtol=1e-4)


def test_mae_visible_encoding_is_batch_independent() -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder(_tiny()).eval()
    batch = preprocessed_batch(3)
    with torch.no_grad():
        tokens = model.encoder.tokenize(batch)
        torch.manual_seed(5)
        is_masked = random_token_mask(tokens.valid, 0.6)
        together = model._encode_visible(tokens, tokens.valid & ~is_masked)
        one = event_of(batch, 1)
        t1 = model.encoder.tokenize(one)
        G1 = t1.valid.shape[1]
        alone = model._encode_visible(t1, t1.valid & ~is_masked[1:2, :G1])
    vis = (tokens.valid & ~is_masked)[1, :G1]
    torch.testing.assert_close(alone[0][vis], together[1, :G1][vis], atol=1e-5, rtol=1e-4)


def test_mae_config_validation() -> None:
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(mask_ratio=1.0)
