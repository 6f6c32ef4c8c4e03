"""Particle identification per true particle instance (photon, electron, muon, pion, proton).

Per-point features are pooled over each true particle instance (mean and max over the points
with the same (event, instance) key), and an MLP classifies the pooled vector into 5 classes
with cross-entropy. This is the "PID given the true clustering" benchmark; Panda
(arXiv:2512.01324; docs/references.md) predicts instances and classes jointly with a set-prediction
decoder, which is not what this task measures. An instance's label is the majority ``pid`` of
its points; instances whose majority is 5 (none) or -1 are ignored.

Owns :class:`PIDConfig`, :class:`ParticleID`, :func:`instance_keys` and :data:`NUM_PID_CLASSES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.data.lartpc import PID_NONE
from nufm.step import StepOutput
from nufm.tasks.backbone import TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.heads import mlp, segment_mean_max

NUM_PID_CLASSES = PID_NONE
"""5 classes: 0 photon, 1 electron, 2 muon, 3 pion, 4 proton (``nufm.data.lartpc``)."""


@dataclass
class InstanceIndex:
    """The true instances of a batch.

    Attributes:
        point_instance: (N,) int64 instance row of each point, -1 = in no kept instance.
        event: (I,) int64 event (batch row) of each instance.
        instance_id: (I,) int64 the instance's id within its event.
        size: (I,) int64 points per instance.
    """

    point_instance: Tensor
    event: Tensor
    instance_id: Tensor
    size: Tensor

    @property
    def num_instances(self) -> int:
        return int(self.event.shape[0])


def instance_keys(batch_index: Tensor, instance: Tensor, min_points: int = 1) -> InstanceIndex:
    """Group points by (event, instance id), keeping instances with >= ``min_points`` points.

    Args:
        batch_index: (N,) int64 event of every point.
        instance: (N,) int64 instance id within the event, -1 = none.
        min_points: smallest instance kept.
    """
    has_instance = instance >= 0  # (N,)
    point_instance = torch.full_like(instance, -1)
    if not bool(has_instance.any()):
        empty = instance.new_zeros(0)
        return InstanceIndex(point_instance, empty, empty.clone(), empty.clone())
    M = int(instance.max()) + 1
    key = batch_index[has_instance] * M + instance[has_instance]  # (N',)
    uniq, inverse = torch.unique(key, return_inverse=True)  # (I0,), (N',)
    size = torch.bincount(inverse, minlength=uniq.numel())  # (I0,)
    is_kept = size >= min_points  # (I0,)
    new_row = torch.cumsum(is_kept.long(), 0) - 1  # (I0,) row among kept instances
    rows = torch.where(is_kept[inverse], new_row[inverse], torch.full_like(inverse, -1))
    point_instance[has_instance] = rows
    uniq = uniq[is_kept]
    return InstanceIndex(point_instance, uniq // M, uniq % M, size[is_kept])


def instance_labels(pid: Tensor, index: InstanceIndex) -> Tensor:
    """(I,) int64 majority pid of each instance; -1 when the majority is none (5) or -1."""
    n_inst = index.num_instances
    is_in = index.point_instance >= 0  # (N,)
    col = torch.where(pid[is_in] < 0, torch.full_like(pid[is_in], PID_NONE + 1), pid[is_in])
    if bool((col > PID_NONE + 1).any()):
        raise ValueError(f"pid: labels above {PID_NONE} found: {pid[pid > PID_NONE].unique()}")
    counts = torch.bincount(
        index.point_instance[is_in] * (PID_NONE + 2) + col, minlength=n_inst * (PID_NONE + 2)
    ).view(n_inst, PID_NONE + 2)  # (I, 7)
    label = counts.argmax(1)  # (I,) ties -> lowest class id
    return torch.where(label < NUM_PID_CLASSES, label, torch.full_like(label, -1))


@dataclass(frozen=True, kw_only=True)
class PIDConfig(TaskBaseConfig):
    """Particle identification per true instance."""

    name: Literal["pid"] = "pid"
    """Discriminator of the task-config union (fixed)."""
    min_instance_points: int = 1
    """Instances with fewer points are neither trained on nor evaluated."""
    class_weights: tuple[float, ...] = ()
    """5 cross-entropy class weights; empty = all 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_instance_points < 1:
            raise ValueError(
                f"PIDConfig.min_instance_points must be >= 1, got {self.min_instance_points}"
            )
        if self.class_weights and len(self.class_weights) != NUM_PID_CLASSES:
            raise ValueError(
                f"PIDConfig.class_weights needs {NUM_PID_CLASSES} entries, got {self.class_weights}"
            )


