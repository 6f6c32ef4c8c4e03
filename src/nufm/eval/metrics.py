"""Dataset-level metrics: semantic confusion matrix, instance clustering (ARI, PQ), regression.

This file owns every number nufm reports for a prediction. The rules, stated once:

* **Dataset level, never per batch.** Semantic scores come from one confusion matrix accumulated
  over the whole data set (:class:`ConfusionMatrix`), like pimm's evaluator and unlike
  PoLAr-MAE (arXiv:2502.02558), whose torchmetrics F1 was averaged over validation batches.
  The counts are an int64 tensor, so DDP ranks combine with one ``all_reduce``
  (:meth:`ConfusionMatrix.all_reduce_`) or :meth:`ConfusionMatrix.merge`.
* **Ignore index.** Points whose *target* equals ``ignore_index`` (default -1) are dropped before
  counting. Predictions must be valid class ids at every kept point.
* **Macro rule.** A class takes part in the macro means (macro precision / recall / F1, mIoU) iff
  it occurs in the targets *or* in the predictions of the evaluated points and is not listed in
  ``macro_ignore_classes``. A class absent from both has undefined scores: its per-class entries
  are NaN (``null`` in JSON) and it is left out of the mean. A present class with a zero
  denominator scores 0 (precision of a never-predicted class, recall of a class only predicted).
  This equals scikit-learn's ``average="macro"`` with ``labels=None`` and ``zero_division=0``.
  ``balanced_accuracy`` is the mean recall over classes with target support (scikit-learn's
  ``balanced_accuracy_score``).
* **Instances** (per event; ids are only unique within an event): points whose target instance is
  -1 are dropped; a predicted id of -1 means "unassigned". Tracking's efficiency and fake rate
  (:func:`instance_efficiency`) instead count target -1 points as noise inside clusters. ARI
  (Hubert & Arabie 1985) treats each unassigned point as its own cluster. Panoptic quality
  (Kirillov et al., arXiv:1801.00868) is class-agnostic here: segments match when IoU > 0.5
  (unique by construction); data-set PQ sums TP, FP, FN and matched IoU over events before
  dividing.
* **Regression**: residual ``r = pred - target`` in the target's units; see
  :func:`regression_metrics`.
* **Event classification scores**: one-vs-rest ROC AUC per class from the softmax
  probabilities (:func:`roc_auc`, the Mann-Whitney statistic with tied scores counted half;
  NaN when a class has no event or every event), and the signal efficiency at a fixed
  background rejection (:func:`efficiency_at_rejection`), see :func:`event_class_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[int] | Sequence[float]


def to_numpy(x: ArrayLike) -> np.ndarray:
    """Tensor (any device) or array-like -> numpy array (no copy when already numpy)."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _nan_mean(values: np.ndarray, take: np.ndarray) -> float:
    return float(values[take].mean()) if take.any() else float("nan")


