"""PILArNetDataset: lazy reads, cached point index, filters, splits, DataLoader workers."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nufm.data import dataset as dataset_module
from nufm.data.dataset import INDEX_SUFFIX, PILArNetDataset
from nufm.data.event import Event
from nufm.data.event_split import split_events
from nufm.data.pilarnet import read_event, write_events
from nufm.data.synthetic import synthetic_events
from nufm.data.transforms import Compose, NormalizeCoord, RandomRotation


@pytest.fixture()
def two_files(tmp_path: Path) -> tuple[list[str], list[Event]]:
    a = synthetic_events(6, seed=0, n_scatter=30)
    b = synthetic_events(4, seed=100, n_tracks=1, n_showers=0, n_scatter=5)
    pa, pb = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    write_events(pa, a)
    write_events(pb, b)
    return [pa, pb], a + b


def test_items_are_file_rows_in_order(two_files: tuple[list[str], list[Event]]) -> None:
    paths, events = two_files
    ds = PILArNetDataset(paths, energy_threshold=0.0)
    assert len(ds) == 10
    for i in (0, 5, 6, 9):
        path, row = ds.location(i)
        item = ds[i]
        assert item.source == path and item.event_id == row
        assert path == (paths[0] if i < 6 else paths[1]) and row == (i if i < 6 else i - 6)
        np.testing.assert_array_equal(item.coord, read_event(path, row).coord)
    assert ds.points_per_event.tolist() == [len(e) for e in events]


def test_index_cache_written_reused_and_invalidated(
    two_files: tuple[list[str], list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, events = two_files
    PILArNetDataset(paths[0], energy_threshold=0.2)
    cache = paths[0] + INDEX_SUFFIX
    assert os.path.exists(cache)
    stored = np.load(cache)
    np.testing.assert_array_equal(stored[2:, 1], [int((e.energy > 0.2).sum()) for e in events[:6]])

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("index recomputed although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(dataset_module, "count_points", fail)
        ds = PILArNetDataset(paths[0], energy_threshold=0.2)  # served from the cache
        assert len(ds) == 6
    # another threshold -> rebuilt
    ds = PILArNetDataset(paths[0], energy_threshold=0.0)
    assert ds.points_per_event.tolist() == [len(e) for e in events[:6]]
    # the file changes (size and mtime) -> rebuilt
    new = synthetic_events(2, seed=50)
    write_events(paths[0], new)
    ds = PILArNetDataset(paths[0], energy_threshold=0.0)
    assert ds.points_per_event.tolist() == [len(e) for e in new]


def test_read_only_directory_falls_back_to_memory(
    two_files: tuple[list[str], list[Event]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paths, events = two_files

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(np, "save", read_only)
    with caplog.at_level(logging.INFO, logger="nufm.data.dataset"):
        ds = PILArNetDataset(paths[1], energy_threshold=0.0)
    assert not os.path.exists(paths[1] + INDEX_SUFFIX)
    assert "keeping it in memory" in caplog.text
    assert ds.points_per_event.tolist() == [len(e) for e in events[6:]]


def test_min_points_filter_is_reported(
    two_files: tuple[list[str], list[Event]], caplog: pytest.LogCaptureFixture
) -> None:
    paths, events = two_files
    above = np.array([int((e.energy > 0.13).sum()) for e in events])
    min_points = int(np.median(above))
    with caplog.at_level(logging.INFO, logger="nufm.data.dataset"):
        ds = PILArNetDataset(paths, min_points=min_points, energy_threshold=0.13)
    removed = int((above < min_points).sum())
    assert removed > 0
    assert ds.filter_report.n_removed_min_points == removed
    assert ds.filter_report.n_kept == len(ds) == len(events) - removed
    assert f"{removed} removed" in caplog.text
    assert (ds.points_per_event >= min_points).all()


def test_splits_disjoint_cover_and_deterministic(two_files: tuple[list[str], list[Event]]) -> None:
    paths, _ = two_files
    parts = {
        s: {
            PILArNetDataset(paths, split=s, seed=3, energy_threshold=0.0).location(i)
            for i in range(len(PILArNetDataset(paths, split=s, seed=3, energy_threshold=0.0)))
        }
        for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert not (
        parts["train"] & parts["val"]
        or parts["train"] & parts["test"]
        or parts["val"] & parts["test"]
    )
    everything = PILArNetDataset(paths, energy_threshold=0.0)
    assert set().union(*parts.values()) == {everything.location(i) for i in range(10)}
    again = PILArNetDataset(paths, split="train", seed=3, energy_threshold=0.0)
    assert {again.location(i) for i in range(len(again))} == parts["train"]
    other = [
        PILArNetDataset(paths, split="val", seed=s, energy_threshold=0.0).location(0)
        for s in range(6)
    ]
    assert len(set(other)) > 1  # the seed changes the split
    with pytest.raises(ValueError, match="split must be one of"):
        PILArNetDataset(paths, split="training")


def test_seven_events_split_5_1_1_as_the_probes_split(tmp_path: Path) -> None:
    path = str(tmp_path / "seven.h5")
    write_events(path, synthetic_events(7, seed=0, n_scatter=5))
    rows = {
        s: [
            ds.location(i)[1]
            for ds in [PILArNetDataset(path, split=s, seed=2, energy_threshold=0.0)]
            for i in range(len(ds))
        ]
        for s in ("train", "val", "test")
    }
    assert [len(rows[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    parts = split_events(7, (0.8, 0.1, 0.1), seed=2)  # the same rule as the probes
    assert [rows[s] for s in ("train", "val", "test")] == [p.tolist() for p in parts]


def _identity(batch: list[Event]) -> list[Event]:
    return batch


def test_dataloader_workers_give_identical_events(two_files: tuple[list[str], list[Event]]) -> None:
    paths, _ = two_files
    transform = Compose([NormalizeCoord(), RandomRotation()])
    ds = PILArNetDataset(paths, transform=transform, energy_threshold=0.0, seed=7)
    ds[0]  # opens a handle in the parent before forking
    pickle.loads(pickle.dumps(ds))  # picklable (spawn start method)
    serial = [
        e for b in DataLoader(ds, batch_size=3, num_workers=0, collate_fn=_identity) for e in b
    ]
    parallel = [
        e for b in DataLoader(ds, batch_size=3, num_workers=2, collate_fn=_identity) for e in b
    ]
    assert len(serial) == len(parallel) == len(ds)
    for a, b in zip(serial, parallel, strict=False):
        assert (a.source, a.event_id) == (b.source, b.event_id)
        np.testing.assert_array_equal(a.coord, b.coord)
        np.testing.assert_array_equal(a.segment, b.segment)
    raw = ds.read_raw(0)
    assert not np.allclose(serial[0].coord, (raw.coord - 384.0) / 665.1)  # rotation happened
    ds.set_epoch(1)
    assert not np.array_equal(ds[0].coord, serial[0].coord)  # new epoch, new rotation
    assert torch.utils.data.get_worker_info() is None


def test_points_per_event_match_preprocessed_batches(
    two_files: tuple[list[str], list[Event]],
) -> None:
    from nufm.data.collate import PointBudgetSampler, collate
    from nufm.data.transforms import Preprocess

    paths, _ = two_files
    pre = Preprocess(energy_threshold=0.2, min_points=20)
    ds = PILArNetDataset(
        paths,
        transform=pre.transforms(),
        min_points=pre.min_points,
        energy_threshold=pre.energy_threshold,
    )
    sampler = PointBudgetSampler(ds.points_per_event, max_points=400, shuffle=True, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    seen = 0
    for indices, batch in zip(sampler, loader, strict=False):
        assert batch.counts.tolist() == ds.points_per_event[indices].tolist()
        assert batch.feat.shape == (batch.num_points, 4)
        assert batch.num_points <= 400 or batch.num_events == 1
        seen += batch.num_events
    assert seen == len(ds)
