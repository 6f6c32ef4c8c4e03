"""Probes on frozen features: a bag of linear heads (one per learning rate) and kNN.

This file owns the probe protocol used to compare pretrained encoders without fine-tuning:

1. Points (or tokens) with label ``ignore_index`` are dropped.
2. Distinct event ids are split into train / val / test *events*
   (:func:`nufm.eval.splits.split_event_ids`), and the split is checked for shared events. This is
   the fix of the leak in pimm's Panda probe (Panda, arXiv:2512.01324; pimm commit f822f53),
   where points of one event fell into both train and test. A caller whose events are already
   split (the label-efficiency study) passes the three feature sets to
   :func:`run_probe_on_sets` instead.
3. Features are standardised with the train points' mean and std.
4. Linear: one logistic-regression head per learning rate, all trained together (AdamW,
   zero init, minibatch or full batch), as in pimm's PretrainEvaluator bag of classifiers.
   kNN: majority vote of the k nearest train points for each candidate k.
5. The candidate with the best dataset-level macro F1 on the *val events* is chosen, and its
   dataset-level metrics on the *test events* are reported (:mod:`nufm.eval.metrics`).

Runs are deterministic for a given seed (zero init, seeded shuffles and subsampling).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nufm.eval.metrics import ArrayLike, ConfusionMatrix, SemanticMetrics, to_numpy
from nufm.eval.splits import assert_disjoint_events, points_in_events, split_event_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProbeSplitConfig:
    """Settings shared by every probe kind."""

    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    """Fractions of distinct events for train / val / test."""
    seed: int = 0
    """Seed of the event split, shuffles and subsampling."""
    ignore_index: int = -1
    """Label of points that are dropped."""
    macro_ignore_classes: tuple[int, ...] = ()
    """Class ids reported but excluded from macro scores (and from model selection)."""
    class_balanced: bool = False
    """True = weight classes by inverse train frequency (loss weights / kNN vote weights)."""
    standardize: bool = True
    """True = subtract the train mean and divide by the train std of every feature."""

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) < 0:
            raise ValueError(f"probe fractions must be 3 non-negative numbers: {self.fractions}")


@dataclass(frozen=True, kw_only=True)
class LinearProbeConfig(ProbeSplitConfig):
    """Bag of logistic-regression heads, one per learning rate."""

    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    """AdamW learning rate of each head."""
    epochs: int = 20
    """Passes over the train points (with ``batch_size=0``: full-batch optimizer steps)."""
    min_steps: int = 0
    """At least this many optimizer steps: more epochs when the train set is small, so a bag
    fitted on 10 events converges as one fitted on 1,000 does (0 = exactly ``epochs``)."""
    batch_size: int = 8192
    """Points per step; 0 = full batch."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ValueError(f"learning_rates must be positive: {self.learning_rates}")
        if self.epochs < 1 or self.batch_size < 0 or self.min_steps < 0:
            raise ValueError(
                f"need epochs >= 1, batch_size >= 0 and min_steps >= 0: {self.epochs}, "
                f"{self.batch_size}, {self.min_steps}"
            )


@dataclass(frozen=True, kw_only=True)
class KNNProbeConfig(ProbeSplitConfig):
    """k-nearest-neighbour vote among train points."""

    ks: tuple[int, ...] = (5, 20)
    """Candidate numbers of neighbours."""
    metric: str = "cosine"
    """``cosine`` or ``euclidean``."""
    max_train_points: int = 20_000
    """Random subset of train points used as neighbours (0 = all); cost ~ this x eval points."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive: {self.ks}")
        if self.metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {self.metric!r}")


@dataclass(frozen=True, kw_only=True)
class EventSplit:
    """Distinct event ids of each probe set (pairwise disjoint)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        assert_disjoint_events(train=self.train, val=self.val, test=self.test)


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """Outcome of one probe run."""

    test: SemanticMetrics
    """Dataset-level metrics of the selected candidate on the test events."""
    best: str
    """Selected candidate, e.g. ``lr=0.01`` or ``k=20``."""
    val_macro_f1: dict[str, float]
    """Candidate -> macro F1 on the val events."""
    split: EventSplit | None
    """Event ids used for train / val / test (None: the caller gave the three sets)."""
    num_points: dict[str, int]
    """Points per set after dropping ignored labels."""
    test_pred: np.ndarray
    """(n_test,) int64 class predicted by the selected candidate for each labelled test row,
    in row order (rows with label ``ignore_index`` dropped)."""

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "test": self.test.to_dict(class_names),
            "best": self.best,
            "val_macro_f1": self.val_macro_f1,
        }
        if self.split is not None:
            out["num_events"] = {
                "train": int(self.split.train.size),
                "val": int(self.split.val.size),
                "test": int(self.split.test.size),
            }
        out["num_points"] = self.num_points
        return out


