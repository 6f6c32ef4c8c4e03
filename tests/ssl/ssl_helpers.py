"""Shared test data for tests/ssl: small preprocessed synthetic events as a packed batch."""

from __future__ import annotations

import numpy as np

from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import Preprocess


def preprocessed_batch(n_events: int = 2, seed: int = 0) -> PointBatch:
    """``n_events`` synthetic events through :class:`Preprocess` (feat = [xyz, log E])."""
    pipeline = Preprocess().transforms()
    events = [
        pipeline(synthetic_event(seed + i), np.random.default_rng(seed + i))
        for i in range(n_events)
    ]
    return collate(events)


def event_of(batch: PointBatch, i: int) -> PointBatch:
    """Event i of a batch as a batch of one."""
    start = 0 if i == 0 else int(batch.offset[i - 1])
    end = int(batch.offset[i])
    return PointBatch(
        coord=batch.coord[start:end],
        feat=batch.feat[start:end],
        offset=batch.offset.new_tensor([end - start]),
    )
