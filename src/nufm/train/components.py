"""Explicit builders for a run: objective, dataset and augmentation.

New objectives plug in here and nowhere else: add their config class to
``nufm.config.ObjectiveConfig`` (a union discriminated by each config's ``name`` literal) and a
``case`` to :func:`build_objective`. There is no registry (see STYLE.md Sec. 3).
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from torch import nn

from nufm.config import DataConfig, ObjectiveConfig
from nufm.data.detectors import detector_for_layout, get_detector
from nufm.data.event import Event
from nufm.data.formats import detect_layout, read_any
from nufm.data.lartpc import CENTER
from nufm.data.memo import EventMemo
from nufm.data.mixture import ByDetector, MixtureEvents, parse_mixture_entry
from nufm.data.transforms import (
    Compose,
    EnergySmear,
    Jitter,
    Preprocess,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomScale,
    Transform,
)
from nufm.errors import ConfigError, InputError, NotFoundError
from nufm.models.geometric import EventDescriptors
from nufm.ssl.build import build_ssl_objective
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.fusion_mae import FusionMAEConfig
from nufm.ssl.mae import MAEConfig
from nufm.ssl.toy import ToyObjective, ToyObjectiveConfig, toy_events
from nufm.step import HasEventGrouper, WantsDescriptors
from nufm.tasks.build import build_task
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event_task import EventTaskConfig
from nufm.tasks.multitask import MultiTaskConfig
from nufm.tasks.pid import PIDConfig
from nufm.tasks.semseg import SemsegConfig
from nufm.train.data import EventDataset
from nufm.train.forked import forked_map

log = logging.getLogger(__name__)


def build_objective(cfg: ObjectiveConfig) -> nn.Module:
    """The objective module for ``cfg`` (``forward(PointBatch) -> StepOutput``).

    Seed the torch RNG before calling it: parameter initialisation draws from it.
    """
    match cfg:
        case ToyObjectiveConfig():
            return ToyObjective(cfg)
        case MAEConfig() | DistillConfig() | ForecastConfig() | FusionMAEConfig():
            return build_ssl_objective(cfg)
        case SemsegConfig() | PIDConfig() | ClusterConfig() | EventTaskConfig() | MultiTaskConfig():
            return build_task(cfg)  # random init; nufm.workflows.finetune loads weights
        case _:
            raise TypeError(f"build_objective: no objective for config {type(cfg).__name__}")


def resolve_detector(cfg: DataConfig) -> DataConfig:
    """``cfg`` with ``detector`` set: the file's detector (from its layout) for source 'file',
    the LArTPC for simulated events; toy events keep None.

    Raises:
        ConfigError: ``detector`` names another detector than the file holds, or none known.
    """
    if cfg.source == "toy":
        return cfg
    if cfg.source == "mixture":
        found = mixture_detectors(cfg)[0]  # the first file's; each file keeps its own
        if cfg.detector is not None and cfg.detector != found:
            raise ConfigError(
                f"data.detector={cfg.detector!r}: a mixture's detector is its first file's "
                f"({found}); leave data.detector unset"
            )
        return replace(cfg, detector=found)
    found = "lartpc"
    if cfg.source == "file":
        assert cfg.path is not None
        if not cfg.path.is_file():
            raise NotFoundError(f"data.path {cfg.path}: no such file")
        found = detector_for_layout(detect_layout(cfg.path)).name
    if cfg.detector is not None and cfg.detector != found:
        get_detector(cfg.detector)  # an unknown name gets its own message
        where = cfg.path if cfg.source == "file" else "the built-in simulator"
        raise ConfigError(
            f"data.detector={cfg.detector!r} but {where} gives {found} events (for "
            f"{cfg.detector} events: --data.source file --data.path FILE)"
        )
    return replace(cfg, detector=found)


def mixture_sources(cfg: DataConfig) -> list[tuple[Path, float, str]]:
    """(path, weight, detector) of every file of a mixture, in order; the detector from the
    file's layout.

    Raises:
        NotFoundError: a file is missing.
    """
    found = []
    for entry in cfg.mixture:
        path, weight = parse_mixture_entry(entry)
        if not path.is_file():
            raise NotFoundError(f"data.mixture {path}: no such file")
        found.append((path, weight, detector_for_layout(detect_layout(path)).name))
    return found


def mixture_detectors(cfg: DataConfig) -> list[str]:
    """The detector of every file of a mixture (:func:`mixture_sources`), in order."""
    return [detector for _, _, detector in mixture_sources(cfg)]


def run_preprocess(cfg: DataConfig) -> Preprocess:
    """The preprocessing of the run's events: that of ``cfg.detector`` (LArTPC when None)."""
    return get_detector(cfg.detector or "lartpc").preprocess


