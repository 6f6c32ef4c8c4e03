"""Task dispatch (STYLE.md sections 2-3: no registry, one ``match``).

Owns :data:`TaskConfig` and :func:`build_task`; named tasks are the fine-tuning presets of
:mod:`nufm.presets`. A preset's encoder must be replaced by the pretrained model's encoder
config before loading its weights, e.g.
``dataclasses.replace(PRESETS["semseg-full"].objective, encoder=mae_cfg.encoder)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import Tensor

from nufm.tasks.backbone import TaskModule
from nufm.tasks.cluster import ClusterConfig, InstanceClustering
from nufm.tasks.encoder_state import load_encoder_state
from nufm.tasks.event_task import EventTask, EventTaskConfig
from nufm.tasks.multitask import MultiTask, MultiTaskConfig
from nufm.tasks.pid import ParticleID, PIDConfig
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig

log = logging.getLogger(__name__)

TaskConfig = SemsegConfig | PIDConfig | ClusterConfig | EventTaskConfig | MultiTaskConfig
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
            :func:`nufm.tasks.encoder_state.extract_encoder_state`). None = random init (allowed but
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
        case MultiTaskConfig():
            task = MultiTask(cfg)
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
