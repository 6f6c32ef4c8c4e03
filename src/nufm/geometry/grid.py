"""Voxelization, grid sampling and grid pooling of packed point clouds (pure PyTorch).

Point Transformer V3 (Wu et al., arXiv:2312.10035) works on an integer lattice ``grid_coord``:
``GridSample`` keeps one point (or the mean) per occupied cell and ``GridPooling`` merges cells
``stride`` at a time between stages (features max-reduced, coordinates mean-reduced). This
module owns ``voxelize``, ``grid_sample`` and ``grid_pool``; everything runs on any device.

Conventions: ``voxelize`` subtracts the per-event minimum (so an event's lattice does not depend
on its batch mates; Pointcept subtracts the batch minimum). Output cells are sorted by
(event, x, y, z): each event's rows stay contiguous and in event order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from nufm.geometry._backend import check_packed
from nufm.geometry.offsets import offset_to_batch_index

REDUCE_FEAT = ("max", "mean", "sum", "min")


class GridSampleResult(NamedTuple):
    """One row per occupied (event, cell)."""

    idx: Tensor
    """(M,) int64 first input row (lowest index) in each cell."""
    coord: Tensor
    """(M, 3) float ``coord[idx]`` (reduce="first") or the cell's mean position ("mean")."""
    grid_coord: Tensor
    """(M, 3) int64 cell of each output row."""
    inverse: Tensor
    """(N,) int64 output row of every input row."""
    new_offset: Tensor
    """(B,) int64 exclusive ends of the output events."""


class GridPoolResult(NamedTuple):
    """One row per occupied coarse (event, cell)."""

    feat: Tensor
    """(M, C) reduced features."""
    grid_coord: Tensor
    """(M, 3) int64 ``grid_coord // stride``."""
    coord: Tensor | None
    """(M, 3) mean position of the merged rows, or None when no coord was given."""
    cluster: Tensor
    """(N,) int64 parent (output row) of every input row."""
    new_offset: Tensor
    """(B,) int64 exclusive ends of the output events."""


def voxelize(coord: Tensor, offset: Tensor, grid_size: float) -> Tensor:
    """Integer cell of every point: ``floor((coord - event min) / grid_size)``.

    Args:
        coord: (N, 3) float positions.
        offset: (B,) int64 exclusive ends of the events.
        grid_size: cell side in the coordinate unit (> 0).

    Returns:
        grid_coord (N, 3) int64, >= 0, with each event's minimum corner at 0.
    """
    check_packed(coord, offset, "voxelize")
    if not grid_size > 0:
        raise ValueError(f"voxelize: grid_size must be > 0, got {grid_size}")
    batch = offset_to_batch_index(offset)  # (N,)
    lo = coord.new_full((offset.numel(), 3), float("inf"))
    lo = lo.scatter_reduce(0, batch[:, None].expand(-1, 3), coord, "amin")  # (B, 3)
    return torch.floor((coord - lo[batch]) / grid_size).long()


def _cell_key(batch: Tensor, grid_coord: Tensor, op: str) -> Tensor:
    """(N,) int64 key ordering cells by (event, x, y, z); raises if it cannot fit 63 bits."""
    if grid_coord.numel() == 0:
        return batch.clone()
    if int(grid_coord.min()) < 0:
        raise ValueError(f"{op}: grid_coord must be >= 0, got min {int(grid_coord.min())}")
    span = (grid_coord.max(dim=0).values + 1).tolist()  # per-axis extent
    n_events = int(batch.max()) + 1
    if n_events * span[0] * span[1] * span[2] >= 1 << 62:
        raise ValueError(
            f"{op}: lattice {span} x {n_events} events does not fit a 62-bit key; "
            "use a larger grid size"
        )
    return ((batch * span[0] + grid_coord[:, 0]) * span[1] + grid_coord[:, 1]) * span[2] + (
        grid_coord[:, 2]
    )


