"""Event-level embedding search, kNN anomaly scores and ROC AUC.

This file owns what is done with one embedding vector per event (e.g. a pooled encoder output):
nearest-neighbour search ("find events like this one") and a distance-based anomaly score, the
k-th-nearest-neighbour family of detectors (Ramaswamy et al., SIGMOD 2000; mean over k
neighbours as in Angiulli & Pizzuti 2002). Search uses scikit-learn's exact ``NearestNeighbors``
(brute force), which is fine up to ~1e6 events x 512 dims on one machine.
"""

from __future__ import annotations

import numpy as np

from nufm.eval.metrics import ArrayLike, to_numpy


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (E, 1)
    return x / np.maximum(norm, 1e-12)


def _as_matrix(x: ArrayLike, name: str) -> np.ndarray:
    arr = to_numpy(x).astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (E, D), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


class EmbeddingIndex:
    """Exact nearest-neighbour index over E event embeddings.

    Example:
        >>> index = EmbeddingIndex(event_vectors)           # (E, D)
        >>> idx, dist = index.query_rows(np.array([3]), k=5)  # 5 events most like event 3
    """

    def __init__(
        self, embeddings: ArrayLike, normalize: bool = True, metric: str = "cosine"
    ) -> None:
        """
        Args:
            embeddings: (E, D) float, one row per event.
            normalize: True = L2-normalise rows (and queries) first.
            metric: ``cosine`` (distance 1 - cos) or ``euclidean``.
        """
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"EmbeddingIndex metric must be 'cosine' or 'euclidean': {metric!r}")
        emb = _as_matrix(embeddings, "embeddings")
        if emb.shape[0] == 0:
            raise ValueError("EmbeddingIndex needs at least one embedding")
        self.normalize = normalize
        self.metric = metric
        self.embeddings = _l2_normalize(emb) if normalize else emb  # (E, D)
        from sklearn.neighbors import NearestNeighbors

        self._nn = NearestNeighbors(metric=metric, algorithm="brute").fit(self.embeddings)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def query(
        self, vectors: ArrayLike, k: int, *, self_rows: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """k nearest indexed events of each query vector.

        Args:
            vectors: (Q, D) float queries.
            k: neighbours per query (at most E, or E - 1 with ``self_rows``).
            self_rows: (Q,) int row of each query inside the index (-1 = not indexed); that
                row is excluded from its own result.

        Returns:
            idx (Q, k) int64 index rows, nearest first; dist (Q, k) float distances.
        """
        q = _as_matrix(vectors, "query vectors")
        if q.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.embeddings.shape[1]}")
        q = _l2_normalize(q) if self.normalize else q
        E = len(self)
        extra = 0 if self_rows is None else 1
        if not 1 <= k <= E - extra:
            raise ValueError(f"k={k} must be in [1, {E - extra}] for an index of {E} events")
        dist, idx = self._nn.kneighbors(q, n_neighbors=k + extra)  # (Q, k + extra)
        if self_rows is None:
            return idx.astype(np.int64), dist
        rows = to_numpy(self_rows).astype(np.int64)
        if rows.shape != (q.shape[0],):
            raise ValueError(f"self_rows must be ({q.shape[0]},), got {rows.shape}")
        is_self = idx == rows[:, None]  # (Q, k+1)
        # drop the self match; queries whose self is not among the k+1 drop their last neighbour
        drop = np.where(is_self.any(1), is_self.argmax(1), k)  # (Q,)
        keep = np.ones_like(is_self)
        keep[np.arange(len(drop)), drop] = False
        Q = q.shape[0]
        return idx[keep].reshape(Q, k).astype(np.int64), dist[keep].reshape(Q, k)

    def query_rows(self, rows: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of indexed events ``rows (Q,)``, each excluding itself."""
        r = to_numpy(rows).astype(np.int64)
        return self.query(self.embeddings[r], k, self_rows=r)


def knn_anomaly_score(
    reference: ArrayLike,
    queries: ArrayLike | None = None,
    k: int = 5,
    *,
    normalize: bool = False,
    metric: str = "euclidean",
) -> np.ndarray:
    """Anomaly score = mean distance to the k nearest reference events (higher = more unusual).

    Args:
        reference: (E, D) embeddings of normal events.
        queries: (Q, D) embeddings to score; None = score the reference events themselves,
            each excluding itself (leave-one-out).
        k: neighbours averaged.
        normalize: L2-normalise rows first.
        metric: ``euclidean`` or ``cosine``.

    Returns:
        (Q,) float64 scores (or (E,) with ``queries=None``).
    """
    index = EmbeddingIndex(reference, normalize=normalize, metric=metric)
    if queries is None:
        _, dist = index.query_rows(np.arange(len(index)), k)
    else:
        _, dist = index.query(queries, k)
    return dist.astype(np.float64).mean(1)


def roc_auc(scores: ArrayLike, is_anomaly: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Args:
        scores: (Q,) float, higher = more anomalous.
        is_anomaly: (Q,) bool, True = positive.
    """
    from scipy.stats import rankdata

    s = to_numpy(scores).astype(np.float64)
    pos = to_numpy(is_anomaly).astype(bool)
    if s.shape != pos.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and is_anomaly {pos.shape} must both be (Q,)")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positives, {n_neg} negatives")
    ranks = rankdata(s)  # average ranks, 1-based
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
