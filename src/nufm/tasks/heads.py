"""Small pieces every task head uses: the MLP head and per-segment (event, instance) pooling.

Owns :func:`mlp`, :func:`segment_mean_max`, :func:`event_mean_max` and
:func:`mlp_with_event_context`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts
from nufm.models.layers import RowSequential, bucket_rows


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


def event_mean_max(x: Tensor, offset: Tensor) -> Tensor:
    """:func:`segment_mean_max` of a packed batch's events: x (N, D) rows event after event,
    ``offset`` (B,) their exclusive ends -> (B, 2D) ``[mean, max]``, zeros for an empty event.
    One slice per event (a batch holds few, long events), so forward and backward are plain
    reductions: several times faster on the CPU than the scatter of a per-row index, and than
    ``torch.segment_reduce``, which is slow for a few long segments."""
    counts = offset_to_counts(offset).tolist()
    rows = []
    for part in torch.split(x, counts):  # (n_b, D) per event
        if part.shape[0] == 0:
            rows.append(x.new_zeros(2 * x.shape[1]))
        else:
            rows.append(torch.cat([part.mean(0), part.amax(0)]))
    return torch.stack(rows) if rows else x.new_zeros(0, 2 * x.shape[1])  # (B, 2D)


def mlp_with_event_context(head: nn.Sequential, x: Tensor, event: Tensor, offset: Tensor) -> Tensor:
    """``head(cat([x, event[batch_index]], 1))`` for an :func:`mlp` ``head`` without building
    the (N, D + E) input: its first layer's weight is split into the point part and the event
    part, the event part runs on the B events and is added to each event's rows (the same
    function, to the rounding of the sums).

    Args:
        head: an :func:`mlp` (first module ``nn.Linear(D + E, H)``).
        x: (N, D) per-point features, event after event.
        event: (B, E) per-event features.
        offset: (B,) exclusive ends of the events' rows in ``x``.

    Returns:
        (N, C) the head's output.
    """
    first = head[0]
    if not isinstance(first, nn.Linear) or first.in_features != x.shape[1] + event.shape[1]:
        raise ValueError(
            f"mlp_with_event_context: the head's first layer must be Linear({x.shape[1]} + "
            f"{event.shape[1]}, H), got {first}"
        )
    D = x.shape[1]
    per_point = bucket_rows(
        lambda rows: F.linear(rows, first.weight[:, :D], first.bias), x
    )  # (N, H)
    per_event = F.linear(event, first.weight[:, D:])  # (B, H)
    h = per_point + per_event.index_select(0, offset_to_batch_index(offset))  # (N, H)
    return head[1:](h)  # (N, C); the rest of the head runs on bucketed rows too
