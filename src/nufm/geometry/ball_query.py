"""Fixed-radius neighbour search (ball query) between packed point clouds.

Ball query with a neighbour cap K, as in PointNet++ grouping (Qi et al., arXiv:1706.02413) and
PoLAr-MAE's tokenizer and C-NMS (arXiv:2502.02558). This module owns the plain-PyTorch reference
(chunked brute force, any device) and a numba CPU kernel (cell list of side ``radius``, cells
found by binary search on sorted cell keys) that reproduces it exactly.

Semantics: a support point is a neighbour when its squared distance (computed as
``dx*dx + dy*dy + dz*dz`` in the coordinate dtype) is strictly below ``radius**2``; only points
of the same event count. Mode "first" keeps the first K neighbours in support order
(pytorch3d semantics); mode "nearest" keeps the K nearest, sorted by distance, ties by row.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.geometry._backend import check_packed, resolve_backend, to_numpy
from nufm.geometry.offsets import offset_to_counts, offset_to_starts

MODES = ("first", "nearest")
_CHUNK_ELEMS = 1 << 22  # query x support pairs per reference chunk


def _ball_torch_event(q: Tensor, s: Tensor, r2: float, k: int, nearest: bool) -> Tensor:
    """Reference for one event: (Q_i, k) local support indices, -1 where unfilled."""
    nq, ns = q.shape[0], s.shape[0]
    out = torch.full((nq, k), -1, dtype=torch.int64, device=q.device)  # (Q_i, k)
    if nq == 0 or ns == 0:
        return out
    chunk = max(1, _CHUNK_ELEMS // ns)
    for c0 in range(0, nq, chunk):
        qc = q[c0 : c0 + chunk]  # (q, 3)
        dx = qc[:, 0:1] - s[None, :, 0]
        dy = qc[:, 1:2] - s[None, :, 1]
        dz = qc[:, 2:3] - s[None, :, 2]
        d2 = dx * dx + dy * dy + dz * dz  # (q, S_i)
        within = d2 < r2  # (q, S_i) True = neighbour
        if nearest:
            key = d2.masked_fill(~within, float("inf"))
            order = torch.sort(key, dim=1, stable=True).indices[:, :k]  # (q, min(k, S_i))
            found = torch.gather(within, 1, order)
            out[c0 : c0 + chunk, : order.shape[1]] = order.masked_fill(~found, -1)
        else:
            rank = torch.cumsum(within, dim=1)  # (q, S_i) 1-based rank among neighbours
            rows, cols = torch.nonzero(within & (rank <= k), as_tuple=True)
            out[c0 + rows, rank[rows, cols] - 1] = cols
    return out


@njit(cache=True)
def _ball_numba(
    q,
    q_starts,
    q_counts,
    s,
    s_starts,
    s_counts,
    lo,
    cell,
    r2_arr,
    dims,
    perm,
    skeys,
    k,
    nearest,
    out_idx,
    out_count,
):  # pragma: no cover
    r2 = r2_arr[0]  # radius**2 in the coordinate dtype
    buf_d = np.empty(k, dtype=q.dtype)
    buf_j = np.empty(k, dtype=np.int64)
    qc = np.empty(3, dtype=np.int64)
    for b in range(q_starts.shape[0]):
        nq, ns, q0, s0 = q_counts[b], s_counts[b], q_starts[b], s_starts[b]
        if nq == 0 or ns == 0:
            continue
        ev_keys = skeys[s0 : s0 + ns]
        nx, ny, nz = dims[b, 0], dims[b, 1], dims[b, 2]
        for i in range(nq):
            qx, qy, qz = q[q0 + i, 0], q[q0 + i, 1], q[q0 + i, 2]
            for a in range(3):
                qc[a] = np.int64(np.floor((q[q0 + i, a] - lo[b, a]) / cell))
            m = 0  # neighbours held in the sorted buffer (at most k)
            for cx in range(max(qc[0] - 1, 0), min(qc[0] + 2, nx)):
                for cy in range(max(qc[1] - 1, 0), min(qc[1] + 2, ny)):
                    for cz in range(max(qc[2] - 1, 0), min(qc[2] + 2, nz)):
                        key = (cx * ny + cy) * nz + cz
                        a0 = np.searchsorted(ev_keys, key)
                        a1 = a0
                        while a1 < ns and ev_keys[a1] == key:
                            a1 += 1
                        for t in range(a0, a1):
                            j = perm[s0 + t]
                            dx = s[s0 + j, 0] - qx
                            dy = s[s0 + j, 1] - qy
                            dz = s[s0 + j, 2] - qz
                            d = dx * dx + dy * dy + dz * dz
                            if not d < r2:
                                continue
                            # insert into the buffer sorted by row ("first") or (d, row)
                            pos = m
                            while pos > 0:
                                pd, pj = buf_d[pos - 1], buf_j[pos - 1]
                                before = (d < pd or (d == pd and j < pj)) if nearest else j < pj
                                if not before:
                                    break
                                pos -= 1
                            if pos >= k:
                                continue
                            last = min(m, k - 1)
                            for u in range(last, pos, -1):
                                buf_d[u] = buf_d[u - 1]
                                buf_j[u] = buf_j[u - 1]
                            buf_d[pos] = d
                            buf_j[pos] = j
                            if m < k:
                                m += 1
            out_count[q0 + i] = m
            for t in range(m):
                out_idx[q0 + i, t] = s0 + buf_j[t]


def _cell_index(support: np.ndarray, s_counts: np.ndarray, radius: float) -> tuple:
    """Cell list of the support points (numpy): per-event corner (B, 3), cell side, lattice
    dims (B, 3), each event's local rows stably sorted by cell key, and the sorted keys."""
    b = s_counts.shape[0]
    batch = np.repeat(np.arange(b), s_counts)  # (S,)
    nonempty = s_counts > 0
    lo = np.zeros((b, 3), dtype=np.float64)
    if support.shape[0]:
        lo[nonempty] = np.minimum.reduceat(
            support, (np.cumsum(s_counts) - s_counts)[nonempty], axis=0
        )
    cell = float(radius) * (1.0 + 1e-6)  # a margin so a neighbour is always in the 27 cells
    cells = np.floor((support - lo[batch]) / cell).astype(np.int64)  # (S, 3)
    dims = np.ones((b, 3), dtype=np.int64)
    if support.shape[0]:
        dims[nonempty] = np.maximum.reduceat(
            cells + 1, (np.cumsum(s_counts) - s_counts)[nonempty], axis=0
        )
    if bool((dims.astype(np.float64).prod(axis=1) >= 2.0**62).any()):
        raise ValueError(
            f"ball_query: radius {radius} is too small for the event extent "
            "(cell keys overflow int64)"
        )
    d = dims[batch]
    keys = (cells[:, 0] * d[:, 1] + cells[:, 1]) * d[:, 2] + cells[:, 2]  # (S,)
    order = np.lexsort((keys, batch))  # stable: by event, key, row
    perm = order - (np.cumsum(s_counts) - s_counts)[batch]  # local rows
    return lo, cell, dims, perm, np.ascontiguousarray(keys[order])


