"""The LUCiD dataset layout, format version 5, of water Cherenkov events: the HDF5 output of
LUCiD, the differentiable water Cherenkov simulator of github.com/CIDeR-ML/LUCiD (schema:
``docs/reference/dataset-schema.md``; version number, time dtype and the ``complete`` flag:
``lucid/sources/writer.py``; track categories: ``lucid/sources/particle_categorization.py``).

A LUCiD batch is four HDF5 files with the same events, ``event_000``, ``event_001``, ... (the
position in the file; the simulator's own event number is ``config/source_event_idx``). nufm
reads a batch through its sensor file and takes the other three, when present, from
``ROOT/<kind>/wc_<kind>_NNNN.h5`` beside ``ROOT/sensor/wc_sensor_NNNN.h5`` (or from the same
folder):

================================================  =============================================
LUCiD                                             nufm
================================================  =============================================
sensor file: ``config`` attr ``format_version``   must be 5
``config/sensor_positions`` (S, 3) float32, m     ``coord`` = position of each digit's sensor
``event_NNN/sensor_idx`` (H,) uint16              sensor of each digit (may repeat: several
                                                  digits of one sensor)
``event_NNN/PE`` (H,) float32, photoelectrons     ``energy``
``event_NNN/T`` (H,) float64, ns, detector frame  ``time`` (float32)
labl file: ``event_NNN/per_track/`` (T rows)      ``particles``, one row per track, id = row:
  ``track_id``, ``parent_id`` (0: primary)        ``parent`` (row, -1 primary), ``is_primary``
  ``pdg``, ``initial_energy`` (kinetic, MeV)      ``pdg``, momentum magnitude (GeV/c)
  ``interaction`` (row of ``per_interaction``)    ``interaction``
labl: ``per_interaction/vertex_{x,y,z}``, m       ``vertices`` (I, 3)
labl: ``per_particle/category``, ``genealogy_*``  per-digit ``segment`` (0 primary, 1 decay
                                                  electron, 2 secondary pion, 3 gamma from a
                                                  pi0; 255 unknown -> -1); the last track of a
                                                  genealogy is the particle's own track
step file: ``event_NNN/track_idx``,               ``particles.start`` and momentum direction:
  ``start_*`` (m), ``dir_*``, ``time`` (ns)       the track's earliest segment
hits file: ``event_NNN/particle_idx`` (-1 dark    per-digit ``instance`` = own track of the
  noise), ``digit_idx``, ``sensor_idx``, ``PE``   particle giving the digit most charge (-1
                                                  when dark noise gives most or nothing is
                                                  recorded), ``interaction`` = its interaction
================================================  =============================================

The truth needs the labl and step files together (the particle table takes its start and
direction from the step file), the per-digit truth also the hits file; a sensor file alone gives
unlabelled events. A momentum has the magnitude ``sqrt(KE (KE + 2 m))`` with the masses of
:data:`nufm.data.water_cherenkov.MASS_MEV` (others taken as massless), so
:func:`~nufm.data.water_cherenkov.event_truth` reads the stored kinetic energy back. When every
sensor has one digit the hits rows are matched to digits by sensor (writers without a digitizer
leave ``digit_idx`` at 0), otherwise by ``digit_idx``.

Owns :data:`VERSION`, :func:`is_lucid`, :func:`batch_files`, :func:`count_lucid` and
:func:`iter_lucid`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.pilarnet import DataError, MissingFileError
from nufm.data.water_cherenkov import MASS_MEV, event_truth

VERSION = 5
"""The ``config`` attribute ``format_version`` this reader reads."""
TRUTH_FILES = ("labl", "step", "hits")
"""The batch's other files, read for the truth when present."""
N_CATEGORIES = 4
"""LUCiD's track categories 0-3 (primary, decay electron, secondary pion, gamma from a pi0),
nufm's water Cherenkov ``segment`` classes; other values (255 unknown) become -1."""
_MARKS = (("per_particle", "labl"), ("track_idx", "step"), ("particle_idx", "hits"))
"""A data set only one kind of file has in its event groups, and that kind."""


