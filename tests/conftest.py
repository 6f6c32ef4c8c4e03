"""Fixtures shared by the whole suite.

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

REAL_DATA_ENV = "NUFM_REAL_DATA"


@pytest.fixture(scope="session")
def real_data() -> Callable[[str], Path]:
    """Return ``path(name)``: the sample file ``name`` in ``$NUFM_REAL_DATA``.

    Fails (never skips) when the variable is unset or the file is absent, so a run that asked
    for these tests cannot pass without reading the files.
    """
    folder = os.environ.get(REAL_DATA_ENV)
    if not folder:
        pytest.fail(
            f"{REAL_DATA_ENV} is not set: point it at the folder of the sample files "
            f"({REAL_DATA_ENV}=/path/to/data/real python -m pytest -m real_data)",
            pytrace=False,
        )
    root = Path(folder)

    def path(name: str) -> Path:
        file = root / name
        if not file.is_file():
            pytest.fail(f"{file} not found ({REAL_DATA_ENV}={folder})", pytrace=False)
        return file

    return path
