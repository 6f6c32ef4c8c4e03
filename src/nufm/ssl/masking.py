"""Random masking for the pretraining objectives: token masking (PoLAr-MAE arXiv:2502.02558)
and grid (cell) masking of points (Sonata arXiv:2503.16429 / Panda arXiv:2512.01324); see
docs/references.md.

Owns :func:`num_to_mask`, :func:`random_token_mask` and :func:`grid_mask`. Everything is
vectorized over events with the "rank trick": draw one uniform key per item, push items that
must never be chosen to the end, sort within each event, and choose the first ``n`` ranks. No
Python loop over events.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nufm.geometry.grid import grid_sample
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts


def num_to_mask(n_valid: Tensor, ratio: float) -> Tensor:
    """``int(ratio * n_valid)`` per event, computed in float64 exactly as Python would.

    Args:
        n_valid: (B,) int64 number of maskable items per event.
        ratio: fraction in [0, 1].

    Returns:
        (B,) int64 number of items to mask.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"masking: ratio must be in [0, 1], got {ratio}")
    return torch.floor(n_valid.to(torch.float64) * ratio).to(torch.int64)


def random_token_mask(
    valid: Tensor, ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """Hide ``int(ratio * n_valid)`` random valid tokens of every event.

    Args:
        valid: (B, G) bool, True = real token (padding is never masked).
        ratio: fraction of each event's valid tokens to hide.
        generator: optional torch generator (default: the global RNG).

    Returns:
        (B, G) bool ``is_masked``, True = hidden from the encoder. Exactly
        ``num_to_mask(valid.sum(1), ratio)`` True entries per event, all at valid tokens.
    """
    B, G = valid.shape
    key = torch.rand(B, G, device=valid.device, generator=generator)  # (B, G) in [0, 1)
    key = key.masked_fill(~valid, 2.0)  # padding ranks last
    rank = key.argsort(dim=1).argsort(dim=1)  # (B, G) rank of every token in its event
    n_masked = num_to_mask(valid.sum(1), ratio)  # (B,)
    return rank < n_masked[:, None]  # (B, G) True = hidden


def grid_mask(
    coord: Tensor,
    offset: Tensor,
    cell_size: float,
    ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sonata grid masking: voxelize each event with side ``cell_size`` and hide a random
    ``int(ratio * n_cells)`` of its occupied cells (every point in a hidden cell is masked).

    Args:
        coord: (N, 3) float positions (normalised units).
        offset: (B,) int64 exclusive event ends.
        cell_size: mask cell side, same units as ``coord``.
        ratio: fraction of occupied cells to hide per event.
        generator: optional torch generator.

    Returns:
        (N,) bool ``is_masked``, True = point lies in a hidden cell.
    """
    if not cell_size > 0:
        raise ValueError(f"grid_mask: cell_size must be > 0, got {cell_size}")
    cells = grid_sample(coord, offset, cell_size)  # one row per occupied (event, cell)
    M = cells.idx.shape[0]
    cell_event = offset_to_batch_index(cells.new_offset)  # (M,)
    key = torch.rand(M, device=coord.device, generator=generator, dtype=torch.float64)
    order = torch.argsort(cell_event.to(torch.float64) * 2.0 + key)  # events stay contiguous
    rank = torch.empty_like(order)
    rank[order] = torch.arange(M, device=coord.device)  # (M,) global sorted position
    local_rank = rank - offset_to_starts(cells.new_offset)[cell_event]  # (M,) rank in event
    n_hide = num_to_mask(offset_to_counts(cells.new_offset), ratio)  # (B,)
    cell_hidden = local_rank < n_hide[cell_event]  # (M,)
    return cell_hidden[cells.inverse]  # (N,)


__all__ = [
    "grid_mask",
    "num_to_mask",
    "random_token_mask",
]