def build_dataset(cfg: DataConfig) -> EventDataset:
    """The event dataset named by ``cfg.source`` (the loop's default dataset factory)."""
    match cfg.source:
        case "toy":
            return toy_events(cfg.num_events, cfg.sim_seed)
        case "sim":
            from nufm.sim import SimulatedEvents, generate_events

            if cfg.stream:
                pre = Preprocess()
                return SimulatedEvents(
                    cfg.num_events,
                    cfg.sim_seed,
                    energy_threshold=pre.energy_threshold,
                    min_points=max(pre.min_points, 1),
                )

            workers = max(cfg.warm_workers, 1)
            log.info("simulating %d events (seed %d)", cfg.num_events, cfg.sim_seed)
            return list(generate_events(cfg.num_events, cfg.sim_seed, workers=workers))
        case "mixture":
            files = mixture_sources(cfg)
            sources = []
            for path, weight, det in files:
                one = replace(cfg, source="file", path=path, mixture=(), detector=det)
                sources.append(build_dataset(one))
                log.info(
                    "data.mixture: %s, %d %s events, weight %g", path, len(sources[-1]), det, weight
                )
            return MixtureEvents(
                sources,
                [d for *_, d in files],
                [w for _, w, _ in files],
                [str(p) for p, *_ in files],
            )
        case "file":
            assert cfg.path is not None
            if not cfg.path.is_file():
                raise NotFoundError(f"data.path {cfg.path}: no such file")
            from nufm.data.dataset import PILArNetDataset

            pre = run_preprocess(cfg)  # the loop applies the transforms, per (epoch, event)
            if detector_for_layout(detect_layout(cfg.path)).name != "lartpc":
                # PILArNet-M cannot hold them (LArTPC layouts go through its cached copy)
                events = [e for e in read_any(cfg.path) if len(e) > max(pre.min_points - 1, 0)]
                if not events:
                    raise InputError(f"data.path {cfg.path}: no usable event (empty file?)")
                log.info("data.path %s: %d events read into memory", cfg.path, len(events))
                return events
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
            raise ValueError(f"data.source={cfg.source!r} is not one of toy, sim, file, mixture")


def build_augmentations(
    cfg: DataConfig,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    symmetry: Literal["any", "z", "none"] = "any",
) -> list[Transform]:
    """The seeded augmentations ``cfg`` selects (none without ``cfg.augment``), in the order
    crop, rotate, flip, scale, jitter, energy smear.

    Args:
        cfg: the data config.
        center: pivot of rotation, flip and scale, in the units of ``coord`` (the origin for
            normalised coordinates).
        symmetry: the rotations the detector allows (``Detector.symmetry``): any, about z
            only, or none (``cfg.rotate`` is then ignored).
    """
    if not cfg.augment:
        return []
    steps: list[Transform] = []
    if cfg.crop is not None:
        steps.append(RandomCrop(min_fraction=cfg.crop[0], max_fraction=cfg.crop[1]))
    if cfg.rotate and symmetry != "none":
        steps.append(RandomRotation(center=center, axis=symmetry))
    if cfg.flip_p > 0:
        steps.append(RandomFlip(p=cfg.flip_p, center=center))
    if cfg.scale is not None:
        steps.append(RandomScale(low=cfg.scale[0], high=cfg.scale[1], center=center))
    if cfg.jitter is not None:
        steps.append(Jitter(sigma=cfg.jitter[0], clip=cfg.jitter[1]))
    if cfg.energy_smear > 0:
        steps.append(EnergySmear(sigma=cfg.energy_smear))
    return steps