def _class_weights(y: Tensor, num_classes: int) -> Tensor:
    """(C,) inverse-frequency weights normalised to mean 1 over classes seen in ``y``."""
    freq = torch.bincount(y, minlength=num_classes).to(torch.float32)  # (C,)
    w = torch.where(freq > 0, 1.0 / freq.clamp_min(1.0), torch.zeros_like(freq))
    return w * (freq > 0).sum() / w.sum()


def _macro_f1(pred: np.ndarray, y: np.ndarray, num_classes: int, cfg: ProbeSplitConfig) -> float:
    cm = ConfusionMatrix(
        num_classes, ignore_index=cfg.ignore_index, macro_ignore_classes=cfg.macro_ignore_classes
    )
    cm.update(pred, y)
    return cm.compute().macro_f1


def _fit_linear_bag(
    x: Tensor, y: Tensor, num_classes: int, cfg: LinearProbeConfig
) -> tuple[Tensor, Tensor]:
    """Train L heads at once; returns weights (L, C, D) and biases (L, C)."""
    n, D = x.shape
    C, L = num_classes, len(cfg.learning_rates)
    weights = [torch.zeros(C, D, device=x.device, requires_grad=True) for _ in range(L)]
    biases = [torch.zeros(C, device=x.device, requires_grad=True) for _ in range(L)]
    optim = torch.optim.AdamW(
        [
            {"params": [w, b], "lr": lr}
            for w, b, lr in zip(weights, biases, cfg.learning_rates, strict=False)
        ],
        weight_decay=cfg.weight_decay,
    )
    class_w = _class_weights(y, C) if cfg.class_balanced else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    bs = n if cfg.batch_size == 0 else min(cfg.batch_size, n)
    steps_per_epoch = -(-n // bs)
    epochs = max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))
    # one buffer for every minibatch: a fresh (b, D) tensor a step costs the CPU more page
    # faults than the step's arithmetic (3x the time of the whole gather at D = 192)
    buf = torch.empty(bs, D, dtype=x.dtype, device=x.device) if bs < n else None
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device) if bs < n else None
        for start in range(0, n, bs):
            if order is None or buf is None:
                xb, yb = x, y  # (n, D), (n,)
            else:
                rows = order[start : start + bs]
                xb = torch.index_select(x, 0, rows, out=buf[: rows.numel()])  # (b, D)
                yb = y[rows]  # (b,)
            w_all = torch.stack(weights)  # (L, C, D)
            b_all = torch.stack(biases)  # (L, C)
            logits = torch.einsum("nd,lcd->nlc", xb, w_all) + b_all  # (b, L, C)
            loss = (
                F.cross_entropy(logits.permute(0, 2, 1), yb[:, None].expand(-1, L), weight=class_w)
                * L
            )  # sum over heads of each head's mean loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
    return torch.stack(weights).detach(), torch.stack(biases).detach()


@torch.no_grad()
def _predict_linear(x: Tensor, w: Tensor, b: Tensor, chunk: int = 65536) -> np.ndarray:
    """(n, D) features -> (n, L) int64 predicted class of each head."""
    out = [
        (torch.einsum("nd,lcd->nlc", x[s : s + chunk], w) + b).argmax(-1)
        for s in range(0, x.shape[0], chunk)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, w.shape[0]), np.int64)


