"""Where two kNN backends may disagree, and comparisons that allow for it.

On the voxel lattice of LArTPC events many neighbours are equally far; at the k-th place
scipy's tree and the torch kNN (the CUDA path) may keep different ones, both correct."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nufm.batch import PointBatch
from nufm.data.event import Event
from nufm.geometry.knn import knn
from nufm.workflows.embed import Embeddings
from nufm.workflows.load import Pretrained


def interpolation_ties(pre: Pretrained, events: Sequence[Event], emb: Embeddings) -> np.ndarray:
    """(N,) bool: points whose 3rd and 4th nearest token centres are equally far (relative
    1e-5), so which 3 tokens their interpolated feature mixes is a tie that two kNN backends
    may break differently (both choices are correct)."""
    assert emb.token_center is not None and emb.token_offset is not None
    rng = np.random.default_rng(0)
    coord = np.concatenate([pre.preprocess.transforms()(e, rng).coord for e in events])
    counts = np.diff(np.concatenate([[0], emb.point_offset]))  # type: ignore[arg-type]
    _, dist = knn(
        torch.from_numpy(coord).float(),
        torch.from_numpy(np.cumsum(counts)),
        torch.from_numpy(emb.token_center),
        torch.from_numpy(emb.token_offset),
        4,
        backend="scipy",
    )  # (N, 4)
    d = dist.double().numpy()  # inf past an event's token count
    with np.errstate(invalid="ignore"):  # inf - inf in events of fewer than 4 tokens
        return np.abs(d[:, 2] - d[:, 3]) <= 1e-5 * d[:, 3]


def assert_same_embeddings(
    pre: Pretrained, events: Sequence[Event], a: Embeddings, b: Embeddings, tol: float
) -> int:
    """Token features, token centres and event embeddings agree within ``tol``; per-point
    features agree at every point but those of :func:`interpolation_ties`. Returns how many
    points differ (all of them ties)."""
    for name in ("event", "token", "token_center", "point_offset", "token_offset"):
        x, y = getattr(a, name), getattr(b, name)
        assert x is not None and y is not None, name
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=name)
    assert a.point is not None and b.point is not None
    off = ~np.isclose(a.point, b.point, rtol=tol, atol=tol).all(axis=1)  # (N,)
    ties = interpolation_ties(pre, events, a)
    assert not (off & ~ties).any(), f"{int((off & ~ties).sum())} points differ without a tie"
    return int(off.sum())


def descriptor_ties(batch: PointBatch, ks: Sequence[int]) -> np.ndarray:
    """(N,) bool: points whose k-th and (k+1)-th nearest points are equally far (relative
    1e-6) at some scale k of ``ks``, so which k points its descriptors of that scale average
    over is a tie."""
    _, dist = knn(batch.coord, batch.offset, batch.coord, batch.offset, max(ks) + 1)
    d = dist.double().numpy()  # (N, K + 1), inf past an event's size
    tie = np.zeros(len(d), dtype=bool)
    with np.errstate(invalid="ignore"):  # inf - inf in events of fewer points
        for k in ks:
            tie |= np.abs(d[:, k - 1] - d[:, k]) <= 1e-6 * d[:, k]
    return tie