def build_transform(
    cfg: DataConfig, preprocess: Preprocess | None = None, objective: object = None
) -> Transform | None:
    """The seeded per-event pipeline of the run, or None.

    'toy' events: the augmentations of :func:`build_augmentations` about the volume centre
    (raw voxel coordinates), or None. 'sim' / 'file': ``preprocess`` (default
    :class:`~nufm.data.transforms.Preprocess`: threshold, normalise, log energy,
    feat = [xyz, E]) with the augmentations on normalised coordinates and MeV energies.
    With ``cfg.cache_groups`` and an objective that has one (:class:`~nufm.step
    .HasEventGrouper`), its event grouper runs on the normalised points before the
    augmentations, cached per event; after them, recomputed every time, when a crop changes
    the points. The local-shape descriptors an objective reads (:class:`~nufm.step
    .WantsDescriptors`) are attached the same way with ``cfg.cache_descriptors`` (else the
    objective computes them in its step).
    """
    if cfg.source == "toy":
        augment = build_augmentations(cfg, center=(CENTER, CENTER, CENTER))
        return Compose(augment) if augment else None
    if cfg.source == "mixture":  # each detector's own preprocessing, symmetry and grouping
        pipelines = {}
        for path, _, name in mixture_sources(cfg):
            if name not in pipelines:
                one = replace(cfg, source="file", path=path, mixture=(), detector=name)
                pipelines[name] = build_transform(one, objective=objective)
        return ByDetector(pipelines)
    symmetry = get_detector(cfg.detector).symmetry if cfg.detector else "any"
    augment = build_augmentations(cfg, symmetry=symmetry)
    preprocess = preprocess or run_preprocess(cfg)
    cropped = cfg.augment and cfg.crop is not None
    per_event: list[Transform] = []  # on the event as read, cached, unless a crop changes it
    if (
        cfg.cache_descriptors
        and isinstance(objective, WantsDescriptors)
        and objective.descriptor_ks
    ):
        cache = not cropped and not cfg.stream
        per_event.append(EventDescriptors(objective.descriptor_ks, preprocess, cache=cache))
    if cfg.cache_groups and isinstance(objective, HasEventGrouper):
        grouper = objective.event_grouper(
            cache=not cropped and not cfg.stream, detector=cfg.detector
        )
        per_event.append(grouper)
    augment = [*augment, *per_event] if cropped else [*per_event, *augment]
    return preprocess.transforms(augment=augment)


def preprocess_contract(cfg: DataConfig) -> dict:
    """What inputs a model trained on ``cfg`` expects (stored by ``nufm.hub.export``)."""
    if cfg.source == "toy":
        return {"source": "toy", "feat": "energy (MeV)", "coord": "voxel units"}
    return {"source": cfg.source, **run_preprocess(cfg).to_dict()}


def warm_pipeline_caches(
    dataset: EventDataset | Sequence[Event],
    transform: Transform | None,
    workers: int,
    *,
    keep_all: bool = True,
) -> int:
    """Compute every event's cached per-event values (the steps of ``transform`` that keep an
    :class:`~nufm.data.memo.EventMemo`: local-shape descriptors, token groups) in ``workers``
    forked processes, and keep them in this process's caches (all of them, whatever the caches'
    size caps, unless ``keep_all`` is False: then values beyond a cap are not kept and are
    computed again when their event is read, as without this call). The loader's workers, or
    a study's training runs, forked from this process afterwards, inherit them and compute
    none. The values are those the steps compute when an event is read, so training is
    unchanged.

    Returns:
        The number of values kept (0 when ``transform`` caches nothing).
    """
    if not isinstance(transform, Compose):
        return 0
    steps = transform.transforms
    cached = [
        i
        for i, step in enumerate(steps)
        if isinstance(memo := getattr(step, "memo", None), EventMemo) and memo.enabled
    ]
    if not cached:
        return 0
    if keep_all:  # keep every value, here and in the workers forked below (they inherit it)
        for i in cached:
            steps[i].memo.max_bytes = sys.maxsize  # type: ignore[attr-defined]
    prefix = steps[: cached[-1] + 1]  # threshold, normalise, the cached steps: deterministic

    def values(index: int) -> list[tuple[tuple[str, int, int] | None, object]]:
        event = dataset[index]
        rng = np.random.default_rng(0)  # not read by these steps
        out = []
        for i, step in enumerate(prefix):
            key = EventMemo.key(event)
            event = step(event, rng)
            if i in cached:
                memo = step.memo  # type: ignore[attr-defined]
                out.append((key, None if key is None else memo.lookup(key)))
        return out

    start = time.perf_counter()
    kept = 0
    # the first event in this process (compiles the numba kernels before the fork), then the rest
    first = [values(0)] if len(dataset) else []
    for found in itertools.chain(first, forked_map(values, range(1, len(dataset)), workers)):
        for i, (key, value) in zip(cached, found, strict=True):
            memo = steps[i].memo  # type: ignore[attr-defined]
            if key is not None and value is not None and (keep_all or memo.fits(value)):
                memo.put(key, value)
                kept += 1
    nbytes = sum(steps[i].memo.cached_bytes for i in cached)  # type: ignore[attr-defined]
    log.info(
        "%d per-event values computed ahead in %d processes in %.0f s (%.2f GB kept)",
        kept,
        max(workers, 1),
        time.perf_counter() - start,
        nbytes / 1e9,
    )
    return kept