def is_lucid(f: h5py.File) -> bool:
    """True when an open HDF5 file looks like a LUCiD file (a ``config`` group with the
    ``format_version`` attribute), whatever its version and kind."""
    cfg = f.get("config")
    return isinstance(cfg, h5py.Group) and "format_version" in cfg.attrs


def batch_files(path: str | os.PathLike) -> dict[str, Path]:
    """The labl, step and hits files of the batch whose sensor file is ``path`` that exist:
    ``ROOT/<kind>/wc_<kind>_NNNN.h5`` for ``ROOT/sensor/wc_sensor_NNNN.h5``, else
    ``wc_<kind>_NNNN.h5`` in the same folder."""
    p = Path(path)
    if not p.name.startswith("wc_sensor_"):
        return {}
    tail = p.name.removeprefix("wc_sensor_")
    found = {}
    for kind in TRUTH_FILES:
        for folder in (p.parent.parent / kind, p.parent):
            if (folder / f"wc_{kind}_{tail}").is_file():
                found[kind] = folder / f"wc_{kind}_{tail}"
                break
    return found


def _kind(f: h5py.File) -> str:
    """sensor, labl, step or hits, from the data sets of the first event group."""
    for name in f:
        if str(name).startswith("event_") and isinstance(group := f[name], h5py.Group):
            return next((kind for key, kind in _MARKS if key in group), "sensor")
    return "sensor"


def _group_name(i: int) -> str:
    return f"event_{i:03d}"


def _check_config(f: h5py.File, path: str, kind: str) -> tuple[h5py.Group, np.ndarray]:
    """The ``config`` group and ``source_event_idx`` of a LUCiD file of ``kind``, after checking
    its version, kind, completeness and that every event has its group."""
    if not is_lucid(f):
        raise DataError(f"{path}: not a LUCiD file (no 'config' group with 'format_version')")
    cfg = f["config"]
    assert isinstance(cfg, h5py.Group)
    version = int(np.asarray(cfg.attrs["format_version"]))
    if version != VERSION:
        raise DataError(f"{path}: LUCiD format_version {version}; nufm reads version {VERSION}")
    found = _kind(f)
    if found != kind:
        hint = " (nufm reads a batch through its sensor file)" if kind == "sensor" else ""
        raise DataError(f"{path}: the {found} file of a LUCiD batch, not its {kind} file{hint}")
    if not bool(np.asarray(cfg.attrs.get("complete", True))):
        raise DataError(f"{path}: incomplete LUCiD file (config complete=False: its writer died)")
    index = cfg.get("source_event_idx")
    if not isinstance(index, h5py.Dataset):
        raise DataError(f"{path}: LUCiD file without config/source_event_idx")
    source_idx = np.asarray(index).reshape(-1)
    n_events = int(np.asarray(cfg.attrs.get("n_events", len(source_idx))))
    if n_events != len(source_idx):
        raise DataError(
            f"{path}: config n_events is {n_events} but config/source_event_idx has "
            f"{len(source_idx)} entries (inconsistent sizes)"
        )
    for i in range(n_events):
        if not isinstance(f.get(_group_name(i)), h5py.Group):
            raise DataError(f"{path}: event {i}: no group {_group_name(i)}")
    return cfg, source_idx


def _sensor_positions(cfg: h5py.Group, path: str) -> np.ndarray:
    """(S, 3) float32 sensor positions, m."""
    table = cfg.get("sensor_positions")
    if not isinstance(table, h5py.Dataset):
        raise DataError(f"{path}: LUCiD sensor file without config/sensor_positions")
    pos = np.asarray(table, np.float32)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise DataError(f"{path}: config/sensor_positions has shape {pos.shape}, not (S, 3)")
    n_sensors = cfg.attrs.get("n_sensors")
    if n_sensors is not None and int(np.asarray(n_sensors)) != len(pos):
        raise DataError(
            f"{path}: config n_sensors is {int(np.asarray(n_sensors))} but "
            f"config/sensor_positions has {len(pos)} rows (inconsistent sizes)"
        )
    return pos


def _event_group(f: h5py.File, path: str, i: int, source_idx: np.ndarray) -> h5py.Group:
    """Group of event ``i``, checked against the batch's simulator event number."""
    group = f[_group_name(i)]
    assert isinstance(group, h5py.Group)
    own = group.attrs.get("source_event_idx")
    if own is not None and int(np.asarray(own)) != int(source_idx[i]):
        raise DataError(
            f"{path}: event {i}: source_event_idx {int(np.asarray(own))}, the batch says "
            f"{int(source_idx[i])}"
        )
    return group


