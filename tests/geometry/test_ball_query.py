from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events, line
from nufm.geometry.ball_query import ball_query

BACKENDS = ("torch", "numba")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_modes(backend: str) -> None:
    support = line([5.0, 1.0, 0.0, 2.0, 9.0, 3.0])
    query = line([1.6])
    off_s, off_q = torch.tensor([6]), torch.tensor([1])
    # distances 3.4, 0.6, 1.6, 0.4, 7.4, 1.4; radius 1.5 -> rows 1, 3, 5
    idx, count = ball_query(query, off_q, support, off_s, 1.5, 2, "first", backend)
    assert idx.tolist() == [[1, 3]] and count.tolist() == [2]
    idx, count = ball_query(query, off_q, support, off_s, 1.5, 2, "nearest", backend)
    assert idx.tolist() == [[3, 1]] and count.tolist() == [2]
    idx, count = ball_query(query, off_q, support, off_s, 1.5, 4, "first", backend)
    assert idx.tolist() == [[1, 3, 5, -1]] and count.tolist() == [3]
    idx, count = ball_query(query, off_q, support, off_s, 1.5, 4, "nearest", backend)
    assert idx.tolist() == [[3, 1, 5, -1]] and count.tolist() == [3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_is_strict_and_events_are_separate(backend: str) -> None:
    support = line([0.0, 2.0, 0.0, 1.0])  # two events with two points each
    query = line([0.0, 0.0])
    off = torch.tensor([2, 4])
    idx, count = ball_query(query, torch.tensor([1, 2]), support, off, 2.0, 3, "first", backend)
    assert idx.tolist() == [[0, -1, -1], [2, 3, -1]]  # d == radius is outside
    assert count.tolist() == [1, 2]


@pytest.mark.parametrize("mode", ["first", "nearest"])
def test_fast_matches_reference(mode: str) -> None:
    coord, offset = clustered_events([400, 0, 3, 250], seed=5)
    q_rows = torch.cat([torch.arange(0, 400, 9), torch.arange(400, 403), torch.arange(403, 653, 5)])
    query = coord[q_rows]
    q_off = torch.tensor([45, 45, 48, 98])
    ref = ball_query(query, q_off, coord, offset, 3.0, 24, mode, backend="torch")
    fast = ball_query(query, q_off, coord, offset, 3.0, 24, mode, backend="numba")
    assert torch.equal(ref[0], fast[0]) and torch.equal(ref[1], fast[1])
    assert int(ref[1].max()) == 24  # capped
    assert bool((ref[1][45:48] >= 1).all())  # each query of the 3-point event finds itself


def test_lattice_ties_agree() -> None:
    gen = torch.Generator().manual_seed(0)
    coord = torch.randint(0, 8, (600, 3), generator=gen).float()  # many equal distances
    off = torch.tensor([600])
    for mode in ("first", "nearest"):
        ref = ball_query(coord, off, coord, off, 2.0, 20, mode, backend="torch")
        fast = ball_query(coord, off, coord, off, 2.0, 20, mode, backend="numba")
        assert torch.equal(ref[0], fast[0])


def test_batch_independence() -> None:
    coord, offset = clustered_events([100, 150], seed=6)
    idx_b, cnt_b = ball_query(coord, offset, coord, offset, 4.0, 16)
    idx_a, cnt_a = ball_query(
        coord[100:], torch.tensor([150]), coord[100:], torch.tensor([150]), 4.0, 16
    )
    assert torch.equal(cnt_b[100:], cnt_a)
    assert torch.equal(idx_b[100:], torch.where(idx_a >= 0, idx_a + 100, idx_a))


def test_bad_input_is_reported() -> None:
    coord, offset = clustered_events([5])
    with pytest.raises(ValueError, match="mode"):
        ball_query(coord, offset, coord, offset, 1.0, 4, mode="all")
    with pytest.raises(ValueError, match="events"):
        ball_query(coord, offset, coord, torch.tensor([2, 5]), 1.0, 4)
