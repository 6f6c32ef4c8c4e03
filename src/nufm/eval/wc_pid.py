"""A classical particle-identification baseline for water Cherenkov events, beside the networks:
gradient-boosted trees on hand-made features of the PMT hit pattern, no truth used.

Owns :func:`hit_pattern_features`, :func:`pid_baseline` and :func:`hit_pattern_event_block`
(the study row of an event classification task; the efficiency at fixed
rejection is :func:`nufm.eval.metrics.efficiency_at_rejection`). The features of one event
(C = charge per hit, t = hit time, x = PMT position):

* total charge, number of hits, fraction of hits with more than 2 pe;
* the charge-weighted spread of hit times, the fraction of charge more than 100 ns after the
  charge-weighted median time (decay electrons), the time span of the brightest hits;
* the eigenvalues of the charge-weighted covariance of the hit directions seen from the tank
  centre (how ring-like and how wide the light is), the largest hit charge over the mean;
* the fraction of charge in the 10 % brightest hits (sharp muon rings vs fuzzy showers).

The scores are the ROC AUC of one class against another (scikit-learn) and the signal
efficiency at a fixed background rejection (the field reports e efficiency at 99.9 % mu
rejection).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from nufm.data.event import Event
from nufm.eval.metrics import efficiency_at_rejection, event_class_report

FEATURE_NAMES = (
    "total_charge",
    "n_hits",
    "frac_hits_above_2pe",
    "time_spread",
    "late_charge_fraction",
    "bright_time_span",
    "direction_eig_1",
    "direction_eig_2",
    "direction_eig_3",
    "max_over_mean_charge",
    "top10_charge_fraction",
)


def hit_pattern_features(event: Event) -> np.ndarray:
    """(len(FEATURE_NAMES),) float64 features of one event (module docstring)."""
    q = event.energy.astype(np.float64)
    if event.time is None:
        raise ValueError(f"{event.where}: the water Cherenkov features need hit times")
    t = event.time.astype(np.float64)
    if len(q) == 0:
        return np.zeros(len(FEATURE_NAMES))
    w = q / q.sum()
    t_med = float(np.median(np.repeat(t, np.maximum(np.rint(q), 1).astype(int))))
    spread = float(np.sqrt((w * (t - (w * t).sum()) ** 2).sum()))
    bright = q >= np.quantile(q, 0.9)
    u = event.coord / np.maximum(np.linalg.norm(event.coord, axis=1, keepdims=True), 1e-9)
    mean_u = (w[:, None] * u).sum(0)
    cov = (w[:, None, None] * np.einsum("ni,nj->nij", u - mean_u, u - mean_u)).sum(0)
    eig = np.sort(np.linalg.eigvalsh(cov))[::-1]
    top = np.sort(q)[::-1][: max(1, len(q) // 10)]
    return np.array(
        [
            q.sum(),
            len(q),
            float((q > 2).mean()),
            spread,
            float(q[t > t_med + 100].sum() / q.sum()),
            float(np.ptp(t[bright])) if bright.any() else 0.0,
            *eig,
            float(q.max() / q.mean()),
            float(top.sum() / q.sum()),
        ]
    )


def pid_baseline(
    train: Sequence[Event],
    train_label: np.ndarray,
    test: Sequence[Event],
    test_label: np.ndarray,
    signal: int,
    rejection: float = 0.999,
    seed: int = 0,
) -> dict[str, float]:
    """Train gradient-boosted trees on :func:`hit_pattern_features` and score the test events.

    Args:
        train, test: events; ``*_label`` (E,) int class of each (any coding).
        signal: the class whose efficiency is reported (e.g. electron).
        rejection: background rejection at which the efficiency is read (0.999 for mu).

    Returns:
        ``auc`` (signal vs the rest, scikit-learn), ``efficiency`` at ``rejection``,
        ``accuracy`` of the multi-class prediction, ``n_train``, ``n_test``.
    """
    x_train = np.stack([hit_pattern_features(e) for e in train])
    x_test = np.stack([hit_pattern_features(e) for e in test])
    model = GradientBoostingClassifier(random_state=seed).fit(x_train, train_label)
    proba = model.predict_proba(x_test)
    classes = np.asarray(model.classes_).tolist()
    score = proba[:, classes.index(signal)]
    is_signal = np.asarray(test_label) == signal
    return {
        "auc": float(roc_auc_score(is_signal, score)),
        "efficiency": efficiency_at_rejection(score, is_signal, rejection),
        "accuracy": float((model.predict(x_test) == np.asarray(test_label)).mean()),
        "n_train": len(train),
        "n_test": len(test),
    }


def event_classes(
    events: Sequence[Event], target: str, offset: int, num_classes: int
) -> np.ndarray:
    """(E,) int64 class of each event from ``meta[target]``, binned as the event task bins it:
    ``clip(round(value) - offset, 0, num_classes - 1)``.

    Raises:
        ValueError: an event without ``meta[target]`` (named).
    """
    values = []
    for e in events:
        if target not in e.meta:
            raise ValueError(f"{e.where}: no event truth {target!r} in meta")
        values.append(float(e.meta[target]))
    return np.clip(np.rint(np.asarray(values)).astype(np.int64) - offset, 0, num_classes - 1)


def hit_pattern_event_block(
    train: Sequence[Event],
    test: Sequence[Event],
    target: str,
    class_names: Sequence[str],
    class_offset: int = 0,
    efficiency_at: Sequence[tuple[int, int, float]] = (),
    seed: int = 0,
) -> dict:
    """Boosted trees on :func:`hit_pattern_features` as an event classifier, scored like the
    network event task (``nufm.eval.tasks.evaluate_task``'s ``event_class`` block: confusion
    matrix, per-class and macro F1, one-vs-rest ROC AUC, efficiencies at fixed rejection).
    A class absent from the training events gets probability 0 (logit -1e9)."""
    C = len(class_names)
    y_train = event_classes(train, target, class_offset, C)
    y_test = event_classes(test, target, class_offset, C)
    x_train = np.stack([hit_pattern_features(e) for e in train])
    x_test = np.stack([hit_pattern_features(e) for e in test])
    logits = np.full((len(test), C), -1e9)
    if len(np.unique(y_train)) == 1:
        logits[:, int(y_train[0])] = 0.0
    else:
        model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        proba = model.predict_proba(x_test)
        logits[:, np.asarray(model.classes_, np.int64)] = np.log(np.maximum(proba, 1e-300))
    return {
        **event_class_report(logits, y_test, class_names, efficiency_at),
        "target": target,
    }