def _unique_cells(batch: Tensor, grid_coord: Tensor, n_events: int, op: str):
    """Sorted unique (event, cell): inverse (N,), first row (M,), cell event (M,), offset (B,)."""
    key = _cell_key(batch, grid_coord, op)  # (N,)
    _, inverse = torch.unique(key, sorted=True, return_inverse=True)  # (N,)
    m = int(inverse.max()) + 1 if inverse.numel() else 0
    rows = torch.arange(key.numel(), device=key.device)
    first = torch.full((m,), key.numel(), dtype=torch.int64, device=key.device)
    first = first.scatter_reduce(0, inverse, rows, "amin")  # (M,)
    cell_batch = batch[first]  # (M,)
    new_offset = torch.cumsum(torch.bincount(cell_batch, minlength=n_events), 0)  # (B,)
    return inverse, first, new_offset


def _segment_mean(x: Tensor, inverse: Tensor, m: int) -> Tensor:
    """(N, C) rows -> (M, C) mean per segment."""
    out = x.new_zeros((m, x.shape[1]))
    return out.scatter_reduce(0, inverse[:, None].expand_as(x), x, "mean", include_self=False)


def grid_sample(
    coord: Tensor, offset: Tensor, grid_size: float, reduce: str = "first"
) -> GridSampleResult:
    """Keep one row per occupied cell of side ``grid_size`` (per-event lattice, see voxelize).

    Args:
        coord: (N, 3) float positions.
        offset: (B,) int64 exclusive ends of the events.
        grid_size: cell side in the coordinate unit.
        reduce: "first" (the lowest input row of the cell) or "mean" (mean position).

    Returns:
        ``GridSampleResult`` sorted by (event, x, y, z).
    """
    if reduce not in ("first", "mean"):
        raise ValueError(f"grid_sample: unknown reduce {reduce!r}; expected 'first' or 'mean'")
    grid_coord = voxelize(coord, offset, grid_size)  # (N, 3)
    batch = offset_to_batch_index(offset)
    inverse, first, new_offset = _unique_cells(batch, grid_coord, offset.numel(), "grid_sample")
    match reduce:
        case "first":
            out_coord = coord[first]
        case _:
            out_coord = _segment_mean(coord, inverse, first.numel())
    return GridSampleResult(first, out_coord, grid_coord[first], inverse, new_offset)


def grid_pool(
    feat: Tensor,
    grid_coord: Tensor,
    offset: Tensor,
    stride: int,
    reduce_feat: str = "max",
    coord: Tensor | None = None,
) -> GridPoolResult:
    """Merge the rows that share a cell of ``grid_coord // stride`` (PTv3 GridPooling).

    Args:
        feat: (N, C) features (differentiable).
        grid_coord: (N, 3) int64 non-negative lattice coordinates.
        offset: (B,) int64 exclusive ends of the events.
        stride: coarsening factor (>= 1).
        reduce_feat: one of "max", "mean", "sum", "min".
        coord: optional (N, 3) positions, mean-reduced into the coarse rows.

    Returns:
        ``GridPoolResult`` sorted by (event, x, y, z) of the coarse cells.
    """
    if stride < 1:
        raise ValueError(f"grid_pool: stride must be >= 1, got {stride}")
    if reduce_feat not in REDUCE_FEAT:
        raise ValueError(f"grid_pool: unknown reduce_feat {reduce_feat!r}; expected {REDUCE_FEAT}")
    if feat.shape[0] != grid_coord.shape[0]:
        raise ValueError(
            f"grid_pool: feat has {feat.shape[0]} rows, grid_coord {grid_coord.shape[0]}"
        )
    batch = offset_to_batch_index(offset)
    if batch.numel() != feat.shape[0]:
        raise ValueError(
            f"grid_pool: offset ends at {batch.numel()} but feat has {feat.shape[0]} rows"
        )
    coarse = torch.div(grid_coord.long(), stride, rounding_mode="floor")  # (N, 3)
    inverse, first, new_offset = _unique_cells(batch, coarse, offset.numel(), "grid_pool")
    m = first.numel()
    reduce = {"max": "amax", "min": "amin", "mean": "mean", "sum": "sum"}[reduce_feat]
    out = feat.new_zeros((m, feat.shape[1]))  # (M, C)
    out = out.scatter_reduce(
        0, inverse[:, None].expand_as(feat), feat, reduce, include_self=False
    )  # (M, C)
    pooled_coord = _segment_mean(coord, inverse, m) if coord is not None else None
    return GridPoolResult(out, coarse[first], pooled_coord, inverse, new_offset)
