"""build_ssl_objective dispatch and the objective presets (GPU presets built on the meta device)."""

from __future__ import annotations

import pytest
import torch

from nufm.presets import PRESETS
from nufm.ssl.build import build_ssl_objective
from nufm.ssl.distill import DistillConfig, SelfDistillation
from nufm.ssl.forecast import ForecastConfig, Forecaster
from nufm.ssl.mae import MAEConfig, MaskedAutoencoder


def test_presets_exist_and_dispatch() -> None:
    for name in (
        "mae-tiny",
        "distill-tiny",
        "forecast-tiny",
        "sonata-panda-base",
        "distill-small",
        "forecast-small",
        "forecast-base",
        "forecast-tpc-cpu",
        "mae-cpu",
        "mae-ctx-cpu",
        "distill-vit-cpu",
    ):
        assert name in PRESETS
    expected = {
        MAEConfig: MaskedAutoencoder,
        DistillConfig: SelfDistillation,
        ForecastConfig: Forecaster,
    }
    for name in (
        "mae-tiny",
        "distill-tiny",
        "forecast-tiny",
        "forecast-tpc-cpu",
        "mae-ctx-cpu",
        "distill-vit-cpu",
    ):
        cfg = PRESETS[name].objective
        model = build_ssl_objective(cfg)
        assert isinstance(model, expected[type(cfg)])
        assert isinstance(model.encoder, torch.nn.Module)


def test_gpu_presets_build_on_meta_device() -> None:
    with torch.device("meta"):
        mae = build_ssl_objective(MAEConfig())  # PoLAr-MAE ViT-S
        panda = build_ssl_objective(PRESETS["sonata-panda-base"].objective)
    n_mae_enc = sum(p.numel() for p in mae.encoder.vit.parameters())
    assert 20e6 < n_mae_enc < 23e6  # ViT-S blocks: 12 x 1.77 M
    n_panda = sum(p.numel() for p in panda.encoder.parameters())
    assert 60e6 < n_panda < 120e6  # Panda-Base encoder, 90.8 M published (docs/references.md)
    assert hasattr(panda, "update_teacher") and hasattr(panda, "set_schedule")


def test_build_objective_rejects_unknown_config() -> None:
    with pytest.raises(TypeError, match="no objective"):
        build_ssl_objective(object())  # type: ignore[arg-type]