class ParticleID(TaskModule[PIDConfig]):
    """Encoder -> per-point features -> mean+max per true instance -> 5 class logits."""

    class_weight: Tensor  # (5,) buffer

    def __init__(self, cfg: PIDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TaskBackbone(cfg)
        D = self.backbone.out_dim
        if cfg.mode == "linear":
            self.head: nn.Module = nn.Linear(2 * D, NUM_PID_CLASSES)
        else:
            self.head = mlp(2 * D, cfg.head_hidden, NUM_PID_CLASSES, cfg.dropout)
        weight = torch.tensor(cfg.class_weights or (1.0,) * NUM_PID_CLASSES)
        self.register_buffer("class_weight", weight, persistent=False)

    def _index(self, batch: PointBatch) -> InstanceIndex:
        if batch.instance is None:
            raise ValueError("pid: the batch has no instance labels (PID is per true instance)")
        return instance_keys(batch.batch_index, batch.instance, self.cfg.min_instance_points)

    def logits(self, batch: PointBatch, index: InstanceIndex) -> Tensor:
        """(I, 5) class scores of the instances in ``index``."""
        x = self.backbone(batch)  # (N, D)
        is_in = index.point_instance >= 0
        pooled = segment_mean_max(
            x[is_in], index.point_instance[is_in], index.num_instances
        )  # (I, 2D)
        return self.head(pooled)

    def forward(self, batch: PointBatch) -> StepOutput:
        if batch.pid is None:
            raise ValueError("pid: the batch has no pid labels")
        index = self._index(batch)
        target = instance_labels(batch.pid, index)  # (I,)
        logits = self.logits(batch, index)  # (I, 5)
        is_kept = target >= 0
        if bool(is_kept.any()):
            loss = F.cross_entropy(
                logits[is_kept], target[is_kept], weight=self.class_weight.to(logits.device)
            )
            acc = (logits[is_kept].argmax(1) == target[is_kept]).float().mean()
        else:
            loss, acc = logits.sum() * 0.0, logits.new_zeros(())
        return StepOutput(
            loss=loss,
            metrics={
                "loss": loss.detach(),
                "acc": acc.detach(),
                "instances": is_kept.sum().float(),
            },
        )

    @torch.no_grad()
    def predict(self, batch: PointBatch) -> dict[str, Tensor]:
        """Per instance: ``logits`` (I, 5), ``pred`` (I,), ``instance_event`` (I,),
        ``instance_id`` (I,), ``target`` (I,) (-1 ignored) when pid labels exist; per point:
        ``point_pred`` (N,) predicted class of the point's instance (-1 none)."""
        index = self._index(batch)
        logits = self.logits(batch, index)
        pred = logits.argmax(1)  # (I,)
        point_pred = torch.full_like(index.point_instance, -1)  # (N,)
        is_in = index.point_instance >= 0
        point_pred[is_in] = pred[index.point_instance[is_in]]
        out = {
            "logits": logits,
            "pred": pred,
            "instance_event": index.event,
            "instance_id": index.instance_id,
            "point_pred": point_pred,
        }
        if batch.pid is not None:
            out["target"] = instance_labels(batch.pid, index)
        return out
