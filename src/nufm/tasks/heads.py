"""Small pieces every task head uses: the MLP head and per-segment (event, instance) pooling.

Owns :func:`mlp` and :func:`segment_mean_max`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nufm.models.layers import RowSequential


def segment_mean_max(x: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Mean and max of rows of ``x`` over segments.

    Args:
        x: (N, D) float values.
        index: (N,) int64 segment of each row, in [0, num_segments).
        num_segments: S.

    Returns:
        (S, 2D) ``[mean, max]`` per segment; an empty segment gets zeros.
    """
    N, D = x.shape
    counts = torch.bincount(index, minlength=num_segments).clamp(min=1).to(x.dtype)  # (S,)
    mean = x.new_zeros(num_segments, D).index_add_(0, index, x) / counts[:, None]  # (S, D)
    amax = x.new_zeros(num_segments, D).scatter_reduce(
        0, index[:, None].expand(N, D), x, reduce="amax", include_self=False
    )  # (S, D)
    return torch.cat([mean, amax], dim=1)  # (S, 2D)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Dropout per hidden width, then Linear(out_dim); rows run
    bucketed (:class:`nufm.models.layers.RowSequential`)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, out_dim))
    return RowSequential(*layers)
