"""A parameter-free "encoder" of classical local-shape descriptors: the baseline a learned
representation has to beat.

For every point and each neighbourhood size k, the k nearest points of the same event give a
3x3 covariance whose sorted eigenvalues l1 >= l2 >= l3 describe the local shape (linear for a
track, planar or volumetric for a shower; the eigenvalue features of Weinmann et al., ISPRS
J. 105 (2015) 286, and of LArTPC reconstruction's PCA track/shower discriminants):

* ``l1 / sum, l2 / sum, l3 / sum``: linearity / planarity / scattering of the neighbourhood;
* ``log(sum + eps)``: its spatial extent;
* ``log(d_k + eps)``: the distance to the k-th neighbour (local density);
* the mean of the last feature channel (log energy) over the neighbours (local dE/dx proxy).

The point's own feature channels come first. Output (N, C + 6 * len(ks)), ``level="point"``, so
a linear head on top (task mode ``linear``) is a logistic regression on hand-made features.
There is nothing to train or load; pretrained weights never apply to it.

Owns :class:`LocalGeometryConfig` and :class:`LocalGeometryEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nufm.batch import PointBatch
from nufm.geometry.knn import knn
from nufm.models.base import Encoder, EncoderOutput

_EPS = 1e-8


@dataclass(frozen=True, kw_only=True)
class LocalGeometryConfig:
    """Neighbourhood sizes of the local-shape descriptors."""

    ks: tuple[int, ...] = (8, 32)
    """Neighbours per point for each descriptor scale (the point itself included)."""
    in_channels: int = 4
    """C, the width of ``PointBatch.feat`` (its last channel is taken as the log energy)."""

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 2:
            raise ValueError(f"LocalGeometryConfig.ks needs sizes >= 2, got {self.ks}")
        if self.in_channels < 1:
            raise ValueError(
                f"LocalGeometryConfig.in_channels must be >= 1, got {self.in_channels}"
            )

    @property
    def out_dim(self) -> int:
        """D = C + 6 per scale."""
        return self.in_channels + 6 * len(self.ks)


def local_shape_features(coord: Tensor, feat: Tensor, idx: Tensor, dist: Tensor) -> Tensor:
    """The 6 descriptors of one scale (module docstring) for every point.

    Args:
        coord: (N, 3) float positions.
        feat: (N, C) float features; the last column is averaged over the neighbours.
        idx: (N, k) int64 rows of each point's k nearest points of its event, nearest first,
            -1 where the event has fewer (from :func:`nufm.geometry.knn.knn`).
        dist: (N, k) their distances (inf where -1).

    Returns:
        (N, 6) float32.
    """
    has = idx >= 0  # (N, k)
    w = has.to(torch.float64)  # (N, k)
    n = w.sum(1).clamp(min=1.0)  # (N,)
    nb = coord.to(torch.float64)[idx.clamp(min=0)]  # (N, k, 3)
    mean = (nb * w[..., None]).sum(1) / n[:, None]  # (N, 3)
    centred = (nb - mean[:, None]) * w[..., None]  # (N, k, 3)
    cov = centred.transpose(1, 2) @ centred / n[:, None, None]  # (N, 3, 3)
    eig = torch.linalg.eigvalsh(cov).flip(1).clamp(min=0.0)  # (N, 3) descending
    total = eig.sum(1)  # (N,)
    shape = eig / (total[:, None] + _EPS)  # (N, 3)
    far = torch.where(has, dist.to(torch.float64), torch.zeros_like(w)).amax(1)  # (N,)
    energy = (feat[:, -1].to(torch.float64)[idx.clamp(min=0)] * w).sum(1) / n  # (N,)
    out = torch.cat(
        [shape, torch.log(total + _EPS)[:, None], torch.log(far + _EPS)[:, None], energy[:, None]],
        dim=1,
    )  # (N, 6)
    return out.to(torch.float32)


class LocalGeometryEncoder(Encoder):
    """``forward(batch) -> EncoderOutput`` with (N, out_dim) per-point descriptors."""

    def __init__(self, cfg: LocalGeometryConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, batch: PointBatch) -> EncoderOutput:
        if batch.feat.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"LocalGeometryEncoder: batch.feat has {batch.feat.shape[1]} "
                f"channels, the config says in_channels={self.cfg.in_channels}"
            )
        with torch.no_grad():
            # one query at the largest k: the k nearest are a prefix (sorted by distance)
            idx, dist = knn(
                batch.coord, batch.offset, batch.coord, batch.offset, max(self.cfg.ks)
            )  # (N, K)
            parts = [batch.feat.float()] + [
                local_shape_features(batch.coord, batch.feat, idx[:, :k], dist[:, :k])
                for k in self.cfg.ks
            ]
        return EncoderOutput(
            feat=torch.cat(parts, dim=1), level="point", offset=batch.offset
        )  # (N, D)
