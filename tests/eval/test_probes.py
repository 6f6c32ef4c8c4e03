"""Linear / kNN probes: separable features score high, random ones at chance, no event leak."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier

from nufm.eval.probes import (
    EventSplit,
    KNNProbeConfig,
    LinearProbeConfig,
    _as_inputs,
    _fit_linear_bag,
    _knn_votes,
    _macro_f1,
    _predict_linear,
    run_probe,
    run_probe_on_sets,
)
from nufm.eval.splits import EventLeakError

FAST = LinearProbeConfig(learning_rates=(1e-2, 1e-1), epochs=10, batch_size=1024)


def _events(seed: int, n_events: int = 40, per_event: int = 30, C: int = 4, D: int = 16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n_events * per_event)
    event_ids = np.repeat(np.arange(n_events) * 10 + 3, per_event)  # non-contiguous ids
    return rng, labels, event_ids


@pytest.mark.parametrize("cfg", [FAST, KNNProbeConfig(ks=(1, 5))], ids=["linear", "knn"])
def test_probe_on_informative_features_scores_high(cfg) -> None:
    rng, labels, ev = _events(0)
    C, D = 4, 16
    feats = rng.normal(size=(labels.size, D)).astype(np.float32)
    feats[:, :C] += 3.0 * np.eye(C, dtype=np.float32)[labels]  # linearly encodes the label
    labels[::17] = -1  # ignored points are dropped
    res = run_probe(cfg, torch.as_tensor(feats), labels, ev, num_classes=C)
    assert res.test.macro_f1 > 0.9
    assert set(res.val_macro_f1) == ({"lr=0.01", "lr=0.1"} if cfg is FAST else {"k=1", "k=5"})
    assert res.best == max(res.val_macro_f1, key=res.val_macro_f1.get)
    assert res.test.num_points == res.num_points["test"]
    assert not np.intersect1d(res.split.train, res.split.test).size


def test_probe_on_random_features_is_at_chance() -> None:
    rng, labels, ev = _events(1, n_events=60)
    feats = rng.normal(size=(labels.size, 16)).astype(np.float32)
    res = run_probe(FAST, feats, labels, ev, num_classes=4)
    assert 0.1 < res.test.accuracy < 0.4  # chance is 0.25 for 4 balanced classes
    assert res.test.macro_f1 < 0.4


def _leaky_events(seed: int):
    """Each event has one random label and its own feature centroid: features identify the
    event, not the class. Only a leak (same event in train and test) makes this predictable."""
    rng = np.random.default_rng(seed)
    n_events, per_event, D = 200, 10, 256
    event_label = rng.integers(0, 2, n_events)
    centroid = rng.normal(size=(n_events, D))
    ev = np.repeat(np.arange(n_events), per_event)
    feats = (centroid[ev] + 0.1 * rng.normal(size=(ev.size, D))).astype(np.float32)
    return feats, event_label[ev], ev


@pytest.mark.parametrize("cfg", [FAST, KNNProbeConfig(ks=(5,))], ids=["linear", "knn"])
def test_event_split_prevents_the_point_split_leak(cfg) -> None:
    feats, labels, ev = _leaky_events(2)
    point_ids = np.arange(ev.size)  # a point-level split = every point its own "event"
    leaky = run_probe(cfg, feats, labels, point_ids, num_classes=2)
    assert leaky.test.macro_f1 > 0.9  # memorised the events: the inflated score
    honest = run_probe(cfg, feats, labels, ev, num_classes=2)
    assert honest.test.macro_f1 < 0.7  # unseen events: near chance (0.5)
    train_ev = np.unique(ev[np.isin(ev, honest.split.train)])
    assert not np.isin(train_ev, honest.split.test).any()


def test_explicit_split_with_shared_event_is_rejected() -> None:
    with pytest.raises(EventLeakError, match="'train' and 'test'"):
        EventSplit(train=np.array([0, 1]), val=np.array([2]), test=np.array([1, 3]))


def test_probe_is_deterministic_and_class_balanced_runs() -> None:
    rng, labels, ev = _events(3)
    feats = rng.normal(size=(labels.size, 8)).astype(np.float32)
    feats[:, 0] += labels
    cfg = LinearProbeConfig(
        learning_rates=(1e-1,), epochs=3, batch_size=256, seed=5, class_balanced=True
    )
    a = run_probe(cfg, feats, labels, ev, num_classes=4)
    b = run_probe(cfg, feats, labels, ev, num_classes=4)
    np.testing.assert_array_equal(a.test.counts, b.test.counts)
    np.testing.assert_array_equal(a.split.test, b.split.test)
    full = run_probe(
        LinearProbeConfig(learning_rates=(1e-1,), epochs=30, batch_size=0),
        feats,
        labels,
        ev,
        num_classes=4,
    )
    assert full.test.accuracy > 0.4  # one informative feature of unit-spaced classes


def test_knn_vote_matches_sklearn_classifier() -> None:
    rng = np.random.default_rng(4)
    train_x, query_x = rng.normal(size=(200, 5)), rng.normal(size=(50, 5))
    train_y = rng.integers(0, 2, 200)
    cfg = KNNProbeConfig(ks=(1, 3, 7), metric="euclidean")
    ours = _knn_votes(
        torch.as_tensor(train_x), torch.as_tensor(train_y), torch.as_tensor(query_x), cfg.ks, 2, cfg
    )
    for i, k in enumerate(cfg.ks):
        ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(train_x, train_y)
        np.testing.assert_array_equal(ours[:, i], ref.predict(query_x))
    cos = KNNProbeConfig(ks=(5,), metric="cosine")
    ours_cos = _knn_votes(
        torch.as_tensor(train_x), torch.as_tensor(train_y), torch.as_tensor(query_x), cos.ks, 2, cos
    )
    ref = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")
    np.testing.assert_array_equal(ours_cos[:, 0], ref.fit(train_x, train_y).predict(query_x))


def test_probe_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        run_probe(FAST, np.zeros((4, 2)), np.array([0, 1, 2, 9]), np.arange(4), num_classes=3)
    with pytest.raises(ValueError, match=r"features \(N, D\)"):
        run_probe(FAST, np.zeros((4, 2)), np.array([0, 1]), np.arange(4), num_classes=3)
    with pytest.raises(ValueError, match="no labelled points"):
        run_probe(FAST, np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros(4, int), num_classes=2)
    bad = np.zeros((8, 2), np.float32)
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        run_probe(FAST, bad, np.arange(8) % 2, np.arange(8), num_classes=2)
    bad[5, 1] = -np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        run_probe(FAST, bad, np.arange(8) % 2, np.arange(8), num_classes=2)
    # finite features whose sum overflows float32 pass the check
    big = np.full((8, 2), 3e38, np.float32)
    x, _, _ = _as_inputs(big, np.arange(8) % 2, 2, -1, "features")
    assert not bool(torch.isfinite(x.sum())) and bool(torch.isfinite(x).all())


def test_minibatch_fit_equals_a_plain_adamw_loop() -> None:
    """_fit_linear_bag with minibatches (a last partial one: 1,000 rows of 96) against a plain
    loop of one head: the same shuffles, torch.optim.AdamW, weighted cross entropy."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 12, generator=g)
    y = torch.randint(0, 3, (1000,), generator=g)
    cfg = LinearProbeConfig(
        learning_rates=(0.05,), epochs=3, batch_size=96, class_balanced=True, seed=4
    )
    w, b = _fit_linear_bag(x, y, 3, cfg)  # (1, 3, 12), (1, 3)

    weight = torch.zeros(3, 12, requires_grad=True)
    bias = torch.zeros(3, requires_grad=True)
    optim = torch.optim.AdamW([weight, bias], lr=0.05, weight_decay=cfg.weight_decay)
    freq = torch.bincount(y, minlength=3).float()
    class_w = (1 / freq) * 3 / (1 / freq).sum()
    shuffle = torch.Generator().manual_seed(4)
    for _ in range(3):
        order = torch.randperm(1000, generator=shuffle)
        for start in range(0, 1000, 96):
            rows = order[start : start + 96]
            loss = torch.nn.functional.cross_entropy(
                x[rows] @ weight.T + bias, y[rows], weight=class_w
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
    torch.testing.assert_close(w[0], weight.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b[0], bias.detach(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# run_probe_on_sets: the study's protocol (sets already split by event, selection on val)
# --------------------------------------------------------------------------------------------


def _separable(seed: int, n: int, C: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C  # every class in every set
    x = rng.normal(scale=0.1, size=(n, 6)).astype(np.float32)
    x[:, :C] += 2.0 * np.eye(C, dtype=np.float32)[y]
    return x, y


def test_probe_on_sets_separates_separable_features_exactly() -> None:
    (x, y), val, test = _separable(0, 90), _separable(1, 60), _separable(2, 60)
    y = y.copy()
    y[::7] = -1  # ignored rows are dropped
    cfg = LinearProbeConfig(learning_rates=(1e-2, 1e-1), epochs=5, min_steps=100, batch_size=32)
    res = run_probe_on_sets(cfg, (x, y), val, test, num_classes=3)
    assert res.test.macro_f1 == 1.0 and res.test.accuracy == 1.0
    assert res.split is None and res.num_points == {"train": 77, "val": 60, "test": 60}
    np.testing.assert_array_equal(res.test_pred, test[1])
    assert "num_events" not in res.to_dict() and res.to_dict()["best"] == res.best


def _shifted(seed: int, n: int, spurious: bool) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0 carries the class with noise in every set; feature 1 separates the train set
    perfectly but is pure noise in val and test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = (2 * y - 1) + rng.normal(size=n)
    b = (2 * y - 1) + 0.1 * rng.normal(size=n) if spurious else rng.normal(size=n)
    return np.stack([a, b], 1).astype(np.float32), y


def test_probe_selects_the_head_best_on_val_not_on_train() -> None:
    train = _shifted(0, 400, spurious=True)
    val, test = _shifted(1, 400, spurious=False), _shifted(2, 400, spurious=False)
    cfg = LinearProbeConfig(learning_rates=(1e-3, 1.0), epochs=100, batch_size=0, weight_decay=0)
    res = run_probe_on_sets(cfg, train, val, test, num_classes=2)
    # on the train set, the converged lr=1 head (leaning on feature 1) fits best ...
    x = torch.as_tensor(train[0])
    x = (x - x.mean(0)) / x.std(0, correction=0)
    w, b = _fit_linear_bag(x, torch.as_tensor(train[1]), 2, cfg)
    train_pred = _predict_linear(x, w, b)
    train_f1 = [_macro_f1(train_pred[:, i], train[1], 2, cfg) for i in range(2)]
    assert train_f1[1] == 1.0 and train_f1[0] < 1.0
    # ... but it fails on the val events, so the barely-trained lr=1e-3 head is selected
    assert res.val_macro_f1["lr=0.001"] > res.val_macro_f1["lr=1"] + 0.05
    assert res.best == "lr=0.001"
    assert res.test.macro_f1 > 0.6


def test_probe_per_class_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    C = 4

    def noisy(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % C
        x = rng.normal(size=(n, 8)).astype(np.float32)
        x[:, :C] += 1.2 * np.eye(C, dtype=np.float32)[y]
        return x, y

    test = noisy(400)
    res = run_probe_on_sets(FAST, noisy(400), noisy(200), test, num_classes=C)
    assert 0.3 < res.test.macro_f1 < 1.0  # imperfect: the per-class scores differ
    ref = f1_score(test[1], res.test_pred, labels=list(range(C)), average=None)
    np.testing.assert_allclose(res.test.f1, ref, rtol=0, atol=1e-12)
    assert res.test.macro_f1 == pytest.approx(f1_score(test[1], res.test_pred, average="macro"))
    per_class = res.test.to_dict(["a", "b", "c", "d"])["per_class"]
    assert [per_class[k]["f1"] for k in "abcd"] == pytest.approx(list(ref))


def test_min_steps_adds_epochs_for_small_train_sets() -> None:
    x, y = _separable(3, 30)
    base = LinearProbeConfig(learning_rates=(1e-2,), epochs=1, batch_size=10)
    w1, _ = _fit_linear_bag(torch.as_tensor(x), torch.as_tensor(y), 3, base)
    w_same, _ = _fit_linear_bag(
        torch.as_tensor(x), torch.as_tensor(y), 3, dataclasses.replace(base, min_steps=3)
    )  # 3 steps = 1 epoch of 3 batches: unchanged
    w_more, _ = _fit_linear_bag(
        torch.as_tensor(x), torch.as_tensor(y), 3, dataclasses.replace(base, min_steps=30)
    )
    torch.testing.assert_close(w_same, w1, rtol=0, atol=0)
    # AdamW moves each weight by about lr per step: 3 steps vs 30
    assert float(w1.abs().max()) < 0.05 < 0.2 < float(w_more.abs().max())
    with pytest.raises(ValueError, match="min_steps"):
        LinearProbeConfig(min_steps=-1)