# --------------------------------------------------------------------------------------------
# Semantic segmentation / classification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SemanticMetrics:
    """Dataset-level classification scores computed from a confusion matrix.

    Per-class arrays are (C,) float64; entries of classes absent from both targets and
    predictions are NaN.
    """

    counts: np.ndarray
    """(C, C) int64 confusion counts, rows = target class, columns = predicted class."""
    precision: np.ndarray
    """(C,) TP / (TP + FP); 0 for a present class that is never predicted."""
    recall: np.ndarray
    """(C,) TP / (TP + FN); 0 for a class that is predicted but has no target points."""
    f1: np.ndarray
    """(C,) 2 TP / (2 TP + FP + FN)."""
    iou: np.ndarray
    """(C,) TP / (TP + FP + FN) (Jaccard index)."""
    support: np.ndarray
    """(C,) int64 number of target points of each class."""
    predicted: np.ndarray
    """(C,) int64 number of points predicted as each class."""
    in_macro: np.ndarray
    """(C,) bool True = the class is present and counted in the macro means."""
    accuracy: float
    """Fraction of evaluated points predicted correctly (NaN when no points)."""
    balanced_accuracy: float
    """Mean recall over classes with target support (and not macro-ignored)."""
    macro_precision: float
    """Mean precision over ``in_macro`` classes."""
    macro_recall: float
    """Mean recall over ``in_macro`` classes."""
    macro_f1: float
    """Mean F1 over ``in_macro`` classes."""
    miou: float
    """Mean IoU over ``in_macro`` classes."""
    num_points: int
    """Number of evaluated (non-ignored) points."""

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready dict (NaN kept as float; :func:`nufm.eval.report.write_metrics_json`
        writes it as ``null``)."""
        names = (
            list(class_names)
            if class_names is not None
            else [str(c) for c in range(self.num_classes)]
        )
        if len(names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(names)} entries but the confusion matrix has "
                f"{self.num_classes} classes"
            )
        per_class = {
            name: {
                "precision": float(self.precision[c]),
                "recall": float(self.recall[c]),
                "f1": float(self.f1[c]),
                "iou": float(self.iou[c]),
                "support": int(self.support[c]),
                "predicted": int(self.predicted[c]),
                "in_macro": bool(self.in_macro[c]),
            }
            for c, name in enumerate(names)
        }
        return {
            "num_points": self.num_points,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "miou": self.miou,
            "class_names": names,
            "per_class": per_class,
            "confusion_matrix": self.counts.tolist(),
            "macro_rule": "mean over classes present in target or prediction, "
            "minus macro_ignore_classes; absent classes are null",
        }


def metrics_from_counts(
    counts: np.ndarray, macro_ignore_classes: Sequence[int] = ()
) -> SemanticMetrics:
    """Per-class and macro scores from a (C, C) confusion matrix (rows target, cols pred).

    Args:
        counts: (C, C) non-negative integer counts.
        macro_ignore_classes: class ids reported per class but left out of every macro mean.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion counts must be square (C, C), got shape {counts.shape}")
    C = counts.shape[0]
    tp = np.diag(counts).astype(np.float64)  # (C,)
    support = counts.sum(1)  # (C,) target points per class
    predicted = counts.sum(0)  # (C,) predicted points per class
    fp = predicted - tp
    fn = support - tp
    is_present = (support > 0) | (predicted > 0)  # (C,)
    in_macro = is_present.copy()
    for c in macro_ignore_classes:
        if not 0 <= c < C:
            raise ValueError(f"macro_ignore_classes contains {c}, outside [0, {C})")
        in_macro[c] = False

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        out = np.divide(num, den, out=np.zeros(C), where=den > 0)
        out[~is_present] = np.nan
        return out

    precision = ratio(tp, predicted.astype(np.float64))
    recall = ratio(tp, support.astype(np.float64))
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    iou = ratio(tp, tp + fp + fn)
    total = int(counts.sum())
    has_support = (support > 0) & in_macro
    return SemanticMetrics(
        counts=counts,
        precision=precision,
        recall=recall,
        f1=f1,
        iou=iou,
        support=support,
        predicted=predicted,
        in_macro=in_macro,
        accuracy=float(tp.sum() / total) if total else float("nan"),
        balanced_accuracy=_nan_mean(recall, has_support),
        macro_precision=_nan_mean(precision, in_macro),
        macro_recall=_nan_mean(recall, in_macro),
        macro_f1=_nan_mean(f1, in_macro),
        miou=_nan_mean(iou, in_macro),
        num_points=total,
    )


