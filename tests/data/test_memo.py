"""EventMemo: one computation per (source, row, size), none kept for row-less events or past
the byte cap (those are recomputed, never dropped), nothing kept when disabled."""

from __future__ import annotations

import numpy as np
import pytest

from nufm.data.event import Event
from nufm.data.memo import EventMemo


def _event(row: int, n: int = 4, source: str = "a.h5") -> Event:
    coord = np.zeros((n, 3), np.float32)
    return Event(coord=coord, energy=np.ones(n, np.float32), event_id=row, source=source)


def _counting():
    calls: list[int] = []

    def compute(ev: Event) -> np.ndarray:
        calls.append(ev.event_id)
        return np.full(10, ev.event_id, dtype=np.float64)  # 80 bytes

    return calls, compute


def test_computed_once_per_event_key() -> None:
    calls, compute = _counting()
    memo: EventMemo[np.ndarray] = EventMemo(lambda a: a.nbytes)
    first = memo.get(_event(3), compute)
    assert memo.get(_event(3), compute) is first
    memo.get(_event(3, source="b.h5"), compute)  # another file
    memo.get(_event(3, n=5), compute)  # the same row with other points (a crop)
    assert calls == [3, 3, 3] and len(memo) == 3 and memo.cached_bytes == 240


def test_rowless_events_and_the_byte_cap() -> None:
    calls, compute = _counting()
    memo: EventMemo[np.ndarray] = EventMemo(lambda a: a.nbytes, max_bytes=160)
    memo.get(_event(-1), compute)
    memo.get(_event(-1), compute)
    for row in (0, 1, 2, 2):  # the third value does not fit: computed both times
        value = memo.get(_event(row), compute)
        assert value[0] == row
    assert calls == [-1, -1, 0, 1, 2, 2]
    assert len(memo) == 2 and memo.cached_bytes == 160


def test_disabled_keeps_nothing_and_bad_cap() -> None:
    calls, compute = _counting()
    memo: EventMemo[np.ndarray] = EventMemo(lambda a: a.nbytes, enabled=False)
    memo.get(_event(1), compute)
    memo.get(_event(1), compute)
    assert calls == [1, 1] and len(memo) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        EventMemo(lambda a: a.nbytes, max_bytes=-1)
