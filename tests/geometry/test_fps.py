from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events
from nufm.geometry.fps import farthest_point_sampling, group_fps


def test_hand_computed_line() -> None:
    coord = torch.zeros(11, 3)
    coord[:, 0] = torch.arange(11.0)
    offset = torch.tensor([11])
    for backend in ("torch", "numba"):
        idx, new_offset = farthest_point_sampling(coord, offset, 4, backend=backend)
        # 0 -> 10 (farthest) -> 5 -> tie {2, 3, 7, 8} at distance 2: lowest row wins
        assert idx.tolist() == [0, 10, 5, 2]
        assert new_offset.tolist() == [4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_matches_reference_packed(dtype: torch.dtype) -> None:
    coord, offset = clustered_events([300, 0, 5, 450, 1], seed=1)
    coord = coord.to(dtype)
    n_samples = torch.tensor([64, 3, 10, 100, 2])
    start = torch.tensor([17, 0, 4, 449, 0])
    ref = farthest_point_sampling(coord, offset, n_samples, start=start, backend="torch")
    fast = farthest_point_sampling(coord, offset, n_samples, start=start, backend="numba")
    assert torch.equal(ref[0], fast[0]) and torch.equal(ref[1], fast[1])
    assert ref[1].tolist() == [64, 64, 69, 169, 170]  # min(n_samples, n_i)
    assert ref[0][:64][0] == 17 and ref[0][69] == 305 + 449


def test_events_smaller_than_request_return_every_point() -> None:
    coord, offset = clustered_events([3, 7], seed=2)
    for backend in ("torch", "numba"):
        idx, new_offset = farthest_point_sampling(coord, offset, 50, backend=backend)
        assert new_offset.tolist() == [3, 10]
        assert sorted(idx[:3].tolist()) == [0, 1, 2]
        assert sorted(idx[3:].tolist()) == list(range(3, 10))


def test_duplicate_points_never_resampled() -> None:
    coord = torch.zeros(6, 3)
    coord[3:, 0] = 1.0
    for backend in ("torch", "numba"):
        idx, _ = farthest_point_sampling(coord, torch.tensor([6]), 6, backend=backend)
        assert sorted(idx.tolist()) == list(range(6))


def test_batch_independence() -> None:
    coord, offset = clustered_events([120, 80, 200], seed=3)
    idx_b, _off_b = farthest_point_sampling(coord, offset, 32)
    alone, _ = farthest_point_sampling(coord[120:200], torch.tensor([80]), 32)
    assert torch.equal(idx_b[32:64], alone + 120)


def test_random_start_is_reproducible() -> None:
    coord, offset = clustered_events([50, 60], seed=4)
    a, _ = farthest_point_sampling(
        coord, offset, 8, start="random", generator=torch.Generator().manual_seed(7)
    )
    b, _ = farthest_point_sampling(
        coord,
        offset,
        8,
        start="random",
        generator=torch.Generator().manual_seed(7),
        backend="torch",
    )
    assert torch.equal(a, b)
    assert 0 <= int(a[0]) < 50 and 50 <= int(a[8]) < 110


def test_bad_input_is_reported() -> None:
    coord, offset = clustered_events([5, 5])
    with pytest.raises(ValueError, match="start"):
        farthest_point_sampling(coord, offset, 2, start=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="offset ends"):
        farthest_point_sampling(coord, torch.tensor([5, 9]), 2)
    with pytest.raises(ValueError, match="backend"):
        farthest_point_sampling(coord, offset, 2, backend="cuda")
    with pytest.raises(ValueError, match="finite"):
        farthest_point_sampling(coord * float("nan"), offset, 2)


def test_fast_matches_reference_on_tie_rich_lattice() -> None:
    gen = torch.Generator().manual_seed(5)
    coord = torch.randint(0, 7, (900, 3), generator=gen).float()  # many equal distances
    offset = torch.tensor([400, 401, 900])
    start = torch.tensor([3, 0, 250])
    ref = farthest_point_sampling(coord, offset, 300, start=start, backend="torch")
    fast = farthest_point_sampling(coord, offset, 300, start=start, backend="numba")
    assert torch.equal(ref[0], fast[0])
    assert ref[0][:300].unique().numel() == 300  # distinct rows despite duplicate points


@pytest.mark.parametrize("grid", [False, True])
def test_group_fps_numba_equals_torch_reference(grid: bool) -> None:
    """Per-group FPS: the numba loop picks exactly the reference's slots (ties on a voxel grid,
    duplicate points, groups at, below and above k, empty slots after the valid ones)."""
    gen = torch.Generator().manual_seed(7)
    Q, Ku, k = 400, 64, 16
    pts = torch.randn(Q, Ku, 3, generator=gen)
    if grid:
        pts = torch.round(pts * 3) / 3  # many equal distances and duplicate points
    n_valid = torch.randint(0, Ku + 1, (Q,), generator=gen)
    n_valid[:3] = torch.tensor([k, k + 1, 0])
    valid = torch.arange(Ku)[None] < n_valid[:, None]
    pts = torch.where(valid[..., None], pts, torch.full_like(pts, 99.0))
    want = group_fps(pts, valid, k, backend="torch")
    got = group_fps(pts, valid, k, backend="numba")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    busy = n_valid > k
    assert bool((got[busy] < n_valid[busy, None]).all())  # only valid slots picked
    assert all(len(set(row.tolist())) == k for row in got[busy])  # distinct
    assert got[0].tolist() == list(range(k))  # a group of exactly k is kept as is


def test_group_fps_rejects_bad_shapes() -> None:
    pts = torch.zeros(4, 8, 3)
    with pytest.raises(ValueError, match="Q, Ku, 3"):
        group_fps(pts[..., :2], torch.ones(4, 8, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="k must be"):
        group_fps(pts, torch.ones(4, 8, dtype=torch.bool), 9)
