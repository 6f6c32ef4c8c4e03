"""Nearest neighbours between the two point sets of each of Q padded pairs (the choice inside a
Chamfer distance).

Owns :func:`set_nearest`: for Q pairs of small padded sets (K1 and K2 slots, a valid mask each)
the index of the nearest valid point of the other set, for every slot of both sets. The
plain-PyTorch reference forms the (Q, K1, K2) squared distances from the coordinate differences
and takes ``argmin``; the numba CPU path runs the same sums in the same order in one loop and
never stores the (Q, K1, K2) array (PyTorch's CPU ``argmin`` over a strided axis was most of a
pretraining step's Chamfer time: docs/benchmarks.md). Both keep the first of tied candidates,
so they agree exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.geometry._backend import resolve_backend, to_numpy


def _check(a: Tensor, a_valid: Tensor, b: Tensor, b_valid: Tensor) -> None:
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"set_nearest: a {tuple(a.shape)} and b {tuple(b.shape)} must be (Q, K, F) with the "
            "same Q and F"
        )
    if a_valid.shape != a.shape[:2] or b_valid.shape != b.shape[:2]:
        raise ValueError(
            f"set_nearest: valid masks {tuple(a_valid.shape)}, {tuple(b_valid.shape)} must be "
            f"{tuple(a.shape[:2])}, {tuple(b.shape[:2])}"
        )


def _nearest_torch(a: Tensor, a_valid: Tensor, b: Tensor, b_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Reference: (Q, K1, K2) squared distances, invalid pairs at +inf, argmin both ways."""
    d = (a[:, :, None, :] - b[:, None, :, :]).square().sum(-1)  # (Q, K1, K2)
    pair = a_valid[:, :, None] & b_valid[:, None, :]  # (Q, K1, K2)
    d = d.masked_fill(~pair, float("inf"))
    return d.argmin(dim=2), d.argmin(dim=1)  # (Q, K1), (Q, K2)


@njit(cache=True)
def _nearest_numba(a, a_valid, b, b_valid, near_b, near_a):  # pragma: no cover (numba)
    Q, K1, F = a.shape
    K2 = b.shape[1]
    best_a = np.empty(K2, dtype=np.float32)
    for q in range(Q):
        for j in range(K2):
            best_a[j] = np.inf
            near_a[q, j] = 0
        for i in range(K1):
            near_b[q, i] = 0
            if not a_valid[q, i]:
                continue
            best = np.float32(np.inf)
            for j in range(K2):
                if not b_valid[q, j]:
                    continue
                d = np.float32(0.0)
                for f in range(F):
                    diff = a[q, i, f] - b[q, j, f]
                    d += diff * diff
                if d < best:
                    best = d
                    near_b[q, i] = j
                if d < best_a[j]:
                    best_a[j] = d
                    near_a[q, j] = i


def set_nearest(
    a: Tensor, a_valid: Tensor, b: Tensor, b_valid: Tensor, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Nearest valid point of the other set, for every slot of both sets of Q pairs.

    Distances are squared Euclidean, summed over the F coordinates in fp32 (inputs of another
    float type are converted). No gradient flows (indices only).

    Args:
        a: (Q, K1, F) float points of the first sets.
        a_valid: (Q, K1) bool, True = real point.
        b: (Q, K2, F) float points of the second sets.
        b_valid: (Q, K2) bool.
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        near_b: (Q, K1) int64, for each slot of ``a`` the index in ``b`` of its nearest valid
            point (first of ties; 0 where the slot or the whole of ``b`` is invalid).
        near_a: (Q, K2) int64, the same from ``b`` to ``a``.
    """
    _check(a, a_valid, b, b_valid)
    with torch.no_grad():
        a32, b32 = a.detach().float(), b.detach().float()
        if resolve_backend(backend, a.device, "numba", "set_nearest") == "torch":
            near_b, near_a = _nearest_torch(a32, a_valid, b32, b_valid)
            # all-invalid rows: argmin over +inf picks 0, as the numba path does
            return near_b, near_a
        Q, K1, K2 = a.shape[0], a.shape[1], b.shape[1]
        near_b = np.zeros((Q, K1), dtype=np.int64)
        near_a = np.zeros((Q, K2), dtype=np.int64)
        _nearest_numba(
            to_numpy(a32), to_numpy(a_valid), to_numpy(b32), to_numpy(b_valid), near_b, near_a
        )
        return torch.from_numpy(near_b), torch.from_numpy(near_a)


__all__ = ["set_nearest"]
