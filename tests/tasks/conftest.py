"""Session fixtures of the task tests: three preprocessed synthetic events and their batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from nufm_tasks_helpers import make_events

from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.event import Event


@pytest.fixture(scope="session")
def events() -> list[Event]:
    return make_events(3, n_interactions=2, n_scatter=10)


@pytest.fixture(scope="session")
def batch(events: list[Event]) -> PointBatch:
    return collate(events)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny shapes: one intra-op thread avoids OpenMP spin-waits on a loaded machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
