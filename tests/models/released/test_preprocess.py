"""The preprocessing nufm attaches to a released model reproduces the reference model's input
(``PANDA_PREPROCESS``, ``POLARMAE_PREPROCESS`` through nufm's own transforms)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from nufm.data.event import Event
from nufm.models.released.encoders import PANDA_PREPROCESS, POLARMAE_PREPROCESS


def _rows(*cols: np.ndarray) -> np.ndarray:
    rows = np.concatenate([np.asarray(c, np.float64).reshape(len(c), -1) for c in cols], 1)
    return rows[np.lexsort(rows.T[::-1])]


def _run(preprocess, event: Event) -> Event:
    return preprocess.transforms()(event, np.random.default_rng(0))


@pytest.mark.reference
def test_panda_preprocessing_gives_the_reference_features(
    reference_models: Callable[[str], Path],
) -> None:
    d = load_file(str(reference_models("panda_reduced_encoder.safetensors")))
    ends = d["input.offset"].tolist()
    for s, e in zip([0, *ends[:-1]], ends, strict=True):
        raw = Event(
            coord=d["input.raw_xyz_voxel"][s:e].numpy(),
            energy=d["input.raw_energy_mev"][s:e].numpy(),
        )
        out = _run(PANDA_PREPROCESS, raw)
        assert out.feat is not None
        ref = d["input.feat"][s:e].numpy()
        np.testing.assert_allclose(_rows(out.feat), _rows(ref), atol=1e-6, rtol=0)


def _pseudo_events(npz: Path) -> list[Event]:
    """The reference's two pseudo-events: Trajectories 0-3 and 4-8 of the tutorial event, exact
    duplicate voxels dropped (first kept)."""
    data = np.load(npz)
    events = []
    for group in (range(4), range(4, 9)):
        rows = np.concatenate([data[f"Trajectory {k}"] for k in group])
        _, first = np.unique(rows[:, :3], axis=0, return_index=True)
        rows = rows[np.sort(first)]
        events.append(
            Event(
                coord=rows[:, :3].astype(np.float32),
                energy=rows[:, 4].astype(np.float32),
                segment=rows[:, 9].astype(np.int64),
            )
        )
    return events


@pytest.mark.reference
@pytest.mark.real_data
def test_polarmae_preprocessing_gives_the_reference_points(
    reference_models: Callable[[str], Path], real_data: Callable[[str], Path]
) -> None:
    d = load_file(str(reference_models("polarmae_reduced_encoder.safetensors")))
    events = _pseudo_events(real_data("mlreco_tutorial_tracks.npz"))
    for b, raw in enumerate(events):
        out = _run(POLARMAE_PREPROCESS, raw)
        assert out.feat is not None
        n = int(d["input.lengths"][b])
        assert len(out.feat) == n
        ref = d["input.points"][b, :n].numpy()
        np.testing.assert_allclose(_rows(out.feat), _rows(ref), atol=1e-6, rtol=0)
