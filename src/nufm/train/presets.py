"""Named :class:`~nufm.config.RunConfig` instances (``nufm pretrain --preset NAME``).

A variant is a preset, never a copied class.
"""

from __future__ import annotations

from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.ssl.build import OBJECTIVE_PRESETS
from nufm.train.toy import ToyObjectiveConfig


def _cpu_pretrain(
    objective: str, steps: int, lr: float, num_events: int = 2000, max_events: int = 8
) -> RunConfig:
    """A pretraining run sized for a 2-core CPU on simulated events (bf16 autocast)."""
    return RunConfig(
        name=objective,
        objective=OBJECTIVE_PRESETS[objective],
        optim=OptimConfig(lr=lr, min_lr=lr / 100, warmup_steps=max(steps // 10, 1)),
        train=TrainConfig(
            max_steps=steps,
            checkpoint_every=max(steps // 4, 1),
            bf16=True,
            monitor_every=max(steps // 5, 1),
        ),
        logging=LoggingConfig(log_every=max(steps // 50, 1)),
        data=DataConfig(
            source="sim",
            num_events=num_events,
            max_points=60_000,
            max_events=max_events,
            augment=True,
        ),
    )


PRESETS: dict[str, RunConfig] = {
    "toy": RunConfig(
        name="toy",
        objective=ToyObjectiveConfig(hidden=16),
        optim=OptimConfig(lr=1e-3, warmup_steps=2, min_lr=1e-4),
        train=TrainConfig(max_steps=20, checkpoint_every=10, device="cpu"),
        logging=LoggingConfig(log_every=1, progress=False, tensorboard=True),
        data=DataConfig(source="toy", num_events=64, max_points=256, max_events=8),
    ),
    "toy-sim": RunConfig(
        name="toy-sim",
        objective=ToyObjectiveConfig(in_channels=4, hidden=32),
        optim=OptimConfig(lr=1e-3, warmup_steps=10),
        train=TrainConfig(max_steps=200, checkpoint_every=50),
        logging=LoggingConfig(log_every=10),
        data=DataConfig(source="sim", num_events=256, max_points=50_000, augment=True),
    ),
    # each self-supervised objective's tiny preset: learns visibly on CPU in minutes
    "mae-tiny": _cpu_pretrain("mae-tiny", steps=300, lr=1e-3, num_events=512),
    "distill-tiny": _cpu_pretrain("distill-tiny", steps=100, lr=5e-4, num_events=256, max_events=4),
    "forecast-tiny": _cpu_pretrain("forecast-tiny", steps=300, lr=1e-3, num_events=512),
    # CPU-sized token-ViT runs (about 5 minutes on 2 cores; distill-vit-cpu about 30): the
    # demo pretrains mae-ctx-cpu, PoLAr-MAE's objective plus the context term
    "mae-cpu": _cpu_pretrain("mae-cpu", steps=1000, lr=1e-3, num_events=2000),
    "mae-ctx-cpu": _cpu_pretrain("mae-ctx-cpu", steps=1000, lr=1e-3, num_events=2000),
    "distill-vit-cpu": _cpu_pretrain("distill-vit-cpu", steps=1000, lr=1e-3, num_events=2000),
}
"""Preset name -> run config."""


def get_preset(name: str) -> RunConfig:
    """The preset called ``name``; ``KeyError`` lists the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]
