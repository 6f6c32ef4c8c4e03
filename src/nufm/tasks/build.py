"""Task dispatch and named task presets (STYLE.md sections 2-3: no registry, one ``match``).

Owns :data:`TaskConfig`, :func:`build_task` and :data:`TASK_PRESETS`. A preset's encoder must
be replaced by the pretrained model's encoder config before loading its weights, e.g.
``dataclasses.replace(TASK_PRESETS["semseg-full"], encoder=mae_cfg.encoder)``.
Recipes follow PoLAr-MAE (arXiv:2502.02558, anchors 1.7) and Panda (arXiv:2512.01324,
anchors 2.4).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import torch
from torch import Tensor

from nufm.models.encoders import TokenViTConfig
from nufm.models.presets import PTV3_PRESETS
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import ViTConfig
from nufm.tasks.cluster import ClusterConfig, InstanceClustering
from nufm.tasks.common import TaskModule, load_encoder_state
from nufm.tasks.event import EventTask, EventTaskConfig
from nufm.tasks.pid import ParticleID, PIDConfig
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig

log = logging.getLogger(__name__)

TaskConfig = SemsegConfig | PIDConfig | ClusterConfig | EventTaskConfig
"""Union of task configs, discriminated by their ``name`` literal."""


def build_task(
    cfg: TaskConfig,
    encoder_state: Mapping[str, Tensor] | None = None,
    *,
    encoder_prefix: str | None = None,
    strict: bool = False,
) -> TaskModule:
    """Build a task and (unless mode is scratch) load pretrained encoder weights.

    Parameters are created in a fixed order (encoder, neck, head) before any weights are
    loaded, so with the same torch seed, full and scratch tasks get identical neck and head
    initialisations and differ only in the encoder's starting weights.

    Args:
        cfg: the task config.
        encoder_state: a state dict holding the encoder weights: the encoder's own, a
            pretraining objective's (``encoder.*``), a task's or a DDP-wrapped one (see
            :func:`nufm.tasks.common.extract_encoder_state`). None = random init (allowed but
            logged for linear / head / full; required for scratch).
        encoder_prefix: key prefix of the encoder in ``encoder_state``; None = detect.
        strict: True = raise unless the encoder loads exactly.

    Returns:
        The task module; ``task.encoder_load_report`` holds the load report (None without
        weights).

    Raises:
        ValueError: scratch mode with weights, or no tensor of ``encoder_state`` fits.
        TypeError: an unknown config type.
    """
    match cfg:
        case SemsegConfig():
            task: TaskModule = SemanticSegmentation(cfg)
        case PIDConfig():
            task = ParticleID(cfg)
        case ClusterConfig():
            task = InstanceClustering(cfg)
        case EventTaskConfig():
            task = EventTask(cfg)
        case _:
            raise TypeError(f"build_task: no task for config type {type(cfg).__name__}")
    if cfg.mode == "scratch":
        if encoder_state is not None:
            raise ValueError(
                f"build_task: mode='scratch' trains the {cfg.name} task from a "
                "random encoder; do not pass encoder_state (use mode='full')"
            )
        return task
    if encoder_state is None:
        log.warning(
            "build_task: %s in mode %r with a randomly initialised encoder (no "
            "encoder_state given)",
            cfg.name,
            cfg.mode,
        )
        return task
    task.encoder_load_report = load_encoder_state(
        task.backbone.encoder,
        encoder_state,
        prefix=encoder_prefix,
        source=f"{cfg.name} task encoder_state",
        strict=strict,
    )
    return task


def count_parameters(task: torch.nn.Module) -> dict[str, int]:
    """Parameter counts: ``total``, ``trainable``, ``encoder``."""
    enc = task.get_submodule("backbone.encoder")
    return {
        "total": sum(p.numel() for p in task.parameters()),
        "trainable": sum(p.numel() for p in task.parameters() if p.requires_grad),
        "encoder": sum(p.numel() for p in enc.parameters()),
    }


def _token_vit() -> TokenViTConfig:
    """PoLAr-MAE ViT-S with the 5-voxel tokenizer on feat = [xyz, log energy] (as ssl.mae)."""
    return TokenViTConfig(tokenizer=PointMAETokenizerConfig(in_channels=4), vit=ViTConfig())


def _modes(base: TaskConfig, prefix: str) -> dict[str, TaskConfig]:
    return {
        f"{prefix}-{m}": dataclasses.replace(base, mode=m)
        for m in ("linear", "head", "full", "scratch")
    }


_PTV3_TINY = PTV3_PRESETS["tiny"]

TASK_PRESETS: dict[str, TaskConfig] = {
    # 5-class semseg on PTv3-tiny (CPU-trainable), focal loss with PILArNet alpha (anchors 1.7)
    **_modes(SemsegConfig(encoder=_PTV3_TINY), "semseg"),
    # short CPU runs: cross-entropy with square-root inverse-frequency weights (the full
    # PoLAr-MAE alpha, up to 60x track weight for Michel, drags accuracy down within 100s of
    # steps; measured in the study notes of docs/tasks.md)
    **_modes(
        SemsegConfig(encoder=_PTV3_TINY, loss="ce", class_weighting="pilarnet-sqrt"), "semseg-ce"
    ),
    # PoLAr-MAE-style 4-class semseg (LED removed) on the ViT-S tokenizer encoder
    **_modes(
        SemsegConfig(
            encoder=_token_vit(),
            num_classes=4,
            neck_hidden=(384, 384),
            head_hidden=(512, 256),
            dropout=0.5,
        ),
        "semseg-polarmae",
    ),
    **_modes(PIDConfig(encoder=_PTV3_TINY), "pid"),
    **_modes(ClusterConfig(encoder=_PTV3_TINY, target="particle"), "cluster-particle"),
    **_modes(ClusterConfig(encoder=_PTV3_TINY, target="interaction"), "cluster-interaction"),
    **_modes(
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="classification",
            targets=("n_interactions",),
            num_classes=4,
            class_offset=1,
        ),
        "event-ninteractions",
    ),
    # log visible energy (MeV, AddEventTargets); shift/scale put typical events near 0 +- 1
    **_modes(
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="regression",
            targets=("visible_energy",),
            transform="log",
            target_shift=6.5,
            target_scale=1.0,
        ),
        "event-energy",
    ),
    # first-interaction vertex in normalised coordinates (AddEventTargets)
    **_modes(
        EventTaskConfig(
            encoder=_PTV3_TINY,
            kind="regression",
            targets=("vertex_x", "vertex_y", "vertex_z"),
            target_scale=0.3,
        ),
        "event-vertex",
    ),
}
"""Named task configs: ``<task>-<mode>`` for every task and mode."""
