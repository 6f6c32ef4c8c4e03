"""Space-filling-curve serialization and PTv3 patch padding for packed point clouds.

Point Transformer V3 (Wu et al., arXiv:2312.10035) orders the points of each event along
space-filling curves of their integer ``grid_coord`` and attends inside fixed-size patches of
that order. This module owns, in a Pointcept/PTv3-compatible layout:

* ``encode`` / ``decode``: Z-order (Morton) and Hilbert codes, with "-trans" variants (x and y
  swapped) and the batch prefix ``batch << 3*depth`` so codes never interleave across events.
  Z-order: bit i of x goes to key bit 3i+2, of y to 3i+1, of z to 3i. Hilbert: Skilling's
  transpose algorithm (J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707, 381
  (2004)), re-implemented from the paper, vectorized over points.
* ``serialization_order``: per-order ``order = argsort(code)`` and its inverse permutation.
* ``patch_padding``: PTv3's padding of each event to whole patches (duplicates of the previous
  patch fill the last partial one) and the ``cu_seqlens`` of the patches.
* ``adaptive_depth``: ``bit_length(max grid_coord + 1)``, the depth used when none is given.
* ``radial_cells`` / ``radial_cell_order``: FM4NPP's collider-TPC order (arXiv:2508.14087,
  section 3): hits sorted by the radius R from the beam line (the z axis), then stably by a
  coarse (eta, phi, R) cell, swept eta first, then phi, then R, so R order is kept inside a
  cell. With R = sqrt(x^2 + y^2), eta = asinh(z / R), phi = atan2(y, x):

      cell = (bin_eta * n_phi + bin_phi) * n_R + bin_R

  uniform bins over ``eta_range``, [-pi, pi] and ``radius_range``; values outside a range clamp
  into its edge bins.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts

ORDERS: tuple[str, ...] = ("z", "z-trans", "hilbert", "hilbert-trans")
"""Serialization orders understood by ``encode``."""

MAX_DEPTH = 21
"""Largest supported bits per axis (3 * 21 = 63 bits of code)."""

# Magic numbers spreading the low 21 bits of an integer to every third bit ("part1by2").
_SPREAD = (
    (32, 0x1F00000000FFFF),
    (16, 0x1F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
)


def _spread3(v: Tensor) -> Tensor:
    """Move bit i of ``v`` (N,) int64 to bit 3i (low 21 bits used)."""
    v = v & 0x1FFFFF
    for shift, magic in _SPREAD:
        v = (v | (v << shift)) & magic
    return v


def _compact3(v: Tensor) -> Tensor:
    """Inverse of ``_spread3``: gather bits 3i of ``v`` (N,) int64 into bit i."""
    v = v & 0x1249249249249249
    masks = [magic for _, magic in reversed(_SPREAD[:-1])] + [0x1FFFFF]
    for (shift, _), magic in zip(reversed(_SPREAD), masks, strict=False):
        v = (v | (v >> shift)) & magic
    return v


def _interleave(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Bit i of a -> 3i+2, of b -> 3i+1, of c -> 3i. Inputs (N,) int64, output (N,) int64."""
    return (_spread3(a) << 2) | (_spread3(b) << 1) | _spread3(c)


