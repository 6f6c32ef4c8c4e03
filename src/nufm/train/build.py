"""Explicit builders for a pretraining run: objective, dataset and augmentation.

New objectives plug in here and nowhere else: add their config class to
``nufm.config.ObjectiveConfig`` (a union discriminated by each config's ``name`` literal) and a
``case`` to :func:`build_objective`. There is no registry (see STYLE.md Sec. 3).
"""

from __future__ import annotations

import logging

from torch import nn

from nufm.config import DataConfig, ObjectiveConfig
from nufm.errors import InputError, NotFoundError
from nufm.ssl.build import build_objective as build_ssl_objective
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.mae import MAEConfig
from nufm.tasks.build import build_task
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event import EventTaskConfig
from nufm.tasks.pid import PIDConfig
from nufm.tasks.semseg import SemsegConfig
from nufm.train.data import EventDataset, Transform
from nufm.train.toy import ToyObjective, ToyObjectiveConfig, random_rotation_z, toy_events

log = logging.getLogger(__name__)


def build_objective(cfg: ObjectiveConfig) -> nn.Module:
    """The objective module for ``cfg`` (``forward(PointBatch) -> StepOutput``).

    Seed the torch RNG before calling it: parameter initialisation draws from it.
    """
    match cfg:
        case ToyObjectiveConfig():
            return ToyObjective(cfg)
        case MAEConfig() | DistillConfig() | ForecastConfig():
            return build_ssl_objective(cfg)
        case SemsegConfig() | PIDConfig() | ClusterConfig() | EventTaskConfig():
            return build_task(cfg)  # random init; nufm.workflows.finetune loads weights
        case _:
            raise TypeError(f"build_objective: no objective for config {type(cfg).__name__}")


def build_dataset(cfg: DataConfig) -> EventDataset:
    """The event dataset named by ``cfg.source`` (the loop's default dataset factory)."""
    match cfg.source:
        case "toy":
            return toy_events(cfg.num_events, cfg.sim_seed)
        case "sim":
            try:
                from nufm.sim import generate_events  # type: ignore[attr-defined]
            except ImportError as e:
                raise RuntimeError(
                    "data.source='sim' needs nufm.sim.generate_events, which "
                    f"is not available ({e})"
                ) from e
            log.info("simulating %d events (seed %d)", cfg.num_events, cfg.sim_seed)
            return list(generate_events(cfg.num_events, cfg.sim_seed))
        case "file":
            assert cfg.path is not None
            if not cfg.path.is_file():
                raise NotFoundError(f"data.path {cfg.path}: no such file")
            from nufm.data.dataset import PILArNetDataset
            from nufm.data.transforms import Preprocess

            pre = Preprocess()  # the loop applies the transforms, seeded per (epoch, event)
            dataset = PILArNetDataset(
                cfg.path,
                transform=None,
                min_points=pre.min_points,
                energy_threshold=pre.energy_threshold,
            )
            if len(dataset) == 0:
                raise InputError(f"data.path {cfg.path}: no usable event (empty file?)")
            return dataset
        case _:
            raise ValueError(f"data.source={cfg.source!r} is not one of toy, sim, file")


def build_transform(cfg: DataConfig) -> Transform | None:
    """The seeded per-event pipeline of the run, or None.

    'toy' events: none, or a random rotation about z when ``augment``. 'sim' / 'file':
    ``nufm.data.transforms.Preprocess`` (threshold, normalise, log energy, feat = [xyz, E])
    with a uniform random rotation when ``augment``.
    """
    if cfg.source == "toy":
        return random_rotation_z if cfg.augment else None
    from nufm.data.transforms import Preprocess, RandomRotation

    return Preprocess().transforms(augment=[RandomRotation()] if cfg.augment else [])


def preprocess_contract(cfg: DataConfig) -> dict:
    """What inputs a model trained on ``cfg`` expects (stored by ``nufm.hub.export``)."""
    if cfg.source == "toy":
        return {"source": "toy", "feat": "energy (MeV)", "coord": "voxel units"}
    from nufm.data.transforms import Preprocess

    return {"source": cfg.source, **Preprocess().to_dict()}
