"""Metrics vs scikit-learn on random inputs, plus hand-computed PQ and regression cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    adjusted_rand_score,
    balanced_accuracy_score,
    confusion_matrix,
    jaccard_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from nufm.eval.metrics import (
    ConfusionMatrix,
    InstanceMetrics,
    PanopticCounts,
    adjusted_rand_index,
    efficiency_at_rejection,
    event_class_scores,
    instance_efficiency,
    metrics_from_counts,
    panoptic_counts,
    regression_metrics,
    roc_auc,
)

SEEDS = [0, 1, 2, 3, 4]


def _random_labels(seed: int, n: int = 600, C: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Random pred/target with ignored points, a class absent from both (C-1), one class only
    in pred (C-2 never in target) and skewed frequencies."""
    rng = np.random.default_rng(seed)
    p_cls = np.array([0.4, 0.3, 0.15, 0.1, 0.05, 0.0])[:C]
    target = rng.choice(C, size=n, p=p_cls / p_cls.sum())
    target[target == C - 2] = 0  # class C-2 never a target
    pred = np.where(rng.random(n) < 0.6, target, rng.integers(0, C - 1, n))  # never C-1
    target[rng.random(n) < 0.1] = -1  # ignored points
    return pred, target


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    C = 6
    pred, target = _random_labels(seed, C=C)
    cm = ConfusionMatrix(C)
    for chunk in np.array_split(np.arange(pred.size), 7):  # several batches, one data set
        cm.update(torch.as_tensor(pred[chunk]), torch.as_tensor(target[chunk]))
    m = cm.compute()
    kept = target != -1
    p, t = pred[kept], target[kept]
    np.testing.assert_array_equal(m.counts, confusion_matrix(t, p, labels=range(C)))

    present = np.union1d(np.unique(p), np.unique(t))
    assert C - 1 not in present and (C - 2) in present and (C - 2) not in t
    np.testing.assert_array_equal(m.in_macro, np.isin(np.arange(C), present))
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=present, zero_division=0)
    np.testing.assert_allclose(m.precision[present], prec)
    np.testing.assert_allclose(m.recall[present], rec)
    np.testing.assert_allclose(m.f1[present], f1)
    np.testing.assert_array_equal(m.support[present], sup)
    np.testing.assert_allclose(
        m.iou[present], jaccard_score(t, p, labels=present, average=None, zero_division=0)
    )
    assert np.isnan(m.f1[C - 1]) and np.isnan(m.iou[C - 1])  # absent from both: undefined

    mp, mr, mf, _ = precision_recall_fscore_support(t, p, average="macro", zero_division=0)
    assert m.macro_precision == pytest.approx(mp)
    assert m.macro_recall == pytest.approx(mr)
    assert m.macro_f1 == pytest.approx(mf)
    assert m.miou == pytest.approx(jaccard_score(t, p, average="macro", zero_division=0))
    assert m.accuracy == pytest.approx(float((p == t).mean()))
    with pytest.warns(UserWarning):  # sklearn warns that pred has a class not in target
        ba = balanced_accuracy_score(t, p)
    assert m.balanced_accuracy == pytest.approx(ba)
    assert m.num_points == kept.sum()


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_macro_ignore_classes_and_logits(seed: int) -> None:
    C = 5
    rng = np.random.default_rng(seed)
    target = rng.integers(-1, C, 400)
    logits = rng.normal(size=(400, C)).astype(np.float32)
    pred = logits.argmax(1)
    cm = ConfusionMatrix(C, macro_ignore_classes=(4,))
    cm.update(logits, target)  # (N, C) scores -> argmax
    m = cm.compute()
    kept = target != -1
    labels = [0, 1, 2, 3]
    _, _, f1, _ = precision_recall_fscore_support(
        target[kept], pred[kept], labels=labels, average="macro", zero_division=0
    )
    assert m.macro_f1 == pytest.approx(f1)
    assert not m.in_macro[4] and np.isfinite(m.f1[4])  # reported but not averaged


