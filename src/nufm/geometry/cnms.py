"""Centrality non-maximum suppression (C-NMS) of candidate token centers.

PoLAr-MAE's volumetric tokenizer (Young et al., arXiv:2502.02558; docs/references.md) picks
token centers by C-NMS: every candidate is scored by its neighbour count within ``radius``
(ball query, first K in candidate order, so the score is capped at K); candidates are visited
in descending score (ties: lower row first); a visited candidate not yet suppressed is kept
and suppresses every candidate in its K-capped neighbour list. Kept centers are never
un-kept. This module owns the reference (torch ball query + a Python greedy pass, any device)
and the numba fast path (numba ball query + numba greedy pass), which agree exactly.

Overflow: when an event keeps more than ``max_per_event`` centers, it is subsampled by
farthest point sampling among its kept centers, starting at the highest-scored one, so dense
events keep an even spatial coverage instead of crashing or growing the context; the number
dropped per event is returned. Output centers are in ascending row order within each event.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.geometry._backend import check_packed, resolve_backend, to_numpy
from nufm.geometry.ball_query import ball_query
from nufm.geometry.fps import farthest_point_sampling
from nufm.geometry.offsets import offset_to_counts, offset_to_starts


def _greedy_python(idx: list[list[int]], count: list[int], start: int) -> list[int]:
    """Reference greedy pass for one event; returns kept local indices in visit order."""
    n = len(count)
    order = sorted(range(n), key=lambda i: (-count[i], i))
    removed = bytearray(n)
    kept = []
    for i in order:
        if removed[i]:
            continue
        kept.append(i)
        for j in idx[i][: count[i]]:
            removed[j - start] = 1
    return kept


@njit(cache=True)
def _greedy_numba(idx, count, order, starts, counts, keep):  # pragma: no cover
    for b in range(starts.shape[0]):
        s0, n = starts[b], counts[b]
        removed = np.zeros(n, dtype=np.bool_)
        for t in range(n):
            i = order[s0 + t] - s0  # visit order: descending count, ties by row
            if removed[i]:
                continue
            keep[s0 + i] = True
            for c in range(count[s0 + i]):
                removed[idx[s0 + i, c] - s0] = True


def centrality_nms(
    centers: Tensor,
    center_offset: Tensor,
    radius: float,
    k: int,
    max_per_event: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """C-NMS of candidate centers, per event, with a deterministic cap on survivors.

    Args:
        centers: (N, 3) float candidate positions (all points or FPS seeds).
        center_offset: (B,) int64 exclusive ends of the events.
        radius: suppression radius (PoLAr-MAE: 2 * group radius * overlap factor).
        k: neighbour cap of the ball query (score cap and suppression-list length).
        max_per_event: most centers kept per event (None = no cap); extra ones are dropped by
            FPS among the kept, starting at the highest-scored center.
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        keep_idx (M,) int64 global rows of the kept centers, ascending within each event;
        new_offset (B,) int64 exclusive ends; n_dropped (B,) int64 centers removed by the cap.
    """
    check_packed(centers, center_offset, "centrality_nms", "centers")
    if max_per_event is not None and max_per_event < 1:
        raise ValueError(f"centrality_nms: max_per_event must be >= 1 or None, got {max_per_event}")
    device = centers.device
    use = resolve_backend(backend, device, "numba", "centrality_nms")
    idx, count = ball_query(
        centers, center_offset, centers, center_offset, radius, k, "first", backend=use
    )  # (N, k), (N,)
    starts, counts = offset_to_starts(center_offset), offset_to_counts(center_offset)
    n = centers.shape[0]
    match use:
        case "torch":
            keep = torch.zeros(n, dtype=torch.bool)
            idx_l, count_l = idx.cpu().tolist(), count.cpu().tolist()
            for s0, nb in zip(starts.tolist(), counts.tolist(), strict=False):
                kept = _greedy_python(idx_l[s0 : s0 + nb], count_l[s0 : s0 + nb], s0)
                keep[torch.tensor(kept, dtype=torch.int64) + s0] = True
            keep = keep.to(device)
        case _:
            keep_np = np.zeros(n, dtype=np.bool_)
            batch = np.repeat(np.arange(counts.numel()), to_numpy(counts))
            order = np.lexsort((-to_numpy(count), batch))  # stable: event, -count, row
            _greedy_numba(
                to_numpy(idx), to_numpy(count), order, to_numpy(starts), to_numpy(counts), keep_np
            )
            keep = torch.from_numpy(keep_np)
    keep_idx = torch.nonzero(keep).flatten()  # (M,) ascending, events contiguous
    event_of = torch.searchsorted(center_offset, keep_idx, right=True)  # (M,)
    n_kept = torch.bincount(event_of, minlength=counts.numel())  # (B,)
    n_dropped = torch.zeros_like(n_kept)
    if max_per_event is not None and bool((n_kept > max_per_event).any()):
        kept_offset = torch.cumsum(n_kept, 0)  # (B,)
        score = count[keep_idx]  # (M,)
        # highest score, lowest row among ties: stable sort by descending score per event
        order = torch.sort(-score, stable=True).indices
        order = order[torch.sort(event_of[order], stable=True).indices]
        first = kept_offset - n_kept
        start = order[first.clamp(max=max(len(order) - 1, 0))] - first  # (B,) local starts
        start = torch.where(n_kept > 0, start, torch.zeros_like(start))
        sub, _ = farthest_point_sampling(
            centers[keep_idx], kept_offset, max_per_event, start=start, backend=use
        )
        keep_idx = torch.sort(keep_idx[sub]).values
        n_dropped = (n_kept - max_per_event).clamp(min=0)
        n_kept = n_kept - n_dropped
    return keep_idx, torch.cumsum(n_kept, 0), n_dropped
