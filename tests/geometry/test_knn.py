from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events
from nufm.geometry.knn import knn


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_hand_computed(backend: str) -> None:
    support = torch.tensor([[0.0, 0, 0], [3, 0, 0], [1, 0, 0], [0, 0, 7], [1, 1, 1]])
    query = torch.tensor([[0.0, 0, 0], [0, 0, 0]])
    idx, dist = knn(query, torch.tensor([1, 2]), support, torch.tensor([3, 5]), 3, backend)
    assert idx.tolist() == [[0, 2, 1], [4, 3, -1]]
    torch.testing.assert_close(dist, torch.tensor([[0.0, 1, 3], [3**0.5, 7, float("inf")]]))


def test_fast_matches_reference() -> None:
    coord, offset = clustered_events([300, 0, 4, 200], seed=7)
    query = coord[::3].contiguous()
    q_off = torch.tensor([100, 100, 102, 168])
    ref = knn(query, q_off, coord, offset, 8, backend="torch")
    for workers in (1, 2):
        fast = knn(query, q_off, coord, offset, 8, backend="scipy", workers=workers)
        assert torch.equal(ref[0], fast[0])
        torch.testing.assert_close(ref[1], fast[1])
    assert bool((ref[0][100:102, 4:] == -1).all())  # 4-point event


def test_bad_workers_are_refused() -> None:
    coord, offset = clustered_events([10], seed=9)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        knn(coord, offset, coord, offset, 3, workers=0)


def test_batch_independence() -> None:
    coord, offset = clustered_events([80, 90], seed=8)
    idx_b, d_b = knn(coord, offset, coord, offset, 5)
    idx_a, d_a = knn(coord[80:], torch.tensor([90]), coord[80:], torch.tensor([90]), 5)
    assert torch.equal(idx_b[80:], idx_a + 80)
    torch.testing.assert_close(d_b[80:], d_a)
