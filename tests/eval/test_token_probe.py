"""Token multi-label SVM probe (PoLAr-MAE style): multi-hot labels, F1 vs sklearn, event split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from nufm.eval.token_probe import (
    TokenSVMProbeConfig,
    multilabel_f1,
    run_token_svm_probe,
    token_multi_hot,
)


def test_token_multi_hot() -> None:
    # token 0 holds points of class 1 and 2; token 1 only an ignored point; token 2 class 0 twice
    out = token_multi_hot([0, 0, 1, 2, 2], [1, 2, -1, 0, 0], num_tokens=3, num_classes=3)
    np.testing.assert_array_equal(out, [[False, True, True], [False] * 3, [True, False, False]])
    with pytest.raises(ValueError, match="labels must be in"):
        token_multi_hot([0], [5], num_tokens=1, num_classes=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.random((200, 4)) < [0.5, 0.3, 0.05, 0.0]
    pred = np.where(rng.random((200, 4)) < 0.7, target, rng.random((200, 4)) < 0.2)
    pred[:, 3] = False  # class 3 absent from both -> NaN, excluded from the mean
    f1, mean = multilabel_f1(pred, target)
    ref = f1_score(target[:, :3], pred[:, :3], average=None, zero_division=0)
    np.testing.assert_allclose(f1[:3], ref)
    assert np.isnan(f1[3]) and mean == pytest.approx(ref.mean())


def test_token_svm_probe_informative_vs_random() -> None:
    rng = np.random.default_rng(0)
    T, C, D = 1200, 3, 24
    y = rng.random((T, C)) < 0.4
    ev = np.arange(T) // 20
    informative = rng.normal(size=(T, D)) + np.pad(4.0 * y, ((0, 0), (0, D - C)))
    cfg = TokenSVMProbeConfig(pca_dims=16, svm_c=0.05)
    good = run_token_svm_probe(cfg, informative, y, ev)
    assert good.mean_f1 > 0.9
    assert not np.intersect1d(good.train_events, good.test_events).size
    bad = run_token_svm_probe(cfg, rng.normal(size=(T, D)), y, ev)
    assert bad.mean_f1 < 0.6  # chance-level F1 of balanced-weight SVMs on 40 % positives ~0.45
    assert set(good.to_dict(["a", "b", "c"])["per_class"]) == {"a", "b", "c"}
