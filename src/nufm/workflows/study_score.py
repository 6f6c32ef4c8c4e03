"""The headline score of a ``nufm study`` by task: what its table, csv and plot compare.

Owns :class:`StudyScore`, :func:`study_score` and :func:`row_values`. One number per run,
read from the run's metrics blocks (:func:`nufm.eval.tasks.evaluate_task`), the one the
field quotes for the task:

* classification (per point, per particle, per event): macro F1 over the classes (block
  ``semantic``, ``pid`` or ``event_class``); accuracy and mIoU beside it, F1 per class;
* clustering (particles, tracks): the event-mean adjusted Rand index (block ``instance``);
  the track efficiency, fake rate and panoptic quality beside it;
* vertex regression: the 68 % quantile of the distance to the true vertex (the detector's
  unit); direction: the 68 % quantile of the angle (degrees); the medians beside them;
* one scalar target (an energy): the relative resolution, half-width of the central 68.27 %
  of (pred - true) / true, in the target's own units; the relative bias beside it.

Lower is better for the resolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nufm.errors import ConfigError
from nufm.tasks.cluster import ClusterConfig
from nufm.tasks.event_task import EventTaskConfig
from nufm.tasks.pid import PIDConfig
from nufm.tasks.semseg import SemsegConfig

VERTEX = ("vertex_x", "vertex_y", "vertex_z")
DIRECTION = ("dir_x", "dir_y", "dir_z")


@dataclass(frozen=True)
class StudyScore:
    """The study's headline number and where a run's metrics hold it."""

    name: str
    """Table label, e.g. ``macro F1``."""
    axis: str
    """The plot's y label (short)."""
    column: str
    """Its results.csv column."""
    higher_is_better: bool
    path: tuple[str, ...]
    """Keys to it in the run's metrics (``metrics.json``'s ``metrics``)."""
    extras: dict[str, tuple[str, ...]]
    """Secondary scalars (csv column -> keys), e.g. accuracy beside macro F1."""
    of: str
    """What it is computed over, for the table's header."""

    @property
    def classification(self) -> bool:
        return self.column == "macro_f1"


def _classification(block: str, of: str) -> StudyScore:
    return StudyScore(
        name="macro F1",
        axis="macro F1",
        column="macro_f1",
        higher_is_better=True,
        path=(block, "macro_f1"),
        extras={"miou": (block, "miou"), "accuracy": (block, "accuracy")},
        of=f"over the {of} classes",
    )


def study_score(task: object) -> StudyScore:
    """The headline score of a study of ``task`` (module docstring).

    Raises:
        ConfigError: a task the study has no headline for (several outputs of a multi-task,
            a regression of other vector targets), named.
    """
    match task:
        case SemsegConfig():
            return _classification("semantic", "semantic")
        case PIDConfig():
            return _classification("pid", "particle (true instances)")
        case EventTaskConfig(kind="classification"):
            return _classification("event_class", "event")
        case ClusterConfig():
            block = "instance"
            return StudyScore(
                name="adjusted Rand index",
                axis="adjusted Rand index",
                column="ari",
                higher_is_better=True,
                path=(block, "ari_mean"),
                extras={
                    "efficiency": (block, "efficiency_mean"),
                    "fake_rate": (block, "fake_rate_mean"),
                    "pq": (block, "pq"),
                },
                of=f"per event, mean over the events ({task.target} clusters)",
            )
        case EventTaskConfig(kind="regression") if tuple(task.targets) == VERTEX:
            block = "vertex_distance"
            return StudyScore(
                name="vertex resolution (68 % quantile of the distance)",
                axis="vertex distance, 68 % quantile",
                column="vertex_q68",
                higher_is_better=False,
                path=(block, "q68"),
                extras={"vertex_median": (block, "median")},
                of="in the detector's unit (lower is better)",
            )
        case EventTaskConfig(kind="regression") if tuple(task.targets) == DIRECTION:
            block = "direction_angle_deg"
            return StudyScore(
                name="direction resolution (68 % quantile of the angle, degrees)",
                axis="angle, 68 % quantile (deg)",
                column="angle_q68",
                higher_is_better=False,
                path=(block, "q68"),
                extras={"angle_median": (block, "median")},
                of="(lower is better)",
            )
        case EventTaskConfig(kind="regression") if len(task.targets) == 1:
            name = task.targets[0]
            return StudyScore(
                name=f"{name} relative resolution",
                axis=f"{name}: relative resolution",
                column="relative_resolution",
                higher_is_better=False,
                path=("regression", name, "relative_resolution"),
                extras={"relative_bias": ("regression", name, "relative_bias")},
                of="(half-width of the central 68 % of (pred - true) / true; lower is better)",
            )
        case _:
            raise ConfigError(
                f"study: no headline score for the task {type(task).__name__}"
                + (f" (targets {task.targets})" if isinstance(task, EventTaskConfig) else "")
                + "; the study compares classification (macro F1), clustering (ARI), vertex, "
                "direction and single-target regression (resolution) tasks"
            )


def _at(metrics: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"study: the run's metrics have no {'.'.join(path)}")
        value = value[key]
    return math.nan if value is None else float(value)


def row_values(
    metrics: dict[str, Any], score: StudyScore
) -> tuple[float, dict[str, float], dict[str, float]]:
    """(headline, extras by column, F1 by class name: empty unless a classification) of one
    run's metrics."""
    extras = {col: _at(metrics, path) for col, path in score.extras.items()}
    per_class: dict[str, float] = {}
    if score.classification:
        block = metrics[score.path[0]]
        per_class = {
            k: float(v["f1"]) if v["f1"] is not None else math.nan
            for k, v in block["per_class"].items()
        }
    return _at(metrics, score.path), extras, per_class
