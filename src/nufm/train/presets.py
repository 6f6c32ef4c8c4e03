"""Named :class:`~nufm.config.RunConfig` instances (``nufm pretrain --preset NAME``).

A variant is a preset, never a copied class. The lead merges this dict into
``nufm/presets.py``.
"""

from __future__ import annotations

from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.train.toy import ToyObjectiveConfig

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
}
"""Preset name -> run config."""


def get_preset(name: str) -> RunConfig:
    """The preset called ``name``; ``KeyError`` lists the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]