def ball_query(
    query: Tensor,
    query_offset: Tensor,
    support: Tensor,
    support_offset: Tensor,
    radius: float,
    k: int,
    mode: str = "first",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Up to k support points within ``radius`` of every query point, same event only.

    Args:
        query: (Q, 3) float query positions.
        query_offset: (B,) int64 exclusive ends of the query events.
        support: (S, 3) float support positions, same dtype and units as ``query``.
        support_offset: (B,) int64 exclusive ends of the support events.
        radius: ball radius (same unit as the coordinates); neighbours have d < radius.
        k: maximum neighbours per query (>= 1).
        mode: "first" (first k in support order) or "nearest" (k nearest, sorted by distance).
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        idx (Q, k) int64 global support rows, -1 in unfilled slots (filled slots come first),
        and count (Q,) int64 neighbours found, capped at k.
    """
    check_packed(query, query_offset, "ball_query", "query")
    check_packed(support, support_offset, "ball_query", "support")
    if query_offset.shape != support_offset.shape:
        raise ValueError(
            f"ball_query: query has {query_offset.numel()} events, support {support_offset.numel()}"
        )
    if k < 1 or not radius > 0:
        raise ValueError(f"ball_query: need k >= 1 and radius > 0, got k={k}, radius={radius}")
    if mode not in MODES:
        raise ValueError(f"ball_query: unknown mode {mode!r}; expected one of {MODES}")
    if support.dtype != query.dtype:
        support = support.to(query.dtype)
    nearest = mode == "nearest"
    q_starts, s_starts = offset_to_starts(query_offset), offset_to_starts(support_offset)
    q_counts, s_counts = offset_to_counts(query_offset), offset_to_counts(support_offset)
    match resolve_backend(backend, query.device, "numba", "ball_query"):
        case "torch":
            r2 = float(torch.tensor(radius, dtype=query.dtype) ** 2)  # in the coord dtype
            parts = []
            for q0, nq, s0, ns in zip(
                q_starts.tolist(),
                q_counts.tolist(),
                s_starts.tolist(),
                s_counts.tolist(),
                strict=False,
            ):
                local = _ball_torch_event(
                    query[q0 : q0 + nq], support[s0 : s0 + ns], r2, k, nearest
                )  # (Q_i, k)
                parts.append(torch.where(local >= 0, local + s0, local))
            idx = torch.cat(parts) if parts else query.new_zeros((0, k), dtype=torch.int64)
            count = (idx >= 0).sum(dim=1)  # (Q,)
        case _:
            r2_arr = (torch.tensor([radius], dtype=query.dtype) ** 2).numpy()
            idx_np = np.full((query.shape[0], k), -1, dtype=np.int64)
            count_np = np.zeros(query.shape[0], dtype=np.int64)
            s_np = to_numpy(support)
            lo, cell, dims, perm, skeys = _cell_index(s_np, to_numpy(s_counts), radius)
            _ball_numba(
                to_numpy(query),
                to_numpy(q_starts),
                to_numpy(q_counts),
                s_np,
                to_numpy(s_starts),
                to_numpy(s_counts),
                lo,
                cell,
                r2_arr,
                dims,
                perm,
                skeys,
                int(k),
                nearest,
                idx_np,
                count_np,
            )
            idx, count = torch.from_numpy(idx_np), torch.from_numpy(count_np)
    return idx, count
