"""Event-level heads: global pooling of per-point features, then an MLP that classifies or
regresses per-event targets (the FASERCal pattern of pooled event heads for flavour, momentum
and vertex, arXiv:2604.07037; docs/references.md).

Targets are the per-event scalars that :func:`nufm.data.collate.collate` packs from
``Event.meta`` into ``PointBatch.targets``: e.g. ``n_interactions`` (classification, clipped
into ``num_classes`` bins), ``total_energy`` (simulator, MeV) or, added by
:class:`AddEventTargets`, ``visible_energy`` (MeV above threshold) and the first vertex
``vertex_x/y/z`` (normalised coordinates). Regression targets may be log-transformed and are
standardised by ``(y - target_shift) / target_scale`` for the loss.

Owns :class:`EventTaskConfig`, :class:`EventTask`, :class:`AddEventTargets` and
:func:`event_target_transforms` (which fine-tuning and evaluation add to the preprocessing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.data.event import Event
from nufm.step import StepOutput
from nufm.tasks.backbone import TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.heads import event_mean_max, mlp


@dataclass(frozen=True, kw_only=True)
class AddEventTargets:
    """Transform writing event-level targets into ``meta`` (collate turns them into targets).

    Run it in ``Preprocess.transforms(augment=[..., AddEventTargets()])``: it then sees MeV
    energies and normalised, augmented coordinates (vertices move with the points).
    """

    visible_energy: bool = True
    """Write ``meta['visible_energy']``: sum of the points' energies (MeV) at this stage."""
    vertex: bool = True
    """Write ``meta['vertex_x'|'vertex_y'|'vertex_z']`` from ``vertices[0]`` (same units as
    coord); an event without vertices is an error."""
    direction: bool = False
    """Write ``meta['dir_x'|'dir_y'|'dir_z']``, the unit momentum of the first primary
    particle (rotated with the event); an event without one is an error."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        meta = dict(event.meta)
        if self.direction:
            p = event.particles
            primary = np.flatnonzero(p.is_primary) if p is not None else np.zeros(0, np.int64)
            mom = (
                p.momentum[primary[0]].astype(np.float64)
                if p is not None and len(primary)
                else None
            )
            if mom is None or not np.linalg.norm(mom) > 0:
                raise ValueError(
                    f"{event.where}: AddEventTargets(direction=True) needs a primary particle "
                    "with momentum"
                )
            d = mom / np.linalg.norm(mom)
            meta.update(dir_x=float(d[0]), dir_y=float(d[1]), dir_z=float(d[2]))
        if self.visible_energy:
            meta["visible_energy"] = float(np.asarray(event.energy, np.float64).sum())
        if self.vertex:
            if event.vertices is None or len(event.vertices) == 0:
                raise ValueError(
                    f"{event.where}: AddEventTargets(vertex=True) needs "
                    "event.vertices, the event has none"
                )
            x, y, z = (float(v) for v in event.vertices[0])
            meta.update(vertex_x=x, vertex_y=y, vertex_z=z)
        return event.with_fields(meta=meta)


def stack_targets(batch: PointBatch, names: Sequence[str], task: str, hint: str) -> Tensor:
    """(B, T) float per-event targets ``names`` of ``batch``; missing ones are refused with a
    message naming them, the targets the batch has, and ``hint`` (where they come from)."""
    missing = [t for t in names if t not in batch.targets]
    if missing:
        raise ValueError(
            f"{task}: targets {missing} are not in the batch (have {sorted(batch.targets)}; {hint})"
        )
    return torch.stack([batch.targets[t].float() for t in names], dim=1)  # (B, T)


DERIVED_TARGETS = (
    "visible_energy",
    "vertex_x",
    "vertex_y",
    "vertex_z",
    "dir_x",
    "dir_y",
    "dir_z",
)
"""Event targets that :class:`AddEventTargets` derives from the event (not in the files)."""


def event_target_transforms(task: object) -> list[AddEventTargets]:
    """The :class:`AddEventTargets` step an event task needs when it reads targets that events
    do not carry (``visible_energy``, ``vertex_*``, ``dir_*``); put it among the augmentations of
    ``Preprocess.transforms`` (after the coordinates are normalised, before the log energy).
    Empty for every other task."""
    if not isinstance(task, EventTaskConfig):
        return []
    wanted = set(task.targets) & set(DERIVED_TARGETS)
    if not wanted:
        return []
    return [
        AddEventTargets(
            visible_energy="visible_energy" in wanted,
            vertex=any(t.startswith("vertex_") for t in wanted),
            direction=any(t.startswith("dir_") for t in wanted),
        )
    ]


@dataclass(frozen=True, kw_only=True)
class EventTaskConfig(TaskBaseConfig):
    """Event classification or regression from pooled point features (regression loss: Huber
    with delta 1 on the standardised targets)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {"regression_loss": "huber"}
    """Removed options -> the value that means what the code does now (``nufm.config``)."""

    name: Literal["event"] = "event"
    """Discriminator of the task-config union (fixed)."""
    kind: Literal["classification", "regression"] = "classification"
    """Classification (one target, binned) or regression (one or more targets)."""
    targets: tuple[str, ...] = ("n_interactions",)
    """Names in ``PointBatch.targets``; classification takes exactly one."""
    num_classes: int = 4
    """Classification: class = clip(round(value) - class_offset, 0, num_classes - 1)."""
    class_offset: int = 1
    """Classification: value of class 0 (n_interactions 1 -> class 0; the last class is
    ">= class_offset + num_classes - 1")."""
    transform: Literal["none", "log"] = "none"
    """Regression: model log(value) (values must be > 0) or the value itself."""
    target_shift: float = 0.0
    """Regression: subtracted from the (transformed) target before the loss."""
    target_scale: float = 1.0
    """Regression: divides the shifted target before the loss."""
    class_names: tuple[str, ...] = ()
    """Classification: a name per class for the reports (empty: the class values, the last
    one ">= value")."""
    efficiency_at: tuple[tuple[int, int, float], ...] = ()
    """Classification: (signal class, background class, background rejection) triples; the
    evaluation reports the signal efficiency at that rejection, the score being the logit
    difference of the two classes (e.g. e vs mu at 0.999 in water Cherenkov PID)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.targets:
            raise ValueError("EventTaskConfig.targets needs at least one name")
        match self.kind:
            case "classification":
                if len(self.targets) != 1 or self.num_classes < 2:
                    raise ValueError(
                        f"EventTaskConfig: classification needs one target and "
                        f"num_classes >= 2, got {self.targets}, {self.num_classes}"
                    )
                if self.class_names and len(self.class_names) != self.num_classes:
                    raise ValueError(
                        f"EventTaskConfig: {len(self.class_names)} class_names for "
                        f"{self.num_classes} classes"
                    )
                for sig, bkg, rej in self.efficiency_at:
                    ok = 0 <= sig < self.num_classes and 0 <= bkg < self.num_classes
                    if not ok or sig == bkg or not 0.0 < rej < 1.0:
                        raise ValueError(
                            f"EventTaskConfig.efficiency_at: ({sig}, {bkg}, {rej}) needs two "
                            f"different classes below {self.num_classes} and 0 < rejection < 1"
                        )
            case "regression":
                if self.target_scale <= 0:
                    raise ValueError(
                        f"EventTaskConfig.target_scale must be > 0, got {self.target_scale}"
                    )
            case _:
                raise ValueError(
                    f"EventTaskConfig.kind={self.kind!r} is not classification or regression"
                )
        if self.transform not in ("none", "log"):
            raise ValueError(f"EventTaskConfig: transform {self.transform!r} not recognised")

    @property
    def report_names(self) -> tuple[str, ...]:
        """Classification: the class names of the reports, ``class_names`` or the binned
        values (the last one ">= value")."""
        if self.class_names:
            return self.class_names
        names = [str(self.class_offset + c) for c in range(self.num_classes)]
        names[-1] = f">={self.class_offset + self.num_classes - 1}"
        return tuple(names)

    @property
    def out_dim(self) -> int:
        """Head outputs: classes, or one per regression target."""
        return self.num_classes if self.kind == "classification" else len(self.targets)


class EventTask(TaskModule[EventTaskConfig]):
    """Encoder -> per-point features -> mean+max per event -> class logits or values."""

    def __init__(self, cfg: EventTaskConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TaskBackbone(cfg)
        D = self.backbone.out_dim
        if cfg.mode == "linear":
            self.head: nn.Module = nn.Linear(2 * D, cfg.out_dim)
        else:
            self.head = mlp(2 * D, cfg.head_hidden, cfg.out_dim, cfg.dropout)

    def raw_target(self, batch: PointBatch) -> Tensor:
        """(B, T) float targets as stored in the batch."""
        return stack_targets(batch, self.cfg.targets, "event task", "see AddEventTargets")

    def class_target(self, batch: PointBatch) -> Tensor:
        """(B,) int64 class of each event (classification)."""
        value = self.raw_target(batch)[:, 0]
        return (value.round().long() - self.cfg.class_offset).clamp(0, self.cfg.num_classes - 1)

    def value_target(self, batch: PointBatch) -> Tensor:
        """(B, T) regression targets after the transform (log or none), unstandardised."""
        y = self.raw_target(batch)
        match self.cfg.transform:
            case "log":
                if bool((y <= 0).any()):
                    raise ValueError(
                        f"event task: transform='log' needs targets > 0, got "
                        f"min {float(y.min())} in {self.cfg.targets}"
                    )
                return y.log()
            case "none":
                return y
            case _:
                raise ValueError(f"EventTaskConfig.transform={self.cfg.transform!r}")

    def outputs(self, batch: PointBatch) -> Tensor:
        """(B, out_dim) logits (classification) or standardised values (regression)."""
        x = self.backbone(batch)  # (N, D)
        pooled = event_mean_max(x, batch.offset)  # (B, 2D)
        return self.head(pooled)

    def forward(self, batch: PointBatch) -> StepOutput:
        out = self.outputs(batch)
        match self.cfg.kind:
            case "classification":
                target = self.class_target(batch)
                loss = F.cross_entropy(out, target)
                acc = (out.argmax(1) == target).float().mean()
                return StepOutput(loss=loss, metrics={"loss": loss.detach(), "acc": acc.detach()})
            case "regression":
                z = (self.value_target(batch) - self.cfg.target_shift) / self.cfg.target_scale
                loss = F.huber_loss(out, z, delta=1.0)
                mae = (out.detach() - z).abs().mean() * self.cfg.target_scale
                return StepOutput(loss=loss, metrics={"loss": loss.detach(), "mae": mae})
            case _:
                raise ValueError(f"EventTaskConfig.kind={self.cfg.kind!r}")

    @torch.no_grad()
    def predict(self, batch: PointBatch) -> dict[str, Tensor]:
        """Classification: ``logits`` (B, C), ``pred`` (B,) int64, ``target`` (B,).
        Regression: ``pred`` / ``target`` (B, T) in transformed units (log or raw), and
        ``pred_value`` / ``target_value`` (B, T) in the targets' own units. Targets only when
        the batch has them."""
        out = self.outputs(batch)
        has_target = all(t in batch.targets for t in self.cfg.targets)
        match self.cfg.kind:
            case "classification":
                res = {"logits": out, "pred": out.argmax(1)}
                if has_target:
                    res["target"] = self.class_target(batch)
            case "regression":
                pred = out * self.cfg.target_scale + self.cfg.target_shift  # (B, T)
                value = pred.exp() if self.cfg.transform == "log" else pred
                res = {"pred": pred, "pred_value": value}
                if has_target:
                    res["target"] = self.value_target(batch)
                    res["target_value"] = self.raw_target(batch)
            case _:
                raise ValueError(f"EventTaskConfig.kind={self.cfg.kind!r}")
        return res
