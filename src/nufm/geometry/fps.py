"""Farthest point sampling (FPS) on packed point clouds.

FPS (as used by PointNet++, Qi et al., arXiv:1706.02413, and PoLAr-MAE's oversampled seeds,
arXiv:2502.02558) greedily picks, in each event, the point farthest (squared Euclidean, in the
coordinate dtype) from those already picked. This module owns the plain-PyTorch reference
(batched over events, any device) and a numba CPU kernel that reproduces it exactly: it
visits each event's points in Z-order buckets of 64 and skips every bucket whose bounding box
is farther from the new sample than the bucket's largest current distance (bucket pruning as in
QuickFPS-style samplers); on 20k-point events it touches ~4% of the buckets per pick.

Determinism: ties go to the lowest row (``argmax`` returns the first maximum); a picked point
is never picked again, so an event's samples are distinct rows even with duplicate coordinates.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.geometry._backend import check_packed, resolve_backend, to_numpy
from nufm.geometry.offsets import offset_to_counts, offset_to_starts, pad


def _fps_torch(coord: Tensor, offset: Tensor, n_take: Tensor, start_local: Tensor) -> Tensor:
    """Reference FPS, batched over events: returns (B, M_max) local indices."""
    counts = offset_to_counts(offset)  # (B,)
    b = counts.numel()
    m_max = int(n_take.max()) if b else 0
    out = torch.zeros(b, m_max, dtype=torch.int64, device=coord.device)  # (B, M_max)
    if m_max == 0:
        return out
    padded, valid = pad(coord, offset)  # (B, N_max, 3), (B, N_max)
    x, y, z = padded[..., 0], padded[..., 1], padded[..., 2]  # (B, N_max) each
    dist = torch.full_like(x, float("inf")).masked_fill(~valid, float("-inf"))  # (B, N_max)
    rows = torch.arange(b, device=coord.device)
    cur = start_local.clone()  # (B,)
    for s in range(m_max):
        out[:, s] = cur
        c = padded[rows, cur]  # (B, 3)
        dx, dy, dz = x - c[:, 0:1], y - c[:, 1:2], z - c[:, 2:3]
        dist = torch.minimum(dist, dx * dx + dy * dy + dz * dz)
        dist[rows, cur] = -1.0  # picked: never the maximum again
        cur = dist.argmax(dim=1)
    return out


_BUCKET = 64  # points per spatial bucket of the numba kernel


@njit(cache=True)
def _fps_numba(
    coord, perm, starts, counts, n_take, start_local, out_start, out
):  # pragma: no cover
    # Points of each event are visited in ``perm`` (a space-filling-curve order) and grouped in
    # buckets of _BUCKET; a bucket whose bounding box is farther from the new sample than its
    # largest current distance cannot change and is skipped. Distances use the reference's
    # formula and dtype, and ties go to the lowest row, so the picks equal the reference's.
    for b in range(starts.shape[0]):
        n, m, s0, o = counts[b], n_take[b], starts[b], out_start[b]
        if m == 0:
            continue
        nb = (n + _BUCKET - 1) // _BUCKET
        pts = np.empty((n, 3), dtype=coord.dtype)  # coordinates in bucket order
        rows = np.empty(n, dtype=np.int64)  # local row of each bucket slot
        pos_of = np.empty(n, dtype=np.int64)  # bucket slot of each local row
        for t in range(n):
            r = perm[s0 + t] - s0
            rows[t] = r
            pos_of[r] = t
            for a in range(3):
                pts[t, a] = coord[s0 + r, a]
        box = np.empty((nb, 6), dtype=coord.dtype)
        for u in range(nb):
            for a in range(3):
                box[u, a] = pts[u * _BUCKET, a]
                box[u, 3 + a] = pts[u * _BUCKET, a]
            for t in range(u * _BUCKET, min(n, (u + 1) * _BUCKET)):
                for a in range(3):
                    box[u, a] = min(box[u, a], pts[t, a])
                    box[u, 3 + a] = max(box[u, 3 + a], pts[t, a])
        dist = np.empty(n, dtype=coord.dtype)
        dist[:] = np.inf
        bmax = np.empty(nb, dtype=coord.dtype)
        bmax[:] = np.inf
        barg = np.zeros(nb, dtype=np.int64)
        cur = start_local[b]
        for s in range(m):
            out[o + s] = s0 + cur
            dist[pos_of[cur]] = -1.0
            c = pts[pos_of[cur]]
            best = -np.inf
            best_row = 0
            for u in range(nb):
                lb = 0.0
                for a in range(3):
                    g = max(box[u, a] - c[a], c[a] - box[u, 3 + a], 0.0)
                    lb += g * g
                if lb * 0.9999 <= bmax[u]:  # the bucket may change: update it
                    hi = -np.inf
                    arg = 0
                    for t in range(u * _BUCKET, min(n, (u + 1) * _BUCKET)):
                        dx = pts[t, 0] - c[0]
                        dy = pts[t, 1] - c[1]
                        dz = pts[t, 2] - c[2]
                        d = dx * dx + dy * dy + dz * dz
                        dj = dist[t]
                        if d < dj:
                            dj = d
                            dist[t] = d
                        if dj > hi or (dj == hi and rows[t] < arg):
                            hi = dj
                            arg = rows[t]
                    bmax[u] = hi
                    barg[u] = arg
                if bmax[u] > best or (bmax[u] == best and barg[u] < best_row):
                    best = bmax[u]
                    best_row = barg[u]
            cur = best_row


def _curve_order(coord: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(N,) int64 rows sorted by event, then Z-order on a 1024^3 lattice over each event's box.

    numpy on purpose: a handful of vectorized passes, no thread pool to wake up.
    """
    from nufm.geometry.serialize import _interleave

    n = coord.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    batch = np.repeat(np.arange(counts.shape[0]), counts)  # (N,)
    nonempty = counts > 0
    starts = (np.cumsum(counts) - counts)[nonempty]
    lo = np.zeros((counts.shape[0], 3), dtype=np.float64)
    hi = np.zeros((counts.shape[0], 3), dtype=np.float64)
    lo[nonempty] = np.minimum.reduceat(coord, starts, axis=0)
    hi[nonempty] = np.maximum.reduceat(coord, starts, axis=0)
    scale = 1023.0 / np.maximum((hi - lo).max(axis=1), 1e-30)  # (B,)
    g = ((coord - lo[batch]) * scale[batch, None]).astype(np.int64).clip(0, 1023)  # (N, 3)
    code = _interleave(g[:, 0], g[:, 1], g[:, 2])
    return np.lexsort((code, batch))


