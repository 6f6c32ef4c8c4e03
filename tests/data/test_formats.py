"""One door to every event layout: detection, reading, `nufm convert` to PILArNet-M and the
cached conversion that lets data sets read the field's files directly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from nufm.cli import main
from nufm.data.dataset import PILArNetDataset
from nufm.data.formats import as_pilarnet, convert, count_any, detect_layout, read_any
from nufm.data.pilarnet import DataError, MissingFileError, read_events


def _mlreco_npz(path: Path) -> None:
    """Two trajectories in the tutorial layout (x, y, z, batch, E, fragment, group,
    interaction, -1, semantic); voxel (10, 10, 10) appears in both."""
    a = np.array([[10, 10, 10, 0, 1.5, 0, 0, 0, -1, 1], [11, 10, 10, 0, 2.0, 0, 0, 0, -1, 1]])
    b = np.array([[10, 10, 10, 0, 0.5, 1, 1, 0, -1, 0], [300, 200, 100, 0, 3.0, 1, 1, 0, -1, 0]])
    np.savez(path, **{"Trajectory 0": a.astype(float), "Trajectory 1": b.astype(float)})


def _sorted(coord: np.ndarray, energy: np.ndarray) -> np.ndarray:
    rows = np.concatenate([coord, energy[:, None]], 1)
    return rows[np.lexsort(rows.T[::-1])]


def test_convert_writes_the_events_as_pilarnet(tmp_path: Path) -> None:
    src, dst = tmp_path / "ev.npz", tmp_path / "ev.h5"
    _mlreco_npz(src)
    assert detect_layout(src) == "mlreco-npz" and count_any(src) == 1
    (orig,) = read_any(src)
    assert len(orig.coord) == 3 and np.isclose(orig.energy.sum(), 7.0)  # duplicate merged
    summary = convert(src, dst, progress=False)
    assert (summary.n_events, summary.n_points) == (1, 3)
    assert detect_layout(dst) == "pilarnet-h5"
    (back,) = read_events(dst)
    np.testing.assert_allclose(_sorted(back.coord, back.energy), _sorted(orig.coord, orig.energy))
    with pytest.raises(DataError, match="would overwrite the input"):
        convert(dst, dst)


def test_cli_convert_and_info_read_other_layouts(tmp_path: Path, capsys) -> None:
    src = tmp_path / "ev.npz"
    _mlreco_npz(src)
    main(["info", str(src)])
    assert "(mlreco-npz, liquid-argon TPC" in capsys.readouterr().out
    main(["convert", str(src), str(tmp_path / "out.h5"), "--no-progress"])
    assert len(read_events(tmp_path / "out.h5")) == 1


def test_datasets_read_other_layouts_through_a_cached_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUFM_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "ev.npz"
    _mlreco_npz(src)
    copy = as_pilarnet(src)
    assert copy.parent == tmp_path / "cache" / "converted" and detect_layout(copy) == "pilarnet-h5"
    stamp = copy.stat().st_mtime_ns
    assert as_pilarnet(src) == copy and copy.stat().st_mtime_ns == stamp  # not converted again
    ds = PILArNetDataset(src, energy_threshold=0.0)
    assert len(ds) == 1 and len(ds[0].coord) == 3
    pilarnet = tmp_path / "p.h5"
    convert(src, pilarnet, progress=False)
    assert as_pilarnet(pilarnet) == pilarnet


def test_unknown_layouts_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="no such file"):
        detect_layout(tmp_path / "none.h5")
    (tmp_path / "x.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"x\.csv: unknown event file type '\.csv'"):
        detect_layout(tmp_path / "x.csv")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images"] = np.zeros(3)
    with pytest.raises(DataError, match=r"other\.h5: HDF5 file with \['images'\]"):
        read_any(tmp_path / "other.h5")
    src = tmp_path / "ev.npz"
    _mlreco_npz(src)
    with pytest.raises(IndexError, match=r"events \[1\] out of range \(the file holds 1\)"):
        read_any(src, [1])


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("name", "layout", "n_events"),
    [
        ("mlreco_tutorial_tracks.npz", "mlreco-npz", 1),
        ("jaxtpc_muon.h5", "jaxtpc-h5", 1),
        ("tfm_analyzeItOutput_R2-2_SR1-1.root", "larsoft-root", 10),
    ],
)
def test_real_samples_convert_and_read_back(
    real_data: Callable[[str], Path], tmp_path: Path, name: str, layout: str, n_events: int
) -> None:
    src = real_data(name)
    assert detect_layout(src) == layout and count_any(src) == n_events
    events = read_any(src)
    convert(src, tmp_path / "out.h5", progress=False)
    back = read_events(tmp_path / "out.h5")
    assert len(back) == n_events
    for a, b in zip(events, back, strict=True):
        np.testing.assert_allclose(
            _sorted(a.coord, a.energy), _sorted(b.coord, b.energy), rtol=1e-6
        )
        if a.segment is not None and a.segment.ndim:  # LArSoft trees have event truth only
            np.testing.assert_array_equal(np.sort(a.segment), np.sort(b.segment))
