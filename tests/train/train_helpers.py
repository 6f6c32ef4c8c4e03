"""Shared helpers for the training-engine tests (imported as ``train_helpers``)."""

from __future__ import annotations

import dataclasses

from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.ssl.toy import ToyObjectiveConfig, toy_events


def make_cfg(**sections: dict) -> RunConfig:
    """A tiny CPU run; ``sections`` override fields per section, e.g. train={"max_steps": 4}."""
    base = RunConfig(
        name="test",
        objective=ToyObjectiveConfig(hidden=8),
        optim=OptimConfig(lr=1e-2, min_lr=1e-3, warmup_steps=2, grad_clip=1.0),
        train=TrainConfig(max_steps=8, checkpoint_every=3, keep_checkpoints=10, device="cpu"),
        logging=LoggingConfig(log_every=1, progress=False, tensorboard=False),
        data=DataConfig(source="toy", num_events=24, max_points=120, max_events=4),
    )
    updates = {
        name: dataclasses.replace(getattr(base, name), **fields)
        for name, fields in sections.items()
        if name != "root"
    }
    return dataclasses.replace(base, **updates, **sections.get("root", {}))


def toy_factory(data_cfg: DataConfig) -> list:
    return toy_events(data_cfg.num_events, data_cfg.sim_seed)
