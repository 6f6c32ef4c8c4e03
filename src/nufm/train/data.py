"""Deterministic, resumable event stream for the training loop.

Owns the path from a map-style dataset of :class:`~nufm.data.event.Event` to packed
:class:`~nufm.batch.PointBatch` micro-batches:

* event order and batch boundaries come from :class:`~nufm.data.collate.PointBudgetSampler`
  seeded by (seed, epoch), sharded by DDP rank;
* augmentations draw from ``np.random.default_rng((seed, epoch, event_index))``, so they do not
  depend on worker count, worker seeds or where a run was resumed;
* the DataLoader gets its own ``torch.Generator`` so creating it never consumes the global
  torch RNG (which the objective uses);
* a :class:`~nufm.train.checkpoint.DataCursor` (epoch, batch within epoch) says which
  micro-batch comes next; a loader built from a cursor starts exactly there;
* any failure while reading, transforming or collating an event is re-raised as
  :class:`EventStreamError` naming the event (``Event.where``: file and row).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nufm.batch import PointBatch
from nufm.data.collate import (
    EventSource,
    MixtureBudgetSampler,
    PointBudgetSampler,
    collate,
    points_per_event,
)
from nufm.data.event import Event
from nufm.data.transforms import Transform
from nufm.errors import InputError
from nufm.train.checkpoint import DataCursor

log = logging.getLogger(__name__)


class EventStreamError(RuntimeError):
    """Reading, augmenting or collating an event failed; the message names the event."""


class EventDataset(EventSource, Protocol):
    """What the loop needs from a dataset: ``len`` and ``ds[i] -> Event``
    (:class:`~nufm.data.collate.EventSource`).

    Optional: ``points_per_event``, a (len,) int array or a method returning it (avoids
    reading every event to size
    the point-budget batches), ``where(i) -> str`` (names file and row in errors when
    reading event i itself fails) and ``mixture_source`` / ``mixture_weights`` (the source
    of every event and the sources' weights, :class:`~nufm.data.mixture.MixtureEvents`: each
    batch is then one source's events).
    """


class SeededEventDataset(Dataset):
    """Wraps an event dataset; item ``(epoch, index)`` is event ``index`` augmented with an RNG
    seeded by ``(seed, epoch, index)``."""

    def __init__(self, base: EventDataset, transform: Transform | None, seed: int) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def _where(self, index: int) -> str:
        where = getattr(self.base, "where", None)
        if callable(where):
            try:
                return str(where(index))
            except Exception:  # noqa: BLE001 - best effort for an error message
                pass
        return f"{type(self.base).__name__} index {index}"

    def __getitem__(self, key: tuple[int, int]) -> Event:
        epoch, index = key
        try:
            event = self.base[index]
        except Exception as e:
            raise EventStreamError(
                f"reading {self._where(index)} failed: {type(e).__name__}: {e}"
            ) from e
        if self.transform is None:
            return event
        rng = np.random.default_rng((self.seed, epoch, index))
        try:
            return self.transform(event, rng)
        except Exception as e:
            raise EventStreamError(
                f"transform of {event.where} (dataset index {index}) failed: "
                f"{type(e).__name__}: {e}"
            ) from e


def collate_events(events: Sequence[Event]) -> PointBatch:
    """:func:`~nufm.data.collate.collate` that names the events when it fails."""
    try:
        return collate(events)
    except Exception as e:
        names = ", ".join(ev.where for ev in events[:8])
        raise EventStreamError(
            f"collating [{names}{', …' if len(events) > 8 else ''}] failed: {type(e).__name__}: {e}"
        ) from e


class _EpochBatches:
    """The batch sampler of an :class:`EventStream`'s one DataLoader: the batches left in the
    current epoch, replaced when the next epoch opens (the loader reads them anew at every
    ``iter``)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EventStream:
    """Endless iterator of ``(batch, cursor_after)`` over epochs, starting at a cursor.

    ``cursor_after`` is the cursor of the micro-batch that follows ``batch``; saving it in a
    checkpoint makes a resumed stream yield exactly the next micro-batch.
    """

    def __init__(
        self,
        dataset: EventDataset,
        *,
        max_points: int,
        max_events: int | None,
        shuffle: bool,
        seed: int,
        num_workers: int,
        transform: Transform | None,
        start: DataCursor,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        self.data = SeededEventDataset(dataset, transform, seed)
        self.sizes = points_per_event(dataset)
        source = getattr(dataset, "mixture_source", None)
        self.mixture = None if source is None else (source, dataset.mixture_weights)  # type: ignore[attr-defined]
        self.max_points = max_points
        self.max_events = max_events
        self.shuffle = shuffle
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.cursor = start
        self._it: Iterator[PointBatch] | None = None
        self._batches = _EpochBatches()
        self._loader: DataLoader[Any] | None = None
        self._epoch_len = 0
        self.batches_per_epoch = len(self._sampler(0))
        if self.batches_per_epoch == 0:
            raise InputError(
                f"dataset of {len(dataset)} events gives no batch per rank "
                f"(world size {world_size}); add events"
            )

    def _sampler(self, epoch: int) -> PointBudgetSampler:
        options = {
            "max_events": self.max_events,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }
        if self.mixture is not None:  # every batch one source's (one detector's) events
            source, weights = self.mixture
            s = MixtureBudgetSampler(self.sizes, source, weights, self.max_points, **options)
        else:
            s = PointBudgetSampler(self.sizes, self.max_points, **options)
        s.set_epoch(epoch)
        return s

    def _open(self, cursor: DataCursor) -> None:
        batches = list(self._sampler(cursor.epoch))
        self._epoch_len = len(batches)
        self._batches.batches = [[(cursor.epoch, i) for i in b] for b in batches[cursor.batch :]]
        if self._loader is None:
            gen = torch.Generator()
            seq = np.random.SeedSequence([self.seed, cursor.epoch, cursor.batch, self.rank])
            gen.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            # one loader for the whole run: its workers, and the per-event caches they hold
            # (token groups, descriptors), outlive the epoch
            self._loader = DataLoader(
                self.data,
                batch_sampler=self._batches,
                collate_fn=collate_events,
                num_workers=self.num_workers,
                generator=gen,
                pin_memory=self.pin_memory,
                persistent_workers=self.num_workers > 0,
            )
        self._it = iter(self._loader)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> tuple[PointBatch, DataCursor]:
        if self._it is None:
            self._open(self.cursor)
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            self.cursor = DataCursor(self.cursor.epoch + 1, 0)
            log.debug("data: epoch %d starts", self.cursor.epoch)
            self._open(self.cursor)
            batch = next(self._it)
        nxt = DataCursor(self.cursor.epoch, self.cursor.batch + 1)
        if nxt.batch >= self._epoch_len:
            nxt = DataCursor(nxt.epoch + 1, 0)
            self._it = None  # next call opens the next epoch
        self.cursor = nxt
        return batch, nxt

    def close(self) -> None:
        """Drop the loader (shuts its workers down)."""
        self._it = None
        self._loader = None
