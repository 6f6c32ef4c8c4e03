"""A per-event cache of values computed from an event's points, for data-pipeline steps.

Owns :class:`EventMemo`. Token groups (``nufm.models.tokenizers.EventGrouper``) and local-shape
descriptors (``nufm.models.geometric.EventDescriptors``) are functions of an event's points as
read, so a later epoch, a validation pass or another run of a study can reuse them. An event is
known by (source, row, number of points); events without a row (``event_id < 0``: made on the
fly, cropped) are never cached. The cache stops growing at ``max_bytes``; events beyond it are
recomputed every time, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from nufm.data.event import Event

V = TypeVar("V")


class EventMemo(Generic[V]):
    """Values by event, capped by their size in bytes."""

    def __init__(self, nbytes: Callable[[V], int], enabled: bool = True, max_bytes: int = 2 << 30):
        """Args: nbytes: the size of a value; enabled: False computes every time; max_bytes:
        the most the cached values may hold together."""
        if max_bytes < 0:
            raise ValueError(f"EventMemo: max_bytes must be >= 0, got {max_bytes}")
        self.nbytes = nbytes
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.cached_bytes = 0
        self._values: dict[tuple[str, int, int], V] = {}

    def __len__(self) -> int:
        return len(self._values)

    @staticmethod
    def key(event: Event) -> tuple[str, int, int] | None:
        """What ``event`` is known by: (source, row, number of points); None when it has no row
        (made on the fly, cropped) and so is never cached."""
        return None if event.event_id < 0 else (event.source, event.event_id, len(event))

    def lookup(self, key: tuple[str, int, int]) -> V | None:
        """The value cached under ``key`` (:meth:`key`), or None."""
        return self._values.get(key)

    def fits(self, value: V) -> bool:
        """Whether ``value`` fits beside the cached values under ``max_bytes``."""
        return self.cached_bytes + self.nbytes(value) <= self.max_bytes

    def put(self, key: tuple[str, int, int], value: V) -> None:
        """Keep ``value`` under ``key`` whatever ``max_bytes`` says (values computed ahead in
        other processes, :func:`nufm.train.components.warm_pipeline_caches`)."""
        if key not in self._values:
            self.cached_bytes += self.nbytes(value)
        self._values[key] = value

    def get(self, event: Event, compute: Callable[[Event], V]) -> V:
        """The cached value of ``event``, or ``compute(event)`` (kept when it fits)."""
        key = self.key(event)
        if not self.enabled or key is None:
            return compute(event)
        value = self._values.get(key)
        if value is None:
            value = compute(event)
            if self.fits(value):
                self.put(key, value)
        return value


__all__ = ["EventMemo"]
