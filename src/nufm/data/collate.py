"""Pack events into a :class:`PointBatch` and batch them by a point budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch

from nufm.batch import PointBatch, pack_groups
from nufm.data.event import Event

T = TypeVar("T")

_LABELS = ("segment", "pid", "instance", "interaction", "stream")
_BOOKKEEPING_PREFIX = "n_removed_"
"""Meta keys written by filtering transforms (point counts), not physics targets."""


def collate(events: Sequence[Event]) -> PointBatch:
    """Concatenate events into one packed batch.

    ``feat`` is ``event.feat`` when set (all events must have the same channel count), else the
    energy as a single channel. A label field is packed when every event has it; when only some
    do, the missing ones are filled with -1 (ignored by losses and metrics); so are the
    ``labels`` channels. Per-event numbers in
    ``event.meta`` that every event has become ``targets`` (B,) float32 tensors (strings and
    filter bookkeeping ``n_removed_*`` are not targets). ``detector`` is the events'
    ``meta['detector']``: one batch holds one detector's events. Token groups are packed when every
    event has groups made with one key (``PointBatch.groups``, else None); so are the
    pipeline's per-point ``descriptors`` when every event has them under one
    ``meta['descriptor_key']`` (``PointBatch.descriptors``, else None).
    """
    if len(events) == 0:
        raise ValueError("collate: got an empty list of events")
    coord = torch.from_numpy(np.concatenate([e.coord for e in events]).astype(np.float32))
    feats = [e.feat for e in events if e.feat is not None]
    if len(feats) == len(events):
        widths = {f.shape[1] for f in feats}
        if len(widths) != 1:
            raise ValueError(f"collate: events have different feature widths {sorted(widths)}")
        feat = np.concatenate(feats).astype(np.float32)
    else:
        feat = np.concatenate([e.energy for e in events]).astype(np.float32)[:, None]
    counts = torch.tensor([len(e) for e in events], dtype=torch.int64)
    labels = {}
    for name in _LABELS:
        arrays = [getattr(e, name) for e in events]
        if all(a is None for a in arrays):
            continue
        filled = [
            a if a is not None else np.full(len(e), -1, np.int64)
            for a, e in zip(arrays, events, strict=False)
        ]
        labels[name] = torch.from_numpy(np.concatenate(filled).astype(np.int64))
    channels = [e.labels for e in events]
    if any(c is not None for c in channels):
        widths = {c.shape[1] for c in channels if c is not None}
        if len(widths) != 1:
            raise ValueError(f"collate: events have different label widths {sorted(widths)}")
        k = widths.pop()
        filled = [
            c if c is not None else np.full((len(e), k), -1.0, np.float32)
            for c, e in zip(channels, events, strict=True)
        ]
        labels["labels"] = torch.from_numpy(np.concatenate(filled).astype(np.float32))
    keys = set.intersection(*(set(e.meta) for e in events)) if events[0].meta else set()
    targets = {
        k: torch.tensor([float(e.meta[k]) for e in events], dtype=torch.float32)
        for k in sorted(keys)
        if isinstance(events[0].meta[k], (int, float, np.number))
        and not k.startswith(_BOOKKEEPING_PREFIX)
    }
    detectors = {e.meta.get("detector") for e in events}
    if len(detectors) > 1:
        named = sorted(d or "unnamed (LArTPC)" for d in detectors)
        raise ValueError(f"collate: events of several detectors ({', '.join(named)}) in one batch")
    descriptors, descriptor_key = _pack_descriptors(events)
    return PointBatch(
        coord=coord,
        feat=torch.from_numpy(feat),
        offset=torch.cumsum(counts, 0),
        detector=detectors.pop(),
        event_id=torch.tensor([e.event_id for e in events], dtype=torch.int64),
        targets=targets,
        groups=pack_groups([e.groups for e in events], [len(e) for e in events]),
        descriptors=descriptors,
        descriptor_key=descriptor_key,
        **labels,
    )


def _pack_descriptors(events: Sequence[Event]) -> tuple[torch.Tensor | None, str | None]:
    """((N, D) float32 descriptors, their key) when every event has them under one key, else
    (None, None): a model then computes what it needs itself."""
    keys = {e.meta.get("descriptor_key") for e in events}
    if any(e.descriptors is None for e in events) or len(keys) != 1 or None in keys:
        return None, None
    values = np.concatenate([e.descriptors for e in events if e.descriptors is not None])
    return torch.from_numpy(values.astype(np.float32, copy=False)), str(keys.pop())


class EventSource(Protocol):
    """A map-style collection of events: ``len`` and ``source[i] -> Event``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Event: ...


def points_per_event(dataset: EventSource) -> np.ndarray:
    """(len,) int64 point count of every event.

    Uses ``dataset.points_per_event`` (an array attribute or a method) when present, else
    reads each event once.
    """
    known = getattr(dataset, "points_per_event", None)
    if callable(known):
        known = known()
    if known is not None:
        sizes = np.asarray(known, dtype=np.int64)
    else:
        sizes = np.array([len(dataset[i]) for i in range(len(dataset))], dtype=np.int64)
    if sizes.shape != (len(dataset),):
        raise ValueError(
            f"points_per_event: got shape {sizes.shape}, dataset has {len(dataset)} events"
        )
    return sizes


