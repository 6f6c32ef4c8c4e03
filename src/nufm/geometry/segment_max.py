"""Max over consecutive row segments, with its gradient (the group max of a mini-PointNet).

Owns :func:`segment_max`: rows (P, F) sorted by segment, ``lengths`` (S,) rows per segment ->
(S, F). The gradient of a segment's max is shared equally among the rows that reach it (ties
included), as for ``torch.amax``. The plain-PyTorch reference pads the segments and takes
``amax`` (any device, the test oracle and the GPU path); the numba CPU path finds the maxima
in one pass over the rows forward and one backward (PyTorch's CPU ``segment_reduce`` backward
was the largest single entry of a pretraining step's profile; docs/benchmarks.md). The two
agree exactly, values and gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.geometry._backend import resolve_backend, to_numpy


@njit(cache=True)
def _max_numba(x, start, out):  # pragma: no cover (numba)
    F = x.shape[1]
    for s in range(start.shape[0] - 1):
        r0, r1 = start[s], start[s + 1]
        for f in range(F):
            out[s, f] = x[r0, f] if r1 > r0 else 0.0
        for r in range(r0 + 1, r1):
            for f in range(F):
                if x[r, f] > out[s, f]:
                    out[s, f] = x[r, f]


@njit(cache=True)
def _max_grad_numba(x, start, out, grad, grad_x):  # pragma: no cover (numba)
    F = x.shape[1]
    share = np.empty(F, dtype=np.float32)
    for s in range(start.shape[0] - 1):
        r0, r1 = start[s], start[s + 1]
        share[:] = 0.0
        for r in range(r0, r1):
            for f in range(F):
                if x[r, f] == out[s, f]:
                    share[f] += 1.0  # rows tied at the max
        for f in range(F):
            share[f] = grad[s, f] / share[f] if share[f] > 0 else 0.0
        for r in range(r0, r1):
            for f in range(F):
                grad_x[r, f] = share[f] if x[r, f] == out[s, f] else 0.0


def _starts(lengths: Tensor, rows: int) -> np.ndarray:
    """(S,) lengths -> (S + 1,) int64 segment starts, checked against the row count."""
    counts = to_numpy(lengths)
    start = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    if start[-1] != rows or bool((counts < 0).any()):
        raise ValueError(
            f"segment_max: lengths must be >= 0 and sum to the {rows} rows, got a sum of "
            f"{int(start[-1])}"
        )
    return start


class _SegmentMaxNumba(torch.autograd.Function):
    """numba forward and backward on float32 copies (kept for the backward, so a bf16 input
    is converted once); results in the input's dtype."""

    @staticmethod
    def forward(ctx, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        start = _starts(lengths, x.shape[0])
        x32 = x.detach().float().contiguous()  # (P, F)
        out = np.empty((len(lengths), x.shape[1]), dtype=np.float32)
        _max_numba(x32.numpy(), start, out)
        if x.dtype == torch.float32:
            ctx.save_for_backward(x)  # autograd checks that x is not changed in place
            ctx.x32 = None
        else:
            ctx.x32 = x32  # a private copy
        ctx.start, ctx.out = start, out
        return torch.from_numpy(out).to(x.dtype)  # exact: every value is one of x's

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x32 = ctx.x32 if ctx.x32 is not None else ctx.saved_tensors[0].detach().contiguous()
        grad_x = np.empty(tuple(x32.shape), dtype=np.float32)
        _max_grad_numba(x32.numpy(), ctx.start, ctx.out, to_numpy(grad.float()), grad_x)
        return torch.from_numpy(grad_x).to(grad.dtype), None


def _max_torch(x: Tensor, lengths: Tensor) -> Tensor:
    """Reference: segments padded with -inf to (S, L_max, F), ``amax`` over the slots."""
    S = len(lengths)
    L = int(lengths.max()) if S else 0
    valid = torch.arange(L, device=x.device) < lengths[:, None]  # (S, L)
    padded = x.new_full((S, L, x.shape[1]), float("-inf"))
    padded = padded.masked_scatter(valid[..., None], x)  # (S, L, F), row order kept
    out = padded.amax(1) if L > 0 else x.new_zeros(S, x.shape[1])  # (S, F)
    return torch.where((lengths > 0)[:, None], out, torch.zeros_like(out))


def segment_max(x: Tensor, lengths: Tensor, backend: str = "auto") -> Tensor:
    """Max over consecutive segments.

    Args:
        x: (P, F) float rows sorted by segment.
        lengths: (S,) int64 rows per segment (sum P; 0 = an empty segment).
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        (S, F) in x's dtype, 0 for an empty segment. Gradient: a segment's gradient goes to
        the rows at its max, shared equally among tied rows.
    """
    if x.ndim != 2 or lengths.ndim != 1:
        raise ValueError(
            f"segment_max: x must be (P, F) and lengths (S,), got {tuple(x.shape)} and "
            f"{tuple(lengths.shape)}"
        )
    if resolve_backend(backend, x.device, "numba", "segment_max") == "torch":
        return _max_torch(x, lengths)
    return _SegmentMaxNumba.apply(x, lengths)


__all__ = ["segment_max"]
