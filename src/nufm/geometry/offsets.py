"""Offset bookkeeping for packed batches and vectorized pad/unpad.

A packed batch stores B events' points back to back; ``offset (B,) int64`` holds the exclusive
end of each event (Pointcept/pimm convention): event i owns rows ``offset[i-1]:offset[i]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def offset_to_counts(offset: Tensor) -> Tensor:
    """(B,) exclusive ends -> (B,) points per event."""
    return torch.diff(offset, prepend=offset.new_zeros(1))


def offset_to_batch_index(offset: Tensor) -> Tensor:
    """(B,) offsets -> (N,) int64 event index of every point."""
    counts = offset_to_counts(offset)
    return torch.repeat_interleave(torch.arange(len(counts), device=offset.device), counts)


def offset_to_cu_seqlens(offset: Tensor) -> Tensor:
    """(B,) offsets -> (B+1,) int32 cumulative starts with a leading 0 (varlen attention)."""
    return torch.cat([offset.new_zeros(1), offset]).to(torch.int32)


def offset_to_starts(offset: Tensor) -> Tensor:
    """(B,) offsets -> (B,) start row of each event."""
    return offset - offset_to_counts(offset)


def pad_mask(offset: Tensor, n_max: int | None = None) -> Tensor:
    """(B,) offsets -> ``valid (B, N_max)`` bool, True at the slots of :func:`pad` that hold
    a real row (the first ``counts[b]`` of row b). ``n_max`` defaults to the largest count."""
    counts = offset_to_counts(offset)  # (B,)
    if n_max is None:
        n_max = int(counts.max()) if counts.numel() else 0
    return torch.arange(n_max, device=offset.device) < counts[:, None]  # (B, N_max)


def pad(x: Tensor, offset: Tensor, fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Packed (N, *F) -> padded (B, N_max, *F) plus ``valid (B, N_max)`` (True = real row).

    Vectorized: no per-event Python loop, one host sync for ``N_max``.
    """
    valid = pad_mask(offset).to(x.device)  # (B, N_max)
    out = x.new_full((*valid.shape, *x.shape[1:]), fill)  # (B, N_max, *F)
    out[valid] = x
    return out, valid


def unpad(x: Tensor, valid: Tensor) -> Tensor:
    """Padded (B, N_max, *F) + ``valid (B, N_max)`` -> packed (N, *F), event order kept."""
    return x[valid]


def scatter_rows(rows: Tensor, mask: Tensor) -> Tensor:
    """Inverse of :func:`unpad` for any mask: rows (T, *F) of ``mask`` (B, G) bool (row-major)
    -> (B, G, *F) with zeros where ``mask`` is False."""
    out = rows.new_zeros(*mask.shape, *rows.shape[1:])
    out[mask] = rows
    return out
