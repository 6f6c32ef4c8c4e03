"""Readers of the simulated sample files (marker ``real_data``: they are read from
``$NUFM_REAL_DATA``, see tests/conftest.py); the synthetic cases run in the default suite."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nufm.data.field_formats import (
    count_larsoft_root,
    iter_larsoft_root,
    merge_deposits,
    read_jaxtpc_h5,
    read_larsoft_root,
    read_mlreco_npz,
)
from nufm.data.lartpc import DELTA, MUON, TRACK, VOLUME_SIZE
from nufm.data.pilarnet import (
    DataError,
    MissingFileError,
    cluster_order,
    read_events,
    write_events,
)


def test_merge_deposits_sums_energy_and_keeps_dominant_label() -> None:
    vox = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0]])
    coord, energy, lab = merge_deposits(vox, np.array([0.5, 2.0, 1.0]), np.array([[7], [9], [4]]))
    np.testing.assert_array_equal(coord, [[0, 0, 0], [1, 2, 3]])
    np.testing.assert_allclose(energy, [1.0, 2.5])
    np.testing.assert_array_equal(lab[:, 0], [4, 9])


@pytest.mark.real_data
def test_mlreco_npz_event(tmp_path: Path, real_data: Callable[[str], Path]) -> None:
    path = real_data("mlreco_tutorial_tracks.npz")
    raw = np.load(path)
    rows = np.concatenate([raw[k] for k in raw.files])
    assert len(rows) == 4986  # README
    e = read_mlreco_npz(path)
    assert e.meta["n_duplicates_merged"] == 11 and len(e) == 4986 - 11
    assert set(np.unique(e.segment).tolist()) <= {0, 1, 2, 3, 4}
    assert {0, 1, 2, 4} <= set(np.unique(e.segment).tolist())
    assert (e.energy >= 0.05).all()  # the 0.05 MeV cut of the sample
    np.testing.assert_allclose(e.energy.sum(), rows[:, 4].sum(), rtol=1e-5)
    assert e.coord.min() >= 0 and e.coord.max() < VOLUME_SIZE
    # a duplicated voxel takes the label of its larger deposit
    _, inv, cnt = np.unique(rows[:, :3], axis=0, return_inverse=True, return_counts=True)
    dup = np.flatnonzero(cnt[inv.reshape(-1)] > 1)
    v = rows[dup[0], :3]
    same = dup[(rows[dup, :3] == v).all(1)]
    winner = same[np.argmax(rows[same, 4])]
    k = np.flatnonzero((e.coord == v).all(1))[0]
    assert e.instance[k] == rows[winner, 6] and e.segment[k] == rows[winner, 9]
    # the real event survives a PILArNet-M round trip
    write_events(tmp_path / "mlreco.h5", [e])
    (back,) = read_events(tmp_path / "mlreco.h5")
    order, _ = cluster_order(e)
    np.testing.assert_array_equal(back.coord, e.coord[order])
    np.testing.assert_array_equal(back.segment, e.segment[order])
    np.testing.assert_array_equal(back.instance, e.instance[order])


def test_mlreco_missing_and_bad(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=re.escape("absent.npz")):
        read_mlreco_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "other.npz", data=np.zeros(3))
    with pytest.raises(DataError, match=re.escape("other.npz: no 'Trajectory k'")):
        read_mlreco_npz(tmp_path / "other.npz")


@pytest.mark.real_data
@pytest.mark.parametrize("k", range(1, 6))
def test_larsoft_root_files(k: int, real_data: Callable[[str], Path]) -> None:
    uproot = pytest.importorskip("uproot")
    path = real_data(f"tfm_analyzeItOutput_R2-2_SR{k}-{k}.root")
    events = read_larsoft_root(path)
    assert len(events) == 10  # README: 10 events per file
    raw = uproot.open(path)["ana/AnaTPCTree"].arrays(["EnDepE"], library="np")["EnDepE"]
    for i, e in enumerate(events):
        assert e.event_id == i and e.source == str(path)
        assert len(e) > 0 and (e.energy > 0).all()
        assert e.coord.min() >= 0 and e.coord.max() < VOLUME_SIZE
        np.testing.assert_array_equal(e.coord, np.round(e.coord))  # voxel indices
        assert len(np.unique(e.coord, axis=0)) == len(e)
        assert e.meta["n_deposits"] == len(raw[i])
        if e.meta["n_outside"] == 0:  # energy is conserved by voxelisation
            np.testing.assert_allclose(e.energy.sum(), raw[i].sum(), rtol=1e-5)
        else:
            assert e.energy.sum() < raw[i].sum()
        assert e.meta["n_primary_muon"] == 1  # numu CC sample
        assert e.vertices.shape == (1, 3) and (e.particles.pdg == 13).sum() == 1


def _write_larsoft_tree(path: Path, counts: list[int], nan_entry: int = -1) -> None:
    """A LArSoft-like ``ana/AnaTPCTree`` with ``len(counts)`` entries of random deposits."""
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    rng = np.random.default_rng(0)

    def jagged(scale: float) -> object:
        rows = [rng.normal(0, scale, c) for c in counts]
        if nan_entry >= 0:
            rows[nan_entry][0] = np.nan
        return ak.Array(rows)

    data = {
        "EnDepX": jagged(20.0),
        "EnDepY": jagged(20.0),
        "EnDepZ": jagged(20.0),
        "EnDepE": ak.Array([rng.uniform(0.1, 1.0, c) for c in counts]),
        "EventID": np.arange(len(counts), dtype=np.int32) + 100,
    }
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "ana/AnaTPCTree",
            {k: (ak.type(v).content if k != "EventID" else v.dtype) for k, v in data.items()},  # type: ignore[union-attr]
        )
        tree.extend(data)


def test_larsoft_root_streams_in_chunks(tmp_path: Path) -> None:
    """Entries read a few at a time equal the whole tree read at once, with file-wide ids."""
    path = tmp_path / "ana.root"
    counts = [5, 40, 12, 1, 33, 8, 20]
    _write_larsoft_tree(path, counts)
    assert count_larsoft_root(path) == 7
    whole = list(iter_larsoft_root(path, step=100))
    chunked = list(iter_larsoft_root(path, step=3))
    assert [e.event_id for e in chunked] == list(range(7))
    assert [e.meta["event"] for e in chunked] == [100 + i for i in range(7)]
    assert [e.meta["n_deposits"] for e in chunked] == counts
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a.coord, b.coord)
        np.testing.assert_array_equal(a.energy, b.energy)
    # the generator hands out the first entry before reading the rest
    it = iter_larsoft_root(path, step=2)
    assert next(it).event_id == 0


def test_larsoft_root_bad_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ana.root"
    _write_larsoft_tree(path, [5, 6, 7, 8], nan_entry=2)
    it = iter_larsoft_root(path, step=3)
    assert [next(it).event_id for _ in range(2)] == [0, 1]
    with pytest.raises(DataError, match=r"ana\.root event 2: NaN"):
        next(it)
    with pytest.raises(ValueError, match="step"):
        next(iter_larsoft_root(path, step=0))


@pytest.mark.real_data
def test_jaxtpc_muon(real_data: Callable[[str], Path]) -> None:
    h5py = pytest.importorskip("h5py")
    path = real_data("jaxtpc_muon.h5")
    e = read_jaxtpc_h5(path)
    with h5py.File(path) as f:
        steps = f["pstep/lar_vol"][0]
    np.testing.assert_allclose(e.energy.sum(), steps["de"].sum(), rtol=1e-5)
    assert e.meta["n_outside"] == 0 and len(np.unique(e.coord, axis=0)) == len(e)
    assert len(e.particles) == 92  # README
    is_muon = e.pid == MUON
    assert is_muon.sum() > 100 and (e.segment[is_muon] == TRACK).all()
    assert (e.instance[is_muon] == 0).all()  # Geant4 track 0, the primary muon
    assert (e.segment == DELTA).any()  # muIoni electrons
    # mm -> 3 mm voxels: the muon's voxel extent matches its step extent to one voxel
    # (p = 176 MeV/c, KE ~ 100 MeV: ~31 cm of track in argon)
    mu = steps["track_id"] == 0
    step_extent_mm = np.ptp(np.stack([steps[c][mu] for c in "xyz"], 1), axis=0)
    voxel_extent_mm = np.ptp(e.coord[is_muon], axis=0) * 3.0
    np.testing.assert_allclose(voxel_extent_mm, step_extent_mm, atol=3.0 + 1e-3)
    assert 250.0 < step_extent_mm.max() < 350.0


def test_jaxtpc_group_where_a_dataset_belongs(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "jax.h5"
    with h5py.File(path, "w") as f:
        f.create_group("pstep/lar_vol")  # was a TypeError from h5py (group indexed by int)
        f.create_dataset("particle/geant4", data=np.zeros(1))
    with pytest.raises(DataError, match=re.escape("'pstep/lar_vol' is a Group, not a dataset")):
        read_jaxtpc_h5(path)


@pytest.mark.real_data
def test_larsoft_root_tree_that_is_a_directory(real_data: Callable[[str], Path]) -> None:
    pytest.importorskip("uproot")
    path = real_data("tfm_analyzeItOutput_R2-2_SR1-1.root")
    with pytest.raises(DataError, match=re.escape("'ana' is a ReadOnlyDirectory, not a TTree")):
        read_larsoft_root(path, tree="ana")
