"""A classical baseline for water Cherenkov per-hit categories (which particle made the light:
primary, decay electron, secondary pion, gamma from a pi0): boosted trees on each hit's place
relative to the event's point fit, plus the event's hit pattern.

Owns :func:`hit_features` and :func:`hit_category_block` (the ``gbt-hitfit`` study row). The
features of one hit (after :func:`nufm.eval.wc_fit.fit_vertex` and
:func:`~nufm.eval.wc_fit.fit_direction` of its event, no truth used):

* the time residual t - t0 - |x - v| n / c, ns (a decay electron's light comes microseconds
  late; scattered and secondary light a few ns to tens of ns);
* the log charge, the cosine of the angle between the fitted direction and the hit seen from
  the fitted vertex (on the ring near cos 0.75, inside or outside it otherwise) and the distance
  from the vertex, m;
* the event's eleven hit-pattern features (:func:`nufm.eval.wc_pid.hit_pattern_features`):
  whether the light is one sharp ring, a fuzzy shower or two rings decides between primary and
  pi0 gamma for all its hits.

The trees (scikit-learn's histogram boosting, classes weighted by inverse frequency so the rare
categories count in the macro F1) learn on the hits of the labelled events; dark-noise hits
(category -1) are left out of training and scoring, as the network's loss and metrics leave
them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from nufm.data.event import Event
from nufm.eval.metrics import ConfusionMatrix
from nufm.eval.wc_fit import fit_direction, fit_vertex
from nufm.eval.wc_pid import FEATURE_NAMES, hit_pattern_features
from nufm.sim.water_cherenkov import C_M_PER_NS, WaterCherenkovConfig

HIT_FEATURE_NAMES = ("time_residual_ns", "log_charge", "cos_to_direction", "distance_m")
"""The per-hit features, before the event's hit-pattern features."""
MAX_TRAIN_HITS = 200_000
"""Labelled hits the trees learn from at most (a seeded subset beyond)."""


def hit_features(event: Event, detector: WaterCherenkovConfig | None = None) -> np.ndarray:
    """(N, 4 + 11) float64 features of every hit of ``event`` (module docstring)."""
    det = detector or WaterCherenkovConfig()
    vertex, t0 = fit_vertex(event, det)
    direction = fit_direction(event, vertex, t0, det)
    assert event.time is not None  # fit_vertex checked it
    rel = event.coord.astype(np.float64) - vertex  # (N, 3) m
    dist = np.linalg.norm(rel, axis=1)  # (N,)
    residual = event.time.astype(np.float64) - t0 - dist * det.n_water / C_M_PER_NS
    cos = rel @ direction / np.maximum(dist, 1e-9)
    q = np.log(np.maximum(event.energy.astype(np.float64), 1e-3))
    per_event = np.broadcast_to(hit_pattern_features(event), (len(q), len(FEATURE_NAMES)))
    return np.column_stack([residual, q, cos, dist, per_event])


def _labelled(events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
    """(hits' features, their categories) of ``events``, dark noise (-1) kept."""
    xs, ys = [], []
    for e in events:
        if e.segment is None:
            raise ValueError(f"{e.where}: no per-hit categories (segment)")
        xs.append(hit_features(e))
        ys.append(e.segment.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def hit_category_block(
    train: Sequence[Event], test: Sequence[Event], class_names: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Trees on :func:`hit_features` as a per-hit classifier of ``class_names`` categories,
    scored like the network's semseg task (the ``semantic`` block: per-class precision,
    recall, F1, IoU, macro F1, accuracy, confusion matrix over the non-noise hits)."""
    x, y = _labelled(train)
    keep = np.flatnonzero(y >= 0)
    rng = np.random.default_rng(seed)
    if len(keep) > MAX_TRAIN_HITS:
        keep = np.sort(rng.choice(keep, MAX_TRAIN_HITS, replace=False))
    x_test, y_test = _labelled(test)
    cm = ConfusionMatrix(len(class_names), ignore_index=-1)
    if len(np.unique(y[keep])) == 1:
        pred = np.full(len(y_test), y[keep][0])
    else:  # one OpenMP thread: spinning threads on a busy machine cost minutes (evaluation.md)
        model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
        with threadpool_limits(limits=1, user_api="openmp"):
            pred = model.fit(x[keep], y[keep]).predict(x_test)
    cm.update(pred.astype(np.int64), y_test)
    return cm.compute().to_dict(list(class_names))
