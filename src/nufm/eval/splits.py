"""Event-level data splits and the leak check every probe runs.

This file owns the rule "split by whole events, never by point". pimm's Panda pretraining probe
(Panda, arXiv:2512.01324) once let points of one event fall into both its train and test sets,
which inflated the scores (pimm commit f822f53). Points of one event share the event's topology,
energy scale and noise, so a point-level split measures memorisation of the event, not the
quality of the features. Every probe here splits event ids and calls
:func:`assert_disjoint_events` before training.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from nufm.eval.metrics import ArrayLike, to_numpy


class EventLeakError(ValueError):
    """Raised when an event id appears in two sets that must be disjoint."""


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of each part: floor(f * n), remainders to the largest fractional parts.

    Args:
        n: number of items.
        fractions: non-negative, summing to 1 (within 1e-6).
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"fractions must be a non-empty sequence, got {fractions!r}")
    if (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    if n < 0:
        raise ValueError(f"n_events must be >= 0, got {n}")
    exact = f * n
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")  # largest remainder first
    counts[order[:rest]] += 1
    return [int(c) for c in counts]


def split_events(n_events: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Randomly partition event indices 0..n_events-1 into parts of the given fractions.

    Args:
        n_events: number of events.
        fractions: e.g. (0.6, 0.2, 0.2) for train/val/test; must sum to 1.
        seed: seed of the permutation (numpy ``default_rng``); same seed, same split.

    Returns:
        One sorted int64 index array per fraction; together they cover every event once.
    """
    counts = split_counts(n_events, fractions)
    perm = np.random.default_rng(seed).permutation(n_events)
    bounds = np.cumsum([0, *counts])
    return [np.sort(perm[a:b]).astype(np.int64) for a, b in itertools.pairwise(bounds)]


def split_event_ids(
    event_ids: ArrayLike, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Partition the distinct values of ``event_ids`` (any int ids, repeats allowed).

    Args:
        event_ids: (N,) int event id of every point/token (or (E,) distinct ids).
        fractions: must sum to 1.
        seed: permutation seed.

    Returns:
        One sorted array of event ids per fraction.
    """
    ids = np.unique(to_numpy(event_ids))
    parts = split_events(ids.size, fractions, seed)
    return [ids[p] for p in parts]


def points_in_events(point_event_ids: ArrayLike, chosen_ids: ArrayLike) -> np.ndarray:
    """(N,) bool, True = the point belongs to one of ``chosen_ids``."""
    return np.isin(to_numpy(point_event_ids), to_numpy(chosen_ids))


def assert_disjoint_events(
    **sets: ArrayLike,
) -> None:
    """Raise :class:`EventLeakError` if any event id occurs in two of the named sets.

    Args:
        **sets: name -> event ids of that set, per point or distinct, e.g.
            ``assert_disjoint_events(train=ev[train_pts], test=ev[test_pts])``.
    """
    names = list(sets)
    uniq = {name: np.unique(to_numpy(ids)) for name, ids in sets.items()}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = np.intersect1d(uniq[a], uniq[b])
            if shared.size:
                raise EventLeakError(
                    f"{shared.size} event id(s) shared between the {a!r} and {b!r} sets, "
                    f"e.g. {shared[:5].tolist()}; split by event, not by point"
                )