class ConfusionMatrix:
    """Accumulates a (C, C) int64 confusion matrix over a whole data set.

    Example:
        >>> cm = ConfusionMatrix(num_classes=4)
        >>> for batch in loader:
        ...     cm.update(logits.argmax(-1), batch.segment)
        >>> cm.all_reduce_()  # under DDP: sum the counts of every rank
        >>> scores = cm.compute()
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int = -1,
        macro_ignore_classes: Sequence[int] = (),
        device: torch.device | str = "cpu",
    ) -> None:
        """
        Args:
            num_classes: C, the number of classes; labels are 0..C-1.
            ignore_index: target value whose points are skipped.
            macro_ignore_classes: class ids left out of the macro means (e.g. LED).
            device: where the counts tensor lives (the all-reduce device under NCCL).
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.macro_ignore_classes = tuple(macro_ignore_classes)
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.counts.zero_()

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one batch.

        Args:
            pred: (N,) int predicted class ids, or (N, C) float scores (argmax is taken).
            target: (N,) int target class ids; ``ignore_index`` entries are skipped.
        """
        pred_t = torch.as_tensor(pred, device=self.counts.device)
        target_t = torch.as_tensor(target, device=self.counts.device)
        if pred_t.ndim == 2:
            if pred_t.shape[1] != self.num_classes:
                raise ValueError(
                    f"pred scores have {pred_t.shape[1]} columns, expected {self.num_classes}"
                )
            pred_t = pred_t.argmax(1)
        if pred_t.shape != target_t.shape or pred_t.ndim != 1:
            raise ValueError(
                f"pred {tuple(pred_t.shape)} and target {tuple(target_t.shape)} must both be (N,)"
            )
        if pred_t.is_floating_point() or target_t.is_floating_point():
            raise ValueError("pred and target must be integer class ids (or pred (N, C) scores)")
        C = self.num_classes
        kept = target_t != self.ignore_index  # (N,) True = evaluated
        target_t, pred_t = target_t[kept].long(), pred_t[kept].long()
        bad_target = (target_t < 0) | (target_t >= C)
        if bool(bad_target.any()):
            raise ValueError(
                f"target has {int(bad_target.sum())} values outside [0, {C}) that are not "
                f"ignore_index={self.ignore_index}, e.g. {int(target_t[bad_target][0])}"
            )
        bad_pred = (pred_t < 0) | (pred_t >= C)
        if bool(bad_pred.any()):
            raise ValueError(
                f"pred has {int(bad_pred.sum())} values outside [0, {C}) at evaluated points, "
                f"e.g. {int(pred_t[bad_pred][0])}"
            )
        flat = torch.bincount(target_t * C + pred_t, minlength=C * C)  # (C*C,)
        self.counts += flat.view(C, C)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts into this one (same C); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge C={other.num_classes} into C={self.num_classes}")
        self.counts += other.counts.to(self.counts.device)
        return self

    def all_reduce_(self) -> ConfusionMatrix:
        """Sum counts over DDP ranks in place (no-op when torch.distributed is not initialised)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.counts, op=torch.distributed.ReduceOp.SUM)
        return self

    def compute(self) -> SemanticMetrics:
        """Dataset-level scores from the accumulated counts."""
        return metrics_from_counts(self.counts.cpu().numpy(), self.macro_ignore_classes)


# --------------------------------------------------------------------------------------------
# Instance clustering: ARI and panoptic quality
# --------------------------------------------------------------------------------------------