def farthest_point_sampling(
    coord: Tensor,
    offset: Tensor,
    n_samples: int | Tensor,
    start: str | Tensor = "first",
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Farthest point sampling of min(n_samples, n_i) points in every event.

    Args:
        coord: (N, 3) float point positions (any length unit).
        offset: (B,) int64 exclusive ends of the events.
        n_samples: samples per event, an int or a (B,) int64 tensor.
        start: "first" (each event's first row, deterministic), "random" (uniform, drawn with
            ``generator``) or a (B,) int64 tensor of local start indices.
        generator: torch RNG for ``start="random"``.
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        idx (M,) int64 global rows of the samples, grouped by event in pick order, and
        new_offset (B,) int64 exclusive ends of each event's samples.
    """
    check_packed(coord, offset, "farthest_point_sampling")
    device = coord.device
    counts = offset_to_counts(offset)  # (B,)
    b = counts.numel()
    if isinstance(n_samples, Tensor):
        if n_samples.shape != (b,):
            raise ValueError(
                f"farthest_point_sampling: n_samples must be int or ({b},), got "
                f"{tuple(n_samples.shape)}"
            )
        n_req = n_samples.to(device=device, dtype=torch.int64)
    else:
        n_req = torch.full((b,), int(n_samples), dtype=torch.int64, device=device)
    if bool((n_req < 0).any()):
        raise ValueError("farthest_point_sampling: n_samples must be >= 0")
    n_take = torch.minimum(n_req, counts)  # (B,)
    match start:
        case "first":
            start_local = torch.zeros(b, dtype=torch.int64, device=device)
        case "random":
            u = torch.rand(b, generator=generator, device=generator.device if generator else None)
            start_local = (u.to(device) * counts).long().clamp(min=0)
            start_local = torch.minimum(start_local, (counts - 1).clamp(min=0))
        case Tensor():
            start_local = start.to(device=device, dtype=torch.int64)
            bad = (start_local < 0) | ((start_local >= counts) & (counts > 0))
            if start_local.shape != (b,) or bool(bad.any()):
                raise ValueError(
                    f"farthest_point_sampling: start must be ({b},) local indices "
                    f"in [0, n_i), got {start.tolist()}"
                )
        case _:
            raise ValueError(
                f"farthest_point_sampling: unknown start {start!r}; expected "
                "'first', 'random' or a (B,) tensor"
            )
    new_offset = torch.cumsum(n_take, 0)  # (B,)
    match resolve_backend(backend, device, "numba", "farthest_point_sampling"):
        case "torch":
            local = _fps_torch(coord, offset, n_take, start_local)  # (B, M_max)
            taken = torch.arange(local.shape[1], device=device) < n_take[:, None]  # (B, M_max)
            idx = (local + offset_to_starts(offset)[:, None])[taken]  # (M,)
        case _:
            m = int(new_offset[-1]) if b else 0
            out = np.zeros(m, dtype=np.int64)
            coord_np, counts_np = to_numpy(coord), to_numpy(counts)
            _fps_numba(
                coord_np,
                _curve_order(coord_np, counts_np),
                to_numpy(offset_to_starts(offset)),
                to_numpy(counts),
                to_numpy(n_take),
                to_numpy(start_local),
                to_numpy(new_offset - n_take),
                out,
            )
            idx = torch.from_numpy(out)
    return idx, new_offset


def _group_fps_torch(points: Tensor, point_valid: Tensor, k: int) -> Tensor:
    """Reference :func:`group_fps`, vectorized over groups (k - 1 sequential steps)."""
    Q, _Ku, _ = points.shape
    dev = points.device
    n_valid = point_valid.sum(1)  # (Q,)
    out = torch.arange(k, device=dev).expand(Q, k).clone()  # (Q, k)
    busy = torch.nonzero(n_valid > k)[:, 0]  # (Qb,) groups that need sampling
    if busy.numel() == 0:
        return out
    width = int(n_valid[busy].max())
    pts = points[busy, :width]  # (Qb, W, 3)
    Qb = busy.numel()
    rows = torch.arange(Qb, device=dev)
    sel = torch.zeros(Qb, k, dtype=torch.int64, device=dev)
    dist = torch.full((Qb, width), float("inf"), device=dev, dtype=points.dtype)
    dist = dist.masked_fill(~point_valid[busy, :width], -1.0)  # (Qb, W); -1 = never pick
    dist[:, 0] = -1.0
    last = sel[:, 0]
    for i in range(1, k):
        d = (pts - pts[rows, last][:, None]).square().sum(-1)  # (Qb, W)
        dist = torch.where(dist < 0, dist, torch.minimum(dist, d))  # chosen/invalid stay -1
        last = dist.argmax(dim=1)  # (Qb,)
        sel[:, i] = last
        dist[rows, last] = -1.0
    out[busy] = sel
    return out


@njit(cache=True)
def _group_fps_numba(points, valid, k, out):  # pragma: no cover (numba)
    # The reference's steps group by group: the same float sums ((dx^2 + dy^2) + dz^2 in the
    # points' dtype) and the first maximum on ties, so the picks are equal.
    Q, Ku, _ = points.shape
    dist = np.empty(Ku, dtype=points.dtype)
    for q in range(Q):
        n = 0
        for j in range(Ku):
            if valid[q, j]:
                n += 1
        if n <= k:
            continue
        for j in range(Ku):
            dist[j] = np.inf if valid[q, j] else -1.0
        dist[0] = -1.0
        out[q, 0] = 0
        last = 0
        for i in range(1, k):
            best = -np.inf
            arg = 0
            for j in range(Ku):
                if dist[j] >= 0:
                    dx = points[q, j, 0] - points[q, last, 0]
                    dy = points[q, j, 1] - points[q, last, 1]
                    dz = points[q, j, 2] - points[q, last, 2]
                    d = dx * dx + dy * dy + dz * dz
                    if d < dist[j]:
                        dist[j] = d
                if dist[j] > best:
                    best = dist[j]
                    arg = j
            out[q, i] = arg
            dist[arg] = -1.0
            last = arg


def group_fps(points: Tensor, point_valid: Tensor, k: int, backend: str = "auto") -> Tensor:
    """Farthest-point sampling of ``k`` slots inside each of Q small groups.

    Args:
        points: (Q, Ku, 3) float coordinates of each group's candidates.
        point_valid: (Q, Ku) bool, True = real candidate; the valid slots of a group must come
            first (ball-query order). Slot 0 seeds the sampling.
        k: samples per group (<= Ku).
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference, k - 1 batched
            steps) or "numba" (one loop per group; the same picks).

    Returns:
        (Q, k) int64 slot indices into Ku. Groups with <= k valid candidates return slots
        0..k-1 unchanged (all their valid points, then their empty slots).
    """
    if points.ndim != 3 or points.shape[2] != 3 or point_valid.shape != points.shape[:2]:
        raise ValueError(
            f"group_fps: need points (Q, Ku, 3) and point_valid (Q, Ku), got "
            f"{tuple(points.shape)} and {tuple(point_valid.shape)}"
        )
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f"group_fps: k must be in [1, {points.shape[1]}], got {k}")
    if resolve_backend(backend, points.device, "numba", "group_fps") == "torch":
        return _group_fps_torch(points, point_valid, k)
    out = np.broadcast_to(np.arange(k, dtype=np.int64), (points.shape[0], k)).copy()
    _group_fps_numba(to_numpy(points), to_numpy(point_valid), k, out)
    return torch.from_numpy(out)
