"""The classical rows of ``nufm study``: what an analyst of each detector would run before a
network, scored by the same metrics blocks as the network rows
(:func:`nufm.eval.tasks.evaluate_task`) on the same labelled and test events.

Owns :data:`CLASSICAL_FEATURES`, :func:`check_classical`, :func:`uses_labels` and
:func:`classical_metrics`.
Each mode and the tasks it answers:

* ``gbt-hitpattern``: boosted trees on the water Cherenkov hit-pattern features
  (:mod:`nufm.eval.wc_pid`), trained on the labelled events; any event classification task
  (particle ID, ring counting).
* ``dedx-hough``: the collider-TPC species of each Hough track from its momentum and
  truncated-mean dE/dx, bands calibrated on the labelled events (:mod:`nufm.eval.tpc_pid`);
  the per-hit particle class (``tpc-pid``).
* ``wc-fit``: the water Cherenkov point fit (:mod:`nufm.eval.wc_fit`): time-residual vertex,
  charge-weighted ring direction (no labels used), total-charge energy line fitted on the
  labelled events; the vertex, direction and energy regressions (``wc-vertex``,
  ``wc-direction``, ``wc-energy``).
* ``gbt-hitfit``: boosted trees on each water Cherenkov hit's time residual, charge and angle
  after the point fit, plus its event's hit pattern (:mod:`nufm.eval.wc_hits`), trained on
  the hits of the labelled events; the per-hit category (``wc-hits``).
* ``hough``: Hough track finding of circles through the beam line
  (:mod:`nufm.eval.track_finding`, no labels used): its tracks are the ``tpc-tracks``
  clusters; hits on no track are the noise of ``tpc-noise``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nufm.data.detectors import DETECTORS
from nufm.data.event import Event
from nufm.errors import ConfigError
from nufm.eval.metrics import (
    ConfusionMatrix,
    InstanceMetrics,
    regression_metrics,
    vector_error_block,
)
from nufm.eval.report import metrics_report
from nufm.eval.tpc_pid import dedx_pid_block
from nufm.eval.track_finding import hough_tracks
from nufm.eval.wc_fit import (
    fit_direction,
    fit_energy_calibration,
    fit_vertex,
    true_direction,
    true_vertex,
)
from nufm.eval.wc_hits import hit_category_block
from nufm.eval.wc_pid import hit_pattern_event_block
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event_task import EventTaskConfig
from nufm.tasks.semseg import SemsegConfig
from nufm.workflows.study_score import DIRECTION, VERTEX

CLASSICAL_FEATURES: dict[str, str] = {
    "gbt-hitpattern": "hit pattern",
    "dedx-hough": "dE/dx on Hough tracks",
    "wc-fit": "time-residual vertex, ring direction, total-charge energy line",
    "hough": "Hough transform of circles through the beam line",
    "gbt-hitfit": "hit time residual, charge and angle after the point fit; event hit pattern",
}
"""What each classical row reads (its metrics.json ``model.features``)."""

WC_FIT_TARGETS = (VERTEX, DIRECTION, ("primary_energy",))
"""The regression targets the water Cherenkov point fit answers."""


def _answers(mode: str, task: object, detector: str) -> bool:
    """Whether classical ``mode`` answers ``task`` on ``detector`` events."""
    match mode:
        case "gbt-hitpattern":
            return isinstance(task, EventTaskConfig) and task.kind == "classification"
        case "dedx-hough":
            return (
                isinstance(task, SemsegConfig)
                and task.labels == "segment"
                and detector == "collider-tpc"
            )
        case "wc-fit":
            return (
                isinstance(task, EventTaskConfig)
                and task.kind == "regression"
                and tuple(task.targets) in WC_FIT_TARGETS
                and detector == "water-cherenkov"
            )
        case "gbt-hitfit":
            return (
                isinstance(task, SemsegConfig)
                and task.labels == "segment"
                and detector == "water-cherenkov"
            )
        case "hough":
            noise = isinstance(task, SemsegConfig) and task.labels == "noise"
            tracks = isinstance(task, ClusterConfig) and task.target == "particle"
            return (noise or tracks) and detector == "collider-tpc"
        case _:
            raise ValueError(f"study: {mode!r} is no classical mode")


_WHAT = {
    "gbt-hitpattern": "classifies events (use an event classification preset such as "
    "wc-pid-scratch or wc-rings-scratch)",
    "dedx-hough": "identifies collider-TPC particles per hit (use the tpc-pid study preset on "
    "a TPCpp file)",
    "wc-fit": "fits a water Cherenkov event's vertex, direction or energy (use the wc-vertex, "
    "wc-direction or wc-energy study preset on a WatChMaL file)",
    "gbt-hitfit": "classifies water Cherenkov hits by their producing particle (use the "
    "wc-hits study preset on a WatChMaL file)",
    "hough": "finds collider-TPC tracks and tags the hits on none as noise (use the "
    "tpc-tracks or tpc-noise study preset on a TPCpp file)",
}


def check_classical(modes: Sequence[str], task: object, detector: str) -> None:
    """Refuse, before any run, a classical mode that does not answer the study's task.

    Raises:
        ConfigError: names the mode, what it answers and the task and detector given.
    """
    for mode in modes:
        if mode in CLASSICAL_FEATURES and not _answers(mode, task, detector):
            raise ConfigError(
                f"study: mode {mode} {_WHAT[mode]}; the run's task is {type(task).__name__} "
                f"on {detector} events"
            )


def _wc_fit(task: EventTaskConfig, train: Sequence[Event], test: Sequence[Event]) -> dict:
    """The point fit's block for one regression task, shaped as the network's."""
    targets = tuple(task.targets)
    if targets == ("primary_energy",):
        calibration = fit_energy_calibration(train)
        pred = np.array([calibration.predict(e) for e in test])
        true = np.array([float(e.meta["primary_energy"]) for e in test])
        return {"regression": {"primary_energy": regression_metrics(pred, true).to_dict()}}
    fits = [fit_vertex(e) for e in test]
    if targets == VERTEX:
        pred = np.stack([v for v, _ in fits])
        true = np.stack([true_vertex(e) for e in test])
    else:
        pred = np.stack([fit_direction(e, v, t0) for e, (v, t0) in zip(test, fits, strict=True)])
        true = np.stack([true_direction(e) for e in test])
    return vector_error_block(targets, pred, true)  # metres (the WatChMaL unit) / degrees


def _hough(task: SemsegConfig | ClusterConfig, test: Sequence[Event]) -> dict:
    """Hough track finding scored as the clustering or noise-tagging network is."""
    if isinstance(task, ClusterConfig):
        inst = InstanceMetrics()
        for e in test:
            if e.instance is None:
                raise ValueError(f"{e.where}: track finding needs the true track ids (instance)")
            inst.update(hough_tracks(e.coord), e.instance)
        blocks = metrics_report(instance=inst)
        blocks["instance"]["target"] = "particle"
        return blocks
    cm = ConfusionMatrix(2)
    for e in test:
        if e.interaction is None:
            raise ValueError(f"{e.where}: noise tagging needs interaction ids (-1 = noise)")
        cm.update((hough_tracks(e.coord) < 0).astype(np.int64), (e.interaction < 0).astype(int))
    return metrics_report(semantic=cm, class_names=task.class_names or ("signal", "noise"))


def uses_labels(mode: str, task: object) -> bool:
    """Whether classical ``mode`` learns anything from the labelled events for ``task`` (Hough
    track finding and the point fit's vertex and direction do not: their row is the same at
    every labelled-set size)."""
    match mode:
        case "hough":
            return False
        case "wc-fit":
            return isinstance(task, EventTaskConfig) and tuple(task.targets) not in (
                VERTEX,
                DIRECTION,
            )
        case _:
            return True


def classical_metrics(
    mode: str, task: object, train: Sequence[Event], test: Sequence[Event], seed: int
) -> dict[str, Any]:
    """The metrics of classical ``mode`` fitted on the labelled ``train`` events (raw, in the
    detector's unit) and scored on ``test``: ``{"task", "mode", <block>}`` with the block
    :func:`nufm.eval.tasks.evaluate_task` gives the network (``event_class``, ``semantic``,
    ``instance``, ``regression``, ``vertex_distance`` or ``direction_angle_deg``).
    """
    match mode, task:
        case "gbt-hitpattern", EventTaskConfig():
            block = hit_pattern_event_block(
                train,
                test,
                task.targets[0],
                task.report_names,
                task.class_offset,
                task.efficiency_at,
                seed,
            )
            return {"task": "event", "mode": mode, "event_class": block}
        case "dedx-hough", SemsegConfig():
            return {"task": "semseg", "mode": mode, "semantic": dedx_pid_block(train, test)}
        case "wc-fit", EventTaskConfig():
            return {"task": "event", "mode": mode, **_wc_fit(task, train, test)}
        case "gbt-hitfit", SemsegConfig():
            names = task.class_names or DETECTORS["water-cherenkov"].segment_names
            block = hit_category_block(train, test, names[: task.num_classes], seed)
            return {"task": "semseg", "mode": mode, "semantic": block}
        case "hough", SemsegConfig() | ClusterConfig():
            name = "cluster" if isinstance(task, ClusterConfig) else "semseg"
            return {"task": name, "mode": mode, **_hough(task, test)}
        case _:
            raise ValueError(f"study: classical mode {mode!r} has no row for {type(task).__name__}")