def _deinterleave(code: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of ``_interleave``."""
    return _compact3(code >> 2), _compact3(code >> 1), _compact3(code)


def _hilbert_axes_to_transpose(x: list[Tensor], depth: int) -> list[Tensor]:
    """Skilling's AxestoTranspose on three (N,) int64 axes; returns the transposed index."""
    x = [v.clone() for v in x]
    q = 1 << (depth - 1)
    while q > 1:  # undo excess work, most significant level first
        p = q - 1
        for i in range(3):
            bit_on = (x[i] & q) != 0  # (N,) True = invert the low bits of axis 0
            t = (x[0] ^ x[i]) & p
            t = torch.where(bit_on, torch.zeros_like(t), t)  # exchange where the bit is off
            x[0] = torch.where(bit_on, x[0] ^ p, x[0] ^ t)
            if i > 0:
                x[i] = x[i] ^ t
        q >>= 1
    x[1] = x[1] ^ x[0]  # Gray encode
    x[2] = x[2] ^ x[1]
    t = torch.zeros_like(x[0])
    q = 1 << (depth - 1)
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return [v ^ t for v in x]


def _hilbert_transpose_to_axes(x: list[Tensor], depth: int) -> list[Tensor]:
    """Skilling's TransposetoAxes, the inverse of ``_hilbert_axes_to_transpose``."""
    x = [v.clone() for v in x]
    t = x[2] >> 1  # Gray decode by H ^ (H / 2)
    x[2] = x[2] ^ x[1]
    x[1] = x[1] ^ x[0]
    x[0] = x[0] ^ t
    q = 2
    while q != (1 << depth):  # undo excess work, least significant level first
        p = q - 1
        for i in (2, 1, 0):
            bit_on = (x[i] & q) != 0
            t = (x[0] ^ x[i]) & p
            t = torch.where(bit_on, torch.zeros_like(t), t)
            x[0] = torch.where(bit_on, x[0] ^ p, x[0] ^ t)
            if i > 0:
                x[i] = x[i] ^ t
        q <<= 1
    return x


def _check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"serialize: depth must be in [1, {MAX_DEPTH}], got {depth}")


def adaptive_depth(grid_coord: Tensor) -> int:
    """Bits per axis needed for ``grid_coord``: ``bit_length(max grid_coord + 1)``.

    Args:
        grid_coord: (N, 3) int64 non-negative lattice coordinates.

    Returns:
        Depth >= 1 (PTv3/Panda adaptive serialization depth).
    """
    if grid_coord.numel() == 0:
        return 1
    return max(1, int(grid_coord.max().item() + 1).bit_length())


def encode(
    grid_coord: Tensor, batch: Tensor | None = None, depth: int = 16, order: str = "z"
) -> Tensor:
    """Space-filling-curve code of every point, with the event index as the high bits.

    Args:
        grid_coord: (N, 3) int64 lattice coordinates in [0, 2**depth).
        batch: (N,) int64 event index of every point, or None (all event 0).
        depth: bits per axis, 1..21; the batch prefix is ``batch << 3*depth``.
        order: one of ``ORDERS``; "-trans" swaps x and y before encoding.

    Returns:
        (N,) int64 codes; sorting them keeps events contiguous and in event order.
    """
    _check_depth(depth)
    if grid_coord.ndim != 2 or grid_coord.shape[1] != 3:
        raise ValueError(
            f"serialize.encode: grid_coord must be (N, 3), got {tuple(grid_coord.shape)}"
        )
    g = grid_coord.long()
    if g.numel() and (int(g.min()) < 0 or int(g.max()) >= (1 << depth)):
        raise ValueError(
            f"serialize.encode: grid_coord outside [0, 2**{depth}); min {int(g.min())}, "
            f"max {int(g.max())} (use adaptive_depth or a larger depth)"
        )
    x, y, z = g[:, 0], g[:, 1], g[:, 2]
    match order:
        case "z":
            code = _interleave(x, y, z)
        case "z-trans":
            code = _interleave(y, x, z)
        case "hilbert":
            code = _interleave(*_hilbert_axes_to_transpose([x, y, z], depth))
        case "hilbert-trans":
            code = _interleave(*_hilbert_axes_to_transpose([y, x, z], depth))
        case _:
            raise ValueError(f"serialize.encode: unknown order {order!r}; expected one of {ORDERS}")
    if batch is not None:
        b = batch.long()
        if b.numel():
            b_max = int(b.max())
            if 3 * depth + b_max.bit_length() > 63:
                raise ValueError(
                    f"serialize.encode: 3*depth ({3 * depth}) + bit_length(batch {b_max}) > 63"
                )
        code = code | (b << (3 * depth))
    return code