def test_per_batch_average_differs_from_dataset_level() -> None:
    """The PoLAr-MAE bug: averaging per-batch macro F1 is not the dataset F1."""
    # batch 1: 99 class-0 points all right + 1 class-1 point wrong; batch 2: one class-1 right
    t1, p1 = np.r_[np.zeros(99, int), 1], np.zeros(100, int)
    t2, p2 = np.array([1]), np.array([1])
    per_batch = []
    cm = ConfusionMatrix(2)
    for p, t in ((p1, t1), (p2, t2)):
        one = ConfusionMatrix(2)
        one.update(p, t)
        per_batch.append(one.compute().macro_f1)
        cm.update(p, t)
    _, _, f1, _ = precision_recall_fscore_support(np.r_[t1, t2], np.r_[p1, p2], average="macro")
    assert cm.compute().macro_f1 == pytest.approx(f1)
    assert f1 == pytest.approx((198 / 199 + 2 / 3) / 2)  # 0.831
    assert np.mean(per_batch) == pytest.approx((198 / 199 / 2 + 1.0) / 2)  # 0.749


def test_merge_equals_single_accumulator() -> None:
    pred, target = _random_labels(7)
    whole, a, b = ConfusionMatrix(6), ConfusionMatrix(6), ConfusionMatrix(6)
    whole.update(pred, target)
    a.update(pred[:300], target[:300])
    b.update(pred[300:], target[300:])
    torch.testing.assert_close(a.merge(b).counts, whole.counts)
    assert a.all_reduce_() is a  # no process group: a no-op


def test_confusion_matrix_rejects_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="target has 1 values outside"):
        cm.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="pred has 1 values outside"):
        cm.update(np.array([0, -1]), np.array([0, 1]))
    cm.update(np.array([0, -1]), np.array([0, -1]))  # pred at ignored points is not checked
    with pytest.raises(ValueError, match="must both be"):
        cm.update(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        metrics_from_counts(np.eye(2, dtype=int), macro_ignore_classes=(5,))


def test_empty_confusion_matrix_is_nan() -> None:
    m = ConfusionMatrix(3).compute()
    assert math.isnan(m.macro_f1) and math.isnan(m.accuracy) and m.num_points == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_ari_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    target = rng.integers(0, 8, n)
    pred = np.where(rng.random(n) < 0.7, target * 3 + 5, rng.integers(0, 20, n))
    target[rng.random(n) < 0.1] = -1
    unassigned = rng.random(n) < 0.05
    pred[unassigned] = -1
    kept = target != -1
    ref_pred = pred.copy()
    ref_pred[unassigned] = 1000 + np.arange(unassigned.sum())  # -1 = singletons
    expected = adjusted_rand_score(target[kept], ref_pred[kept])
    assert adjusted_rand_index(pred, target) == pytest.approx(expected, abs=1e-12)


def test_ari_degenerate_cases() -> None:
    assert adjusted_rand_index([0, 0, 0], [5, 5, 5]) == 1.0
    assert adjusted_rand_index([0, 1, 2], [2, 0, 1]) == 1.0
    assert adjusted_rand_index([], []) == 1.0
    assert adjusted_rand_index([0, 1], [3, 3]) == adjusted_rand_score([3, 3], [0, 1])


def test_panoptic_quality_hand_computed() -> None:
    # event A: target segments a(4 pts) b(4 pts) c(2 pts), 2 ignored points
    target = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, -1, -1])
    pred = np.array([7, 7, 7, 8, 9, 9, 9, 9, 9, -1, 7, 8])
    # ignored points are dropped from both labelings:
    # a vs 7: inter 3, |a|=4, |7|=3 -> IoU 3/4 (match); 8: single point of a -> 1/4 (no)
    # b vs 9: inter 4, |b|=4, |9|=5 -> IoU 4/5 (match); c vs 9: inter 1 -> 1/6; c unmatched
    c = panoptic_counts(pred, target)
    assert (c.tp, c.fp, c.fn) == (2, 1, 1)
    assert c.iou_sum == pytest.approx(0.75 + 0.8)
    assert c.sq == pytest.approx(0.775)
    assert c.rq == pytest.approx(2 / 3)
    assert c.pq == pytest.approx(1.55 / 3)
    # event B: perfect single segment
    d = panoptic_counts(np.array([4, 4, 4]), np.array([1, 1, 1]))
    assert (d.tp, d.fp, d.fn, d.iou_sum) == (1, 0, 0, 1.0)
    acc = InstanceMetrics()
    acc.update(pred, target)
    acc.update(np.array([4, 4, 4]), np.array([1, 1, 1]))
    out = acc.compute()
    # dataset level: sum counts first -> 2.55 / (3 + 0.5 + 0.5)
    assert out["pq"] == pytest.approx(2.55 / 4.0)
    assert out["rq"] == pytest.approx(3 / 4.0)
    assert out["sq"] == pytest.approx(2.55 / 3)
    assert out["pq_event_mean"] == pytest.approx((1.55 / 3 + 1.0) / 2)
    assert (out["tp"], out["fp"], out["fn"], out["num_events"]) == (3, 1, 1, 2)


