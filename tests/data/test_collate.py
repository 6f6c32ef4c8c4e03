import itertools

import numpy as np
import pytest
import torch

from nufm.data.collate import PointBudgetSampler, budget_batches, collate
from nufm.data.event import Event


def _event(n: int, seed: int) -> Event:
    rng = np.random.default_rng(seed)
    return Event(
        coord=rng.uniform(0, 768, (n, 3)).astype(np.float32),
        energy=rng.exponential(1.0, n).astype(np.float32),
        segment=rng.integers(0, 5, n),
        event_id=seed,
        meta={"n_interactions": seed},
    )


def test_collate_packs_and_keeps_events_separable() -> None:
    events = [_event(n, s) for s, n in enumerate([5, 1, 7])]
    b = collate(events)
    assert b.offset.tolist() == [5, 6, 13]
    assert b.feat.shape == (13, 1)
    assert b.event_id.tolist() == [0, 1, 2]
    assert b.targets["n_interactions"].tolist() == [0.0, 1.0, 2.0]
    # batch independence: each event's rows equal the event collated alone
    for i, e in enumerate(events):
        alone = collate([e])
        start = 0 if i == 0 else int(b.offset[i - 1])
        torch.testing.assert_close(b.coord[start : b.offset[i]], alone.coord)
        assert torch.equal(b.segment[start : b.offset[i]], alone.segment)


def test_collate_fills_missing_labels_with_ignore() -> None:
    a = _event(3, 0)
    b = Event(coord=np.zeros((2, 3), np.float32), energy=np.ones(2, np.float32))
    batch = collate([a, b])
    assert batch.segment[3:].tolist() == [-1, -1]


def test_event_rejects_misaligned_fields() -> None:
    with pytest.raises(ValueError, match="segment"):
        Event(
            coord=np.zeros((3, 3), np.float32),
            energy=np.zeros(3, np.float32),
            segment=np.zeros(2, np.int64),
            source="x.h5",
            event_id=4,
        )


def test_point_budget_sampler_bounds_points_and_covers_all() -> None:
    sizes = [100, 900, 50, 3000, 10, 400]
    s = PointBudgetSampler(sizes, max_points=1000, shuffle=True, seed=1)
    batches = list(s)
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(len(sizes)))  # nothing dropped
    for b in batches:
        total = sum(sizes[i] for i in b)
        assert total <= 1000 or len(b) == 1  # oversized event goes alone
    assert [b for b in batches if 3 in b] == [[3]]
    assert list(s) == batches  # deterministic for a seed/epoch
    s.set_epoch(1)
    assert list(s) != batches or len(batches) == 1


def test_point_budget_sampler_shards_evenly() -> None:
    sizes = [10] * 25
    r0 = list(PointBudgetSampler(sizes, 30, seed=0, rank=0, world_size=2))
    r1 = list(PointBudgetSampler(sizes, 30, seed=0, rank=1, world_size=2))
    assert len(r0) == len(r1)
    assert not set(i for b in r0 for i in b) & set(i for b in r1 for i in b)


def test_collate_targets_skip_strings_and_bookkeeping() -> None:
    events = [_event(3, s) for s in range(2)]
    for e in events:
        e.meta.update(generator="sim-v1", n_removed_threshold=2)
    assert set(collate(events).targets) == {"n_interactions"}


def test_budget_batches_hand_computed_edges() -> None:
    sizes = [4, 6, 1, 12, 3, 3, 3, 10, 10]
    # budget 10: 4+6 == 10 fits (the rule is total + n > budget), 12 goes alone, 10 fills one.
    got = list(budget_batches(range(len(sizes)), 10, size=lambda i: sizes[i]))
    assert got == [[0, 1], [2], [3], [4, 5, 6], [7], [8]]
    got = list(budget_batches(range(len(sizes)), 10, max_events=2, size=lambda i: sizes[i]))
    assert got == [[0, 1], [2], [3], [4, 5], [6], [7], [8]]
    assert list(budget_batches([], 10)) == []
    with pytest.raises(ValueError, match="max_points"):
        list(budget_batches([[1]], 0))


def _greedy_partitions_by_brute_force(
    sizes: list[int], max_points: int, max_events: int | None
) -> list[list[int]]:
    """The unique split of 0..n-1 into consecutive runs where every run is within the limits
    (or a single item) and no run could take the next item: found by trying every cut set."""
    n = len(sizes)
    for cuts in range(1 << max(n - 1, 0)):
        runs, start = [], 0
        for i in range(1, n + 1):
            if i == n or cuts >> (i - 1) & 1:
                runs.append(list(range(start, i)))
                start = i
        fits = all(
            len(r) == 1
            or (
                sum(sizes[i] for i in r) <= max_points
                and (max_events is None or len(r) <= max_events)
            )
            for r in runs
        )
        maximal = all(
            sum(sizes[i] for i in a) + sizes[b[0]] > max_points
            or (max_events is not None and len(a) >= max_events)
            for a, b in itertools.pairwise(runs)
        )
        if fits and maximal:
            return runs
    raise AssertionError("no greedy partition")


@pytest.mark.parametrize("seed", range(20))
def test_budget_batches_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, int(rng.integers(1, 11))).tolist()
    max_points = int(rng.integers(1, 60))
    max_events = [None, 1, 2, 3][seed % 4]
    got = list(
        budget_batches(
            range(len(sizes)), max_points, max_events=max_events, size=lambda i: sizes[i]
        )
    )
    assert got == _greedy_partitions_by_brute_force(sizes, max_points, max_events)
    sampler = PointBudgetSampler(sizes, max_points, max_events=max_events, shuffle=False)
    assert list(sampler) == got


def test_label_channels_are_packed_and_missing_ones_filled():
    from nufm.data.event import Event

    a = Event(
        coord=np.zeros((2, 3), np.float32),
        energy=np.ones(2, np.float32),
        labels=np.array([[1.0, 0.5], [0.0, 2.0]], np.float32),
    )
    b = Event(coord=np.zeros((3, 3), np.float32), energy=np.ones(3, np.float32))
    batch = collate([a, b])
    assert batch.labels is not None
    assert batch.labels.tolist() == [[1.0, 0.5], [0.0, 2.0]] + [[-1.0, -1.0]] * 3
    assert a.select(np.array([1])).labels.tolist() == [[0.0, 2.0]]
    c = Event(
        coord=np.zeros((1, 3), np.float32),
        energy=np.ones(1, np.float32),
        labels=np.zeros((1, 3), np.float32),
    )
    with pytest.raises(ValueError, match="different label widths"):
        collate([a, c])
