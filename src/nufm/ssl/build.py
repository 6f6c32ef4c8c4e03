"""Objective dispatch and named objective presets (STYLE.md sections 2-3: no registry).

Owns :data:`ObjectiveConfig`, :func:`build_objective` and :data:`OBJECTIVE_PRESETS`.

* ``*-tiny``: trainable on a CPU in seconds per step on small events (token ViT width 64,
  depth 2; PTv3 with 4 narrow stages; causal transformer width 64, depth 2).
* ``mae-vit-s`` (PoLAr-MAE ViT-S, arXiv:2502.02558), ``distill-small`` (PTv3 "small"),
  ``sonata-panda-base`` (Panda-Base, arXiv:2512.01324), ``forecast-small`` (about the size of
  FM4NPP's 5M model, arXiv:2508.14087) and ``forecast-base``: GPU presets built from
  :mod:`nufm.models.presets`.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from nufm.models.encoders import TokenViTConfig
from nufm.models.presets import PTV3_PRESETS
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import VIT_PRESETS, ViTConfig
from nufm.ssl.distill import DistillConfig, SelfDistillation
from nufm.ssl.forecast import ForecastConfig, Forecaster
from nufm.ssl.mae import MAEConfig, MaskedAutoencoder
from nufm.ssl.views import ViewConfig

ObjectiveConfig = MAEConfig | DistillConfig | ForecastConfig
"""Union of the pretraining objective configs (discriminated by their ``name`` literal)."""


def build_objective(cfg: ObjectiveConfig) -> nn.Module:
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
                f"build_objective: no objective for config type "
                f"{type(cfg).__name__}; expected one of MAEConfig, DistillConfig, "
                "ForecastConfig"
            )


def _tiny_vit(depth: int) -> ViTConfig:
    return ViTConfig(embed_dim=64, depth=depth, num_heads=4, drop_path=0.0, attn_drop=0.0)


_MAE_TINY = MAEConfig(
    encoder=TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=64,
            group_max_points=16,
            group_upscale_points=32,
            context_length=128,
            pointnet_dims=(32, 64, 128),
            pos_hidden=32,
        ),
        vit=_tiny_vit(2),
    ),
    decoder=dataclasses.replace(_tiny_vit(1), add_pos_at_every_layer=True),
    energy_hidden=32,
)

_TINY_PTV3 = dataclasses.replace(
    PTV3_PRESETS["tiny"],
    enc_mode=True,
    mask_token=True,
    enc_channels=(16, 32, 64, 64),
    enc_num_head=(2, 2, 4, 4),
    enc_patch_size=(64,) * 4,
    drop_path=0.0,
)

_DISTILL_TINY = DistillConfig(
    encoder=_TINY_PTV3,
    views=ViewConfig(num_global=2, num_local=2),
    head_hidden=128,
    head_bottleneck=32,
    num_prototypes=32,
    teacher_temp=(0.04, 0.04),
    mask_size=(0.01, 0.03),
    mask_ratio=(0.3, 0.5),
)

_CPU_WIDTH = 96

_MAE_CPU = MAEConfig(
    encoder=TokenViTConfig(
        tokenizer=PointMAETokenizerConfig(
            in_channels=4,
            embed_dim=_CPU_WIDTH,
            group_max_points=16,
            group_upscale_points=32,
            context_length=512,
            pointnet_dims=(32, 64, 128),
            pos_hidden=32,
        ),
        vit=ViTConfig(embed_dim=_CPU_WIDTH, depth=4, num_heads=4, drop_path=0.1, attn_drop=0.0),
    ),
    decoder=ViTConfig(
        embed_dim=_CPU_WIDTH,
        depth=1,
        num_heads=4,
        drop_path=0.0,
        attn_drop=0.0,
        add_pos_at_every_layer=True,
    ),
    energy_hidden=32,
)
"""The demo's encoder: 5-voxel tokens of 16 points, up to 512 per event (covers typical
simulated events), width 96, depth 4; about 0.3 s per 8-event step on 2 CPU cores (bf16)."""

_MAE_CTX_CPU = dataclasses.replace(_MAE_CPU, context_weight=1.0)
"""``mae-cpu`` plus the context-reconstruction term (6 cm neighbourhoods, 32 points): the
demo's default; its linear probe gains about 0.02 macro F1 over ``mae-cpu``
(docs/objectives.md, measured)."""

_DISTILL_VIT_CPU = DistillConfig(
    encoder=dataclasses.replace(_MAE_CPU.encoder, mask_token=True),
    views=ViewConfig(num_global=2, num_local=2),
    head_hidden=256,
    head_bottleneck=64,
    num_prototypes=64,
    mask_size=(0.01, 0.03),
    mask_ratio=(0.3, 0.6),
)
"""Sonata/Panda self-distillation of the ``mae-cpu`` token ViT (same encoder, plus a mask
token), sized for 2 CPU cores."""

OBJECTIVE_PRESETS: dict[str, ObjectiveConfig] = {
    "mae-tiny": _MAE_TINY,
    "mae-cpu": _MAE_CPU,
    "mae-ctx-cpu": _MAE_CTX_CPU,
    # PoLAr-MAE ViT-S (anchors 1.4): encoder depth 12 width 384, decoder depth 4.
    "mae-vit-s": MAEConfig(
        encoder=TokenViTConfig(
            tokenizer=PointMAETokenizerConfig(in_channels=4), vit=VIT_PRESETS["vit-small"]
        )
    ),
    # Same, with PoLAr-MAE's 4-D (xyz, energy) Chamfer term.
    "mae-vit-s-4d": MAEConfig(
        encoder=TokenViTConfig(
            tokenizer=PointMAETokenizerConfig(in_channels=4), vit=VIT_PRESETS["vit-small"]
        ),
        chamfer_with_energy=True,
    ),
    "distill-tiny": _DISTILL_TINY,
    "distill-vit-cpu": _DISTILL_VIT_CPU,
    "distill-small": DistillConfig(
        encoder=dataclasses.replace(PTV3_PRESETS["small"], enc_mode=True, mask_token=True),
        views=ViewConfig(num_global=2, num_local=4),
        head_hidden=2048,
        head_bottleneck=128,
        num_prototypes=1024,
    ),
    # Panda pretraining (anchors 2.3): Panda-Base encoder, 2 global + 6 local views.
    "sonata-panda-base": DistillConfig(
        encoder=dataclasses.replace(PTV3_PRESETS["panda-base"], mask_token=True)
    ),
    "forecast-tiny": ForecastConfig(
        patch_points=16, embed_dim=64, depth=2, num_heads=4, pointnet_dims=(32, 64, 128)
    ),
    "forecast-small": ForecastConfig(),
    "forecast-base": ForecastConfig(embed_dim=512, depth=16, num_heads=8),
}
"""Named objective configs (tiny = CPU-trainable; the others are GPU presets)."""

__all__ = ["OBJECTIVE_PRESETS", "ObjectiveConfig", "build_objective"]
