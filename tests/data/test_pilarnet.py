"""PILArNet-M HDF5 read/write: exact round trip, independent reader, and every bad-input case."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from nufm.data.event import Event
from nufm.data.lartpc import LOW_ENERGY, PID_NONE
from nufm.data.pilarnet import (
    DataError,
    MissingFileError,
    cluster_order,
    count_points,
    iter_events,
    open_pilarnet,
    read_event,
    read_events,
    write_events,
)
from nufm.data.synthetic import synthetic_event, synthetic_events

POINT_FIELDS = ("coord", "energy", "segment", "pid", "instance", "interaction")


def _events() -> list[Event]:
    events = synthetic_events(3, seed=10, n_interactions=2)
    rng = np.random.default_rng(0)
    unlabeled = Event(
        coord=rng.integers(0, 768, (7, 3)).astype(np.float32),
        energy=rng.uniform(0.1, 3.0, 7).astype(np.float32),
        meta={"tag": "x"},
    )
    return [*events, unlabeled]


def _assert_same(read: Event, original: Event) -> None:
    order, _ = cluster_order(original)
    expected = original.select(order)
    for name in POINT_FIELDS:
        a, b = getattr(read, name), getattr(expected, name)
        if b is None:
            assert a is None, name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    if original.particles is None:
        assert read.particles is None
    else:
        for name in ("id", "pdg", "momentum", "start", "is_primary", "interaction", "parent"):
            np.testing.assert_array_equal(
                getattr(read.particles, name), getattr(original.particles, name), err_msg=name
            )
    if original.vertices is None:
        assert read.vertices is None
    else:
        np.testing.assert_array_equal(read.vertices, original.vertices)
    assert read.meta == original.meta


def test_round_trip_is_exact(tmp_path: Path) -> None:
    events = _events()
    path = tmp_path / "run.h5"
    summary = write_events(path, events)
    assert summary.n_events == len(events)
    assert summary.n_points == sum(len(e) for e in events)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777  # not mkstemp's 0600
    read = read_events(path)
    assert len(read) == len(events)
    for i, (r, e) in enumerate(zip(read, events, strict=False)):
        _assert_same(r, e)
        assert r.event_id == i and r.source == str(path)


def test_round_trip_v1_has_no_pid(tmp_path: Path) -> None:
    events = synthetic_events(2, seed=3)
    path = tmp_path / "v1.h5"
    write_events(path, events, version=1)
    with h5py.File(path) as f:
        assert "cluster_extra" not in f
        assert f["cluster"][0].size % 5 == 0
    for r, e in zip(read_events(path), events, strict=False):
        order, _ = cluster_order(e)
        assert (r.pid == -1).all()
        np.testing.assert_array_equal(r.segment, e.segment[order])
        np.testing.assert_array_equal(r.instance, e.instance[order])


def test_independent_h5py_reader_sees_documented_columns(tmp_path: Path) -> None:
    event = synthetic_event(seed=5, n_interactions=2)
    path = tmp_path / "ind.h5"
    write_events(path, [event])
    # plain h5py, the way PoLAr-MAE / pimm read the file
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        assert f["point"].dtype.metadata["vlen"] == np.float32
        point = f["point"][0].reshape(-1, 8)
        cluster = f["cluster"][0].reshape(-1, 6)
        extra = f["cluster_extra"][0].reshape(-1, 6)
    assert len(point) == len(event) and len(cluster) == len(extra)
    assert cluster[:, 0].sum() == len(point)
    # cluster 0 is the low-energy-scatter cluster
    assert cluster[0, 4] == LOW_ENERGY and cluster[0, 2] == -1
    np.testing.assert_array_equal(point[:, 3], point[:, 4])  # energy in both columns
    assert (point[:, 5:] == 0).all()
    per_point = {
        name: np.repeat(cluster[:, col], cluster[:, 0])
        for name, col in (("instance", 2), ("interaction", 3), ("segment", 4), ("pid", 5))
    }
    # match every file row to the original point by its (unique) voxel
    key = {tuple(c): k for k, c in enumerate(event.coord.tolist())}
    src = np.array([key[tuple(c)] for c in point[:, :3].tolist()])
    np.testing.assert_array_equal(point[:, 4], event.energy[src])
    for name, values in per_point.items():
        np.testing.assert_array_equal(values, getattr(event, name)[src], err_msg=name)
    # the muon cluster: mass, |p|, interaction vertex, is_primary
    muon = np.flatnonzero(cluster[:, 5] == 2)[0]
    particle = int(np.flatnonzero(event.particles.id == cluster[muon, 2])[0])
    np.testing.assert_allclose(extra[muon, 0], 105.6583755, rtol=1e-6)
    np.testing.assert_allclose(
        extra[muon, 1], np.linalg.norm(event.particles.momentum[particle]), rtol=1e-6
    )
    np.testing.assert_allclose(extra[muon, 2:5], event.vertices[cluster[muon, 3]])
    assert extra[muon, 5] == 1.0
    # fragment of a particle's largest cluster is the particle id
    assert cluster[muon, 1] == cluster[muon, 2]


def _raw_file(
    path: Path,
    points: list[np.ndarray],
    clusters: list[np.ndarray],
    extras: list[np.ndarray] | None = None,
) -> None:
    """A foreign (non-nufm) PILArNet-style file written with plain h5py."""
    with h5py.File(path, "w") as f:
        n = len(points)
        p = f.create_dataset("point", (n,), dtype=h5py.vlen_dtype(np.float32))
        c = f.create_dataset("cluster", (n,), dtype=h5py.vlen_dtype(np.int64))
        for i in range(n):
            p[i] = points[i].astype(np.float32).reshape(-1)
            c[i] = clusters[i].reshape(-1)
        if extras is not None:
            e = f.create_dataset("cluster_extra", (n,), dtype=h5py.vlen_dtype(np.float32))
            for i in range(n):
                e[i] = extras[i].astype(np.float32).reshape(-1)


def _points(n: int, energy: float = 1.0) -> np.ndarray:
    pts = np.zeros((n, 8), np.float32)
    pts[:, :3] = np.arange(n * 3).reshape(n, 3) % 700
    pts[:, 3] = energy
    return pts


def test_foreign_v2_file_maps_missing_pid_to_none(tmp_path: Path) -> None:
    path = tmp_path / "foreign.h5"
    pts = _points(5)
    pts[:, 4] = 0.0  # no energy-deposit column: energy comes from the voxel value
    cluster = np.array([[2, -1, -1, -1, 4, -1], [3, 0, 0, 0, 1, 2]])
    _raw_file(path, [pts], [cluster], [np.full((2, 5), -1.0)])  # 5-column extra (public v2)
    e = read_event(path, 0)
    np.testing.assert_array_equal(e.pid, [PID_NONE, PID_NONE, 2, 2, 2])
    np.testing.assert_array_equal(e.segment, [4, 4, 1, 1, 1])
    np.testing.assert_array_equal(e.energy, np.ones(5, np.float32))
    assert e.particles is None and e.vertices is None


def test_foreign_v1_file(tmp_path: Path) -> None:
    path = tmp_path / "v1.h5"
    _raw_file(path, [_points(4)], [np.array([[1, -1, -1, -1, 4], [3, 7, 7, 0, 0]])])
    e = read_event(path, 0)
    np.testing.assert_array_equal(e.instance, [-1, 7, 7, 7])
    np.testing.assert_array_equal(e.pid, [-1, -1, -1, -1])


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(MissingFileError, match=re.escape("nope.h5")):
        open_pilarnet(path)
    with pytest.raises(FileNotFoundError):
        read_event(path, 0)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "trunc.h5"
    write_events(path, synthetic_events(4))
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DataError, match=re.escape("trunc.h5")):
        read_events(path)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"text\.h5.*not a readable HDF5"):
        open_pilarnet(path)


def test_group_where_a_dataset_belongs(tmp_path: Path) -> None:
    path = tmp_path / "grp.h5"
    with h5py.File(path, "w") as f:
        f.create_group("point")  # was an AttributeError (a Group has no shape)
        f.create_dataset("cluster", data=np.zeros(3))
    with pytest.raises(DataError, match=re.escape("grp.h5: 'point' is a Group, not a dataset")):
        open_pilarnet(path)


def test_other_layout(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(DataError, match=r"other.h5.*missing dataset.*point"):
        open_pilarnet(path)


@pytest.mark.parametrize(
    "fault,message",
    [
        ("sizes", r"bad.h5 event 1: cluster sizes add up to 4 but the event has 5 points"),
        ("nan", r"bad.h5 event 1: 1 of 5 points have NaN"),
        ("outside", r"bad.h5 event 1: 1 of 5 points lie outside"),
        ("empty", r"bad.h5 event 1: empty event"),
    ],
)
def test_bad_event_names_file_and_event(tmp_path: Path, fault: str, message: str) -> None:
    good_pts = _points(5)
    good_cluster = np.array([[1, -1, -1, -1, 4, -1], [4, 0, 0, 0, 1, 2]])
    pts, cluster = good_pts.copy(), good_cluster.copy()
    if fault == "sizes":
        cluster[1, 0] = 3
    elif fault == "nan":
        pts[2, 1] = np.nan
    elif fault == "outside":
        pts[3, 0] = 900.0
    elif fault == "empty":
        pts, cluster = np.zeros((0, 8)), good_cluster[:0]
    path = tmp_path / "bad.h5"
    _raw_file(path, [good_pts, pts], [good_cluster, cluster])
    assert len(read_event(path, 0)) == 5  # the good event still reads
    with pytest.raises(DataError, match=message):
        read_event(path, 1)


def test_index_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "one.h5"
    write_events(path, synthetic_events(1))
    with pytest.raises(IndexError, match=re.escape("one.h5: event 3 out of range")):
        read_event(path, 3)


def test_write_rejects_bad_event_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    write_events(path, synthetic_events(1))
    before = path.read_bytes()
    bad = synthetic_event(seed=1)
    bad.coord[0, 0] = np.nan
    with pytest.raises(DataError, match=re.escape("out.h5: input event 1")):
        write_events(path, [synthetic_event(seed=0), bad, synthetic_event(seed=2)])
    assert path.read_bytes() == before  # old file untouched
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]  # no temporary left


def test_write_failure_in_generator_leaves_nothing(tmp_path: Path) -> None:
    def events():
        yield synthetic_event(seed=0)
        raise RuntimeError("upstream failure")

    with pytest.raises(RuntimeError, match="upstream"):
        write_events(tmp_path / "never.h5", events())
    assert os.listdir(tmp_path) == []


def test_write_rejects_normalised_coords(tmp_path: Path) -> None:
    e = synthetic_event(seed=0)
    e = e.with_fields(coord=(e.coord - 384.0) / 665.1)
    with pytest.raises(DataError, match="outside the"):
        write_events(tmp_path / "n.h5", [e])


def test_count_points(tmp_path: Path) -> None:
    events = synthetic_events(3)
    path = tmp_path / "c.h5"
    write_events(path, events)
    with open_pilarnet(path) as f:
        counts = count_points(f, energy_threshold=0.13)
    assert counts[:, 0].tolist() == [len(e) for e in events]
    assert counts[:, 1].tolist() == [int((e.energy > 0.13).sum()) for e in events]


def test_iter_and_read_events_select_rows(tmp_path: Path) -> None:
    events = synthetic_events(4, seed=20)
    path = tmp_path / "it.h5"
    write_events(path, events)
    assert [e.event_id for e in iter_events(path)] == [0, 1, 2, 3]
    picked = read_events(path, [3, 1])
    assert [e.event_id for e in picked] == [3, 1]
    assert len(picked[0]) == len(events[3])