def _columns(group: h5py.Group, names: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """The 1-D data sets ``names`` of ``group``, which must exist and have one length."""
    missing = [f"{group.name}/{n}" for n in names if not isinstance(group.get(n), h5py.Dataset)]
    if missing:
        raise DataError(f"{where}: no {', '.join(missing)}")
    cols = {n: np.asarray(group[n]).reshape(-1) for n in names}
    lengths = [len(c) for c in cols.values()]
    if len(set(lengths)) > 1:
        raise DataError(
            f"{where}: {group.name}/{{{', '.join(names)}}} have different lengths {lengths}"
        )
    return cols


def _subgroup(group: h5py.Group, name: str, where: str) -> h5py.Group:
    sub = group.get(name)
    if not isinstance(sub, h5py.Group):
        raise DataError(f"{where}: no group {group.name}/{name}")
    return sub


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each of ``wanted`` in the unique ``ids`` (-1 where absent)."""
    if len(ids) == 0:
        return np.full(len(wanted), -1, np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids[order], wanted), 0, len(ids) - 1)
    found = ids[order][pos] == wanted
    return np.where(found, order[pos], -1).astype(np.int64)


def _particles(
    labl: h5py.Group, step: h5py.Group, where: str, step_where: str
) -> tuple[Particles, np.ndarray, np.ndarray, np.ndarray]:
    """The particle table (one row per track), the vertices (I, 3) float32 m, and per LUCiD
    particle its own track row (P,) and its segment class (P,)."""
    track = _columns(
        _subgroup(labl, "per_track", where),
        ("track_id", "parent_id", "pdg", "initial_energy", "interaction"),
        where,
    )
    n_tracks = len(track["track_id"])
    track_id = track["track_id"].astype(np.int64)
    if len(np.unique(track_id)) != n_tracks:
        raise DataError(f"{where}: {labl.name}/per_track/track_id repeats a track")
    inter = _columns(
        _subgroup(labl, "per_interaction", where), ("vertex_x", "vertex_y", "vertex_z"), where
    )
    vertices = np.stack([inter["vertex_x"], inter["vertex_y"], inter["vertex_z"]], 1)
    interaction = track["interaction"].astype(np.int64)
    if ((interaction < -1) | (interaction >= len(vertices))).any():
        raise DataError(
            f"{where}: per_track/interaction beyond the {len(vertices)} rows of per_interaction"
        )
    # the start and direction of a track are those of its earliest segment
    seg = _columns(
        step,
        ("track_idx", "start_x", "start_y", "start_z", "dir_x", "dir_y", "dir_z", "time"),
        step_where,
    )
    track_idx = seg["track_idx"].astype(np.int64)
    if ((track_idx < 0) | (track_idx >= n_tracks)).any():
        raise DataError(f"{step_where}: track_idx beyond the event's {n_tracks} tracks")
    order = np.lexsort((seg["time"], track_idx))  # by track, then time; stable
    tracks_seen, first = np.unique(track_idx[order], return_index=True)
    if len(tracks_seen) != n_tracks:
        lost = sorted(set(range(n_tracks)) - set(tracks_seen.tolist()))
        raise DataError(f"{step_where}: tracks {lost[:5]} have no segment (start unknown)")
    s = order[first]  # (T,) earliest segment of each track
    start = np.stack([seg["start_x"], seg["start_y"], seg["start_z"]], 1)[s]
    direction = np.stack([seg["dir_x"], seg["dir_y"], seg["dir_z"]], 1)[s].astype(np.float64)
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)
    pdg = track["pdg"].astype(np.int64)
    ke = track["initial_energy"].astype(np.float64)
    mass = np.array([MASS_MEV.get(abs(int(c)), 0.0) for c in pdg], np.float64)
    p_gev = np.sqrt(np.maximum(ke * (ke + 2.0 * mass), 0.0)) / 1000.0
    parent_id = track["parent_id"].astype(np.int64)
    particles = Particles(
        id=np.arange(n_tracks, dtype=np.int64),
        pdg=pdg,
        momentum=(direction * p_gev[:, None]).astype(np.float32),
        start=start.astype(np.float32),
        is_primary=parent_id == 0,
        interaction=interaction,
        parent=np.where(parent_id > 0, _rows_of(track_id, parent_id), -1),
    )
    # LUCiD particles (the hits' particle_idx): their own track ends their genealogy
    per_particle = _subgroup(labl, "per_particle", where)
    category = _columns(per_particle, ("category",), where)["category"].astype(np.int64)
    chains = _columns(per_particle, ("genealogy_data",), where)["genealogy_data"]
    offsets = _columns(per_particle, ("genealogy_offsets",), where)["genealogy_offsets"]
    offsets = offsets.astype(np.int64)
    n_particles = len(category)
    if (
        len(offsets) != n_particles + 1
        or offsets[0] != 0
        or offsets[-1] != len(chains)
        or (np.diff(offsets) <= 0).any()
    ):
        raise DataError(
            f"{where}: per_particle/genealogy_offsets does not split genealogy_data into "
            f"{n_particles} non-empty chains"
        )
    own = _rows_of(track_id, chains[offsets[1:] - 1].astype(np.int64))
    if (own < 0).any():
        raise DataError(
            f"{where}: particles {np.nonzero(own < 0)[0][:5].tolist()} end their genealogy "
            "with a track missing from per_track"
        )
    segment = np.where((category >= 0) & (category < N_CATEGORIES), category, -1)
    return particles, vertices.astype(np.float32), own, segment


def _hit_truth(
    hits: h5py.Group,
    sensor_idx: np.ndarray,
    n_sensors: int,
    own: np.ndarray,
    segment: np.ndarray,
    interaction: np.ndarray,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """instance, segment and interaction (H,) int64 of the digits: those of the particle
    giving each digit most charge, -1 when dark noise gives most or no row names it."""
    rows = _columns(hits, ("particle_idx", "digit_idx", "sensor_idx", "PE"), where)
    n_digits, n_particles = len(sensor_idx), len(own)
    source = rows["particle_idx"].astype(np.int64)
    if ((source < -1) | (source >= n_particles)).any():
        raise DataError(f"{where}: hits particle_idx beyond the {n_particles} particles")
    row_sensor = rows["sensor_idx"].astype(np.int64)
    if ((row_sensor < 0) | (row_sensor >= n_sensors)).any():
        raise DataError(f"{where}: hits sensor_idx beyond the {n_sensors} sensors")
    if len(np.unique(sensor_idx)) == n_digits:  # one digit per sensor: match by sensor
        digit_of_sensor = np.full(n_sensors, -1, np.int64)
        digit_of_sensor[sensor_idx] = np.arange(n_digits)
        digit = digit_of_sensor[row_sensor]
    else:
        digit = rows["digit_idx"].astype(np.int64)
        if ((digit < 0) | (digit >= n_digits)).any():
            raise DataError(f"{where}: hits digit_idx beyond the event's {n_digits} digits")
        if (sensor_idx[digit] != row_sensor).any():
            raise DataError(f"{where}: hits rows name a digit of another sensor")
    known = digit >= 0  # rows of a sensor that recorded no digit are not read
    key = digit[known] * (n_particles + 1) + source[known] + 1  # column 0: dark noise
    charge = np.bincount(
        key, weights=rows["PE"][known].astype(np.float64), minlength=n_digits * (n_particles + 1)
    ).reshape(n_digits, n_particles + 1)  # (H, P + 1)
    best = np.where(charge.max(1, initial=0.0) > 0, charge.argmax(1), 0)  # (H,) 0 = none
    track = np.r_[-1, own][best]  # (H,) particle table row, -1 none
    return track, np.r_[-1, segment][best], np.r_[-1, interaction][track + 1]


def count_lucid(path: str | os.PathLike) -> int:
    """Events in a LUCiD sensor file (its config, checked)."""
    path = str(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            cfg, source_idx = _check_config(f, path, "sensor")
            _sensor_positions(cfg, path)
            return len(source_idx)
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file: {e}") from e


def iter_lucid(path: str | os.PathLike, indices: Sequence[int] | None = None) -> Iterator[Event]:
    """Events of a LUCiD batch read through its sensor file ``path`` (module docstring):
    coord = sensor positions (m), energy = charge (pe), time (ns); with the labl and step files
    the particle table, vertices and ``meta`` event truth of
    :func:`nufm.data.water_cherenkov.event_truth`; with the hits file also the per-digit
    ``instance`` / ``segment`` / ``interaction``. The files stay open while iterating.

    Raises:
        MissingFileError: no such file.
        DataError: not a version-5 LUCiD sensor file, a missing or inconsistent group or data
            set (naming the file and the event), or truth files of another batch.
        IndexError: an index outside the file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    others = batch_files(path)
    if others and not {"labl", "step"} <= set(others):
        lacking = [k for k in TRUTH_FILES if k not in others]
        raise DataError(
            f"{path}: the batch has {sorted(map(str, others.values()))} but no {lacking} file; "
            "the truth needs labl and step (hits for the per-digit truth), or none of them"
        )
    try:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(h5py.File(path, "r"))
            cfg, source_idx = _check_config(f, path, "sensor")
            positions = _sensor_positions(cfg, path)
            truth: dict[str, tuple[h5py.File, str]] = {}
            for kind, other in others.items():
                g = stack.enter_context(h5py.File(other, "r"))
                _, their_idx = _check_config(g, str(other), kind)
                if not np.array_equal(their_idx, source_idx):
                    raise DataError(
                        f"{other}: config/source_event_idx differs from that of {path} "
                        "(not the same batch)"
                    )
                truth[kind] = (g, str(other))
            n_events = len(source_idx)
            wanted = range(n_events) if indices is None else list(indices)
            bad = [i for i in wanted if not 0 <= i < n_events]
            if bad:
                raise IndexError(f"{path}: events {bad} out of range (the file holds {n_events})")
            for i in wanted:
                yield _read_event(f, path, i, source_idx, positions, truth)
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file: {e}") from e


def _read_event(
    f: h5py.File,
    path: str,
    i: int,
    source_idx: np.ndarray,
    positions: np.ndarray,
    truth: dict[str, tuple[h5py.File, str]],
) -> Event:
    """Event ``i`` of an open sensor file and its open truth files."""
    where = f"{path} event {i}"
    cols = _columns(_event_group(f, path, i, source_idx), ("sensor_idx", "PE", "T"), where)
    sensor_idx = cols["sensor_idx"].astype(np.int64)
    n_hits = f[_group_name(i)].attrs.get("n_hits")
    if n_hits is not None and int(np.asarray(n_hits)) != len(sensor_idx):
        raise DataError(
            f"{where}: n_hits is {int(np.asarray(n_hits))}, the data sets hold "
            f"{len(sensor_idx)} digits (inconsistent sizes)"
        )
    outside = (sensor_idx < 0) | (sensor_idx >= len(positions))  # (H,)
    if outside.any():
        bad = sensor_idx[outside]
        raise DataError(
            f"{where}: sensor_idx {bad[:5].tolist()} beyond the {len(positions)} sensors of "
            "config/sensor_positions"
        )
    particles = vertices = instance = segment = interaction = None
    if truth:
        labl_file, labl_path = truth["labl"]
        step_file, step_path = truth["step"]
        labl = _event_group(labl_file, labl_path, i, source_idx)
        step = _event_group(step_file, step_path, i, source_idx)
        particles, vertices, own, category = _particles(
            labl, step, f"{labl_path} event {i}", f"{step_path} event {i}"
        )
        if "hits" in truth:
            hits_file, hits_path = truth["hits"]
            hits = _event_group(hits_file, hits_path, i, source_idx)
            instance, segment, interaction = _hit_truth(
                hits,
                sensor_idx,
                len(positions),
                own,
                category,
                particles.interaction,
                f"{hits_path} event {i}",
            )
    return Event(
        coord=positions[sensor_idx],
        energy=cols["PE"].astype(np.float32),
        time=cols["T"].astype(np.float32),
        instance=instance,
        segment=segment,
        interaction=interaction,
        particles=particles,
        vertices=vertices,
        event_id=i,
        source=path,
        meta={"detector": "water-cherenkov", **event_truth(particles)},
    )
