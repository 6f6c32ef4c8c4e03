"""nufm's HDF5 layout of FASERCal-like events (one file for many events), written by
``nufm simulate --detector fasercal`` and read back by :func:`iter_fasercal`.

All hits of all events sit in flat arrays; event i owns rows ``hit_index[i]:hit_index[i+1]``
(and particles ``particle_index[i]:particle_index[i+1]``). Coordinates in cm, detector frame
(:mod:`nufm.data.fasercal`).

=======================  =============  ======================================================
data set                 shape          content
=======================  =============  ======================================================
``hit_index``            (E+1,) int64   first hit of each event, then the total
``hit_coord``            (H, 3) f4      voxel / cell centre or hit position, cm
``hit_energy``           (H,) f4        MeV (scintillator: the three-view charge estimate)
``hit_stream``           (H,) int8      0 scintillator, 1 ECAL, 2 HCAL, 3 muon spectrometer
``hit_labels``           (H, 6) f4      ``LABEL_NAMES``: ghost, hierarchy, category and the
                                        category fractions (-1 off the scintillator)
``hit_instance``         (H,) int64     particle giving the voxel most energy (-1 none)
``particle_index``       (E+1,) int64   first particle of each event, then the total
``particles``            (P, 11) f8     ``Particles.TABLE_COLUMNS`` (start in cm, GeV/c)
``truth/<name>``         (E,) f8        per-event truth (:data:`TRUTH_NAMES`)
=======================  =============  ======================================================

The root attributes ``layout`` = ``nufm-fasercal`` and ``version`` = 1 identify the file;
``stream_names``, ``label_names``, ``flavour_names`` and ``charm_names`` name the codes.

Owns :data:`LAYOUT`, :data:`TRUTH_NAMES`, :func:`write_fasercal`, :func:`count_fasercal`
and :func:`iter_fasercal`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import h5py
import numpy as np

from nufm.atomic import atomic_output
from nufm.data import fasercal as fc
from nufm.data.event import Event, Particles
from nufm.data.pilarnet import DataError, MissingFileError

LAYOUT = "nufm-fasercal"
VERSION = 1
TRUTH_NAMES = (
    "flavour",
    "charm",
    "is_cc",
    "nu_energy",
    "visible_energy",
    "lepton_px",
    "lepton_py",
    "lepton_pz",
    "jet_px",
    "jet_py",
    "jet_pz",
    "vertex_x",
    "vertex_y",
    "vertex_z",
    "n_ghost",
)
"""Per-event truth kept in ``truth/`` and in ``Event.meta`` (energies GeV, momenta GeV/c,
vertex cm; flavour and charm are class indices of ``FLAVOUR_NAMES`` and ``CHARM_NAMES``)."""
_INT_TRUTH = ("flavour", "charm", "is_cc", "n_ghost")
_HITS = ("hit_coord", "hit_energy", "hit_stream", "hit_labels", "hit_instance")


def write_fasercal(path: str | os.PathLike, events: Iterable[Event], progress: bool = False) -> int:
    """Write FASERCal events atomically (no file appears unless every event was written);
    returns the number of events."""
    path = str(path)
    if progress:
        from tqdm import tqdm

        events = tqdm(events, desc=f"writing {os.path.basename(path)}", unit="event")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (*_HITS, "particles")}
    truth: dict[str, list[float]] = {k: [] for k in TRUTH_NAMES}
    hit_index, particle_index = [0], [0]
    for k, ev in enumerate(events):
        where = f"{path}: event {k} ({ev.where})"
        if ev.stream is None or ev.labels is None:
            raise DataError(f"{where}: a FASERCal event needs stream ids and labels")
        if ev.labels.shape[1] != len(fc.LABEL_NAMES):
            raise DataError(
                f"{where}: labels have {ev.labels.shape[1]} columns, the layout "
                f"{len(fc.LABEL_NAMES)} ({', '.join(fc.LABEL_NAMES)})"
            )
        missing = [n for n in TRUTH_NAMES if n not in ev.meta]
        if missing:
            raise DataError(f"{where}: event truth lacks {missing}")
        n = len(ev)
        cols["hit_coord"].append(ev.coord.astype(np.float32))
        cols["hit_energy"].append(ev.energy.astype(np.float32))
        cols["hit_stream"].append(ev.stream.astype(np.int8))
        cols["hit_labels"].append(ev.labels.astype(np.float32))
        inst = ev.instance if ev.instance is not None else np.full(n, -1, np.int64)
        cols["hit_instance"].append(inst.astype(np.int64))
        parts = ev.particles or Particles.empty()
        cols["particles"].append(parts.to_table())
        hit_index.append(hit_index[-1] + n)
        particle_index.append(particle_index[-1] + len(parts))
        for name in TRUTH_NAMES:
            truth[name].append(float(ev.meta[name]))
    if len(hit_index) == 1:
        raise DataError(f"{path}: no events to write")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layout"] = LAYOUT
        f.attrs["version"] = VERSION
        f.attrs["stream_names"] = list(fc.STREAM_NAMES)
        f.attrs["label_names"] = list(fc.LABEL_NAMES)
        f.attrs["flavour_names"] = list(fc.FLAVOUR_NAMES)
        f.attrs["charm_names"] = list(fc.CHARM_NAMES)
        f["hit_index"] = np.asarray(hit_index, np.int64)
        f["particle_index"] = np.asarray(particle_index, np.int64)
        for name in _HITS:
            f.create_dataset(name, data=np.concatenate(cols[name]), compression="gzip")
        f["particles"] = np.concatenate(cols["particles"]).reshape(-1, 11)
        for name, values in truth.items():
            f[f"truth/{name}"] = np.asarray(values, np.float64)
    return len(hit_index) - 1


def _load(path: str) -> dict[str, np.ndarray]:
    """Every array of the file, checked for the layout's consistency."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("layout") != LAYOUT:
                raise DataError(f"{path}: not a {LAYOUT} file (root attribute 'layout')")
            version = int(np.asarray(f.attrs.get("version", -1)))
            if version > VERSION:
                raise DataError(
                    f"{path}: {LAYOUT} version {version} is newer than this nufm reads ({VERSION})"
                )
            needed = ("hit_index", "particle_index", "particles", *_HITS)
            missing = [k for k in needed if k not in f] + [
                f"truth/{k}" for k in TRUTH_NAMES if f"truth/{k}" not in f
            ]
            if missing:
                raise DataError(f"{path}: {LAYOUT} file without {missing}")
            a = {k: np.asarray(f[k]) for k in needed}
            a.update({f"truth/{k}": np.asarray(f[f"truth/{k}"]) for k in TRUTH_NAMES})
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file: {e}") from e
    n_hits = len(a["hit_energy"])
    if any(len(a[k]) != n_hits for k in _HITS):
        raise DataError(f"{path}: hit arrays of different lengths")
    for index, total in (("hit_index", n_hits), ("particle_index", len(a["particles"]))):
        idx = a[index]
        if len(idx) < 1 or idx[0] != 0 or idx[-1] != total or (np.diff(idx) < 0).any():
            raise DataError(f"{path}: {index} does not run from 0 to {total} without decreasing")
    n_events = len(a["hit_index"]) - 1
    bad = [
        k
        for k in ("particle_index", *(f"truth/{t}" for t in TRUTH_NAMES))
        if len(a[k]) != n_events + (k == "particle_index")
    ]
    if bad:
        raise DataError(f"{path}: {bad} do not hold one entry per event ({n_events} events)")
    return a


