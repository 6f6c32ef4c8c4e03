"""Shared fixtures for the geometry tests: small packed batches of line-like clustered events."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor


def clustered_events(
    counts: list[int], seed: int = 0, spread: float = 20.0
) -> tuple[Tensor, Tensor]:
    """Packed (N, 3) float32 events of points scattered around a few random segments.

    Args:
        counts: points per event (0 allowed).
        seed: RNG seed.
        spread: length scale of the segments (coordinate units).

    Returns:
        coord (N, 3) float32 and offset (B,) int64.
    """
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for n in counts:
        n_lines = 3
        a = torch.rand(n_lines, 3, generator=gen) * spread
        b = a + torch.randn(n_lines, 3, generator=gen) * spread / 2
        which = torch.randint(0, n_lines, (n,), generator=gen)
        t = torch.rand(n, 1, generator=gen)
        pts = a[which] + t * (b[which] - a[which]) + torch.randn(n, 3, generator=gen) * 0.5
        parts.append(pts)
    coord = torch.cat(parts) if parts else torch.zeros(0, 3)
    offset = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return coord.float(), offset


@pytest.fixture
def make_events() -> Callable[..., tuple[Tensor, Tensor]]:
    """The ``clustered_events`` factory."""
    return clustered_events
