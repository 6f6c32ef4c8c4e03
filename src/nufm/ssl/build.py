"""Objective dispatch (STYLE.md sections 2-3: no registry).

Owns :data:`SSLObjectiveConfig`, :func:`build_ssl_objective`, :func:`objective_input_width` and
:func:`with_feature_width`; the run-level dispatch over all objectives and tasks is
:func:`nufm.train.components.build_objective`. Named objectives are run presets in
:mod:`nufm.presets`.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from nufm.models.encoders import TokenViTConfig, input_width, with_input_width
from nufm.models.ptv3 import PTv3Config
from nufm.models.stream_fusion import StreamFusionConfig
from nufm.ssl.distill import DistillConfig, SelfDistillation
from nufm.ssl.forecast import ForecastConfig, Forecaster
from nufm.ssl.fusion_mae import FusionMAE, FusionMAEConfig
from nufm.ssl.mae import MAEConfig, MaskedAutoencoder

SSLObjectiveConfig = MAEConfig | DistillConfig | ForecastConfig | FusionMAEConfig
"""Union of the pretraining objective configs (discriminated by their ``name`` literal)."""


def build_ssl_objective(cfg: SSLObjectiveConfig) -> nn.Module:
    """The objective module a config describes (``forward(PointBatch) -> StepOutput``).

    Every objective exposes ``.encoder`` (the online encoder to export and fine-tune);
    :class:`SelfDistillation` also has ``update_teacher(momentum)`` and
    ``set_schedule(progress)``. Seed the torch RNG first: initialisation draws from it.
    """
    match cfg:
        case MAEConfig():
            return MaskedAutoencoder(cfg)
        case DistillConfig():
            return SelfDistillation(cfg)
        case ForecastConfig():
            return Forecaster(cfg)
        case FusionMAEConfig():
            return FusionMAE(cfg)
        case _:
            raise TypeError(
                f"build_ssl_objective: no objective for config type "
                f"{type(cfg).__name__}; expected one of MAEConfig, DistillConfig, "
                "ForecastConfig, FusionMAEConfig"
            )


__all__ = ["SSLObjectiveConfig", "build_ssl_objective"]


def objective_input_width(cfg: SSLObjectiveConfig) -> int:
    """Feature channels (``PointBatch.feat`` width) the objective's encoder takes."""
    match cfg:
        case MAEConfig() | DistillConfig() | ForecastConfig() | FusionMAEConfig():
            return input_width(cfg.encoder)
        case _:
            raise TypeError(f"objective_input_width: no objective {type(cfg).__name__}")


def with_feature_width(cfg: SSLObjectiveConfig, width: int) -> SSLObjectiveConfig:
    """The same objective for events with ``width`` feature channels ``[x, y, z, log energy,
    ...]`` (a detector's extra channels, such as the water Cherenkov hit time, come after the
    energy, so the MAE and FusionMAE energy targets stay column 3)."""
    match cfg:
        case MAEConfig():
            return replace(cfg, encoder=with_input_width(cfg.encoder, width), energy_channel=3)
        case DistillConfig():
            encoder = with_input_width(cfg.encoder, width)
            assert isinstance(encoder, PTv3Config | TokenViTConfig)
            return replace(cfg, encoder=encoder)
        case ForecastConfig():
            return replace(cfg, encoder=replace(cfg.encoder, in_channels=width))
        case FusionMAEConfig():
            encoder = with_input_width(cfg.encoder, width)
            assert isinstance(encoder, StreamFusionConfig)
            return replace(cfg, encoder=encoder, energy_channel=3)
        case _:
            raise TypeError(f"with_feature_width: no objective {type(cfg).__name__}")
