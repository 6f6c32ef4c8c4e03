"""Event-level splits: sizes, determinism, coverage and the leak check."""

from __future__ import annotations

import numpy as np
import pytest

from nufm.data.event_split import split_counts, split_events
from nufm.eval.splits import (
    EventLeakError,
    assert_disjoint_events,
    points_in_events,
    split_event_ids,
)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 101])
def test_split_events_partitions_every_event_once(n: int) -> None:
    parts = split_events(n, (0.6, 0.2, 0.2), seed=3)
    assert [p.size for p in parts] == split_counts(n, (0.6, 0.2, 0.2))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    again = split_events(n, (0.6, 0.2, 0.2), seed=3)
    for a, b in zip(parts, again, strict=False):
        np.testing.assert_array_equal(a, b)


def test_split_counts_cumulative_rounding() -> None:
    assert split_counts(10, (0.6, 0.2, 0.2)) == [6, 2, 2]
    assert split_counts(7, (0.5, 0.25, 0.25)) == [4, 1, 2]  # bounds round(3.5)=4, round(5.25)=5
    assert split_counts(9, (0.5, 0.25, 0.25)) == [5, 2, 2]  # bounds round(4.5)=5, round(6.75)=7
    assert split_counts(1500, (0.8, 0.1, 0.1)) == [1200, 150, 150]  # the demo's data
    assert split_counts(2007, (0.8, 0.1, 0.1)) == [1606, 200, 201]  # 1605.6 -> 1606, 1806.3
    assert sum(split_counts(101, (1 / 3, 1 / 3, 1 / 3))) == 101
    with pytest.raises(ValueError, match="sum to 1"):
        split_counts(10, (0.5, 0.2))
    with pytest.raises(ValueError, match=">= 0"):
        split_counts(10, (1.5, -0.5))


def test_split_seed_changes_split() -> None:
    a = split_events(50, (0.5, 0.5), seed=0)[0]
    b = split_events(50, (0.5, 0.5), seed=1)[0]
    assert not np.array_equal(a, b)


def test_split_event_ids_and_points() -> None:
    ev = np.repeat(np.array([11, 42, 7, 99, 5]), 3)  # per-point ids
    train, test = split_event_ids(ev, (0.6, 0.4), seed=0)
    assert train.size == 3 and test.size == 2
    assert set(train) | set(test) == {5, 7, 11, 42, 99}
    in_train = points_in_events(ev, train)
    assert in_train.sum() == 9
    assert_disjoint_events(train=ev[in_train], test=ev[~in_train])


def test_assert_disjoint_events_names_the_leak() -> None:
    with pytest.raises(
        EventLeakError,
        match=r"1 event id\(s\) shared between the 'val' and "
        r"'test' sets, e.g. \[3\]",
    ):
        assert_disjoint_events(train=[0, 1], val=[2, 3], test=[3, 4])


def test_split_never_leaves_val_or_test_empty_when_events_suffice() -> None:
    # cumulative rounding alone gives 6 / 0 / 1; an empty part takes one from the largest
    assert split_counts(7, (0.8, 0.1, 0.1)) == [5, 1, 1]
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_counts(2, (0.8, 0.1, 0.1)) == [2, 0, 0]  # too few events for three parts
    assert split_counts(4, (0.9, 0.1)) == [3, 1]
    assert split_counts(5, (1.0, 0.0, 0.0)) == [5, 0, 0]  # a zero fraction stays empty
    parts = split_events(7, (0.8, 0.1, 0.1), seed=0)
    assert [p.size for p in parts] == [5, 1, 1]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(7))