def decode(code: Tensor, depth: int = 16, order: str = "z") -> tuple[Tensor, Tensor]:
    """Inverse of ``encode``.

    Args:
        code: (N,) int64 codes produced by ``encode`` with the same depth and order.
        depth: bits per axis used at encoding.
        order: one of ``ORDERS``.

    Returns:
        grid_coord (N, 3) int64 and batch (N,) int64.
    """
    _check_depth(depth)
    batch = code >> (3 * depth)
    key = code & ((1 << (3 * depth)) - 1)
    a, b, c = _deinterleave(key)
    match order:
        case "z":
            x, y, z = a, b, c
        case "z-trans":
            y, x, z = a, b, c
        case "hilbert":
            x, y, z = _hilbert_transpose_to_axes([a, b, c], depth)
        case "hilbert-trans":
            y, x, z = _hilbert_transpose_to_axes([a, b, c], depth)
        case _:
            raise ValueError(f"serialize.decode: unknown order {order!r}; expected one of {ORDERS}")
    return torch.stack([x, y, z], dim=1), batch


def serialization_order(
    grid_coord: Tensor,
    offset: Tensor,
    depth: int | None = None,
    orders: tuple[str, ...] = ("z",),
) -> tuple[Tensor, Tensor]:
    """Permutations that sort a packed batch along each curve, events kept contiguous.

    Args:
        grid_coord: (N, 3) int64 lattice coordinates.
        offset: (B,) int64 exclusive ends of the events.
        depth: bits per axis; None = ``adaptive_depth(grid_coord)``.
        orders: k names from ``ORDERS``.

    Returns:
        order (k, N) int64 with ``grid_coord[order[j]]`` in curve j's order, and
        inverse (k, N) int64 with ``order[j][inverse[j]] == arange(N)``.
    """
    depth = adaptive_depth(grid_coord) if depth is None else depth
    batch = offset_to_batch_index(offset)  # (N,)
    n = grid_coord.shape[0]
    if batch.shape[0] != n:
        raise ValueError(f"serialization_order: offset ends at {batch.shape[0]} but N = {n}")
    codes = torch.stack([encode(grid_coord, batch, depth, o) for o in orders])  # (k, N)
    return sort_codes(codes)


def sort_codes(codes: Tensor) -> tuple[Tensor, Tensor]:
    """(k, N) int64 curve codes -> order (k, N) sorting each row (stable) and its inverse
    (``order[j][inverse[j]] == arange(N)``)."""
    order = torch.argsort(codes, dim=1, stable=True)  # (k, N)
    arange = torch.arange(codes.shape[1], device=codes.device).expand_as(order)
    inverse = torch.zeros_like(order).scatter_(1, order, arange)  # (k, N)
    return order, inverse


def _uniform_bin(v: Tensor, value_range: tuple[float, float], n: int) -> Tensor:
    """(N,) values -> (N,) int64 bin of ``n`` uniform bins over ``value_range``; outside values
    (also +-inf) go to the edge bins."""
    lo, hi = value_range
    return ((v - lo) / (hi - lo) * n).clamp(0, n - 1).floor().long()


def radial_cells(
    coord: Tensor,
    bins: tuple[int, int, int],
    eta_range: tuple[float, float],
    radius_range: tuple[float, float],
) -> Tensor:
    """FM4NPP cell of every point (module docstring; the beam line is the z axis).

    Args:
        coord: (N, 3) float positions, the z axis along the beam (any length unit).
        bins: (n_eta, n_phi, n_R) cells per axis.
        eta_range: (low, high) pseudorapidity covered by the eta bins.
        radius_range: (low, high) radius R covered by the R bins, in the unit of ``coord``.

    Returns:
        (N,) int64 cell ids in [0, n_eta * n_phi * n_R), eta slowest, R fastest.
    """
    n_eta, n_phi, n_r = bins
    x, y, z = coord.float().unbind(1)  # (N,) each
    r = torch.hypot(x, y)  # (N,)
    eta = torch.asinh(z / r.clamp(min=1e-12))  # on the beam line: +-inf, clamped to an edge
    phi = torch.atan2(y, x)  # (N,) in [-pi, pi]
    b_eta = _uniform_bin(eta, eta_range, n_eta)
    b_phi = _uniform_bin(phi, (-math.pi, math.pi), n_phi)
    b_r = _uniform_bin(r, radius_range, n_r)
    return (b_eta * n_phi + b_phi) * n_r + b_r


