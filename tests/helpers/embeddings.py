"""Compare the embeddings of the same events made on two devices or two kNN backends."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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
    d = dist.double().numpy()
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