def _instance_inputs(
    pred: ArrayLike, target: ArrayLike, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    p, t = to_numpy(pred).astype(np.int64), to_numpy(target).astype(np.int64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"instance pred {p.shape} and target {t.shape} must both be (N,)")
    kept = t != ignore_index  # (N,) True = evaluated
    return p[kept], t[kept]


def adjusted_rand_index(pred: ArrayLike, target: ArrayLike, *, ignore_index: int = -1) -> float:
    """Adjusted Rand index of one event's clustering.

    Args:
        pred: (N,) int predicted instance ids; -1 = unassigned (each such point is a singleton).
        target: (N,) int true instance ids; ``ignore_index`` points are dropped.

    Returns:
        ARI in [-0.5, 1]; 1.0 for identical partitions, including the degenerate cases
        (no points, one cluster in both, all singletons in both), as scikit-learn does.
    """
    p, t = _instance_inputs(pred, target, ignore_index)
    n = p.size
    if n == 0:
        return 1.0
    unassigned = p == -1
    p = p.copy()
    p[unassigned] = p.max(initial=0) + 1 + np.arange(int(unassigned.sum()))  # singletons
    _, p_idx = np.unique(p, return_inverse=True)
    _, t_idx = np.unique(t, return_inverse=True)
    pair = t_idx.astype(np.int64) * (p_idx.max() + 1) + p_idx
    _, cont = np.unique(pair, return_counts=True)  # non-zero contingency counts
    sum_sq = int((cont.astype(np.int64) ** 2).sum())
    a = np.bincount(t_idx).astype(np.int64)  # (n_true,)
    b = np.bincount(p_idx).astype(np.int64)  # (n_pred,)
    # pair-confusion entries (ordered pairs), Python ints against overflow
    tp = sum_sq - n
    fp = int((b**2).sum()) - sum_sq
    fn = int((a**2).sum()) - sum_sq
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


@dataclass(frozen=True, kw_only=True)
class PanopticCounts:
    """Matched-segment counts; add several events with ``+`` for data-set PQ."""

    tp: int = 0
    """Predicted segments matched (IoU > threshold) to a true segment."""
    fp: int = 0
    """Unmatched predicted segments."""
    fn: int = 0
    """Unmatched true segments."""
    iou_sum: float = 0.0
    """Sum of IoU over matched pairs."""

    def __add__(self, other: PanopticCounts) -> PanopticCounts:
        return PanopticCounts(
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            fn=self.fn + other.fn,
            iou_sum=self.iou_sum + other.iou_sum,
        )

    @property
    def sq(self) -> float:
        """Segmentation quality: mean IoU of matched pairs (NaN without matches)."""
        return self.iou_sum / self.tp if self.tp else float("nan")

    @property
    def rq(self) -> float:
        """Recognition quality TP / (TP + FP/2 + FN/2) (NaN when there are no segments)."""
        den = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.tp / den if den else float("nan")

    @property
    def pq(self) -> float:
        """Panoptic quality sum(IoU) / (TP + FP/2 + FN/2) = SQ * RQ."""
        den = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.iou_sum / den if den else float("nan")


def panoptic_counts(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    ignore_index: int = -1,
    iou_threshold: float = 0.5,
) -> PanopticCounts:
    """Class-agnostic panoptic matching of one event's instances.

    Args:
        pred: (N,) int predicted instance ids, -1 = unassigned (belongs to no predicted segment).
        target: (N,) int true instance ids; ``ignore_index`` points are removed from both
            labelings before segment sizes are counted.
        iou_threshold: a pair matches when IoU > this (>= 0.5 keeps matches unique).
    """
    if iou_threshold < 0.5:
        raise ValueError(f"iou_threshold must be >= 0.5 for unique matching, got {iou_threshold}")
    p, t = _instance_inputs(pred, target, ignore_index)
    t_ids, t_idx = np.unique(t, return_inverse=True)
    p_is_assigned = p != -1
    p_ids, p_idx = np.unique(p[p_is_assigned], return_inverse=True)
    n_t, n_p = t_ids.size, p_ids.size
    if n_t == 0 or n_p == 0:
        return PanopticCounts(tp=0, fp=n_p, fn=n_t, iou_sum=0.0)
    t_size = np.bincount(t_idx, minlength=n_t)  # (n_t,)
    p_size = np.bincount(p_idx, minlength=n_p)  # (n_p,)
    inter = np.bincount(t_idx[p_is_assigned] * n_p + p_idx, minlength=n_t * n_p).reshape(
        n_t, n_p
    )  # (n_t, n_p)
    ti, pi = np.nonzero(inter)
    iou = inter[ti, pi] / (t_size[ti] + p_size[pi] - inter[ti, pi])
    is_match = iou > iou_threshold
    tp = int(is_match.sum())
    return PanopticCounts(tp=tp, fp=n_p - tp, fn=n_t - tp, iou_sum=float(iou[is_match].sum()))


def instance_efficiency(
    pred: ArrayLike,
    target: ArrayLike,
    min_true_points: int = 5,
    purity: float = 0.75,
    completeness: float = 0.5,
) -> tuple[float, float]:
    """(efficiency, fake rate) of one event's clusters, as tracking scores them.

    A predicted cluster (id >= 0) belongs to the true instance that holds most of its points
    when that share is at least ``purity``; else, or when most of its points are noise
    (target -1), it is a fake. A true instance with at least ``min_true_points`` points is
    found when a cluster that belongs to it holds at least ``completeness`` of its points.

    Returns:
        efficiency (NaN without a true instance of ``min_true_points``), fake rate (0 without
        a predicted cluster).
    """
    p, t = to_numpy(pred).astype(np.int64), to_numpy(target).astype(np.int64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"instance_efficiency: pred {p.shape} and target {t.shape} must be (N,)")
    assigned = p >= 0
    p_ids, p_idx = np.unique(p[assigned], return_inverse=True)
    t_ids, t_idx = np.unique(t, return_inverse=True)  # -1 (noise) is an id here
    n_p, n_t = p_ids.size, t_ids.size
    t_size = np.bincount(t_idx, minlength=n_t)
    wanted = (t_ids >= 0) & (t_size >= min_true_points)
    if n_p == 0:
        return (0.0 if wanted.any() else float("nan")), 0.0
    inter = np.bincount(p_idx * n_t + t_idx[assigned], minlength=n_p * n_t).reshape(
        n_p, n_t
    )  # (n_p, n_t) shared points
    major = inter.argmax(1)  # (n_p,) majority true instance of each cluster
    share = inter[np.arange(n_p), major] / inter.sum(1)
    owns = (share >= purity) & (t_ids[major] >= 0)  # (n_p,) cluster belongs to its majority
    fake_rate = float((~owns).mean())
    found = np.zeros(n_t, bool)
    big = owns & (inter[np.arange(n_p), major] >= completeness * t_size[major])
    found[major[big]] = True
    efficiency = float(found[wanted].mean()) if wanted.any() else float("nan")
    return efficiency, fake_rate


@dataclass
class InstanceMetrics:
    """Per-event accumulator of ARI and panoptic counts; call :meth:`update` once per event."""

    ignore_index: int = -1
    iou_threshold: float = 0.5
    ari: list[float] = field(default_factory=list)
    panoptic: list[PanopticCounts] = field(default_factory=list)
    efficiency: list[float] = field(default_factory=list)
    fake_rate: list[float] = field(default_factory=list)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one event: pred, target (N,) int instance ids of that event's points."""
        self.ari.append(adjusted_rand_index(pred, target, ignore_index=self.ignore_index))
        eff, fake = instance_efficiency(pred, target)
        self.efficiency.append(eff)
        self.fake_rate.append(fake)
        self.panoptic.append(
            panoptic_counts(
                pred, target, ignore_index=self.ignore_index, iou_threshold=self.iou_threshold
            )
        )

    def merge(self, other: InstanceMetrics) -> InstanceMetrics:
        self.ari.extend(other.ari)
        self.panoptic.extend(other.panoptic)
        self.efficiency.extend(other.efficiency)
        self.fake_rate.extend(other.fake_rate)
        return self

    def compute(self) -> dict[str, float | int]:
        """Data-set scores: PQ/SQ/RQ from summed counts; ARI and PQ also as event means."""
        total = sum(self.panoptic, PanopticCounts())
        event_pq = np.array([c.pq for c in self.panoptic], dtype=np.float64)
        finite = np.isfinite(event_pq)
        return {
            "num_events": len(self.ari),
            "ari_mean": float(np.mean(self.ari)) if self.ari else float("nan"),
            "pq": total.pq,
            "sq": total.sq,
            "rq": total.rq,
            "tp": total.tp,
            "fp": total.fp,
            "fn": total.fn,
            "pq_event_mean": float(event_pq[finite].mean()) if finite.any() else float("nan"),
            "efficiency_mean": _mean_finite(self.efficiency),
            "fake_rate_mean": _mean_finite(self.fake_rate),
        }


def _mean_finite(values: list[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    v = np.asarray(values, np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------

_SIGMA_QUANTILES = (15.865525393145708, 84.1344746068543)  # central 68.27% (+-1 sigma)


@dataclass(frozen=True, kw_only=True)
class RegressionMetrics:
    """Residual statistics of a scalar regression (units of the target unless relative)."""

    n: int
    """Number of evaluated entries."""
    bias: float
    """Mean residual mean(pred - target)."""
    median: float
    """Median residual."""
    iqr: float
    """Inter-quartile range of the residual, q75 - q25 (linear-interpolated percentiles)."""
    rms: float
    """sqrt(mean((pred - target)^2)), includes the bias."""
    relative_bias: float
    """Median of (pred - target) / target over entries with target != 0."""
    relative_resolution: float
    """Half-width of the central 68.27% interval of (pred - target) / target (robust sigma)."""
    n_relative: int
    """Entries with target != 0 used for the relative statistics."""

    def to_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def regression_metrics(pred: ArrayLike, target: ArrayLike) -> RegressionMetrics:
    """Residual statistics of scalar predictions.

    Args:
        pred: (N,) float predictions.
        target: (N,) float true values, same units.
    """
    p, t = to_numpy(pred).astype(np.float64), to_numpy(target).astype(np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"regression pred {p.shape} and target {t.shape} must both be (N,)")
    if p.size == 0:
        raise ValueError("regression_metrics needs at least one entry")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("regression pred/target contain NaN or inf")
    r = p - t  # (N,)
    q25, q75 = np.percentile(r, [25.0, 75.0])
    nonzero = t != 0
    if nonzero.any():
        rel = r[nonzero] / t[nonzero]
        lo, hi = np.percentile(rel, _SIGMA_QUANTILES)
        rel_bias, rel_res = float(np.median(rel)), float(0.5 * (hi - lo))
    else:
        rel_bias = rel_res = float("nan")
    return RegressionMetrics(
        n=int(r.size),
        bias=float(r.mean()),
        median=float(np.median(r)),
        iqr=float(q75 - q25),
        rms=float(math.sqrt(float((r**2).mean()))),
        relative_bias=rel_bias,
        relative_resolution=rel_res,
        n_relative=int(nonzero.sum()),
    )


def roc_auc(score: ArrayLike, is_positive: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counted half (equals scikit-learn's ``roc_auc_score``); NaN when either
    side is empty."""
    from scipy.stats import rankdata

    s = to_numpy(score).astype(np.float64)
    pos = to_numpy(is_positive).astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def efficiency_at_rejection(score: ArrayLike, is_signal: ArrayLike, rejection: float) -> float:
    """Signal efficiency at the score threshold that rejects at least ``rejection`` of the
    background: events scoring above the cut are accepted, the cut being the background score
    at rank ``ceil(rejection (n - 1))`` in increasing order (numpy's ``higher`` quantile), so
    that at most ``(1 - rejection) n`` background events pass; NaN when either side is empty."""
    s = to_numpy(score).astype(np.float64)
    sig = to_numpy(is_signal).astype(bool)
    if not sig.any() or sig.all():
        return float("nan")
    cut = np.quantile(s[~sig], rejection, method="higher")
    return float((s[sig] > cut).mean())


def event_class_scores(
    logits: ArrayLike,
    target: ArrayLike,
    class_names: Sequence[str],
    efficiency_at: Sequence[tuple[int, int, float]] = (),
) -> dict[str, Any]:
    """ROC AUC of each class against the rest and efficiencies at fixed rejection.

    Args:
        logits: (E, C) float class logits of E events.
        target: (E,) int true classes.
        class_names: C names.
        efficiency_at: (signal, background, rejection) triples: among the events of the two
            classes, the signal efficiency at that background rejection, scored by the logit
            difference (signal - background), which orders events as the likelihood ratio of
            the two classes does.

    Returns:
        ``{"roc_auc": {name: auc}, "macro_roc_auc": mean over defined classes,
        "efficiency": {"<sig>_vs_<bkg>_at_<rejection>": eff}}``.
    """
    z = to_numpy(logits).astype(np.float64)
    t = to_numpy(target).astype(np.int64)
    if z.ndim != 2 or len(z) != len(t) or z.shape[1] != len(class_names):
        raise ValueError(
            f"event_class_scores: logits {z.shape}, target {t.shape}, {len(class_names)} names"
        )
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    auc = {name: roc_auc(prob[:, c], t == c) for c, name in enumerate(class_names)}
    defined = [v for v in auc.values() if not math.isnan(v)]
    eff = {}
    for sig, bkg, rej in efficiency_at:
        pair = (t == sig) | (t == bkg)
        key = f"{class_names[sig]}_vs_{class_names[bkg]}_at_{rej:g}"
        eff[key] = efficiency_at_rejection(z[pair, sig] - z[pair, bkg], t[pair] == sig, rej)
    return {
        "roc_auc": auc,
        "macro_roc_auc": float(np.mean(defined)) if defined else float("nan"),
        "efficiency": eff,
    }


def event_class_report(
    logits: ArrayLike,
    target: ArrayLike,
    class_names: Sequence[str],
    efficiency_at: Sequence[tuple[int, int, float]] = (),
) -> dict[str, Any]:
    """The ``event_class`` block of an event classifier: the confusion-matrix scores of its
    argmax predictions (target -1 ignored) and :func:`event_class_scores`."""
    z = to_numpy(logits)
    cm = ConfusionMatrix(len(class_names), ignore_index=-1)
    cm.update(z.argmax(1), target)
    return {
        **cm.compute().to_dict(list(class_names)),
        **event_class_scores(z, target, class_names, efficiency_at),
    }


def _angle(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(E,) angle in radians between the rows of p and t (E, 3)."""
    norm = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cos = (p * t).sum(1) / np.maximum(norm, 1e-12)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def multitask_report(
    pred: Mapping[str, ArrayLike],
    flavour_names: Sequence[str],
    charm_names: Sequence[str],
) -> dict[str, Any]:
    """The blocks of a joint flavour / charm / momentum / vertex model (FASERCal,
    arXiv:2604.07037), from the concatenated outputs of ``MultiTask.predict``.

    Returns:
        ``flavour`` and ``charm``: :func:`event_class_report` (accuracy, per-class F1,
        confusion matrix, one-vs-rest ROC AUC per class); ``vertex``: the 3D distance between
        predicted and true vertex in mm (median, IQR, mean) and per-axis residual statistics
        (cm); ``lepton_p`` (CC events) and ``jet_p``: :class:`RegressionMetrics` of the
        momentum magnitude (GeV/c; its ``relative_resolution`` is the fractional momentum
        resolution) and the median angle between predicted and true direction (mrad).
    """
    out: dict[str, Any] = {
        "flavour": event_class_report(
            pred["flavour_logits"], pred["target_flavour"], flavour_names
        ),
        "charm": event_class_report(pred["charm_logits"], pred["target_charm"], charm_names),
    }
    v, tv = to_numpy(pred["vertex"]).astype(np.float64), to_numpy(pred["target_vertex"])
    dist_mm = 10.0 * np.linalg.norm(v - tv, axis=1)  # cm -> mm
    q25, q50, q75 = np.percentile(dist_mm, [25.0, 50.0, 75.0])
    out["vertex"] = {
        "error_mm_median": float(q50),
        "error_mm_iqr": float(q75 - q25),
        "error_mm_mean": float(dist_mm.mean()),
        **{
            f"residual_{a}_cm": regression_metrics(v[:, k], tv[:, k]).to_dict()
            for k, a in enumerate("xyz")
        },
    }
    cc = to_numpy(pred["target_is_cc"]).astype(bool)
    for name, keep in (("lepton_p", cc), ("jet_p", np.ones_like(cc))):
        p = to_numpy(pred[name]).astype(np.float64)[keep]
        t = to_numpy(pred[f"target_{name}"]).astype(np.float64)[keep]
        mag, tmag = np.linalg.norm(p, axis=1), np.linalg.norm(t, axis=1)
        ok = tmag > 0
        if not ok.any():
            out[name] = {"n": 0}
            continue
        angle = _angle(p[ok], t[ok])
        out[name] = {
            **regression_metrics(mag[ok], tmag[ok]).to_dict(),
            "angle_mrad_median": float(1000.0 * np.median(angle)),
        }
    return out


def vector_error_block(
    names: Sequence[str], pred: ArrayLike, target: ArrayLike, unit_scale: float = 1.0
) -> dict[str, Any]:
    """The 3D summary of a vertex or direction regression (the resolutions a physicist quotes):

    * targets ``vertex_x/y/z``: ``vertex_distance`` = |pred - true| times ``unit_scale``
      (normalised coordinates -> the detector's unit);
    * targets ``dir_x/y/z``: ``direction_angle_deg`` = the angle between predicted and true
      direction.

    Each gives ``median``, ``q68`` (the 68 % quantile, the usual resolution) and ``n``; any other
    targets give an empty dict.
    """
    p, t = to_numpy(pred).astype(np.float64), to_numpy(target).astype(np.float64)
    match tuple(names):
        case ("vertex_x", "vertex_y", "vertex_z"):
            key, value = "vertex_distance", unit_scale * np.linalg.norm(p - t, axis=1)
        case ("dir_x", "dir_y", "dir_z"):
            key, value = "direction_angle_deg", np.degrees(_angle(p, t))
        case _:
            return {}
    return {
        key: {
            "median": float(np.median(value)),
            "q68": float(np.quantile(value, 0.68)),
            "n": int(value.size),
        }
    }