def test_panoptic_exactly_half_iou_is_not_a_match() -> None:
    c = panoptic_counts(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]))  # IoU 0.5 each
    assert (c.tp, c.fp, c.fn) == (0, 2, 1)
    assert math.isnan(c.sq) and c.pq == 0.0
    assert math.isnan(PanopticCounts().pq)


def test_regression_hand_computed() -> None:
    target = np.full(5, 10.0)
    pred = target + np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    m = regression_metrics(torch.as_tensor(pred), target)
    assert (m.n, m.bias, m.median, m.iqr) == (5, 0.0, 0.0, 2.0)
    assert m.rms == pytest.approx(math.sqrt(2.0))
    # rel = [-.2, -.1, 0, .1, .2]; 15.87th percentile at position 4 * 0.158655 = 0.63462,
    # i.e. -0.2 + 0.1 * 0.63462; symmetric, so the half-width is 0.2 - 0.063462
    assert m.relative_resolution == pytest.approx(0.2 - 0.1 * 0.634621, rel=1e-5)
    assert m.relative_bias == 0.0 and m.n_relative == 5
    shifted = regression_metrics(pred + 1.0, target)
    assert shifted.bias == pytest.approx(1.0) and shifted.relative_bias == pytest.approx(0.1)
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics(np.array([np.nan]), np.array([1.0]))


