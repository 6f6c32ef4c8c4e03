"""Gradient-boosted trees on frozen per-point features: the classical baseline row.

What an analyst tries before deep learning: scikit-learn's ``HistGradientBoostingClassifier``
(LightGBM-style histogram boosting) on hand-made per-point features (the multi-scale
local-shape descriptors and energy of :mod:`nufm.models.geometric`). The protocol is the one of
the linear probe (:mod:`nufm.eval.probes`), so the rows compare:

1. rows with label ``ignore_index`` are dropped; the caller gives train / val / test sets that
   are already split by event;
2. at most ``max_train_points`` train points are kept (a seeded uniform subsample), so a fit
   on 1,000 events costs about what one on 100 does;
3. classes are balanced (``class_weight="balanced"``: each class weighs as much as the others,
   so Michel and delta points count);
4. ``max_iter`` boosting iterations are fitted with scikit-learn's own early stopping off;
   the number of iterations with the best dataset-level macro F1 on the *val events* is
   selected (early stopping on the val events, decided after the fit from the staged
   predictions), and the test events are scored at that number.

Deterministic for a given seed (the subsample and scikit-learn's ``random_state``).

Owns :class:`GBTProbeConfig`, :func:`fit_gbt` and :func:`run_gbt_probe`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from nufm.eval.metrics import ArrayLike, ConfusionMatrix, to_numpy
from nufm.eval.probes import ProbeResult, select_on_val

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GBTProbeConfig:
    """Histogram gradient boosting, class-balanced, iterations selected on val events."""

    max_iter: int = 200
    """Boosting iterations fitted (one tree per class each); the val events pick how many of
    them are used."""
    learning_rate: float = 0.1
    """Shrinkage of each tree."""
    max_leaf_nodes: int = 31
    """Leaves per tree (scikit-learn's default)."""
    max_train_points: int = 200_000
    """Train points kept (seeded uniform subsample; 0 = all)."""
    class_balanced: bool = True
    """True = ``class_weight="balanced"``."""
    seed: int = 0
    """Seed of the subsample and scikit-learn's ``random_state``."""
    ignore_index: int = -1
    """Label of points that are dropped."""
    n_threads: int | None = 1
    """OpenMP threads of the fit and the predictions (None = scikit-learn's default, every
    core). One by default: on a 2-core machine shared with other work, two spinning OpenMP
    threads made a 2,000-point fit take minutes instead of 0.3 s (docs/evaluation.md)."""

    def __post_init__(self) -> None:
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1 or None, got {self.n_threads}")
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.learning_rate <= 0:
            raise ValueError(
                f"GBTProbeConfig needs max_iter >= 1, max_leaf_nodes >= 2, learning_rate > 0; "
                f"got {self.max_iter}, {self.max_leaf_nodes}, {self.learning_rate}"
            )
        if self.max_train_points < 0:
            raise ValueError(f"max_train_points must be >= 0, got {self.max_train_points}")


def _labelled(
    features: ArrayLike, labels: ArrayLike, num_classes: int, ignore_index: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    x = to_numpy(features).astype(np.float32, copy=False)
    y = to_numpy(labels).astype(np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"gbt {what}: needs features (N, D) and labels (N,); got {x.shape}, {y.shape}"
        )
    keep = y != ignore_index  # (N,)
    if not keep.any():
        raise ValueError(f"gbt {what} set has no labelled points")
    if ((y[keep] < 0) | (y[keep] >= num_classes)).any():
        raise ValueError(f"gbt {what}: labels outside [0, {num_classes})")
    return x[keep], y[keep]


def train_subsample(n: int, cfg: GBTProbeConfig) -> np.ndarray:
    """Sorted row indices of the train points the trees see (all when under the cap)."""
    if cfg.max_train_points == 0 or n <= cfg.max_train_points:
        return np.arange(n)
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(n, cfg.max_train_points, replace=False))


def fit_gbt(cfg: GBTProbeConfig, x: np.ndarray, y: np.ndarray) -> HistGradientBoostingClassifier:
    """Fit the trees on labelled train rows (subsampled by :func:`train_subsample`) with
    ``cfg.n_threads`` OpenMP threads.

    Args:
        cfg: the settings.
        x: (n, D) float32 features.
        y: (n,) int64 class ids.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows = train_subsample(len(y), cfg)
    model = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        early_stopping=False,  # pyright: ignore[reportArgumentType]  (the stubs say str)
        class_weight="balanced" if cfg.class_balanced else None,
        random_state=cfg.seed,
    )
    with threadpool_limits(limits=cfg.n_threads, user_api="openmp"):
        return model.fit(x[rows], y[rows])


def _macro_f1(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    cm = ConfusionMatrix(num_classes)
    cm.update(pred, y)
    return cm.compute().macro_f1


def run_gbt_probe(
    cfg: GBTProbeConfig,
    train: tuple[ArrayLike, ArrayLike],
    val: tuple[ArrayLike, ArrayLike],
    test: tuple[ArrayLike, ArrayLike],
    num_classes: int,
) -> ProbeResult:
    """Fit, select the number of iterations on ``val``, score ``test`` (module docstring).

    Args:
        cfg: the settings.
        train, val, test: ``(features (n, D) float, labels (n,) int)`` of sets split by event.
        num_classes: C.

    Returns:
        A :class:`~nufm.eval.probes.ProbeResult`: candidates are ``iter=<k>`` (the first k
        boosting iterations), ``num_points['train']`` counts the subsampled train points.
    """
    x_train, y_train = _labelled(*train, num_classes, cfg.ignore_index, "train")
    x_val, y_val = _labelled(*val, num_classes, cfg.ignore_index, "val")
    x_test, y_test = _labelled(*test, num_classes, cfg.ignore_index, "test")
    with threadpool_limits(limits=cfg.n_threads, user_api="openmp"):
        model = fit_gbt(cfg, x_train, y_train)
        val_f1 = {
            f"iter={k}": _macro_f1(pred, y_val, num_classes)
            for k, pred in enumerate(model.staged_predict(x_val), start=1)
        }
        best = select_on_val(val_f1)
        n_iter = int(best.removeprefix("iter="))
        test_pred = np.zeros(0, np.int64)
        for k, pred in enumerate(model.staged_predict(x_test), start=1):
            if k == n_iter:
                test_pred = np.asarray(pred, np.int64)
                break
    cm = ConfusionMatrix(num_classes)
    cm.update(test_pred, y_test)
    result = ProbeResult(
        test=cm.compute(),
        best=best,
        val_macro_f1=val_f1,
        split=None,
        num_points={
            "train": int(train_subsample(len(y_train), cfg).size),
            "val": int(y_val.size),
            "test": int(y_test.size),
        },
        test_pred=test_pred,
    )
    log.info(
        "gbt probe: best %s of %d, val mF1 %.4f, test mF1 %.4f (%d/%d/%d points)",
        best,
        model.n_iter_,
        val_f1[best],
        result.test.macro_f1,
        result.num_points["train"],
        y_val.size,
        y_test.size,
    )
    return result
