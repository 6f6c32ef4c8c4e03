from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events
from nufm.geometry.grid import grid_pool, grid_sample, voxelize


def test_voxelize_uses_per_event_minimum() -> None:
    coord = torch.tensor([[1.0, 2.0, 3.0], [2.9, 2.0, 5.1], [10.0, 10.0, 10.0], [11.0, 12.5, 10.0]])
    g = voxelize(coord, torch.tensor([2, 4]), 1.0)
    assert g.tolist() == [[0, 0, 0], [1, 0, 2], [0, 0, 0], [1, 2, 0]]


def _naive_cells(grid_coord: torch.Tensor, counts: list[int]) -> list[tuple[int, ...]]:
    cells, start, rows = [], 0, grid_coord.tolist()
    for b, n in enumerate(counts):
        cells += sorted({(b, *rows[i]) for i in range(start, start + n)})
        start += n
    return cells


def test_grid_sample_matches_naive() -> None:
    counts = [200, 0, 150]
    coord, offset = clustered_events(counts, seed=12)
    for reduce in ("first", "mean"):
        res = grid_sample(coord, offset, 2.0, reduce)
        g = voxelize(coord, offset, 2.0)
        batch = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
        cells = _naive_cells(g, counts)
        got = [
            (b, *c) for b, c in zip(batch[res.idx].tolist(), res.grid_coord.tolist(), strict=False)
        ]
        assert got == cells  # sorted by (event, x, y, z), events contiguous
        assert torch.equal(res.grid_coord[res.inverse], g)
        assert (
            res.new_offset.tolist()
            == torch.cumsum(torch.bincount(batch[res.idx], minlength=3), 0).tolist()
        )
        for m in range(0, len(cells), 17):
            members = torch.nonzero(res.inverse == m).flatten()
            assert int(res.idx[m]) == int(members.min())
            expect = coord[members].mean(0) if reduce == "mean" else coord[members.min()]
            torch.testing.assert_close(res.coord[m], expect)


def test_grid_pool_matches_naive_and_backprops() -> None:
    counts = [120, 90]
    coord, offset = clustered_events(counts, seed=13)
    g = voxelize(coord, offset, 0.5)
    feat = torch.randn(210, 4, requires_grad=True)
    res = grid_pool(feat, g, offset, 2, "max", coord=coord)
    assert torch.equal(res.grid_coord[res.cluster], torch.div(g, 2, rounding_mode="floor"))
    for m in range(0, res.feat.shape[0], 5):
        members = res.cluster == m
        torch.testing.assert_close(res.feat[m], feat[members].max(0).values)
        torch.testing.assert_close(res.coord[m], coord[members].mean(0))
    res.feat.sum().backward()
    assert feat.grad is not None and int((feat.grad != 0).any(1).sum()) >= res.feat.shape[0]
    mean = grid_pool(feat.detach(), g, offset, 2, "mean").feat
    torch.testing.assert_close(mean[0], feat.detach()[res.cluster == 0].mean(0))


def test_grid_pool_batch_independence() -> None:
    coord, offset = clustered_events([60, 70], seed=14)
    g = voxelize(coord, offset, 0.5)
    feat = torch.randn(130, 3)
    both = grid_pool(feat, g, offset, 4, "max", coord=coord)
    alone = grid_pool(feat[60:], g[60:], torch.tensor([70]), 4, "max", coord=coord[60:])
    m0 = int(both.new_offset[0])
    torch.testing.assert_close(both.feat[m0:], alone.feat)
    assert torch.equal(both.cluster[60:] - m0, alone.cluster)


def test_bad_input_is_reported() -> None:
    coord, offset = clustered_events([10])
    with pytest.raises(ValueError, match="grid_size"):
        voxelize(coord, offset, 0.0)
    with pytest.raises(ValueError, match="reduce_feat"):
        grid_pool(coord, voxelize(coord, offset, 1.0), offset, 2, "median")