def budget_batches(
    items: Iterable[T],
    max_points: int,
    *,
    max_events: int | None = None,
    size: Callable[[T], int] = len,
) -> Iterator[list[T]]:
    """Group ``items`` in order into batches bounded by a point budget (the one batching rule).

    Greedy: a batch is closed before the next item when adding it would exceed ``max_points``
    points (``total + size(item) > max_points``) or when the batch already holds ``max_events``
    items. An item larger than ``max_points`` forms a batch alone (never dropped). Lazy, so a
    stream of any length goes through.

    Args:
        items: events, indices or any items, in batch order.
        max_points: point budget of one batch (>= 1).
        max_events: most items in one batch; None for no limit.
        size: the number of points of an item (``len`` of an event).

    Yields:
        Non-empty lists of consecutive items.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if max_events is not None and max_events < 1:
        raise ValueError(f"max_events must be >= 1 or None, got {max_events}")
    current: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        full = max_events is not None and len(current) >= max_events
        if current and (total + n > max_points or full):
            yield current
            current, total = [], 0
        current.append(item)
        total += n
    if current:
        yield current


class PointBudgetSampler:
    """Batch sampler whose batches are bounded by total points, not only by event count.

    Events are taken in (optionally shuffled) order and grouped by :func:`budget_batches`.
    Deterministic for a given ``seed`` and ``epoch`` (call ``set_epoch``). Shard across DDP ranks
    with ``rank``/``world_size``: each rank gets every world_size-th batch; the batch list is
    truncated to a multiple of world_size so all ranks take the same number of steps.
    """

    def __init__(
        self,
        points_per_event: Sequence[int] | np.ndarray,
        max_points: int,
        max_events: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if max_points <= 0:
            raise ValueError(f"max_points must be positive, got {max_points}")
        if max_events is not None and max_events <= 0:
            raise ValueError(f"max_events must be positive or None, got {max_events}")
        self.sizes = np.asarray(points_per_event, dtype=np.int64)
        self.max_points = max_points
        self.max_events = max_events
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _budget(self, order: np.ndarray) -> list[list[int]]:
        """Events ``order`` (rows) cut into point-budget batches."""
        sizes = self.sizes
        return list(
            budget_batches(
                order.tolist(),
                self.max_points,
                max_events=self.max_events,
                size=lambda i: int(sizes[i]),
            )
        )

    def _all_batches(self) -> list[list[int]]:
        order = np.arange(len(self.sizes))
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(order)
        batches = self._budget(order)
        return batches[: len(batches) - len(batches) % self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size


class MixtureBudgetSampler(PointBudgetSampler):
    """:class:`PointBudgetSampler` over events of several sources whose every batch holds one
    source's events (a batch of one detector runs through that detector's input embedding).

    Each source's events are (shuffled and) cut into point-budget batches on their own; the
    epoch then has as many batches as all sources together, and slot after slot draws a
    source with probability proportional to its weight, taking that source's next batch
    (cycling through them when a heavily weighted source runs out). Everything is seeded by
    (seed, epoch), so a resumed run gets the same batches; ranks take every world_size-th
    batch as in the parent class.
    """

    def __init__(
        self,
        points_per_event: Sequence[int] | np.ndarray,
        source: Sequence[int] | np.ndarray,
        weights: Sequence[float] | np.ndarray,
        max_points: int,
        max_events: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(points_per_event, max_points, max_events, shuffle, seed, rank, world_size)
        self.source = np.asarray(source, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.source.shape != self.sizes.shape:
            raise ValueError(
                f"MixtureBudgetSampler: {self.source.shape[0]} source ids for "
                f"{self.sizes.shape[0]} events"
            )
        if self.weights.ndim != 1 or (self.weights <= 0).any():
            raise ValueError(f"MixtureBudgetSampler: weights must be > 0, got {self.weights}")
        if self.source.size and not 0 <= self.source.min() <= self.source.max() < len(weights):
            raise ValueError("MixtureBudgetSampler: a source id has no weight")

    def _all_batches(self) -> list[list[int]]:
        per_source: list[list[list[int]]] = []
        for s in range(len(self.weights)):
            rows = np.flatnonzero(self.source == s)
            if self.shuffle:
                rows = np.random.default_rng((self.seed, self.epoch, s)).permutation(rows)
            per_source.append(self._budget(rows))
        have = np.array([len(b) > 0 for b in per_source])
        total = sum(len(b) for b in per_source)
        if total == 0:
            return []
        p = np.where(have, self.weights, 0.0)
        draws = np.random.default_rng((self.seed, self.epoch, len(self.weights))).choice(
            len(self.weights), size=total, p=p / p.sum()
        )
        taken = [0] * len(per_source)
        batches = []
        for s in draws.tolist():
            batches.append(per_source[s][taken[s] % len(per_source[s])])
            taken[s] += 1
        return batches[: len(batches) - len(batches) % self.world_size]
