"""Fixtures shared by the whole suite (the helpers they use are in ``tests/helpers``).

``task_events`` / ``task_batch``: three preprocessed synthetic events (feat = [xyz, log E],
event targets added) and their packed batch, built once per session.

``real_data``: tests marked ``@pytest.mark.real_data`` read the simulated sample files that are
not shipped with the repository (mlreco npz, LArSoft ROOT, JAXTPC HDF5; their README lists
them). The default run deselects them; run them with the folder in ``NUFM_REAL_DATA``:

    NUFM_REAL_DATA=/path/to/data/real python -m pytest -m real_data
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.events import preprocessed_events
from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.event import Event

REAL_DATA_ENV = "NUFM_REAL_DATA"
REFERENCE_ENV = "NUFM_REFERENCE_MODELS"


def _files_in(env: str, what: str, marker: str) -> Callable[[str], Path]:
    """``path(name)`` of the file ``name`` in the folder ``$env``; fails (never skips) when the
    variable is unset or the file is absent, so a run that asked for these tests cannot pass
    without reading the files."""
    folder = os.environ.get(env)
    if not folder:
        pytest.fail(
            f"{env} is not set: point it at {what} ({env}=/path python -m pytest -m {marker})",
            pytrace=False,
        )
    root = Path(folder)

    def path(name: str) -> Path:
        file = root / name
        if not file.is_file():
            pytest.fail(f"{file} not found ({env}={folder})", pytrace=False)
        return file

    return path


@pytest.fixture(scope="session")
def real_data() -> Callable[[str], Path]:
    """``path(name)``: the sample file ``name`` in ``$NUFM_REAL_DATA`` (tests marked
    ``real_data``)."""
    return _files_in(REAL_DATA_ENV, "the folder of the sample files (data/real)", "real_data")


@pytest.fixture(scope="session")
def reference_models() -> Callable[[str], Path]:
    """``path(name)``: the file ``name`` of the released-model reference material in
    ``$NUFM_REFERENCE_MODELS`` (tests marked ``reference``; ``make test-reference`` sets it)."""
    return _files_in(REFERENCE_ENV, "shared/reference/released-models", "reference")


@pytest.fixture(scope="session")
def task_events() -> list[Event]:
    """Three preprocessed synthetic events with two interactions each."""
    return preprocessed_events(3, n_interactions=2, n_scatter=10)


@pytest.fixture(scope="session")
def task_batch(task_events: list[Event]) -> PointBatch:
    """``task_events`` packed into one batch."""
    return collate(task_events)
