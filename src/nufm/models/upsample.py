"""Token-to-point feature propagation (PointNet++ FP layer, arXiv:1706.02413; used by PoLAr-MAE
segmentation, arXiv:2502.02558; docs/references.md).

Owns :class:`FeaturePropagation`: token features are interpolated to every point by
inverse-distance weighting over the k nearest valid token centres of the same event, concatenated
with per-point input features, and passed through a per-point MLP (Linear -> LayerNorm -> GELU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nufm.geometry.interpolate import interpolate
from nufm.models.layers import RowSequential


class FeaturePropagation(nn.Module):
    """Padded tokens (B, G, D) -> packed per-point features (N, D_out)."""

    def __init__(
        self,
        token_dim: int,
        point_dim: int,
        hidden: Sequence[int] = (384, 384),
        k: int = 3,
        power: float = 2.0,
    ) -> None:
        """Args:
        token_dim: D of the token features.
        point_dim: C of the per-point features concatenated after interpolation (0 = none).
        hidden: widths of the per-point MLP; the last one is the output width.
        k: nearest token centres used for interpolation (PointNet++ uses 3).
        power: inverse-distance exponent (weights 1 / d^power).
        """
        super().__init__()
        if not 1 <= k <= 16:
            raise ValueError(f"FeaturePropagation: k must be in [1, 16], got {k}")
        if len(hidden) == 0:
            raise ValueError("FeaturePropagation: hidden needs at least one width")
        self.k = k
        self.power = power
        self.point_dim = point_dim
        layers: list[nn.Module] = []
        d = token_dim + point_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.GELU()]
            d = h
        self.mlp = RowSequential(*layers)  # bucketed rows (nufm.models.layers)
        self.out_dim = d

    def forward(
        self,
        token_feat: Tensor,
        center: Tensor,
        valid: Tensor,
        coord: Tensor,
        offset: Tensor,
        point_feat: Tensor | None = None,
    ) -> Tensor:
        """Propagate token features to points.

        Args:
            token_feat: (B, G, D) token features.
            center: (B, G, 3) token centres, same units as ``coord``.
            valid: (B, G) bool, True = real token (only these are interpolated from).
            coord: (N, 3) packed point coordinates.
            offset: (B,) int64 exclusive event ends of the points.
            point_feat: (N, C) per-point features (C = ``point_dim``), or None if point_dim = 0.

        Returns:
            (N, D_out) per-point features.
        """
        support_offset = torch.cumsum(valid.sum(1), 0)  # (B,)
        up = interpolate(
            coord,
            offset,
            center[valid],
            support_offset,
            token_feat[valid],
            k=self.k,
            power=self.power,
        )  # (N, D)
        if self.point_dim > 0:
            if point_feat is None or point_feat.shape[-1] != self.point_dim:
                got = None if point_feat is None else tuple(point_feat.shape)
                raise ValueError(
                    f"FeaturePropagation: expected point_feat with "
                    f"{self.point_dim} channels, got {got}"
                )
            up = torch.cat([up, point_feat], dim=-1)  # (N, D + C)
        return self.mlp(up)
