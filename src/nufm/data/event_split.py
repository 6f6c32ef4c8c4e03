"""The one rule that splits events into train / val / test (or any parts) by whole events.

Used by :class:`nufm.data.dataset.PILArNetDataset` (``split=``), the fine-tuning runs and the
probes (:mod:`nufm.eval.splits`), so a split means the same thing everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of consecutive parts of ``n`` items.

    The boundaries are the cumulative fractions times ``n``, rounded half up
    (``floor(sum(fractions[:k]) * n + 0.5)``), so the parts cover every item once and a
    boundary moves only with the fractions before it. Then every part with a positive fraction
    that came out empty gets one item from the largest part, when there are at least as many
    items as such parts: 7 events at (0.8, 0.1, 0.1) give 5 / 1 / 1, never an empty
    validation or test set.

    Args:
        n: number of items.
        fractions: non-negative, summing to 1 (within 1e-6).
    """
    if len(fractions) == 0:
        raise ValueError(f"fractions must be a non-empty sequence, got {fractions!r}")
    if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    if n < 0:
        raise ValueError(f"n_events must be >= 0, got {n}")
    bounds = [0]
    cumulative = 0.0
    for f in fractions[:-1]:
        cumulative += f
        bounds.append(min(int(np.floor(cumulative * n + 0.5)), n))
    bounds.append(n)
    counts = [b - a for a, b in itertools.pairwise(bounds)]
    positive = [k for k, f in enumerate(fractions) if f > 0]
    if n >= len(positive):
        for k in positive:
            if counts[k] == 0:
                largest = counts.index(max(counts))  # has >= 2 items while a part is empty
                counts[largest] -= 1
                counts[k] += 1
    return counts


def split_events(n_events: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Randomly partition event indices 0..n_events-1 into parts of the given fractions.

    The indices are permuted (numpy ``default_rng(seed)``) and cut into consecutive runs of
    :func:`split_counts` sizes.

    Args:
        n_events: number of events.
        fractions: e.g. (0.8, 0.1, 0.1) for train/val/test; must sum to 1.
        seed: seed of the permutation; same seed, same split.

    Returns:
        One sorted int64 index array per fraction; together they cover every event once.
    """
    counts = split_counts(n_events, fractions)
    perm = np.random.default_rng(seed).permutation(n_events)
    bounds = np.cumsum([0, *counts])
    return [np.sort(perm[a:b]).astype(np.int64) for a, b in itertools.pairwise(bounds)]