def count_fasercal(path: str | os.PathLike) -> int:
    """Events in a FASERCal file (read from its index)."""
    path = str(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("layout") != LAYOUT or "hit_index" not in f:
            raise DataError(f"{path}: not a {LAYOUT} file")
        return len(f["hit_index"]) - 1  # type: ignore[arg-type]


def iter_fasercal(path: str | os.PathLike, indices: Sequence[int] | None = None) -> Iterator[Event]:
    """Events of a FASERCal file (coordinates in cm), with stream ids, the label channels,
    the particle table and the event truth in ``meta``."""
    path = str(path)
    a = _load(path)
    hi, pi = a["hit_index"], a["particle_index"]
    n_events = len(hi) - 1
    wanted = range(n_events) if indices is None else list(indices)
    bad = [i for i in wanted if not 0 <= i < n_events]
    if bad:
        raise IndexError(f"{path}: events {bad} out of range (the file holds {n_events})")
    for i in wanted:
        sl = slice(int(hi[i]), int(hi[i + 1]))
        labels = a["hit_labels"][sl].astype(np.float32)
        stream = a["hit_stream"][sl].astype(np.int64)
        instance = a["hit_instance"][sl].astype(np.int64)
        meta: dict = {"detector": "fasercal"}
        for name in TRUTH_NAMES:
            v = float(a[f"truth/{name}"][i])
            meta[name] = int(v) if name in _INT_TRUTH else v
        vertex = np.array([[meta["vertex_x"], meta["vertex_y"], meta["vertex_z"]]], np.float32)
        yield Event(
            coord=a["hit_coord"][sl].astype(np.float32),
            energy=a["hit_energy"][sl].astype(np.float32),
            segment=np.where(stream == fc.SCINT, labels[:, 2], -1).astype(np.int64),
            instance=instance,
            interaction=np.where(instance >= 0, 0, -1).astype(np.int64),
            stream=stream,
            labels=labels,
            particles=Particles.from_table(a["particles"][int(pi[i]) : int(pi[i + 1])]),
            vertices=vertex,
            event_id=i,
            source=path,
            meta=meta,
        )
