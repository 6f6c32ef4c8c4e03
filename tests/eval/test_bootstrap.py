"""The test-event bootstrap: per-event counts, macro F1 of a draw against scikit-learn on the
drawn events' points, the draws, the interval and the counts file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from nufm.eval.bootstrap import (
    EVENT_CONFUSION_FILE,
    bootstrap_macro_f1,
    bootstrap_weights,
    check_same_events,
    confusions_by_event,
    event_confusions,
    load_event_confusion,
    macro_f1_of_counts,
    paired_difference,
    percentile_interval,
    save_event_confusion,
)
from nufm.eval.metrics import ConfusionMatrix, metrics_from_counts


def _events(
    seed: int, num_events: int = 12, C: int = 4
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-event (pred, target) with ignored points, an empty event and a class only ever
    predicted."""
    rng = np.random.default_rng(seed)
    targets = []
    for e in range(num_events):
        t = rng.integers(0, C - 1, 0 if e == 3 else int(rng.integers(1, 40)))  # never C - 1
        t[rng.random(t.size) < 0.1] = -1  # some points ignored
        targets.append(t)
    return _predict(targets, seed + 100, C), targets


def _predict(targets: list[np.ndarray], seed: int, C: int = 4) -> list[np.ndarray]:
    """Right 60 % of the time, else any class (C - 1 too)."""
    rng = np.random.default_rng(seed)
    return [
        np.where(rng.random(t.size) < 0.6, t.clip(0), rng.integers(0, C, t.size)) for t in targets
    ]


def test_event_confusions_by_hand() -> None:
    pred = np.array([0, 1, 1, 2, 0, 2])
    target = np.array([0, 1, -1, 2, 1, 2])
    got = event_confusions(pred, target, [3, 0, 3], 3)
    want = np.zeros((3, 3, 3), np.int64)
    want[0, 0, 0] = want[0, 1, 1] = 1  # event 0: the ignored point is not counted
    want[2, 2, 2], want[2, 1, 0] = 2, 1  # event 2: a 1 taken for a 0
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="add up to 5, the points are 6"):
        event_confusions(pred, target, [3, 2], 3)
    with pytest.raises(ValueError, match="target has class ids outside"):
        event_confusions(pred, target, [6], 2)
    with pytest.raises(ValueError, match="pred has class ids outside"):
        event_confusions(pred + 1, target, [6], 3)


def test_items_in_any_order_counted_in_their_events() -> None:
    pred, target = np.array([2, 0, 1, 1]), np.array([2, 1, -1, 1])
    got = confusions_by_event(pred, target, [1, 0, 1, 0], 2, 3)
    want = np.zeros((2, 3, 3), np.int64)
    want[0, 1, 0] = want[0, 1, 1] = 1  # items 1 and 3; item 2 is ignored
    want[1, 2, 2] = 1
    np.testing.assert_array_equal(got, want)
    order = np.array([3, 0, 2, 1])  # the order of the items does not matter
    np.testing.assert_array_equal(
        confusions_by_event(pred[order], target[order], np.array([1, 0, 1, 0])[order], 2, 3), got
    )
    with pytest.raises(ValueError, match=r"event indices outside \[0, 2\)"):
        confusions_by_event(pred, target, [1, 0, 2, 0], 2, 3)


def test_per_event_counts_add_up_to_the_confusion_matrix_and_its_macro_f1() -> None:
    preds, targets = _events(0)
    C = 4
    per_event = event_confusions(
        np.concatenate(preds), np.concatenate(targets), [len(p) for p in preds], C
    )
    cm = ConfusionMatrix(C)
    cm.update(np.concatenate(preds), np.concatenate(targets))
    np.testing.assert_array_equal(per_event.sum(0), cm.counts.numpy())
    assert macro_f1_of_counts(per_event.sum(0)) == pytest.approx(cm.compute().macro_f1, abs=1e-15)
    # the rule holds for any counts: classes absent from both, or only predicted
    rng = np.random.default_rng(1)
    for _ in range(50):
        counts = rng.integers(0, 5, (5, 5)) * (rng.random((5, 5)) < 0.4)
        got = macro_f1_of_counts(counts)
        want = metrics_from_counts(counts).macro_f1
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-15)
    assert np.isnan(macro_f1_of_counts(np.zeros((3, 3))))


