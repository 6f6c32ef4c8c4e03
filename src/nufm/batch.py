"""PointBatch: the one packed-batch contract between data, models, objectives and tasks.

Shape glossary used across nufm:
    B events, N packed points, G tokens per event, K points per group, C input channels,
    D embed dim, H heads, V views.

Points of B events are packed back to back (Pointcept/pimm convention, so PTv3/Sonata code and
checkpoints interoperate); ``offset[i]`` is the exclusive end of event i. Models read only
``coord``, ``feat``, ``offset`` (and ``grid_coord`` / ``stream`` when present): they are
detector-agnostic. Labels travel alongside for objectives, tasks and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts


@dataclass
class PointBatch:
    """A packed batch of B events with N points in total.

    Attributes:
        coord: (N, 3) float32 point positions (normalised units after preprocessing).
        feat: (N, C) float32 input features (e.g. normalised xyz + log energy).
        offset: (B,) int64 exclusive end of each event's rows.
        grid_coord: (N, 3) int64 integer lattice coordinates, or None (computed by encoders).
        stream: (N,) int64 sub-detector id, or None for single-stream detectors.
        segment: (N,) int64 semantic label, -1 = ignore.
        pid: (N,) int64 particle-type label, -1 = ignore.
        instance: (N,) int64 particle id, unique within an event, -1 none.
        interaction: (N,) int64 interaction id, unique within an event, -1 none.
        event_id: (B,) int64 source row of each event (-1 unknown).
        targets: per-event targets, name -> (B, ...) tensor (event-level tasks).
    """

    coord: Tensor
    feat: Tensor
    offset: Tensor
    grid_coord: Tensor | None = None
    stream: Tensor | None = None
    segment: Tensor | None = None
    pid: Tensor | None = None
    instance: Tensor | None = None
    interaction: Tensor | None = None
    event_id: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_events(self) -> int:
        return int(self.offset.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.coord.shape[0])

    @property
    def batch_index(self) -> Tensor:
        """(N,) int64 event index of every point."""
        return offset_to_batch_index(self.offset)

    @property
    def counts(self) -> Tensor:
        """(B,) points per event."""
        return offset_to_counts(self.offset)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PointBatch:
        """Move every tensor to ``device``."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                moved[f.name] = v.to(device, non_blocking=non_blocking)
        moved["targets"] = {
            k: v.to(device, non_blocking=non_blocking) for k, v in self.targets.items()
        }
        return replace(self, **moved)

    def with_fields(self, **updates) -> PointBatch:
        return replace(self, **updates)
