"""Objective dispatch (STYLE.md sections 2-3: no registry).

Owns :data:`SSLObjectiveConfig`, :func:`build_ssl_objective`, :func:`objective_input_width`,
:func:`with_feature_width` and :func:`with_detectors`; the run-level dispatch over all
objectives and tasks is :func:`nufm.train.components.build_objective`. Named objectives are
run presets in :mod:`nufm.presets`.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from nufm.errors import ConfigError
from nufm.models.encoders import (
    DetectorTokenizer,
    TokenViTConfig,
    input_width,
    with_input_width,
)
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


def with_detectors(cfg: SSLObjectiveConfig, widths: dict[str, int]) -> SSLObjectiveConfig:
    """The cross-experiment MAE for a mixture of the detectors ``widths`` names (detector ->
    feature channels, the first the mixture's first file's): one tokenizer per detector, in
    that order, each taking its detector's channels; the preset's tokenizers of detectors
    absent from the mixture are dropped.

    Raises:
        ConfigError: the objective is no MAE over a token ViT with a tokenizer for every
            detector of the mixture.
    """
    encoder = getattr(cfg, "encoder", None)
    if not isinstance(cfg, MAEConfig) or not isinstance(encoder, TokenViTConfig):
        raise ConfigError(
            f"data.source mixture: pretraining over several detectors needs the MAE over a "
            f"token ViT (preset mae-mix-cpu), not {type(cfg).__name__}"
        )
    missing = [d for d in widths if d not in encoder.detectors]
    if missing:
        have = ", ".join(encoder.detectors) or "one detector only"
        raise ConfigError(
            f"data.mixture holds {', '.join(missing)} events, but the encoder has tokenizers "
            f"for {have} (TokenViTConfig.other_tokenizers; preset mae-mix-cpu has them all)"
        )
    tokenizers = [replace(encoder.tokenizer_for(d), in_channels=w) for d, w in widths.items()]
    names = list(widths)
    others = tuple(
        DetectorTokenizer(detector=d, tokenizer=t)
        for d, t in zip(names[1:], tokenizers[1:], strict=True)
    )
    encoder = replace(encoder, tokenizer=tokenizers[0], detector=names[0], other_tokenizers=others)
    return replace(cfg, encoder=encoder, energy_channel=3)


__all__ = ["SSLObjectiveConfig", "build_ssl_objective", "with_detectors"]


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