def test_a_draw_scores_what_scikit_learn_gives_on_the_drawn_events_points() -> None:
    C = 4
    pred, target = _events(2)
    rows = [(pred, target), (_predict(target, 3), target)]  # two rows on the same events
    sizes = [len(t) for t in target]
    confusions = [event_confusions(np.concatenate(p), np.concatenate(t), sizes, C) for p, t in rows]
    weights = bootstrap_weights(len(sizes), 30, seed=5)
    got = bootstrap_macro_f1(confusions, weights)  # (30, 2)
    assert got.shape == (30, 2)
    for b in range(30):
        drawn = np.repeat(np.arange(len(sizes)), weights[b])  # events, each as often as drawn
        for r, (pred, target) in enumerate(rows):
            p = np.concatenate([pred[e] for e in drawn])
            t = np.concatenate([target[e] for e in drawn])
            kept = t != -1
            want = f1_score(t[kept], p[kept], average="macro", zero_division=0)
            assert got[b, r] == pytest.approx(want, abs=1e-12)
    plain = bootstrap_macro_f1(confusions, np.ones((1, len(sizes)), np.int64))[0]
    np.testing.assert_allclose(plain, [macro_f1_of_counts(c.sum(0)) for c in confusions])


def test_draws_are_seeded_multinomials_of_the_events() -> None:
    w = bootstrap_weights(7, 500, seed=3)
    assert w.shape == (500, 7) and (w.sum(1) == 7).all() and (w >= 0).all()
    np.testing.assert_array_equal(w, bootstrap_weights(7, 500, seed=3))
    assert not np.array_equal(w, bootstrap_weights(7, 500, seed=4))
    # each event is drawn once per draw on average
    assert w.mean() == pytest.approx(1.0) and w.mean(0) == pytest.approx(np.ones(7), abs=0.2)
    with pytest.raises(ValueError):
        bootstrap_weights(0, 5, 0)


def test_paired_difference_by_hand() -> None:
    a = np.array([0.5, 0.6, 0.7, np.nan])
    b = np.array([0.6, 0.5, 0.5, 0.5])
    low, high, above = paired_difference(a, b, level=0.5)  # differences -0.1, 0.1, 0.2
    assert (low, high) == pytest.approx(tuple(np.percentile([-0.1, 0.1, 0.2], [25, 75])))
    assert above == pytest.approx(2 / 3)  # the NaN draw left out


def test_percentile_interval() -> None:
    x = np.arange(1001, dtype=np.float64)
    assert percentile_interval(x) == pytest.approx((25.0, 975.0))
    assert percentile_interval(np.append(x, np.nan), 0.5) == pytest.approx((250.0, 750.0))
    lo, hi = percentile_interval(np.array([np.nan]))
    assert np.isnan(lo) and np.isnan(hi)


def test_the_counts_file_round_trips_and_refuses_what_is_not_counts(tmp_path: Path) -> None:
    counts = np.arange(2 * 3 * 3, dtype=np.int32).reshape(2, 3, 3)
    path = save_event_confusion(tmp_path, counts)
    assert path == tmp_path / EVENT_CONFUSION_FILE
    back = load_event_confusion(tmp_path)
    assert back is not None and back.dtype == np.int64
    np.testing.assert_array_equal(back, counts)
    assert [p.name for p in tmp_path.iterdir()] == [EVENT_CONFUSION_FILE]  # no temporary left
    assert load_event_confusion(tmp_path / "none") is None
    with pytest.raises(ValueError, match="integer counts"):
        save_event_confusion(tmp_path, counts.astype(np.float32))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy" * 10)
    with pytest.raises(ValueError, match=r"garbage\.npy: not a readable \.npy file"):
        load_event_confusion(garbage)
    np.save(tmp_path / EVENT_CONFUSION_FILE, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=EVENT_CONFUSION_FILE):
        load_event_confusion(tmp_path)


def test_same_events_means_the_same_true_classes_event_by_event() -> None:
    a = np.zeros((3, 2, 2), np.int64)
    a[:, 0, 0], a[:, 1, 0] = 4, 2  # per event: 4 of class 0, 2 of class 1
    b = a.copy()
    b[1] = [[1, 3], [0, 2]]  # other predictions, the same true classes
    check_same_events([a, b], ["a", "b"])
    c = a.copy()
    c[2, 1, 0] = 3  # one more class-1 point in event 2
    with pytest.raises(ValueError, match=r"c was scored on other .* test event 2 .* \[4, 3\]"):
        check_same_events([a, b, c], ["a", "b", "c"])
    with pytest.raises(ValueError, match="not the same test events"):
        check_same_events([a, a[:2]], ["a", "short"])
