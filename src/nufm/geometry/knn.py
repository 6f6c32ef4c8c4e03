"""k-nearest-neighbour search between packed point clouds, same event only.

Used for feature interpolation (PointNet++ feature propagation, Qi et al., arXiv:1706.02413),
Sonata-style view matching (arXiv:2503.16429) and kNN probes. This module owns the plain-PyTorch
reference (exact pairwise distances, chunked, any device) and the CPU fast path (one
``scipy.spatial.cKDTree`` per event).

A query that is also a support point finds itself at distance 0. Events with fewer than k
support points return -1 indices and ``inf`` distances in the missing slots.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree  # pyright: ignore[reportAttributeAccessIssue]  # stub gap
from torch import Tensor

from nufm.geometry._backend import check_packed, resolve_backend, to_numpy
from nufm.geometry.offsets import offset_to_counts, offset_to_starts

_CHUNK_ELEMS = 1 << 22  # query x support pairs per reference chunk


def _knn_torch_event(q: Tensor, s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Reference for one event: (Q_i, k) local indices (-1 missing) and distances (inf)."""
    nq, ns = q.shape[0], s.shape[0]
    idx = torch.full((nq, k), -1, dtype=torch.int64, device=q.device)  # (Q_i, k)
    dist = torch.full((nq, k), float("inf"), dtype=q.dtype, device=q.device)  # (Q_i, k)
    kk = min(k, ns)
    if nq == 0 or kk == 0:
        return idx, dist
    chunk = max(1, _CHUNK_ELEMS // ns)
    for c0 in range(0, nq, chunk):
        d = torch.cdist(q[c0 : c0 + chunk], s, compute_mode="donot_use_mm_for_euclid_dist")
        top = torch.topk(d, kk, dim=1, largest=False, sorted=True)  # (q, kk)
        idx[c0 : c0 + chunk, :kk] = top.indices
        dist[c0 : c0 + chunk, :kk] = top.values
    return idx, dist


def knn(
    query: Tensor,
    query_offset: Tensor,
    support: Tensor,
    support_offset: Tensor,
    k: int,
    backend: str = "auto",
    workers: int = 1,
) -> tuple[Tensor, Tensor]:
    """The k nearest support points of every query point, within its own event.

    Args:
        query: (Q, 3) float query positions.
        query_offset: (B,) int64 exclusive ends of the query events.
        support: (S, 3) float support positions (same units).
        support_offset: (B,) int64 exclusive ends of the support events.
        k: neighbours per query (>= 1).
        backend: "auto" (scipy on CPU, torch otherwise), "torch" (reference) or "scipy".
        workers: threads of the scipy query (1 inside data-loader workers; the caller's
            thread count where nothing else runs beside it).

    Returns:
        idx (Q, k) int64 global support rows sorted by distance, -1 where the event has fewer
        than k points, and dist (Q, k) Euclidean distances in the query dtype, inf where -1.
    """
    check_packed(query, query_offset, "knn", "query")
    check_packed(support, support_offset, "knn", "support")
    if query_offset.shape != support_offset.shape:
        raise ValueError(
            f"knn: query has {query_offset.numel()} events, support {support_offset.numel()}"
        )
    if k < 1:
        raise ValueError(f"knn: k must be >= 1, got {k}")
    if workers < 1:
        raise ValueError(f"knn: workers must be >= 1, got {workers}")
    support = support.to(query.dtype)
    q_starts, s_starts = offset_to_starts(query_offset), offset_to_starts(support_offset)
    q_counts, s_counts = offset_to_counts(query_offset), offset_to_counts(support_offset)
    idx = torch.full((query.shape[0], k), -1, dtype=torch.int64, device=query.device)
    dist = torch.full((query.shape[0], k), float("inf"), dtype=query.dtype, device=query.device)
    use = resolve_backend(backend, query.device, "scipy", "knn")
    q_np = to_numpy(query) if use == "scipy" else None
    s_np = to_numpy(support) if use == "scipy" else None
    for q0, nq, s0, ns in zip(
        q_starts.tolist(), q_counts.tolist(), s_starts.tolist(), s_counts.tolist(), strict=False
    ):
        if nq == 0 or ns == 0:
            continue
        match use:
            case "torch":
                li, ld = _knn_torch_event(query[q0 : q0 + nq], support[s0 : s0 + ns], k)
                li = torch.where(li >= 0, li + s0, li)
            case _:
                if q_np is None or s_np is None:
                    raise RuntimeError(f"knn: backend {use!r} without numpy copies")
                kk = min(k, ns)
                tree = cKDTree(s_np[s0 : s0 + ns])
                d_np, i_np = tree.query(q_np[q0 : q0 + nq], k=kk, workers=workers)
                d_np = np.asarray(d_np).reshape(nq, kk)
                i_np = np.asarray(i_np, dtype=np.int64).reshape(nq, kk)
                li = torch.full((nq, k), -1, dtype=torch.int64)
                ld = torch.full((nq, k), float("inf"), dtype=query.dtype)
                li[:, :kk] = torch.from_numpy(i_np + s0)
                ld[:, :kk] = torch.from_numpy(d_np).to(query.dtype)
        idx[q0 : q0 + nq] = li
        dist[q0 : q0 + nq] = ld
    return idx, dist
