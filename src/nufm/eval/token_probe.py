"""PoLAr-MAE-style token multi-label probe: PCA + one-vs-rest linear SVM on frozen tokens.

This file owns the checkpoint-time monitor of PoLAr-MAE (arXiv:2502.02558): each token gets a
multi-hot label of the classes present among its points; features are reduced by PCA (128 dims)
and one ``LinearSVC(C=0.005, class_weight="balanced")`` per class is trained on at most 15,000
train tokens. The reported "token SVM F1" is the mean over classes of the per-class binary F1.
It is a different number from the point-level probe of :mod:`nufm.eval.probes`; report it under
its own name. Unlike the original, train and test tokens come from disjoint *events*.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from nufm.eval.metrics import ArrayLike, to_numpy
from nufm.eval.splits import assert_disjoint_events, points_in_events, split_event_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TokenSVMProbeConfig:
    """Settings of the token multi-label SVM probe (defaults from PoLAr-MAE)."""

    pca_dims: int = 128
    """PCA output dims (clipped to the feature dim and train size); 0 = no PCA."""
    svm_c: float = 0.005
    """Inverse regularisation strength of each LinearSVC."""
    class_balanced: bool = True
    """True = ``class_weight="balanced"`` in each binary SVM."""
    max_train_tokens: int = 15_000
    """Random subset of train tokens (0 = all)."""
    test_fraction: float = 0.5
    """Fraction of distinct events used for testing."""
    seed: int = 0
    """Seed of the event split, subsampling, PCA and SVM."""

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass(frozen=True, kw_only=True)
class TokenProbeResult:
    """Per-class binary scores on the test tokens."""

    f1: np.ndarray
    """(C,) binary F1 per class; NaN when the class is absent from test truth and prediction."""
    support: np.ndarray
    """(C,) int64 test tokens containing the class."""
    mean_f1: float
    """Mean F1 over classes with a defined F1 (the PoLAr-MAE "SVM F1")."""
    train_events: np.ndarray
    test_events: np.ndarray

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        names = class_names or [str(c) for c in range(self.f1.size)]
        return {
            "mean_f1": self.mean_f1,
            "per_class": {
                n: {"f1": float(self.f1[c]), "support": int(self.support[c])}
                for c, n in enumerate(names)
            },
            "num_events": {
                "train": int(self.train_events.size),
                "test": int(self.test_events.size),
            },
        }


def token_multi_hot(
    token_index: ArrayLike, point_labels: ArrayLike, num_tokens: int, num_classes: int
) -> np.ndarray:
    """Multi-hot class presence per token from (token, point-label) membership pairs.

    Args:
        token_index: (M,) int token of each membership pair (a point in two groups gives two).
        point_labels: (M,) int class of that point; -1 is ignored.
        num_tokens: T.
        num_classes: C.

    Returns:
        (T, C) bool, True = the token contains at least one point of the class.
    """
    tok, lab = to_numpy(token_index).astype(np.int64), to_numpy(point_labels).astype(np.int64)
    if tok.shape != lab.shape or tok.ndim != 1:
        raise ValueError(f"token_index {tok.shape} and point_labels {lab.shape} must be (M,)")
    kept = lab != -1
    tok, lab = tok[kept], lab[kept]
    if ((lab < 0) | (lab >= num_classes)).any() or ((tok < 0) | (tok >= num_tokens)).any():
        raise ValueError(f"labels must be in [0, {num_classes}) and tokens in [0, {num_tokens})")
    out = np.zeros((num_tokens, num_classes), dtype=bool)
    out[tok, lab] = True
    return out


def multilabel_f1(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class binary F1 of (T, C) bool arrays; NaN for classes absent from both.

    Returns:
        (C,) F1 and their mean over defined classes (scikit-learn ``f1_score`` with
        ``average="macro"`` on multilabel indicators, absent classes dropped).
    """
    tp = (pred & target).sum(0).astype(np.float64)  # (C,)
    fp = (pred & ~target).sum(0)
    fn = (~pred & target).sum(0)
    den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, den, out=np.full(tp.shape, np.nan), where=den > 0)
    defined = np.isfinite(f1)
    return f1, float(f1[defined].mean()) if defined.any() else float("nan")


def run_token_svm_probe(
    cfg: TokenSVMProbeConfig,
    features: ArrayLike,
    multi_hot: ArrayLike,
    event_ids: ArrayLike,
) -> TokenProbeResult:
    """Train one linear SVM per class on train-event tokens, score on test-event tokens.

    Args:
        cfg: probe settings.
        features: (T, D) float token features (valid tokens only, e.g. ``unpad``-ed).
        multi_hot: (T, C) bool class presence per token (:func:`token_multi_hot`).
        event_ids: (T,) int event of each token.
    """
    from sklearn.decomposition import PCA
    from sklearn.svm import LinearSVC

    x = to_numpy(features).astype(np.float32)
    y = to_numpy(multi_hot).astype(bool)
    ev = to_numpy(event_ids).astype(np.int64)
    if x.ndim != 2 or y.ndim != 2 or ev.shape != (x.shape[0],) or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"need features (T, D), multi_hot (T, C), event_ids (T,); got "
            f"{x.shape}, {y.shape}, {ev.shape}"
        )
    train_ev, test_ev = split_event_ids(ev, (1.0 - cfg.test_fraction, cfg.test_fraction), cfg.seed)
    train, test = points_in_events(ev, train_ev), points_in_events(ev, test_ev)
    assert_disjoint_events(train=ev[train], test=ev[test])
    rng = np.random.default_rng(cfg.seed)
    train_rows = np.flatnonzero(train)
    if 0 < cfg.max_train_tokens < train_rows.size:
        train_rows = np.sort(rng.choice(train_rows, cfg.max_train_tokens, replace=False))
    x_train, x_test = x[train_rows], x[test]
    if cfg.pca_dims > 0:
        dims = min(cfg.pca_dims, x.shape[1], train_rows.size)
        pca = PCA(n_components=dims, random_state=cfg.seed).fit(x_train)
        x_train, x_test = pca.transform(x_train), pca.transform(x_test)
    C = y.shape[1]
    pred = np.zeros((x_test.shape[0], C), dtype=bool)
    for c in range(C):
        y_c = y[train_rows, c]
        if y_c.all() or not y_c.any():  # one label only: predict it
            pred[:, c] = bool(y_c[0]) if y_c.size else False
            continue
        svm = LinearSVC(
            C=cfg.svm_c,
            class_weight="balanced" if cfg.class_balanced else None,
            random_state=cfg.seed,
        )
        pred[:, c] = np.asarray(svm.fit(x_train, y_c).predict(x_test)).astype(bool)
    f1, mean_f1 = multilabel_f1(pred, y[test])
    log.info("token SVM probe: mean F1 %.4f on %d test tokens", mean_f1, int(test.sum()))
    return TokenProbeResult(
        f1=f1,
        support=y[test].sum(0).astype(np.int64),
        mean_f1=mean_f1,
        train_events=train_ev,
        test_events=test_ev,
    )
