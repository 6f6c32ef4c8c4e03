"""Event-level data splits and the leak check every probe runs.

This file owns the rule "split by whole events, never by point". pimm's Panda pretraining probe
(Panda, arXiv:2512.01324) once let points of one event fall into both its train and test sets,
which inflated the scores (pimm commit f822f53). Points of one event share the event's topology,
energy scale and noise, so a point-level split measures memorisation of the event, not the
quality of the features. Every probe here splits event ids (with the one split rule,
:func:`nufm.data.event_split.split_events`) and calls :func:`assert_disjoint_events` before
training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nufm.data.event_split import split_events
from nufm.eval.metrics import ArrayLike, to_numpy


class EventLeakError(ValueError):
    """Raised when an event id appears in two sets that must be disjoint."""


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
