"""Hand-made point sets for the geometry tests (imported by name; tests have no packages)."""

from __future__ import annotations

import torch


def line(xs: list[float]) -> torch.Tensor:
    """(len(xs), 3) float32 points on the x axis at the given x values."""
    coord = torch.zeros(len(xs), 3)
    coord[:, 0] = torch.tensor(xs)
    return coord