def test_all_reduce_with_a_process_group(tmp_path) -> None:
    """The counts tensor goes through a real (1-rank gloo) all-reduce unchanged."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        pred, target = _random_labels(9)
        cm = ConfusionMatrix(6)
        cm.update(pred, target)
        before = cm.counts.clone()
        cm.all_reduce_()
        torch.testing.assert_close(cm.counts, before)
    finally:
        dist.destroy_process_group()


def test_efficiency_at_rejection_hand_case() -> None:
    background = np.arange(100) / 100  # cut at rank ceil(0.9 * 99) = 90: 0.90
    signal = np.array([0.95, 0.9, 0.5, 0.1])  # only 0.95 is above it
    score = np.r_[background, signal]
    is_signal = np.r_[np.zeros(100, bool), np.ones(4, bool)]
    assert efficiency_at_rejection(score, is_signal, 0.9) == 0.25  # 9 % of background pass
    assert efficiency_at_rejection(score, is_signal, 0.5) == 0.5  # cut 0.50
    assert math.isnan(efficiency_at_rejection(signal, np.ones(4, bool), 0.9))


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_equals_scikit_learn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    score = np.round(rng.normal(size=300) + y, 1)  # rounded: many ties
    assert roc_auc(score, y) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert math.isnan(roc_auc(score, np.zeros(300, bool)))


def test_event_class_scores_against_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    t = rng.integers(0, 4, 500)
    t[t == 3] = 0  # class 3 has no event: its AUC is undefined
    logits = rng.normal(size=(500, 4)) + 2.0 * np.eye(4)[t]
    names = ("gamma", "e", "mu", "pi0")
    out = event_class_scores(logits, t, names, [(1, 2, 0.99), (1, 0, 0.9)])
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for c in range(3):
        want = roc_auc_score(t == c, prob[:, c])
        assert out["roc_auc"][names[c]] == pytest.approx(want, abs=1e-12)
    assert math.isnan(out["roc_auc"]["pi0"])
    assert out["macro_roc_auc"] == pytest.approx(np.mean([out["roc_auc"][n] for n in names[:3]]))
    # e efficiency at 99 % mu rejection, read off scikit-learn's ROC curve of the e-vs-mu events
    pair = (t == 1) | (t == 2)
    score = logits[pair, 1] - logits[pair, 2]
    fpr, tpr, _ = roc_curve(t[pair] == 1, score)
    cut = np.quantile(score[t[pair] == 2], 0.99, method="higher")
    want = float((score[t[pair] == 1] > cut).mean())
    got = out["efficiency"]["e_vs_mu_at_0.99"]
    assert got == pytest.approx(want)
    # the operating point lies on scikit-learn's ROC curve region: at most 1 % of mu accepted,
    # and no better than the best efficiency the curve allows there
    assert float((score[t[pair] == 2] > cut).mean()) <= 0.01
    assert got <= tpr[fpr <= 0.01].max() + 1e-12
    assert set(out["efficiency"]) == {"e_vs_mu_at_0.99", "e_vs_gamma_at_0.9"}
    with pytest.raises(ValueError, match="names"):
        event_class_scores(logits, t, names[:3])


def _efficiency_by_loops(pred: np.ndarray, truth: np.ndarray, min_true: int = 5):
    """Tracking's definition written out cluster by cluster."""
    found = [f for f in np.unique(pred) if f >= 0]
    majority = {}
    for f in found:
        ids, counts = np.unique(truth[pred == f], return_counts=True)
        majority[f] = (ids[counts.argmax()], counts.max() / counts.sum())
    fakes = sum(1 for f in found if majority[f][1] < 0.75 or majority[f][0] < 0)
    good = []
    for t, n_t in zip(*np.unique(truth[truth >= 0], return_counts=True), strict=True):
        if n_t >= min_true:
            good.append(
                any(
                    majority[f][0] == t
                    and majority[f][1] >= 0.75
                    and np.sum((pred == f) & (truth == t)) >= 0.5 * n_t
                    for f in found
                )
            )
    return (float(np.mean(good)) if good else math.nan), (fakes / len(found) if found else 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_instance_efficiency_equals_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(-1, 8, 400)
    pred = truth.copy()
    flip = rng.random(400) < 0.3  # some points go to other clusters or unassigned
    pred[flip] = rng.integers(-1, 10, int(flip.sum()))
    pred[truth == 2] = 20  # a cluster that merges two tracks
    pred[truth == 3] = 20
    got = instance_efficiency(pred, truth)
    want = _efficiency_by_loops(pred, truth)
    assert got == pytest.approx(want, nan_ok=True)
    # hand case: one clean track, one split in halves, a noise cluster
    t = np.array([0] * 6 + [1] * 6 + [-1] * 3)
    p = np.array([5] * 6 + [6] * 3 + [7] * 3 + [8] * 3)
    assert instance_efficiency(p, t) == (1.0, 0.25)  # both halves hold 50 %; cluster 8 is fake
    assert instance_efficiency(np.full(15, -1), t) == (0.0, 0.0)


def test_vector_error_block_by_hand() -> None:
    from nufm.eval.metrics import vector_error_block

    true = np.zeros((5, 3))
    pred = np.zeros((5, 3))
    pred[:, 0] = [0.0, 0.1, 0.2, 0.3, 0.4]  # distances 0 .. 0.4 normalised units
    block = vector_error_block(("vertex_x", "vertex_y", "vertex_z"), pred, true, unit_scale=20.0)
    d = 20.0 * np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    assert block["vertex_distance"]["median"] == pytest.approx(4.0)
    assert block["vertex_distance"]["q68"] == pytest.approx(np.quantile(d, 0.68))
    angles = np.radians([0.0, 10.0, 30.0, 90.0])
    t = np.tile([1.0, 0.0, 0.0], (4, 1))
    p = np.c_[np.cos(angles), np.sin(angles), np.zeros(4)] * 3.0  # length does not matter
    block = vector_error_block(("dir_x", "dir_y", "dir_z"), p, t)
    assert block["direction_angle_deg"]["median"] == pytest.approx(20.0)
    assert vector_error_block(("a", "b", "c"), p, t) == {}