def radial_cell_order(
    coord: Tensor,
    offset: Tensor,
    bins: tuple[int, int, int],
    eta_range: tuple[float, float],
    radius_range: tuple[float, float],
) -> Tensor:
    """FM4NPP order of a packed batch: by radius, then stably by :func:`radial_cells`.

    Events stay contiguous and in batch order, and an event's order does not depend on its
    batch mates (points of equal radius keep their row order).

    Args:
        coord: (N, 3) float positions, the z axis along the beam.
        offset: (B,) int64 exclusive ends of the events.
        bins, eta_range, radius_range: as :func:`radial_cells`.

    Returns:
        (N,) int64 rows of the batch in FM4NPP order.
    """
    batch = offset_to_batch_index(offset)  # (N,)
    if batch.shape[0] != coord.shape[0]:
        raise ValueError(
            f"radial_cell_order: offset ends at {batch.shape[0]} but N = {coord.shape[0]}"
        )
    cell = radial_cells(coord, bins, eta_range, radius_range)  # (N,)
    xy = coord[:, :2].float()  # (N, 2)
    by_radius = torch.argsort(torch.hypot(xy[:, 0], xy[:, 1]), stable=True)  # (N,)
    key = batch * (bins[0] * bins[1] * bins[2]) + cell  # (N,) event, then cell
    return by_radius[torch.argsort(key[by_radius], stable=True)]  # (N,)


class PatchPadding(NamedTuple):
    """Index maps between a packed (serialized) sequence and its patch-padded copy."""

    pad_idx: Tensor
    """(P,) int64 row of the packed sequence copied into each padded slot."""
    unpad_idx: Tensor
    """(N,) int64 padded slot holding each packed row's original (non-duplicate) copy."""
    cu_seqlens: Tensor
    """(num_patches + 1,) int32 patch starts in the padded sequence plus the total length."""


def patch_padding(offset: Tensor, patch_size: int) -> PatchPadding:
    """PTv3 patch padding (Wu et al., arXiv:2312.10035; docs/references.md).

    An event of n points with n > K is padded to ceil(n/K)*K: slots past n in the last patch take
    the rows at the same positions of the previous patch
    (``pad[end-K+r:end] = pad[end-2K+r:end-K]``, r = n % K). An event with n <= K is one patch of
    length n. Attention over ``x[pad_idx]`` with ``cu_seqlens`` and then ``out[unpad_idx]``
    returns one output per packed row.

    Args:
        offset: (B,) int64 exclusive ends of the events.
        patch_size: K >= 1.

    Returns:
        ``PatchPadding(pad_idx, unpad_idx, cu_seqlens)``.
    """
    if patch_size < 1:
        raise ValueError(f"patch_padding: patch_size must be >= 1, got {patch_size}")
    device = offset.device
    k = patch_size
    counts = offset_to_counts(offset)  # (B,)
    starts = offset_to_starts(offset)  # (B,)
    padded = torch.where(counts > k, (counts + k - 1) // k * k, counts)  # (B,)
    pad_ends = torch.cumsum(padded, 0)  # (B,)
    pad_starts = pad_ends - padded
    total = int(pad_ends[-1]) if pad_ends.numel() else 0
    slot_event = torch.repeat_interleave(torch.arange(len(counts), device=device), padded)  # (P,)
    local = torch.arange(total, device=device) - pad_starts[slot_event]  # (P,)
    src = torch.where(local < counts[slot_event], local, local - k)  # duplicates one patch back
    pad_idx = starts[slot_event] + src  # (P,)
    batch = offset_to_batch_index(offset)  # (N,)
    n = batch.shape[0]
    unpad_idx = pad_starts[batch] + torch.arange(n, device=device) - starts[batch]  # (N,)
    n_patches = (padded + k - 1) // k  # (B,) 0 for empty events
    patch_event = torch.repeat_interleave(torch.arange(len(counts), device=device), n_patches)
    first_patch = torch.cumsum(n_patches, 0) - n_patches
    local_patch = torch.arange(int(n_patches.sum()), device=device) - first_patch[patch_event]
    patch_starts = pad_starts[patch_event] + local_patch * k
    cu_seqlens = torch.cat([patch_starts, torch.tensor([total], device=device)]).to(torch.int32)
    return PatchPadding(pad_idx, unpad_idx, cu_seqlens)
