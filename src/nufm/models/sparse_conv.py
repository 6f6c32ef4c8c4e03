"""Submanifold sparse 3x3x3 convolution in pure PyTorch (no spconv), for the PTv3 conditional
positional encoding (PTv3 arXiv:2312.10035; submanifold sparse conv arXiv:1711.10275).

Owns :func:`neighbour_map`, :func:`submanifold_conv` and :class:`SubMConv3d`. Occupied voxels
of every event are hashed to one int64 key ``((b * S + x) * S + y) * S + z``; the keys are
sorted once and each of the 27 neighbour keys is looked up with ``searchsorted`` (O(N log N),
no dense grid). The map is built once per resolution stage and shared by every block of that
stage. Output rows exist only at occupied voxels (submanifold rule), so events never interact
and cost is linear in N up to the sort.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nufm.geometry.offsets import offset_to_batch_index

KERNEL_OFFSETS = torch.tensor(
    [[dx, dy, dz] for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)],
    dtype=torch.int64,
)
"""(27, 3) neighbour offsets; tap k = (dx+1)*9 + (dy+1)*3 + (dz+1), tap 13 is the centre."""


def neighbour_map(grid_coord: Tensor, offset: Tensor) -> Tensor:
    """Rows of the 27 lattice neighbours of every occupied voxel.

    Args:
        grid_coord: (N, 3) int64 non-negative lattice coordinates.
        offset: (B,) int64 exclusive event ends.

    Returns:
        (N, 27) int64 global row of the neighbour at ``KERNEL_OFFSETS[k]`` in the same event,
        -1 where that voxel is empty. If several rows share a voxel, the lowest row is returned
        (tap 13, the centre, is always the row itself).
    """
    N = grid_coord.shape[0]
    dev = grid_coord.device
    if N == 0:
        return torch.empty(0, 27, dtype=torch.int64, device=dev)
    if bool((grid_coord < 0).any()):
        raise ValueError("neighbour_map: grid_coord must be non-negative")
    batch = offset_to_batch_index(offset)  # (N,)
    S = int(grid_coord.max()) + 3  # shifted coords live in [0, max + 2]
    if math.log2(S) * 3 + math.log2(max(int(offset.shape[0]), 1) + 1) > 62:
        raise ValueError(f"neighbour_map: lattice extent {S} too large to hash in int64")
    g = grid_coord.to(torch.int64) + 1  # (N, 3)

    def key(c: Tensor, b: Tensor) -> Tensor:
        return ((b * S + c[..., 0]) * S + c[..., 1]) * S + c[..., 2]

    keys = key(g, batch)  # (N,)
    sorted_keys, perm = torch.sort(keys, stable=True)  # duplicates: lowest row wins
    q = key(g[:, None, :] + KERNEL_OFFSETS.to(dev), batch[:, None])  # (N, 27)
    pos = torch.searchsorted(sorted_keys, q.reshape(-1)).clamp_(max=N - 1).reshape(N, 27)
    found = sorted_keys[pos] == q  # (N, 27)
    out = torch.where(found, perm[pos], torch.full_like(pos, -1))  # (N, 27)
    out[:, 13] = torch.arange(N, device=dev)  # the centre tap is always the row itself
    return out


class SubMConv3d(nn.Module):
    """Submanifold 3x3x3 convolution on packed voxels given a :func:`neighbour_map`.

    ``out[i] = bias + sum_k W[k]^T feat[nbr[i, k]]`` over occupied neighbours. Equals a dense
    ``nn.Conv3d(kernel_size=3, padding=1)`` evaluated at occupied voxels of a zero-filled grid with
    ``W[k] = conv.weight[:, :, dx+1, dy+1, dz+1].T``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(27, in_channels, out_channels))  # (27, C, C')
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(27 * in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, feat: Tensor, nbr: Tensor) -> Tensor:
        """feat (N, C), nbr (N, 27) int64 (-1 empty) -> (N, C')."""
        return submanifold_conv(feat, nbr, self.weight, self.bias)


def submanifold_conv(feat: Tensor, nbr: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``out[i] = bias + sum_k weight[k]^T feat[nbr[i, k]]`` over occupied neighbours.

    Args:
        feat: (N, C) features.
        nbr: (N, 27) int64 from :func:`neighbour_map` (-1 = empty voxel).
        weight: (27, C, C') per-tap weights (tap order of ``KERNEL_OFFSETS``).
        bias: (C',) or None.

    One gather-GEMM per tap over the rows that have that neighbour (the rulebook of sparse
    convolution libraries): cost grows with the occupied neighbour pairs, typically 2 to 8 of
    the 27 taps in LArTPC events, not with 27 N. Each output row is written once per tap, so
    the result does not depend on the thread count.
    """
    N = feat.shape[0]
    w = weight.to(feat.dtype)  # (27, C, C')
    out = feat @ w[13]  # (N, C'); the centre tap: every row is its own neighbour
    for k in range(27):
        if k == 13 or N == 0:
            continue
        rows = torch.nonzero(nbr[:, k] >= 0).squeeze(1)  # (n_k,) rows with this neighbour
        if rows.numel():
            out = out.index_add(0, rows, (feat[nbr[rows, k]] @ w[k]).to(out.dtype))  # (N, C')
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out
