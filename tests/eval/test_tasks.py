"""evaluate_task gives dataset-level scores equal to scikit-learn on the same predictions, and a
semseg head / linear probe learns on synthetic events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    f1_score,
    jaccard_score,
    precision_recall_fscore_support,
)

from helpers.configs import tiny_vit
from helpers.events import preprocessed_events
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.eval.tasks import evaluate_task, iter_predictions
from nufm.tasks import (
    ClusterConfig,
    EventTaskConfig,
    PIDConfig,
    SemsegConfig,
    TaskModule,
    build_task,
)

BATCH_POINTS = 700  # forces several batches


@pytest.fixture(scope="module")
def eval_events() -> list[Event]:
    return preprocessed_events(5, seed=10, n_interactions=2, n_scatter=10)


def _task(cfg_cls: type, **kw: object) -> TaskModule:
    torch.manual_seed(0)
    return build_task(
        cfg_cls(encoder=tiny_vit(), mode="head", neck_hidden=(16,), head_hidden=(16,), **kw)
    )


def _concat(task: TaskModule, events: list[Event], key: str) -> np.ndarray:
    return torch.cat([p[key] for _, p in iter_predictions(task, events, BATCH_POINTS)]).numpy()


def _check_semantic(block: dict, t: np.ndarray, p: np.ndarray, names: list[str]) -> None:
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    iou = jaccard_score(t, p, labels=labels, average=None, zero_division=0)
    for j, c in enumerate(labels):
        entry = block["per_class"][names[c]]
        assert entry["precision"] == pytest.approx(prec[j])
        assert entry["recall"] == pytest.approx(rec[j])
        assert entry["f1"] == pytest.approx(f1[j])
        assert entry["iou"] == pytest.approx(iou[j])
        assert entry["support"] == support[j]
    assert block["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    assert block["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert block["miou"] == pytest.approx(float(np.mean(iou)))
    assert block["num_points"] == len(t)


def test_semseg_metrics_equal_sklearn(eval_events: list[Event]) -> None:
    task = _task(SemsegConfig)
    res = evaluate_task(task, eval_events, BATCH_POINTS)
    assert res["task"] == "semseg" and res["num_events"] == 5 and res["num_batches"] > 1
    t, p = _concat(task, eval_events, "target"), _concat(task, eval_events, "pred")
    kept = t != -1
    _check_semantic(
        res["semantic"], t[kept], p[kept], ["shower", "track", "michel", "delta", "low_energy"]
    )
    # the per-event counts of the bootstrap: one (C, C) matrix per event, in order, over the
    # batches, each the confusion of that event's own points
    per_event: list[np.ndarray] = []
    again = evaluate_task(task, eval_events, BATCH_POINTS, event_confusion=per_event)
    assert again == res and len(per_event) == res["num_batches"]
    counts = np.concatenate(per_event)
    assert counts.shape == (5, 5, 5)
    start = 0
    for e, event in enumerate(eval_events):
        te, pe = t[start : start + len(event)], p[start : start + len(event)]
        start += len(event)
        want = np.zeros((5, 5), np.int64)
        np.add.at(want, (te[te != -1], pe[te != -1]), 1)
        np.testing.assert_array_equal(counts[e], want)
    assert start == len(t)


def test_pid_metrics_equal_sklearn_over_instances(eval_events: list[Event]) -> None:
    task = _task(PIDConfig)
    res = evaluate_task(task, eval_events, BATCH_POINTS)
    t, p = _concat(task, eval_events, "target"), _concat(task, eval_events, "pred")
    kept = t >= 0
    assert res["pid"]["num_instances"] == int(kept.sum()) > 10
    _check_semantic(res["pid"], t[kept], p[kept], ["photon", "electron", "muon", "pion", "proton"])
    # per event: the particles of each event, whatever batch it fell in
    per_event: list[np.ndarray] = []
    again = evaluate_task(task, eval_events, BATCH_POINTS, event_confusion=per_event)["pid"]
    assert again["confusion_matrix"] == res["pid"]["confusion_matrix"]
    counts = np.concatenate(per_event)
    assert counts.shape == (5, 5, 5)
    assert counts.sum(0).tolist() == res["pid"]["confusion_matrix"]
    event_of, first = [], 0  # each particle's event in the whole set
    for batch, pred in iter_predictions(task, eval_events, BATCH_POINTS):
        event_of.append(pred["instance_event"].numpy() + first)
        first += batch.num_events
    event = np.concatenate(event_of)
    for e in range(5):
        mine = kept & (event == e)
        want = np.zeros((5, 5), np.int64)
        np.add.at(want, (t[mine], p[mine]), 1)
        np.testing.assert_array_equal(counts[e], want)
    assert len(set(event[kept].tolist())) > 1  # particles of several events counted


def test_cluster_metrics_equal_sklearn_ari_per_event(eval_events: list[Event]) -> None:
    task = _task(ClusterConfig, target="interaction")
    res = evaluate_task(task, eval_events, BATCH_POINTS)["instance"]
    aris, n_true = [], 0
    for batch, pred in iter_predictions(task, eval_events, BATCH_POINTS):
        for s, e in zip(
            (batch.offset - batch.counts).tolist(), batch.offset.tolist(), strict=False
        ):
            t, p = pred["target"][s:e].numpy(), pred["pred"][s:e].numpy()
            kept = t >= 0
            aris.append(adjusted_rand_score(t[kept], p[kept]))
            n_true += len(np.unique(t[kept]))
    assert res["num_events"] == 5 and res["target"] == "interaction"
    assert res["ari_mean"] == pytest.approx(float(np.mean(aris)))
    assert res["tp"] + res["fn"] == n_true == 10  # every true interaction counted once
    assert 0.0 <= res["pq"] <= 1.0


def test_event_classification_and_regression_metrics(eval_events: list[Event]) -> None:
    clf = _task(EventTaskConfig, num_classes=3, class_offset=1)
    res = evaluate_task(clf, eval_events, BATCH_POINTS)["event_class"]
    t, p = _concat(clf, eval_events, "target"), _concat(clf, eval_events, "pred")
    assert t.tolist() == [1] * 5  # two interactions -> class 1
    assert res["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert res["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    assert res["class_names"] == ["1", "2", ">=3"]
    per_event: list[np.ndarray] = []
    evaluate_task(clf, eval_events, BATCH_POINTS, event_confusion=per_event)
    counts = np.concatenate(per_event)  # (5, 3, 3): each event's own class and prediction
    assert counts.shape == (5, 3, 3) and (counts.sum((1, 2)) == 1).all()
    cells = [np.argwhere(c)[0].tolist() for c in counts]
    assert cells == [[a, b] for a, b in zip(t, p, strict=True)]

    reg = _task(
        EventTaskConfig,
        kind="regression",
        targets=("visible_energy", "n_interactions"),
        transform="log",
    )
    out = evaluate_task(reg, eval_events, BATCH_POINTS)["regression"]
    pred, target = _concat(reg, eval_events, "pred"), _concat(reg, eval_events, "target")
    value = _concat(reg, eval_events, "target_value")
    np.testing.assert_allclose(
        value[:, 0], [e.meta["visible_energy"] for e in eval_events], rtol=1e-5
    )
    for j, name in enumerate(["log_visible_energy", "log_n_interactions"]):
        r = pred[:, j].astype(np.float64) - target[:, j]
        q25, q75 = np.percentile(r, [25, 75])
        assert out[name]["median"] == pytest.approx(float(np.median(r)), rel=1e-5)
        assert out[name]["iqr"] == pytest.approx(float(q75 - q25), rel=1e-5)
        assert out[name]["n"] == 5
    assert "visible_energy" in out  # also in MeV


@pytest.mark.parametrize("mode", ["head", "linear"])
def test_semseg_learns_on_frozen_random_encoder(mode: str) -> None:
    batch = collate(preprocessed_events(4, seed=20))
    torch.manual_seed(0)
    task = build_task(
        SemsegConfig(
            encoder=tiny_vit(),
            mode=mode,
            neck_hidden=(32,),
            head_hidden=(32,),
            loss="ce",
            class_weighting="none",
        )
    )
    task.train()
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        out = task(batch)
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