@torch.no_grad()
def _knn_votes(
    train_x: Tensor,
    train_y: Tensor,
    query_x: Tensor,
    ks: tuple[int, ...],
    num_classes: int,
    cfg: KNNProbeConfig,
) -> np.ndarray:
    """(n, len(ks)) int64 majority-vote class for each k (vote ties -> smallest class id).

    Exact brute-force search in chunks of queries (at most 2**24 scores in memory at once).
    """
    n_train = train_x.shape[0]
    k_max = min(max(ks), n_train)
    if cfg.metric == "cosine":
        ref, query_x = F.normalize(train_x, dim=1), F.normalize(query_x, dim=1)
        ref_sq = None
    else:
        ref, ref_sq = train_x, (train_x * train_x).sum(1)  # (n_train,)
    vote_w = (
        _class_weights(train_y, num_classes)
        if cfg.class_balanced
        else torch.ones(num_classes, device=train_x.device)
    )  # (C,)
    chunk = max(1, 2**24 // max(n_train, 1))
    preds = []
    for s in range(0, query_x.shape[0], chunk):
        q = query_x[s : s + chunk]  # (b, D)
        score = q @ ref.T  # (b, n_train) cosine similarity
        if ref_sq is not None:
            score = 2.0 * score - ref_sq  # = |q|^2 - squared distance: same ranking
        idx = score.topk(k_max, dim=1).indices  # (b, k_max) nearest first
        votes = F.one_hot(train_y[idx], num_classes).float() * vote_w  # (b, k_max, C)
        cum = votes.cumsum(1)  # (b, k_max, C) votes among the first j+1 neighbours
        preds.append(torch.stack([cum[:, min(k, k_max) - 1].argmax(-1) for k in ks], dim=1))
    if not preds:
        return np.zeros((0, len(ks)), np.int64)
    return torch.cat(preds).cpu().numpy()


def _as_inputs(
    features: ArrayLike, labels: ArrayLike, num_classes: int, ignore_index: int, what: str
) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Checked (features (N, D) float32 tensor, labels (N,) int64, is_labelled (N,) bool)."""
    device = features.device if isinstance(features, Tensor) else torch.device("cpu")
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    y = to_numpy(labels).astype(np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"probe {what}: needs features (N, D) and labels (N,); got {tuple(x.shape)}, {y.shape}"
        )
    # a NaN or inf makes the sum non-finite: the (N, D) mask is built only then (the sum can
    # also overflow, which the mask clears)
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"probe {what}: features contain NaN or inf")
    is_labelled = y != ignore_index  # (N,)
    bad = is_labelled & ((y < 0) | (y >= num_classes))
    if bad.any():
        raise ValueError(
            f"probe {what}: {int(bad.sum())} labels outside [0, {num_classes}), "
            f"e.g. {int(y[bad][0])}"
        )
    return x, y, is_labelled


def _fit_and_select(
    cfg: LinearProbeConfig | KNNProbeConfig,
    x: dict[str, Tensor],
    y: dict[str, np.ndarray],
    num_classes: int,
) -> tuple[SemanticMetrics, str, dict[str, float], np.ndarray]:
    """Steps 3-5 of the module docstring on labelled train / val / test rows.

    Returns:
        (test metrics of the selected candidate, its name, val macro F1 of every candidate,
        its (n_test,) test predictions).
    """
    device = x["train"].device
    if cfg.standardize:
        mean = x["train"].mean(0)  # (D,)
        std = x["train"].std(0, correction=0).clamp_min(1e-6)  # (D,)
        x = {name: (v - mean) / std for name, v in x.items()}

    match cfg:
        case LinearProbeConfig():
            y_train = torch.as_tensor(y["train"], device=device)
            w, b = _fit_linear_bag(x["train"], y_train, num_classes, cfg)
            names = [f"lr={lr:g}" for lr in cfg.learning_rates]
            val_pred, test_pred = _predict_linear(x["val"], w, b), _predict_linear(x["test"], w, b)
        case KNNProbeConfig():
            train_x, train_y = x["train"], torch.as_tensor(y["train"], device=device)
            if 0 < cfg.max_train_points < train_x.shape[0]:
                keep = np.sort(
                    np.random.default_rng(cfg.seed).choice(
                        train_x.shape[0], cfg.max_train_points, replace=False
                    )
                )
                keep_t = torch.as_tensor(keep, device=device)
                train_x, train_y = train_x[keep_t], train_y[keep_t]
            names = [f"k={k}" for k in cfg.ks]
            val_pred = _knn_votes(train_x, train_y, x["val"], cfg.ks, num_classes, cfg)
            test_pred = _knn_votes(train_x, train_y, x["test"], cfg.ks, num_classes, cfg)
        case _:
            raise TypeError(f"unknown probe config {type(cfg).__name__}")

    val_f1 = {n: _macro_f1(val_pred[:, i], y["val"], num_classes, cfg) for i, n in enumerate(names)}
    best = select_on_val(val_f1)
    cm = ConfusionMatrix(
        num_classes, ignore_index=cfg.ignore_index, macro_ignore_classes=cfg.macro_ignore_classes
    )
    chosen = test_pred[:, names.index(best)]
    cm.update(chosen, y["test"])
    return cm.compute(), best, val_f1, chosen


def select_on_val(val_macro_f1: dict[str, float]) -> str:
    """The candidate with the best val macro F1 (NaN counts as -1; ties go to the first)."""
    scores = np.array([v if np.isfinite(v) else -1.0 for v in val_macro_f1.values()])
    return list(val_macro_f1)[int(np.argmax(scores))]


def run_probe(
    cfg: LinearProbeConfig | KNNProbeConfig,
    features: ArrayLike,
    labels: ArrayLike,
    event_ids: ArrayLike,
    num_classes: int,
    *,
    split: EventSplit | None = None,
) -> ProbeResult:
    """Train and evaluate a probe on frozen per-point (or per-token) features.

    Args:
        cfg: linear-bag or kNN settings.
        features: (N, D) float features; a CUDA tensor keeps the linear probe on the GPU.
        labels: (N,) int class ids in [0, num_classes), ``cfg.ignore_index`` = skip.
        event_ids: (N,) int id of the event each row comes from.
        num_classes: C.
        split: explicit event split; default: split the distinct ids by ``cfg.fractions``.

    Returns:
        Test-event metrics of the candidate selected on the val events.
    """
    x_all, y_np, is_labelled = _as_inputs(
        features, labels, num_classes, cfg.ignore_index, "features"
    )
    device = x_all.device
    ev_np = to_numpy(event_ids).astype(np.int64)
    if ev_np.shape != y_np.shape:
        raise ValueError(
            f"probe needs features (N, D), labels (N,), event_ids (N,); got "
            f"{tuple(x_all.shape)}, {y_np.shape}, {ev_np.shape}"
        )
    if split is None:
        train_ev, val_ev, test_ev = split_event_ids(ev_np[is_labelled], cfg.fractions, cfg.seed)
        split = EventSplit(train=train_ev, val=val_ev, test=test_ev)
    rows = {
        name: np.flatnonzero(is_labelled & points_in_events(ev_np, ids))
        for name, ids in (("train", split.train), ("val", split.val), ("test", split.test))
    }
    for name, r in rows.items():
        if r.size == 0:
            raise ValueError(
                f"probe {name} set has no labelled points (events: "
                f"{getattr(split, name).size}); use more events"
            )
    assert_disjoint_events(**{name: ev_np[r] for name, r in rows.items()})
    num_points = {name: int(r.size) for name, r in rows.items()}

    x = {name: x_all[torch.as_tensor(r, device=device)] for name, r in rows.items()}
    y = {name: y_np[r] for name, r in rows.items()}
    test, best, val_f1, test_pred = _fit_and_select(cfg, x, y, num_classes)
    result = ProbeResult(
        test=test,
        best=best,
        val_macro_f1=val_f1,
        split=split,
        num_points=num_points,
        test_pred=test_pred,
    )
    log.info(
        "probe %s: best %s, val mF1 %.4f, test mF1 %.4f (%d/%d/%d events)",
        type(cfg).__name__,
        result.best,
        val_f1[result.best],
        result.test.macro_f1,
        split.train.size,
        split.val.size,
        split.test.size,
    )
    return result


def run_probe_on_sets(
    cfg: LinearProbeConfig | KNNProbeConfig,
    train: tuple[ArrayLike, ArrayLike],
    val: tuple[ArrayLike, ArrayLike],
    test: tuple[ArrayLike, ArrayLike],
    num_classes: int,
) -> ProbeResult:
    """:func:`run_probe` on sets the caller already split by event (``cfg.fractions`` unused).

    The caller guarantees that no event has points in two sets (the study takes them from the
    train / val / test splits of :func:`nufm.workflows.finetune.load_split_events`).

    Args:
        cfg: linear-bag or kNN settings.
        train, val, test: ``(features (n, D) float, labels (n,) int)`` of each set; rows with
            label ``cfg.ignore_index`` are dropped. A CUDA train tensor keeps the linear
            probe on the GPU.
        num_classes: C.

    Returns:
        Test metrics (and predictions) of the candidate with the best val macro F1.
    """
    x: dict[str, Tensor] = {}
    y: dict[str, np.ndarray] = {}
    device: torch.device | None = None
    for name, (features, labels) in (("train", train), ("val", val), ("test", test)):
        xs, ys, is_labelled = _as_inputs(features, labels, num_classes, cfg.ignore_index, name)
        if device is None:
            device = xs.device
        keep = torch.as_tensor(np.flatnonzero(is_labelled), device=xs.device)
        x[name], y[name] = xs[keep].to(device), ys[is_labelled]
        if y[name].size == 0:
            raise ValueError(f"probe {name} set has no labelled points")
        if xs.shape[1] != x["train"].shape[1]:
            raise ValueError(
                f"probe {name} features have {xs.shape[1]} columns, train has {x['train'].shape[1]}"
            )
    test_metrics, best, val_f1, test_pred = _fit_and_select(cfg, x, y, num_classes)
    log.info(
        "probe %s on given sets: best %s, val mF1 %.4f, test mF1 %.4f (%d/%d/%d points)",
        type(cfg).__name__,
        best,
        val_f1[best],
        test_metrics.macro_f1,
        y["train"].size,
        y["val"].size,
        y["test"].size,
    )
    return ProbeResult(
        test=test_metrics,
        best=best,
        val_macro_f1=val_f1,
        split=None,
        num_points={name: int(v.size) for name, v in y.items()},
        test_pred=test_pred,
    )
