"""The LUCiD version-5 reader on a hand-made batch written with plain h5py after the schema of
CIDeR-ML/LUCiD (docs/reference/dataset-schema.md, lucid/sources/writer.py): every value read
back, the event truth from the particle table, the front door and `nufm info`, and each kind of
broken file refused naming the file and the event."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import nufm
from nufm.cli import main
from nufm.config import DataConfig
from nufm.data.detectors import detector_for_layout
from nufm.data.formats import count_any, detect_layout, read_any
from nufm.data.lucid import batch_files, count_lucid, iter_lucid
from nufm.data.pilarnet import DataError, MissingFileError
from nufm.data.water_cherenkov import MASS_MEV
from nufm.train.components import resolve_detector
from nufm.workflows.finetune import data_detector

SENSORS = np.array(
    [[16.9, 0, 0], [0, 16.9, 0], [-16.9, 0, 0], [0, -16.9, 0], [0, 0, 18.1], [0, 0, -18.1]],
    np.float32,
)
"""Sensor positions, m."""
SOURCE_IDX = np.array([7, 11, 12], np.uint32)
"""The simulator's event numbers of the three events."""

# Event 0: a 300 MeV mu- (track 1) and its 30 MeV decay electron (track 5).
# Event 1: a 200 MeV pi0 (track 1, no particle row: it makes no light) decaying to photons of
#   300 and 35 MeV (tracks 2, 3), photon 2 making a 250 MeV electron (track 4).
# Event 2: a 500 MeV e- whose sensor 5 records two digits, the later one dark noise.
TRACKS = [
    # track_id, parent_id, pdg, initial_energy (MeV), particle_idx
    [(1, 0, 13, 300.0, 0), (5, 1, 11, 30.0, 1)],
    [(1, 0, 111, 200.0, -1), (2, 1, 22, 300.0, 0), (3, 1, 22, 35.0, 1), (4, 2, 11, 250.0, 0)],
    [(1, 0, 11, 500.0, 0)],
]
PARTICLES = [
    # category, genealogy (track ids, the particle's own track last)
    [(0, [1]), (1, [1, 5])],
    [(3, [1, 2]), (3, [1, 3])],
    [(0, [1])],
]
SEGMENTS = [
    # track_idx, start (m), direction, time (ns); event 0's muon lists its later segment first
    [(0, (1, 1, 1), (0, 1, 0), 2.0), (0, (0, 0, 0), (0, 0, 1), 1.0), (1, (2, 0, 0), (1, 0, 0), 9)],
    [
        (0, (0, 0, 1), (1, 0, 0), 0.0),
        (1, (0, 0, 1), (0, 1, 0), 0.1),
        (2, (0, 0, 1), (0, -1, 0), 0.1),
        (3, (0, 0.5, 1), (0, 1, 0), 0.2),
    ],
    [(0, (3, -2, 1), (0, 0, -1), 0.0)],
]
VERTICES = [(0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (3.0, -2.0, 1.0)]
DIGITS = [
    # sensor_idx, PE, T (ns)
    [(0, 3.5, 10.0), (1, 1.25, 12.5), (4, 0.5, 2000.0)],
    [(2, 5.0, 20.0), (3, 2.0, 21.0)],
    [(5, 2.0, 5.0), (5, 1.0, 900.0), (0, 0.75, 20.0)],
]
HITS = [
    # particle_idx (-1 dark noise), digit_idx, sensor_idx, PE, emission_process
    [
        (0, 0, 0, 3.5, 0),
        (0, 1, 1, 1.0, 0),
        (1, 1, 1, 0.25, 0),
        (1, 2, 4, 0.3, 0),
        (-1, 2, 4, 0.2, 2),
    ],
    # a writer without a digitizer leaves digit_idx at 0 (matched by sensor)
    [(0, 0, 2, 5.0, 0), (1, 0, 3, 2.0, 0)],
    [(0, 0, 5, 2.0, 0), (-1, 1, 5, 1.0, 2), (0, 2, 0, 0.75, 0)],
]


def _config(f: h5py.File, kind: str, version: int = 5) -> h5py.Group:
    """The provenance block every file's config group holds."""
    cfg = f.create_group("config")
    cfg.attrs.update(
        format_version=version,
        n_events=len(SOURCE_IDX),
        git_commit="0" * 40,
        run_id="test-run",
        dataset_name="hand-made",
        file_index=0,
        source_file="photonsim_0000.root",
        lucid_master_seed=1,
        photonsim_seed=-1,
        complete=True,
    )
    cfg["source_event_idx"] = SOURCE_IDX
    if kind in ("sensor", "hits"):
        cfg.attrs.update(n_sensors=len(SENSORS), detector_type="cylinder", material="water")
        cfg["sensor_positions"] = SENSORS
    if kind == "sensor":
        cfg.attrs.update(
            smearing_applied=True,
            smearing_charge_function="default",
            smearing_time_function="default",
            digitizer_model="basic",
        )
    if kind == "labl":
        cfg.attrs["label_names"] = np.array(["category"], dtype=h5py.string_dtype())
    return cfg


def _event(f: h5py.File, i: int) -> h5py.Group:
    g = f.create_group(f"event_{i:03d}")
    g.attrs["source_event_idx"] = int(SOURCE_IDX[i])
    return g


def _write_batch(root: Path, kinds: tuple[str, ...] = ("sensor", "hits", "step", "labl")) -> Path:
    """The batch's files ``root/<kind>/wc_<kind>_0000.h5``; returns the sensor file."""
    for kind in kinds:
        (root / kind).mkdir(parents=True, exist_ok=True)
        with h5py.File(root / kind / f"wc_{kind}_0000.h5", "w") as f:
            _config(f, kind)
            for i in range(len(SOURCE_IDX)):
                g = _event(f, i)
                {"sensor": _sensor, "hits": _hits, "step": _step, "labl": _labl}[kind](g, i)
    return root / "sensor" / "wc_sensor_0000.h5"


def _sensor(g: h5py.Group, i: int) -> None:
    s, pe, t = zip(*DIGITS[i], strict=True)
    g.attrs["n_hits"] = len(s)
    g["sensor_idx"] = np.array(s, np.uint16)
    g["PE"] = np.array(pe, np.float32)
    g["T"] = np.array(t, np.float64)  # the version-5 writer stores absolute times as float64


def _hits(g: h5py.Group, i: int) -> None:
    p, d, s, pe, emission = zip(*HITS[i], strict=True)
    g.attrs.update(n_particles=len(PARTICLES[i]), n_particle_hits=len(p))
    g["particle_idx"] = np.array(p, np.int32)
    g["digit_idx"] = np.array(d, np.int32)
    g["sensor_idx"] = np.array(s, np.uint16)
    g["PE"] = np.array(pe, np.float32)
    g["T"] = np.zeros(len(p), np.float64)
    g["emission_process"] = np.array(emission, np.int8)


def _step(g: h5py.Group, i: int) -> None:
    track, start, direction, time = zip(*SEGMENTS[i], strict=True)
    start, direction = np.array(start, np.float32), np.array(direction, np.float16)
    n = len(track)
    g.attrs.update(n_tracks=len(TRACKS[i]), n_segments=n, has_segment_sensor_map=False)
    g["track_idx"] = np.array(track, np.int32)
    for k, axis in enumerate("xyz"):
        g[f"start_{axis}"] = start[:, k]
        g[f"end_{axis}"] = start[:, k] + 0.01
        g[f"dir_{axis}"] = direction[:, k]
    g["time"] = np.array(time, np.float64)
    g["edep"] = np.ones(n, np.float32)
    g["beta_start"] = np.ones(n, np.float32)
    g["n_cherenkov"] = np.ones(n, np.int32)
    g["group_id"] = np.arange(n, dtype=np.int32)
    g["contained"] = np.ones(n, bool)


def _labl(g: h5py.Group, i: int) -> None:
    tid, parent, pdg, ke, pidx = zip(*TRACKS[i], strict=True)
    category, chains = zip(*PARTICLES[i], strict=True)
    g.attrs.update(n_particles=len(category), n_tracks=len(tid))
    ev = g.create_group("per_event")
    ev["t0"] = np.float64(0.0)
    ev["contained"] = np.bool_(True)
    inter = g.create_group("per_interaction")
    inter["source_type"] = np.zeros(1, np.uint8)
    inter["t0"] = np.zeros(1, np.float64)
    for k, axis in enumerate("xyz"):
        inter[f"vertex_{axis}"] = np.array([VERTICES[i][k]], np.float32)
    part = g.create_group("per_particle")
    part["category"] = np.array(category, np.uint8)
    part["contained"] = np.ones(len(category), bool)
    part["genealogy_offsets"] = np.cumsum([0, *map(len, chains)]).astype(np.uint32)
    part["genealogy_data"] = np.concatenate(chains).astype(np.int32)
    part["ext_genealogy_offsets"] = np.cumsum([0, *map(len, chains)]).astype(np.uint32)
    part["ext_genealogy_data"] = np.concatenate(chains).astype(np.int32)
    part["interaction_idx"] = np.zeros(len(category), np.int32)
    track = g.create_group("per_track")
    track["track_id"] = np.array(tid, np.int32)
    track["parent_id"] = np.array(parent, np.int32)
    track["pdg"] = np.array(pdg, np.int32)
    track["initial_energy"] = np.array(ke, np.float32)
    track["n_cherenkov"] = np.ones(len(tid), np.int32)
    track["particle_idx"] = np.array(pidx, np.int32)
    track["ancestor"] = np.ones(len(tid), np.int32)
    track["interaction"] = np.zeros(len(tid), np.int32)


def _momentum(pdg: int, ke: float) -> float:
    """GeV/c."""
    m = MASS_MEV.get(abs(pdg), 0.0)
    return float(np.sqrt(ke * (ke + 2 * m))) / 1000


def test_every_value_of_a_hand_made_batch_reads_back(tmp_path: Path) -> None:
    sensor = _write_batch(tmp_path)
    assert set(batch_files(sensor)) == {"hits", "step", "labl"}
    assert count_lucid(sensor) == 3
    events = list(iter_lucid(sensor))
    assert [e.event_id for e in events] == [0, 1, 2]
    for ev, digits, vertex in zip(events, DIGITS, VERTICES, strict=True):
        s, pe, t = (np.array(c) for c in zip(*digits, strict=True))
        np.testing.assert_array_equal(ev.coord, SENSORS[s])  # metres, as stored
        np.testing.assert_array_equal(ev.energy, pe.astype(np.float32))
        np.testing.assert_array_equal(ev.time, t.astype(np.float32))
        np.testing.assert_array_equal(ev.vertices, [vertex])
        assert ev.source == str(sensor) and ev.meta["detector"] == "water-cherenkov"
    # per digit: the particle table row of the particle giving most charge, its category
    e0, e1, e2 = events
    np.testing.assert_array_equal(e0.instance, [0, 0, 1])  # digit 2: decay e 0.3 > dark 0.2
    np.testing.assert_array_equal(e0.segment, [0, 0, 1])
    np.testing.assert_array_equal(e1.instance, [1, 2])  # the photons' tracks
    np.testing.assert_array_equal(e1.segment, [3, 3])
    np.testing.assert_array_equal(e2.instance, [0, -1, 0])  # the dark-noise digit
    np.testing.assert_array_equal(e2.segment, [0, -1, 0])
    np.testing.assert_array_equal(e2.interaction, [0, -1, 0])
    # the particle table: one row per track, parents as rows, start and direction of the
    # earliest segment, momentum from the kinetic energy
    p = e0.particles
    assert p is not None
    np.testing.assert_array_equal(p.id, [0, 1])
    np.testing.assert_array_equal(p.pdg, [13, 11])
    np.testing.assert_array_equal(p.parent, [-1, 0])
    np.testing.assert_array_equal(p.is_primary, [True, False])
    np.testing.assert_array_equal(p.interaction, [0, 0])
    np.testing.assert_array_equal(p.start, [[0, 0, 0], [2, 0, 0]])
    np.testing.assert_allclose(
        p.momentum, [[0, 0, _momentum(13, 300.0)], [_momentum(11, 30.0), 0, 0]], rtol=1e-6
    )
    p = e1.particles
    assert p is not None
    np.testing.assert_array_equal(p.pdg, [111, 22, 22, 11])
    np.testing.assert_array_equal(p.parent, [-1, 0, 0, 1])
    np.testing.assert_array_equal(p.is_primary, [True, False, False, False])
    np.testing.assert_allclose(p.momentum[2], [0, -0.035, 0], rtol=1e-6)
    np.testing.assert_array_equal(p.start[3], [0, 0.5, 1])
    # the event truth of nufm.data.water_cherenkov.event_truth
    assert e0.meta["wc_label"] == 2 and e0.meta["n_rings"] == 1  # the decay e is no ring
    assert e1.meta["wc_label"] == 3 and e1.meta["n_rings"] == 2  # two photons >= 10 MeV
    assert e2.meta["wc_label"] == 1 and e2.meta["n_rings"] == 1
    for ev, ke in zip(events, (300.0, 200.0, 500.0), strict=True):
        assert ev.meta["primary_energy"] == pytest.approx(ke, rel=1e-5)
    (again,) = iter_lucid(sensor, [2])
    np.testing.assert_array_equal(again.coord, e2.coord)
    with pytest.raises(IndexError, match=r"events \[3\] out of range \(the file holds 3\)"):
        list(iter_lucid(sensor, [3]))


def test_a_sensor_file_alone_gives_unlabelled_events(tmp_path: Path) -> None:
    sensor = _write_batch(tmp_path, ("sensor",))
    events = list(iter_lucid(sensor))
    assert len(events) == 3 and batch_files(sensor) == {}
    for ev in events:
        assert ev.instance is None and ev.segment is None and ev.particles is None
        assert ev.meta == {"detector": "water-cherenkov"}
    np.testing.assert_array_equal(events[2].coord, SENSORS[[5, 5, 0]])


def test_the_front_door_and_the_cli_find_the_layout(tmp_path: Path, capsys) -> None:
    sensor = _write_batch(tmp_path)
    assert detect_layout(sensor) == "lucid-h5" and count_any(sensor) == 3
    assert detector_for_layout("lucid-h5").name == "water-cherenkov"
    assert [len(e) for e in nufm.read_events(sensor)] == [3, 2, 3]
    (ev,) = read_any(sensor, [1])
    assert ev.meta["wc_label"] == 3
    assert data_detector((sensor,)).name == "water-cherenkov"  # fine-tuning
    cfg = resolve_detector(DataConfig(source="file", path=sensor))  # pretraining
    assert cfg.detector == "water-cherenkov"
    main(["info", str(sensor)])
    assert f"{sensor} (lucid-h5, water Cherenkov" in capsys.readouterr().out


def _edit(path: Path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f[name] = data


@pytest.mark.parametrize(
    ("kind", "edit", "message"),
    [
        (
            "sensor",
            lambda f: f.__delitem__("config/sensor_positions"),
            r"wc_sensor_0000\.h5: LUCiD sensor file without config/sensor_positions",
        ),
        (
            "sensor",
            lambda f: _replace(f, "event_001/sensor_idx", np.array([2, 6], np.uint16)),
            r"wc_sensor_0000\.h5 event 1: sensor_idx \[6\] beyond the 6 sensors",
        ),
        (
            "sensor",
            lambda f: _replace(f, "event_002/PE", np.ones(2, np.float32)),
            r"wc_sensor_0000\.h5 event 2: /event_002/\{sensor_idx, PE, T\} have different "
            r"lengths \[3, 2, 3\]",
        ),
        (
            "sensor",
            lambda f: f.__delitem__("event_001/T"),
            r"wc_sensor_0000\.h5 event 1: no /event_001/T",
        ),
        (
            "sensor",
            lambda f: f.__delitem__("event_002"),
            r"wc_sensor_0000\.h5: event 2: no group event_002",
        ),
        (
            "sensor",
            lambda f: f["config"].attrs.__setitem__("format_version", 3),
            r"wc_sensor_0000\.h5: LUCiD format_version 3; nufm reads version 5",
        ),
        (
            "sensor",
            lambda f: f["config"].attrs.__setitem__("complete", False),
            r"wc_sensor_0000\.h5: incomplete LUCiD file",
        ),
        (
            "hits",
            lambda f: _replace(f, "event_000/particle_idx", np.array([0, 0, 2, 1, -1], np.int32)),
            r"wc_hits_0000\.h5 event 0: hits particle_idx beyond the 2 particles",
        ),
        (
            "step",
            lambda f: _replace(f, "event_001/track_idx", np.array([0, 1, 1, 3], np.int32)),
            r"wc_step_0000\.h5 event 1: tracks \[2\] have no segment",
        ),
        (
            "labl",
            lambda f: f.__delitem__("event_000/per_track/pdg"),
            r"wc_labl_0000\.h5 event 0: no /event_000/per_track/pdg",
        ),
        (
            "labl",
            lambda f: _replace(f, "config/source_event_idx", np.array([7, 11, 13], np.uint32)),
            r"wc_labl_0000\.h5: config/source_event_idx differs from that of .*wc_sensor_0000",
        ),
    ],
)
def test_broken_files_are_refused_naming_the_file_and_event(
    tmp_path: Path, kind: str, edit, message: str
) -> None:
    sensor = _write_batch(tmp_path)
    _edit(tmp_path / kind / f"wc_{kind}_0000.h5", edit)
    with pytest.raises(DataError, match=message):
        list(iter_lucid(sensor))


def test_files_that_are_not_a_lucid_sensor_file_are_refused(tmp_path: Path) -> None:
    sensor = _write_batch(tmp_path)
    with pytest.raises(DataError, match=r"wc_labl_0000\.h5: the labl file of a LUCiD batch"):
        list(iter_lucid(tmp_path / "labl" / "wc_labl_0000.h5"))
    with pytest.raises(MissingFileError, match="no such file"):
        list(iter_lucid(tmp_path / "none.h5"))
    with h5py.File(tmp_path / "wc.h5", "w") as f:
        f["event_hits_index"] = np.zeros(1, np.int64)
    with pytest.raises(DataError, match=r"wc\.h5: not a LUCiD file"):
        list(iter_lucid(tmp_path / "wc.h5"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("config")
    with pytest.raises(DataError, match=r"other\.h5: HDF5 file with \['config'\].*LUCiD"):
        detect_layout(tmp_path / "other.h5")
    # truth files that cannot give the truth: labl without step
    (tmp_path / "step" / "wc_step_0000.h5").unlink()
    with pytest.raises(DataError, match=r"wc_sensor_0000\.h5: the batch has .* no \['step'\]"):
        list(iter_lucid(sensor))
