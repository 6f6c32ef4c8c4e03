from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events, line
from nufm.geometry.cnms import centrality_nms

BACKENDS = ("torch", "numba")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed(backend: str) -> None:
    centers = line([0.0, 0.1, 0.2, 5.0])
    off = torch.tensor([4])
    keep, new_off, dropped = centrality_nms(centers, off, 1.0, 8, None, backend)
    assert keep.tolist() == [0, 3] and new_off.tolist() == [2] and dropped.tolist() == [0]
    # K = 2 caps the neighbour lists: row 0 suppresses only rows 0 and 1, so row 2 survives
    keep, _, _ = centrality_nms(centers, off, 1.0, 2, None, backend)
    assert keep.tolist() == [0, 2, 3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_kept_centers_are_radius_apart_and_cover(backend: str) -> None:
    coord, offset = clustered_events([300, 200], seed=9)
    radius = 3.0
    keep, new_off, _ = centrality_nms(coord, offset, radius, 512, None, backend)
    starts = [0, 300]
    for b, (lo, hi) in enumerate([(0, int(new_off[0])), (int(new_off[0]), int(new_off[1]))]):
        kept = coord[keep[lo:hi]]
        pts = coord[starts[b] : starts[b] + [300, 200][b]]
        d_kk = torch.cdist(kept, kept) + torch.eye(len(kept)) * 1e9
        assert float(d_kk.min()) >= radius  # uncapped K: no kept center suppressed another
        assert float(torch.cdist(pts, kept).min(dim=1).values.max()) < radius  # full coverage


def test_fast_matches_reference_with_cap() -> None:
    coord, offset = clustered_events([400, 0, 1, 300], seed=10)
    ref = centrality_nms(coord, offset, 2.0, 16, 20, backend="torch")
    fast = centrality_nms(coord, offset, 2.0, 16, 20, backend="numba")
    for a, b in zip(ref, fast, strict=False):
        assert torch.equal(a, b)
    uncapped, off_u, _ = centrality_nms(coord, offset, 2.0, 16, None)
    n_kept = torch.diff(off_u, prepend=torch.zeros(1, dtype=torch.int64))
    assert torch.equal(ref[2], (n_kept - 20).clamp(min=0))
    assert ref[1].tolist() == torch.cumsum(torch.minimum(n_kept, torch.tensor(20)), 0).tolist()
    assert set(ref[0].tolist()) <= set(uncapped.tolist())


def test_dense_event_does_not_crash() -> None:
    coord = torch.rand(2000, 3)  # every point within radius of every other
    keep, new_off, dropped = centrality_nms(coord, torch.tensor([2000]), 10.0, 32, 4)
    assert new_off.tolist() == [4] and int(dropped[0]) >= 0 and keep.unique().numel() == 4


def test_batch_independence() -> None:
    coord, offset = clustered_events([150, 250], seed=11)
    keep_b, off_b, _ = centrality_nms(coord, offset, 2.5, 32, 30)
    keep_a, _, _ = centrality_nms(coord[150:], torch.tensor([250]), 2.5, 32, 30)
    assert torch.equal(keep_b[int(off_b[0]) :], keep_a + 150)
