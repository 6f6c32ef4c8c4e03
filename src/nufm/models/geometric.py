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

Owns :class:`LocalGeometryConfig`, :class:`LocalGeometryEncoder`,
:func:`point_shape_descriptors` (the same descriptors as extra per-point inputs of a task's
head: ``TaskBaseConfig.point_descriptors``) and :class:`EventDescriptors` (the data-pipeline
step that computes them once per event, so a training step only reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from torch import Tensor

from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.memo import EventMemo
from nufm.data.transforms import Compose, LogEnergy, MakeFeatures, Preprocess
from nufm.geometry._backend import resolve_backend, to_numpy
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


def _shape_from_moments(cov: Tensor, far: Tensor, energy: Tensor) -> Tensor:
    """The 6 descriptors of one scale from its neighbourhood moments.

    Args:
        cov: (N, 3, 3) float64 covariance of each point's neighbours.
        far: (N,) float64 distance to the farthest of them.
        energy: (N,) float64 their mean log energy.

    Returns:
        (N, 6) float32.
    """
    eig = torch.linalg.eigvalsh(cov).flip(1).clamp(min=0.0)  # (N, 3) descending
    total = eig.sum(1)  # (N,)
    shape = eig / (total[:, None] + _EPS)  # (N, 3)
    out = torch.cat(
        [shape, torch.log(total + _EPS)[:, None], torch.log(far + _EPS)[:, None], energy[:, None]],
        dim=1,
    )  # (N, 6)
    return out.to(torch.float32)


def local_shape_features(coord: Tensor, feat: Tensor, idx: Tensor, dist: Tensor) -> Tensor:
    """The 6 descriptors of one scale (module docstring) for every point: the plain-PyTorch
    reference (any device) of :func:`multiscale_shape_features`.

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
    far = torch.where(has, dist.to(torch.float64), torch.zeros_like(w)).amax(1)  # (N,)
    energy = (feat[:, -1].to(torch.float64)[idx.clamp(min=0)] * w).sum(1) / n  # (N,)
    return _shape_from_moments(cov, far, energy)


@njit(cache=True, nogil=True)
def _moments_numba(coord, energy, idx, ks, cov, emean, last, start, stop):  # pragma: no cover
    """Neighbourhood moments of points ``start..stop-1`` at each scale in one pass over their
    sorted neighbours (running sums of offsets from the point itself, so no precision is lost
    far from the origin). Releases the GIL, so row ranges run on threads side by side.

    coord (N, 3) f64, energy (N,) f64, idx (N, K) i64 (-1 only at the tail), ks (S,) i64
    ascending, ks[-1] <= K. Writes cov (N, S, 3, 3) f64 (zeros on entry), mean energy (N, S)
    f64 and the column of the farthest neighbour used (N, S) i64 (-1 on entry, kept when none).
    """
    kmax = idx.shape[1]
    ns = ks.shape[0]
    for i in range(start, stop):
        x0, y0, z0 = coord[i, 0], coord[i, 1], coord[i, 2]
        sx = sy = sz = sxx = sxy = sxz = syy = syz = szz = se = 0.0
        m = 0
        s = 0
        for j in range(kmax + 1):
            r = idx[i, j] if j < kmax else -1
            if r >= 0:
                dx, dy, dz = coord[r, 0] - x0, coord[r, 1] - y0, coord[r, 2] - z0
                sx += dx
                sy += dy
                sz += dz
                sxx += dx * dx
                sxy += dx * dy
                sxz += dx * dz
                syy += dy * dy
                syz += dy * dz
                szz += dz * dz
                se += energy[r]
                m += 1
            # emit every scale complete at m neighbours, or all left once the event runs out
            while s < ns and (m == ks[s] or (r < 0 and m > 0)):
                mx, my, mz = sx / m, sy / m, sz / m
                c = cov[i, s]
                c[0, 0] = sxx / m - mx * mx
                c[0, 1] = c[1, 0] = sxy / m - mx * my
                c[0, 2] = c[2, 0] = sxz / m - mx * mz
                c[1, 1] = syy / m - my * my
                c[1, 2] = c[2, 1] = syz / m - my * mz
                c[2, 2] = szz / m - mz * mz
                emean[i, s] = se / m
                last[i, s] = m - 1
                s += 1
            if r < 0:
                break


def _moments(
    coord: np.ndarray, energy: np.ndarray, idx: np.ndarray, ks: np.ndarray, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_moments_numba` of all N points on ``threads`` threads (contiguous row ranges).

    Returns cov (N, S, 3, 3) f64, mean energy (N, S) f64, farthest column (N, S) i64."""
    n, ns = idx.shape[0], ks.shape[0]
    cov = np.zeros((n, ns, 3, 3))
    emean = np.zeros((n, ns))
    last = np.full((n, ns), -1, dtype=np.int64)
    bounds = np.linspace(0, n, max(1, min(threads, n // 256)) + 1).astype(np.int64)
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    if len(ranges) == 1:
        _moments_numba(coord, energy, idx, ks, cov, emean, last, 0, n)
        return cov, emean, last
    with ThreadPoolExecutor(len(ranges)) as pool:
        done = [
            pool.submit(_moments_numba, coord, energy, idx, ks, cov, emean, last, a, b)
            for a, b in ranges
        ]
        for f in done:
            f.result()
    return cov, emean, last


def multiscale_shape_features(
    coord: Tensor,
    feat: Tensor,
    idx: Tensor,
    dist: Tensor,
    ks: Sequence[int],
    backend: str = "auto",
) -> Tensor:
    """The 6 descriptors of every scale in ``ks``, scale after scale.

    Args:
        coord: (N, 3) float positions.
        feat: (N, C) float features; the last column is averaged over the neighbours.
        idx: (N, K) int64 nearest points of each point's event, nearest first, -1 where the
            event has fewer; K >= max(ks) (the first k columns are the k nearest).
        dist: (N, K) their distances (inf where -1).
        ks: neighbourhood sizes.
        backend: "auto" (numba on CPU, torch otherwise), "torch" (reference) or "numba".

    Returns:
        (N, 6 * len(ks)) float32.
    """
    if max(ks) > idx.shape[1]:
        raise ValueError(f"multiscale_shape_features: ks {tuple(ks)} > {idx.shape[1]} neighbours")
    if resolve_backend(backend, coord.device, "numba", "multiscale_shape_features") == "torch":
        return torch.cat(
            [local_shape_features(coord, feat, idx[:, :k], dist[:, :k]) for k in ks], dim=1
        )
    order = sorted(range(len(ks)), key=lambda s: ks[s])
    cov, emean, last = _moments(
        to_numpy(coord.to(torch.float64)),
        to_numpy(feat[:, -1].to(torch.float64)),
        np.ascontiguousarray(to_numpy(idx)),
        np.array([ks[s] for s in order], dtype=np.int64),
        torch.get_num_threads(),
    )  # (N, S, 3, 3), (N, S), (N, S) in ascending-k order
    last_t = torch.from_numpy(last)  # (N, S)
    far = dist.to(torch.float64).gather(1, last_t.clamp(min=0))  # (N, S)
    far = torch.where(last_t >= 0, far, torch.zeros_like(far))
    cov_t, emean_t = torch.from_numpy(cov), torch.from_numpy(emean)
    parts = {
        order[s]: _shape_from_moments(cov_t[:, s], far[:, s], emean_t[:, s]) for s in range(len(ks))
    }
    return torch.cat([parts[s] for s in range(len(ks))], dim=1)  # (N, 6 * S)


def point_shape_descriptors(batch: PointBatch, ks: Sequence[int]) -> Tensor:
    """The 6 descriptors of every scale in ``ks`` for every point of ``batch`` (no gradient).

    One kNN query at the largest k on all of torch's threads (the k nearest are a prefix,
    sorted by distance), then :func:`multiscale_shape_features`; the last channel of
    ``batch.feat`` is the one averaged over the neighbours.

    Returns:
        (N, 6 * len(ks)) float32 on ``batch.coord``'s device.
    """
    with torch.no_grad():
        idx, dist = knn(
            batch.coord,
            batch.offset,
            batch.coord,
            batch.offset,
            max(ks),
            workers=torch.get_num_threads(),
        )  # (N, K)
        shape = multiscale_shape_features(batch.coord, batch.feat, idx, dist, ks)  # (N, 6 * S)
    return shape.to(batch.coord.device)


def descriptor_key(ks: Sequence[int]) -> str:
    """The name of the descriptors of sizes ``ks`` in a batch (``PointBatch.descriptor_key``)."""
    return "shape:" + ",".join(str(int(k)) for k in ks)


def pipeline_descriptors(batch: PointBatch, ks: Sequence[int]) -> Tensor | None:
    """(N, 6 * S) descriptors of sizes ``ks`` that the data pipeline computed
    (:class:`EventDescriptors`) on ``batch.coord``'s device, or None when the batch carries
    none or others (the caller then computes them with :func:`point_shape_descriptors`)."""
    if batch.descriptors is None or batch.descriptor_key != descriptor_key(ks):
        return None
    return batch.descriptors.to(batch.coord.device)


def batch_descriptors(batch: PointBatch, ks: Sequence[int]) -> Tensor:
    """(N, 6 * S) descriptors of sizes ``ks``: those the data pipeline attached to ``batch``
    (:class:`EventDescriptors`), else computed from it (:func:`point_shape_descriptors`)."""
    shape = pipeline_descriptors(batch, ks)  # (N, 6 * S) or None
    return shape if shape is not None else point_shape_descriptors(batch, ks)


class LocalGeometryEncoder(Encoder):
    """``forward(batch) -> EncoderOutput`` with (N, out_dim) per-point descriptors (read from
    ``batch.descriptors`` when the data pipeline computed those of ``cfg.ks``)."""

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
        shape = pipeline_descriptors(batch, self.cfg.ks)  # (N, 6 * S) or None
        if shape is None:
            shape = point_shape_descriptors(batch, self.cfg.ks)  # (N, 6 * S)
        return EncoderOutput(
            feat=torch.cat([batch.feat.float(), shape], dim=1), level="point", offset=batch.offset
        )  # (N, D)


class EventDescriptors:
    """Computes an event's :func:`point_shape_descriptors` once, in the data pipeline.

    A transform (``descriptors(event, rng) -> event`` with ``Event.descriptors`` attached),
    placed after the coordinates are normalised and before the augmentations. The
    descriptors are eigenvalue ratios, log sizes and mean log energies of each point's
    neighbourhoods, so rotations and flips leave them unchanged: they are computed on the
    event as read, cached per event (source, row and size), and a later epoch, the val pass
    and the test pass reuse them (a scale augmentation would shift the two log-size channels
    and a jitter the neighbourhoods: the cached values are those of the event as read, which
    is what a model sees at inference). The log-energy channel is made as ``preprocess``
    makes it, so the values equal :func:`point_shape_descriptors` of the preprocessed event.
    The cache holds at most ``max_cached_bytes`` (2 GiB: about 22 M points at 4 scales); events
    beyond it are computed each time they are read.
    """

    def __init__(
        self,
        ks: Sequence[int],
        preprocess: Preprocess,
        *,
        cache: bool = True,
        max_cached_bytes: int = 2 << 30,
    ) -> None:
        self.ks = tuple(int(k) for k in ks)
        self.key = descriptor_key(self.ks)
        self.features = Compose(
            [
                LogEnergy(eps=preprocess.log_energy_eps, emax=preprocess.log_energy_max),
                MakeFeatures(time_scale=preprocess.time_scale),
            ]
        )
        self.memo: EventMemo[np.ndarray] = EventMemo(lambda a: a.nbytes, cache, max_cached_bytes)

    def values(self, event: Event) -> np.ndarray:
        """(N, 6 * S) float32 descriptors of one event (normalised coordinates, MeV)."""
        featured = self.features(event, np.random.default_rng(0))  # deterministic steps
        return point_shape_descriptors(collate([featured]), self.ks).numpy()

    def __call__(self, event: Event, rng: np.random.Generator | None = None) -> Event:
        """Attach the event's descriptors (computed, or reused when it was seen before)."""
        del rng  # deterministic
        return event.with_fields(
            descriptors=self.memo.get(event, self.values),
            meta={**event.meta, "descriptor_key": self.key},
        )
