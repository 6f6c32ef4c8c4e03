"""Embedding index, kNN anomaly score and ROC AUC (vs scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nufm.eval.retrieval import EmbeddingIndex, knn_anomaly_score, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    is_anomaly = rng.random(200) < 0.3
    scores = rng.normal(size=200) + is_anomaly
    scores[:40] = np.round(scores[:40])  # ties
    assert roc_auc(scores, is_anomaly) == pytest.approx(roc_auc_score(is_anomaly, scores))
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(scores, np.zeros(200, bool))


def test_planted_outliers_rank_high() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(500, 16))
    normal = rng.normal(size=(100, 16))
    outliers = rng.normal(size=(10, 16)) * 0.5 + 5.0 * rng.choice([-1, 1], size=(10, 16))
    queries = np.concatenate([normal, outliers])
    is_anomaly = np.r_[np.zeros(100, bool), np.ones(10, bool)]
    scores = knn_anomaly_score(reference, queries, k=5)
    assert roc_auc(scores, is_anomaly) > 0.95
    # leave-one-out on a reference with the outliers mixed in
    mixed = np.concatenate([reference, outliers])
    loo = knn_anomaly_score(mixed, None, k=5)
    assert roc_auc(loo, np.r_[np.zeros(500, bool), np.ones(10, bool)]) > 0.95


def test_knn_anomaly_score_hand_computed() -> None:
    reference = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(knn_anomaly_score(reference, np.array([[2.0]]), k=2), [1.0])
    # leave-one-out: point 0 -> neighbours 1, 3 -> (1 + 3) / 2
    np.testing.assert_allclose(knn_anomaly_score(reference, None, k=2), [2.0, 1.5, 2.5])


def test_index_excludes_the_query_itself() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(50, 8))
    emb[7] = emb[3]  # a duplicate: both at distance 0 from each other
    index = EmbeddingIndex(emb, normalize=True, metric="cosine")
    idx, dist = index.query_rows(np.arange(50), k=3)
    assert idx.shape == (50, 3) and not (idx == np.arange(50)[:, None]).any()
    assert idx[3, 0] == 7 and idx[7, 0] == 3 and dist[3, 0] == pytest.approx(0.0, abs=1e-6)
    # brute-force reference: cosine distance on normalised rows
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    d = 1.0 - x @ x.T
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(idx[10]), np.sort(np.argsort(d[10])[:3]))
    np.testing.assert_allclose(dist[10], np.sort(d[10])[:3], atol=1e-5)
    # an outside query keeps all k; self_rows=-1 drops nothing it should keep
    out_idx, _ = index.query(emb[10:11] * 2.0, k=3)
    assert out_idx[0, 0] == 10
    kept_idx, _ = index.query(emb[10:11], k=3, self_rows=np.array([-1]))
    np.testing.assert_array_equal(kept_idx, out_idx)


def test_index_euclidean_and_errors() -> None:
    emb = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    index = EmbeddingIndex(emb, normalize=False, metric="euclidean")
    idx, dist = index.query(np.array([[0.0, 0.0]]), k=2)
    np.testing.assert_array_equal(idx, [[0, 2]])
    np.testing.assert_allclose(dist, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="k=3 must be in"):
        index.query_rows(np.array([0]), k=3)
    with pytest.raises(ValueError, match="query dim"):
        index.query(np.zeros((1, 3)), k=1)
    with pytest.raises(ValueError, match="metric"):
        EmbeddingIndex(emb, metric="manhattan")
