"""Objective dispatch (STYLE.md sections 2-3: no registry).

Owns :data:`SSLObjectiveConfig` and :func:`build_ssl_objective`; the run-level dispatch over
all objectives and tasks is :func:`nufm.train.components.build_objective`. Named objectives are
run presets in :mod:`nufm.presets`.
"""

from __future__ import annotations

from torch import nn

from nufm.ssl.distill import DistillConfig, SelfDistillation
from nufm.ssl.forecast import ForecastConfig, Forecaster
from nufm.ssl.mae import MAEConfig, MaskedAutoencoder

SSLObjectiveConfig = MAEConfig | DistillConfig | ForecastConfig
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
        case _:
            raise TypeError(
                f"build_ssl_objective: no objective for config type "
                f"{type(cfg).__name__}; expected one of MAEConfig, DistillConfig, "
                "ForecastConfig"
            )


__all__ = ["SSLObjectiveConfig", "build_ssl_objective"]
