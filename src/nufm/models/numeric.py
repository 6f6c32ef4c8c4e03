"""Encodings of numerical per-point inputs for an MLP: piecewise-linear quantile bins.

Boosted trees split heavy-tailed inputs (eigenvalue ratios, log sizes, mean log energies) at
learned thresholds; an MLP reading the same numbers standardised has to build those
thresholds out of a few ReLUs and learns them slowly from few labels. The piecewise-linear
encoding of Gorishniy, Rubachev and Babenko (NeurIPS 2022, arXiv:2203.05556, "PLE") gives the
MLP the thresholds instead: each channel x is cut at the quantiles b_0 < ... < b_B of its
training values into B bins, and bin t reads

    e_t(x) = clip((x - b_t) / (b_{t+1} - b_t), 0, 1),

so x becomes B numbers: 1 for the bins below it, its position inside its own bin, 0 above
(the paper leaves the first and last bin open; here every bin is clipped, so a value far
outside the training range cannot blow up a logit). The edges are fitted once, before
training, from the labelled training events, and are buffers of the module: they are saved
and loaded with the model's weights.

Owns :func:`quantile_edges` and :class:`PiecewiseLinearEncoding`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

MIN_BIN_WIDTH = 1e-6
"""Bins narrower than this (repeated quantiles of a channel with few distinct values) act as a
step at their edge."""


def quantile_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """(F, bins + 1) float32 edges: the 0, 1/B, ..., 1 quantiles of each column of x (M, F).

    Raises:
        ValueError: x has no rows, is not 2-D, holds a non-finite value, or bins < 1.
    """
    if bins < 1:
        raise ValueError(f"quantile_edges: bins must be >= 1, got {bins}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"quantile_edges: needs a non-empty (M, F) array, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("quantile_edges: the values hold NaN or inf")
    q = np.linspace(0.0, 1.0, bins + 1)
    return np.quantile(x.astype(np.float64), q, axis=0).T.astype(np.float32)  # (F, B + 1)


class PiecewiseLinearEncoding(nn.Module):
    """``forward(x (N, F)) -> (N, F * bins)``: every channel cut into ``bins`` quantile bins.

    No trainable parameters; ``edges`` (F, bins + 1) are set by :meth:`fit` (or loaded with
    a state dict). Using the module before either is an error, not a silent all-zero input.
    """

    edges: Tensor
    fitted: Tensor

    def __init__(self, num_features: int, bins: int) -> None:
        super().__init__()
        if num_features < 1 or bins < 1:
            raise ValueError(
                f"PiecewiseLinearEncoding: needs num_features >= 1 and bins >= 1, got "
                f"{num_features}, {bins}"
            )
        self.num_features = num_features
        self.bins = bins
        self.register_buffer("edges", torch.zeros(num_features, bins + 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def out_dim(self) -> int:
        return self.num_features * self.bins

    def fit(self, x: np.ndarray) -> None:
        """Set the edges from training values x (M, F) (:func:`quantile_edges`)."""
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"PiecewiseLinearEncoding.fit: expected (M, {self.num_features}) values, got "
                f"{x.shape}"
            )
        edges = torch.from_numpy(quantile_edges(x, self.bins))
        self.edges.copy_(edges.to(self.edges.device))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError(
                "PiecewiseLinearEncoding: the bin edges were never fitted (fit it on training "
                "values, or load a state dict that holds them)"
            )
        lo = self.edges[:, :-1]  # (F, B)
        width = (self.edges[:, 1:] - lo).clamp_min(MIN_BIN_WIDTH)  # (F, B)
        e = ((x.float()[:, :, None] - lo) / width).clamp(0.0, 1.0)  # (N, F, B)
        return e.reshape(x.shape[0], self.out_dim)  # (N, F * B)
