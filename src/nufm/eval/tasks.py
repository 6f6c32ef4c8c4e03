"""Dataset-level evaluation of a fine-tuned task (:mod:`nufm.tasks`).

Predictions come from each task's ``predict(batch)``; the scores are accumulated over the
whole data set and computed once at the end (one confusion matrix, one list of per-event
instance scores, one array of event residuals), never averaged per batch. That is the fix of
PoLAr-MAE's per-batch validation F1 (arXiv:2502.02558; docs/references.md). Events are read in
order and packed greedily into batches of at most ``batch_points`` points, so a run is
deterministic.

Owns :func:`iter_batches`, :func:`iter_predictions`, :func:`evaluate_task`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import Tensor

from nufm.batch import PointBatch
from nufm.data.collate import budget_batches, collate
from nufm.data.detectors import detector_of
from nufm.data.event import Event
from nufm.data.lartpc import PID_NAMES, SEGMENT_NAMES
from nufm.data.transforms import Transform
from nufm.eval.bootstrap import confusions_by_event, event_confusions
from nufm.eval.metrics import (
    ConfusionMatrix,
    InstanceMetrics,
    event_class_report,
    multitask_report,
    regression_metrics,
    vector_error_block,
)
from nufm.eval.report import metrics_report
from nufm.tasks.backbone import TaskModule
from nufm.tasks.build import TaskConfig
from nufm.tasks.cluster import InstanceClustering
from nufm.tasks.event_task import EventTask
from nufm.tasks.multitask import MultiTask
from nufm.tasks.pid import NUM_PID_CLASSES, ParticleID
from nufm.tasks.semseg import SemanticSegmentation

log = logging.getLogger(__name__)


class EventSource(Protocol):
    """A list of events or a map-style data set (``len`` and ``[i] -> Event``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Event: ...


def iter_batches(
    events: EventSource | Sequence[Event],
    batch_points: int,
    *,
    transform: Transform | None = None,
    seed: int = 0,
) -> Iterator[PointBatch]:
    """Pack events in order into batches of at most ``batch_points`` points
    (:func:`nufm.data.collate.budget_batches`: an event larger than the budget forms a batch
    alone).

    Args:
        events: preprocessed events (``feat`` set), or raw ones with ``transform``.
        batch_points: point budget per batch.
        transform: applied as ``transform(event, np.random.default_rng((seed, i)))``.
        seed: seed of the transform generators.
    """
    if batch_points < 1:
        raise ValueError(f"batch_points must be >= 1, got {batch_points}")

    def prepared() -> Iterator[Event]:
        for i in range(len(events)):
            event = events[i]
            if transform is not None:
                event = transform(event, np.random.default_rng((seed, i)))
            yield event

    for chunk in budget_batches(prepared(), batch_points):
        yield collate(chunk)


def iter_predictions(
    task: TaskModule,
    events: EventSource | Sequence[Event],
    batch_points: int,
    *,
    transform: Transform | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[tuple[PointBatch, dict[str, Tensor]]]:
    """Yield ``(batch, task.predict(batch))`` in eval mode, without gradients, on CPU;
    ``autocast_dtype`` (e.g. ``torch.bfloat16``, as the run trained) runs the forward passes
    under autocast, None in full precision; floating outputs are float32 either way."""
    if device is None:
        device = next(task.parameters()).device
    device = torch.device(device)
    was_training = task.training
    task.eval()
    try:
        for batch in iter_batches(events, batch_points, transform=transform, seed=seed):
            with torch.no_grad(), inference_autocast(device, autocast_dtype):
                pred = task.predict(batch.to(device))
            yield batch, {k: _fp32(v).detach().cpu() for k, v in pred.items()}
    finally:
        task.train(was_training)


def _fp32(x: Tensor) -> Tensor:
    """Floating outputs in float32 (an autocast forward gives some in bf16)."""
    return x.float() if x.is_floating_point() else x


def inference_autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` for inference passes, or nothing when None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _semseg_names(task: SemanticSegmentation, events: EventSource | Sequence[Event]) -> list[str]:
    """The task's class names, else those of the events' detector (LArTPC by default)."""
    cfg = task.cfg
    if cfg.class_names:
        return list(cfg.class_names)
    if cfg.labels == "noise":
        return ["signal", "noise"]
    names = detector_of(events[0]).segment_names if len(events) else SEGMENT_NAMES
    if len(names) < cfg.num_classes:
        return [str(c) for c in range(cfg.num_classes)]
    return list(names[: cfg.num_classes])


def evaluate_task(
    task: TaskModule,
    events: EventSource | Sequence[Event],
    batch_points: int = 200_000,
    *,
    transform: Transform | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    predictions: Iterable[tuple[PointBatch, dict[str, Tensor]]] | None = None,
    event_confusion: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Dataset-level metrics of ``task`` on ``events`` (predicted by :func:`iter_predictions`,
    or ``predictions`` of them already made, e.g. kept for more than one use).

    ``event_confusion``, for a classification (semseg, pid, event classes): a list this
    appends per-event confusion matrices to, ``(events, C, C)`` arrays in event order, the
    points, particles or the event itself counted in each (the test-event bootstrap of
    :mod:`nufm.eval.bootstrap`).

    * semseg: ``semantic`` (per-class precision / recall / F1 / IoU, macro F1, mIoU,
      accuracy, confusion matrix) over all non-ignored points;
    * pid: ``pid``, the same scores over all labelled true instances;
    * cluster: ``instance`` (per-event ARI and its mean, data-set panoptic quality);
    * event classification: ``event_class`` (accuracy, per-class and macro F1, one-vs-rest
      ROC AUC per class, efficiencies at the configured background rejections);
      regression: ``regression`` (bias, median, IQR, RMS of pred - target per target, in the
      modelled units, plus the target's own units when log-transformed) and, for a vertex
      or direction, ``vertex_distance`` (in the detector's unit) or ``direction_angle_deg``
      (median and 68 % quantile).

    Returns:
        ``{"task", "mode", "num_events", "num_batches", <the blocks above>}``; NaN marks an
        undefined score (written as null by :func:`nufm.eval.report.write_metrics_json`).
    """
    cfg = cast(TaskConfig, task.cfg)  # every task's config is a member of the union
    num_events = 0
    num_batches = 0
    stream = predictions
    if stream is None:
        stream = iter_predictions(
            task,
            events,
            batch_points,
            transform=transform,
            seed=seed,
            device=device,
            autocast_dtype=autocast_dtype,
        )
    match task:
        case SemanticSegmentation():
            cm = ConfusionMatrix(task.cfg.num_classes, ignore_index=task.cfg.ignore_index)
            for batch, pred in stream:
                num_events, num_batches = num_events + batch.num_events, num_batches + 1
                cm.update(pred["pred"], pred["target"])
                if event_confusion is not None:
                    event_confusion.append(
                        event_confusions(
                            pred["pred"],
                            pred["target"],
                            batch.counts.cpu(),
                            task.cfg.num_classes,
                            ignore_index=task.cfg.ignore_index,
                        )
                    )
            blocks = metrics_report(semantic=cm, class_names=_semseg_names(task, events))
        case ParticleID():
            cm = ConfusionMatrix(NUM_PID_CLASSES, ignore_index=-1)
            for batch, pred in stream:
                num_events, num_batches = num_events + batch.num_events, num_batches + 1
                cm.update(pred["pred"], pred["target"])
                if event_confusion is not None:  # each particle counted in its event
                    event_confusion.append(
                        confusions_by_event(
                            pred["pred"],
                            pred["target"],
                            pred["instance_event"],
                            batch.num_events,
                            NUM_PID_CLASSES,
                        )
                    )
            scores = cm.compute()
            blocks = {
                "pid": {
                    **scores.to_dict(PID_NAMES[:NUM_PID_CLASSES]),
                    "num_instances": scores.num_points,
                }
            }
        case InstanceClustering():
            inst = InstanceMetrics()
            for batch, pred in stream:
                num_events, num_batches = num_events + batch.num_events, num_batches + 1
                for s, e in zip(
                    (batch.offset - batch.counts).tolist(), batch.offset.tolist(), strict=False
                ):
                    inst.update(pred["pred"][s:e], pred["target"][s:e])
            blocks = metrics_report(instance=inst)
            blocks["instance"]["target"] = task.cfg.target
        case EventTask():
            preds: list[Tensor] = []
            targets: list[Tensor] = []
            logits: list[Tensor] = []
            values: list[tuple[Tensor, Tensor]] = []
            for batch, pred in stream:
                num_events, num_batches = num_events + batch.num_events, num_batches + 1
                preds.append(pred["pred"])
                targets.append(pred["target"])
                if "logits" in pred:
                    logits.append(pred["logits"].float())
                if "pred_value" in pred:
                    values.append((pred["pred_value"], pred["target_value"]))
            p, t = torch.cat(preds), torch.cat(targets)
            if task.cfg.kind == "classification":
                block = event_class_report(
                    torch.cat(logits), t, task.cfg.report_names, task.cfg.efficiency_at
                )
                if event_confusion is not None:  # one item an event: the report's argmax
                    event_confusion.append(
                        event_confusions(
                            torch.cat(logits).argmax(1),
                            t,
                            np.ones(len(t), np.int64),
                            len(task.cfg.report_names),
                        )
                    )
                blocks = {"event_class": {**block, "target": task.cfg.targets[0]}}
            else:
                reg = {}
                is_log = task.cfg.transform == "log"
                pv = torch.cat([v[0] for v in values])
                tv = torch.cat([v[1] for v in values])
                for j, name in enumerate(task.cfg.targets):
                    reg[f"log_{name}" if is_log else name] = regression_metrics(p[:, j], t[:, j])
                    if is_log:
                        reg[name] = regression_metrics(pv[:, j], tv[:, j])
                scale = detector_of(events[0]).preprocess.scale if len(events) else 1.0
                extra = vector_error_block(task.cfg.targets, pv, tv, unit_scale=scale)
                blocks = metrics_report(regression=reg, extra=extra)
        case MultiTask():
            parts: dict[str, list[Tensor]] = {}
            for batch, pred in stream:
                num_events, num_batches = num_events + batch.num_events, num_batches + 1
                for k, v in pred.items():
                    parts.setdefault(k, []).append(v.float() if v.is_floating_point() else v)
            joined = {k: torch.cat(v) for k, v in parts.items()}
            if "target_flavour" not in joined:
                raise ValueError("evaluate_task: the events carry no flavour / charm truth")
            blocks = multitask_report(joined, task.cfg.flavour_names, task.cfg.charm_names)
        case _:
            raise TypeError(f"evaluate_task: no evaluation for {type(task).__name__}")
    log.info(
        "evaluated %s (%s) on %d events in %d batches", cfg.name, cfg.mode, num_events, num_batches
    )
    return {
        "task": cfg.name,
        "mode": cfg.mode,
        "num_events": num_events,
        "num_batches": num_batches,
        **blocks,
    }
