"""Boosted trees on frozen features: exactly scikit-learn's model, class-balanced, the number
of iterations selected on the val set, the train subsample capped."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from nufm.eval.boosted_trees import GBTProbeConfig, fit_gbt, run_gbt_probe, train_subsample

C = 3


def _points(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 2 is rare (10 %); feature 0 separates the classes with overlap."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.1, 2, rng.integers(0, 2, n))
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 0] += 1.5 * y
    x[:, 1] += np.where(y == 2, 1.0, 0.0)
    return x, y


def test_gbt_predicts_exactly_as_sklearn_with_the_same_seed() -> None:
    train, val, test = _points(0, 1500), _points(1, 500), _points(2, 500)
    cfg = GBTProbeConfig(max_iter=15, max_train_points=1000, seed=4)
    res = run_gbt_probe(cfg, train, val, test, num_classes=C)
    n_iter = int(res.best.removeprefix("iter="))
    assert len(res.val_macro_f1) == 15 and 1 <= n_iter <= 15
    rows = np.sort(np.random.default_rng(4).choice(1500, 1000, replace=False))
    with threadpool_limits(limits=1, user_api="openmp"):  # as the probe's n_threads=1
        direct = HistGradientBoostingClassifier(
            learning_rate=0.1,
            max_iter=n_iter,
            max_leaf_nodes=31,
            early_stopping=False,  # pyright: ignore[reportArgumentType]
            class_weight="balanced",
            random_state=4,
        ).fit(train[0][rows], train[1][rows])
        direct_test = direct.predict(test[0])
        direct_val = [
            f1_score(val[1], p, average="macro")
            for p in fit_gbt(cfg, *train).staged_predict(val[0])
        ]
    np.testing.assert_array_equal(res.test_pred, direct_test)
    np.testing.assert_allclose(
        res.test.f1, f1_score(test[1], res.test_pred, labels=[0, 1, 2], average=None), atol=1e-12
    )
    assert res.num_points == {"train": 1000, "val": 500, "test": 500}
    # the selected number of iterations is the first best on val
    assert n_iter == int(np.argmax(direct_val)) + 1
    assert res.val_macro_f1[res.best] == pytest.approx(max(direct_val))


def test_gbt_is_class_balanced_and_drops_ignored_points() -> None:
    train, val, test = _points(3, 1500), _points(4, 500), _points(5, 500)
    y = train[1].copy()
    y[::5] = -1
    cfg = GBTProbeConfig(max_iter=20)
    res = run_gbt_probe(cfg, (train[0], y), val, test, num_classes=C)
    assert res.num_points["train"] == int((y != -1).sum())
    plain = run_gbt_probe(
        GBTProbeConfig(max_iter=20, class_balanced=False), (train[0], y), val, test, C
    )
    # the balanced trees predict the rare class far more often (higher recall on it)
    assert res.test.recall[2] > plain.test.recall[2]


def test_gbt_train_subsample_and_config_checks() -> None:
    cfg = GBTProbeConfig(max_train_points=5, seed=1)
    rows = train_subsample(12, cfg)
    assert rows.size == 5 and np.all(np.diff(rows) > 0) and rows.max() < 12
    np.testing.assert_array_equal(train_subsample(12, cfg), rows)  # seeded
    np.testing.assert_array_equal(train_subsample(4, cfg), np.arange(4))
    np.testing.assert_array_equal(
        train_subsample(12, GBTProbeConfig(max_train_points=0)), np.arange(12)
    )
    with pytest.raises(ValueError, match="max_iter"):
        GBTProbeConfig(max_iter=0)
    with pytest.raises(ValueError, match="n_threads"):
        GBTProbeConfig(n_threads=0)
    with pytest.raises(ValueError, match="no labelled points"):
        run_gbt_probe(cfg, (np.zeros((3, 2)), -np.ones(3)), _points(0, 9), _points(1, 9), C)
