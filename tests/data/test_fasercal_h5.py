"""The nufm-fasercal HDF5 layout: round trip, layout detection, refusals, the summary."""

import dataclasses

import h5py
import numpy as np
import pytest

from nufm.data import fasercal as fc
from nufm.data.detectors import get_detector
from nufm.data.fasercal_h5 import TRUTH_NAMES, count_fasercal, iter_fasercal, write_fasercal
from nufm.data.formats import count_any, detect_layout, read_any
from nufm.data.pilarnet import DataError
from nufm.data.summary import summarize
from nufm.sim.fasercal import generate_fasercal_events


@pytest.fixture(scope="module")
def events():
    return list(generate_fasercal_events(4, seed=3))


def test_round_trip(tmp_path, events):
    path = tmp_path / "fc.h5"
    assert write_fasercal(path, events) == 4
    assert detect_layout(path) == "fasercal-h5"
    assert count_fasercal(path) == count_any(path) == 4
    back = list(iter_fasercal(path))
    for a, b in zip(events, back, strict=True):
        for name in ("coord", "energy", "stream", "labels", "instance", "segment", "interaction"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        for name in TRUTH_NAMES:
            assert b.meta[name] == pytest.approx(a.meta[name], rel=1e-12), name
        np.testing.assert_array_equal(a.particles.pdg, b.particles.pdg)
        np.testing.assert_allclose(a.particles.momentum, b.particles.momentum, rtol=1e-6)
        np.testing.assert_array_equal(a.particles.parent, b.particles.parent)
        np.testing.assert_allclose(a.vertices, b.vertices, rtol=1e-6)
    picked = read_any(path, [2, 0])
    assert [e.event_id for e in picked] == [2, 0]
    with pytest.raises(IndexError, match="out of range"):
        read_any(path, [4])


def test_bad_event_writes_no_file(tmp_path, events):
    path = tmp_path / "fc.h5"
    bad = dataclasses.replace(events[1], meta={"detector": "fasercal"})
    with pytest.raises(DataError, match=r"event 1 .*truth lacks"):
        write_fasercal(path, [events[0], bad])
    assert not path.exists()
    narrow = dataclasses.replace(events[0], labels=events[0].labels[:, :3])
    with pytest.raises(DataError, match="labels have 3 columns"):
        write_fasercal(path, [narrow])
    assert not path.exists()


def test_broken_files_are_named(tmp_path, events):
    path = tmp_path / "fc.h5"
    write_fasercal(path, events[:2])
    with h5py.File(path, "r+") as f:
        idx = f["hit_index"][:]
        idx[1] = idx[2] + 5
        del f["hit_index"]
        f["hit_index"] = idx
    with pytest.raises(DataError, match="hit_index does not run"):
        list(iter_fasercal(path))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["layout"] = "nufm-fasercal"
        f["hit_index"] = np.array([0])
    with pytest.raises(DataError, match="without"):
        list(iter_fasercal(other))


def test_summary_names_streams_labels_and_classes(events):
    det = get_detector("fasercal")
    s = summarize(
        events,
        det.segment_names,
        det.pid_names,
        det.energy,
        stream_names=det.stream_names,
        label_names=det.label_names,
        event_classes=det.event_classes,
    )
    streams = np.concatenate([e.stream for e in events])
    assert s.stream_fraction["ecal"] == pytest.approx(np.mean(streams == fc.ECAL))
    ghost = np.concatenate([e.labels[e.stream == fc.SCINT, 0] for e in events])
    assert s.label_summary["ghost"]["1"] == pytest.approx(ghost.mean())
    flavours = [e.meta["flavour"] for e in events]
    for k, name in enumerate(fc.FLAVOUR_NAMES):
        assert s.event_class_fraction["flavour"][name] == pytest.approx(flavours.count(k) / 4)
    text = s.format()
    assert "label ghost:" in text and "stream fractions: scintillator" in text
