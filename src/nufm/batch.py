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

import numpy as np
import torch
from torch import Tensor

from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts


@dataclass(frozen=True)
class EventGroups:
    """Token groups of one event, computed once from its points (``nufm.models.tokenizers``).

    Ball-query groups around C-NMS centres do not change under rotations, flips and small
    scalings, so they are computed once per event (in the data pipeline, before the
    augmentations) and a training step runs only the network. Rows are the event's own.

    Attributes:
        key: the grouping settings these groups were made with; a model refuses groups whose
            key differs from its own.
        n_points: N of the event they were computed for.
        center: (G,) int64 row of every token centre.
        group: (G, K) int32 rows of every token's points, -1 = empty slot.
        context: (G, M) int32 rows of a wider neighbourhood of every centre (the MAE context
            target), -1 = empty; None when the objective needs none.
        n_dropped: C-NMS centres dropped because of the tokenizer's context length.
    """

    key: str
    n_points: int
    center: np.ndarray
    group: np.ndarray
    context: np.ndarray | None
    n_dropped: int

    def __post_init__(self) -> None:
        G = self.center.shape[0]
        if self.group.ndim != 2 or self.group.shape[0] != G:
            raise ValueError(f"EventGroups: group {self.group.shape} does not match {G} centres")
        if self.context is not None and self.context.shape[0] != G:
            raise ValueError(
                f"EventGroups: context {self.context.shape} does not match {G} centres"
            )


@dataclass
class TokenGroups:
    """:class:`EventGroups` of B events packed like the points (rows are global).

    Attributes:
        key: the grouping settings (the same for every event).
        center_row: (Q,) int64 global row of every centre, event-major.
        center_offset: (B,) int64 exclusive end of each event's centres.
        group_idx: (Q, K) int64 global rows, -1 = empty slot.
        context_idx: (Q, M) int64 global rows or None.
        n_dropped: (B,) int64 centres dropped per event.
    """

    key: str
    center_row: Tensor
    center_offset: Tensor
    group_idx: Tensor
    context_idx: Tensor | None
    n_dropped: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TokenGroups:
        """Move every tensor to ``device``."""
        return TokenGroups(
            key=self.key,
            center_row=self.center_row.to(device, non_blocking=non_blocking),
            center_offset=self.center_offset.to(device, non_blocking=non_blocking),
            group_idx=self.group_idx.to(device, non_blocking=non_blocking),
            context_idx=None
            if self.context_idx is None
            else self.context_idx.to(device, non_blocking=non_blocking),
            n_dropped=self.n_dropped.to(device, non_blocking=non_blocking),
        )


def pack_groups(groups: list[EventGroups | None], counts: list[int]) -> TokenGroups | None:
    """Pack per-event groups (events of ``counts`` points, in batch order); None unless every
    event has groups made with one key for exactly its points."""
    if not groups or any(g is None for g in groups):
        return None
    gs = [g for g in groups if g is not None]  # all of them (checked above)
    keys = {g.key for g in gs}
    if len(keys) != 1 or any(g.n_points != n for g, n in zip(gs, counts, strict=True)):
        return None
    if len({g.context is None for g in gs}) != 1:
        return None
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)  # (B,)

    def shifted(arrays: list[np.ndarray]) -> Tensor:
        out = [
            np.where(a >= 0, a.astype(np.int64) + s, -1) for a, s in zip(arrays, start, strict=True)
        ]
        return torch.from_numpy(np.concatenate(out))

    contexts = [g.context for g in gs if g.context is not None]
    return TokenGroups(
        key=gs[0].key,
        center_row=shifted([g.center for g in gs]),
        center_offset=torch.cumsum(torch.tensor([g.center.shape[0] for g in gs]), 0),
        group_idx=shifted([g.group for g in gs]),
        context_idx=shifted(contexts) if contexts else None,
        n_dropped=torch.tensor([g.n_dropped for g in gs], dtype=torch.int64),
    )


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
        labels: (N, K) float32 further per-point label channels (``Detector.label_names``),
            -1 = does not apply, or None.
        event_id: (B,) int64 source row of each event (-1 unknown).
        targets: per-event targets, name -> (B, ...) tensor (event-level tasks).
        groups: token groups computed by the data pipeline (:class:`TokenGroups`), or None
            (token encoders then group the points themselves).
        detector: the detector of every event of the batch (``nufm.data.detectors``), or None
            when the events do not say (LArTPC files); an encoder with one input embedding
            per detector (a cross-experiment model) picks it by this name.
        descriptors: (N, D) float32 per-point context features computed by the data pipeline
            (:class:`nufm.models.geometric.EventDescriptors`), or None (a model that wants
            them computes them itself).
        descriptor_key: what ``descriptors`` are (e.g. ``shape:8,32,128,512``), so a model
            never reads descriptors of other sizes; None without them.
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
    labels: Tensor | None = None
    event_id: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    groups: TokenGroups | None = None
    detector: str | None = None
    descriptors: Tensor | None = None
    descriptor_key: str | None = None

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
        if self.groups is not None:
            moved["groups"] = self.groups.to(device, non_blocking=non_blocking)
        return replace(self, **moved)

    def with_fields(self, **updates) -> PointBatch:
        return replace(self, **updates)
