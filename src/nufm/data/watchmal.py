"""The WatChMaL flat HDF5 layout of water Cherenkov events (the layout of the WAND data used by
Panda arXiv:2512.01324): all hits of all events in flat arrays, each event's first hit in
``event_hits_index``.

==========================  ============  =================================================
data set                    shape         content
==========================  ============  =================================================
``event_hits_index``        (E,) int64    first hit of each event
``hit_pmt``                 (H,) int32    PMT index of each hit
``hit_time``                (H,) float32  ns
``hit_charge``              (H,) float32  photoelectrons
``labels``                  (E,) int32    primary: gamma 0, electron 1, muon 2 (WatChMaL);
                                          pi0 3, pi+ 4 (nufm)
``positions``               (E, 1, 3)     vertex, m
``angles``                  (E, 2)        primary direction: polar angle from +z, azimuth
``energies``                (E, 1)        primary kinetic energy, MeV
``pmt_position``            (P, 3)        PMT positions, m (WatChMaL keeps them in a geometry
                                          file; nufm writes them here too)
``hit_parent``              (H,) int64    nufm: particle giving the PMT most light (-1 noise)
``hit_category``            (H,) int64    nufm: its category (primary, decay electron,
                                          secondary pion, gamma from pi0; -1 noise)
``particles``, ``particle_index``         nufm: particle tables (id, PDG, momentum GeV/c,
                                          start m, primary, interaction, parent), first row
==========================  ============  =================================================

Owns :func:`write_watchmal`, :func:`iter_watchmal`, :func:`count_watchmal`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import h5py
import numpy as np
from scipy.spatial import cKDTree  # pyright: ignore[reportAttributeAccessIssue]  # stub gap

from nufm.atomic import atomic_output
from nufm.data.event import Event, Particles
from nufm.data.pilarnet import DataError, MissingFileError
from nufm.data.water_cherenkov import EVENT_LABELS, event_truth, kinetic_energy_mev

REQUIRED = ("event_hits_index", "hit_pmt", "hit_time", "hit_charge")


def write_watchmal(
    path: str | os.PathLike,
    events: Iterable[Event],
    pmt_position: np.ndarray,
    progress: bool = False,
) -> int:
    """Write water Cherenkov events (``coord`` = PMT positions of ``pmt_position``) atomically;
    returns the number of events."""
    path = str(path)
    tree = cKDTree(pmt_position)
    if progress:
        from tqdm import tqdm

        events = tqdm(events, desc=f"writing {os.path.basename(path)}", unit="event")
    cols: dict[str, list] = {k: [] for k in ("pmt", "time", "q", "parent", "cat", "parts")}
    starts, labels, pos, ang, ene, pstart = [], [], [], [], [], []
    n_hits = n_parts = 0
    for k, ev in enumerate(events):
        dist, pmt = tree.query(ev.coord)
        if len(ev) and float(dist.max()) > 1e-3:
            raise DataError(f"{path}: event {k} has a hit that is not at a PMT position")
        if ev.time is None:
            raise DataError(f"{path}: event {k} has no hit times")
        starts.append(n_hits)
        n_hits += len(ev)
        neg = np.full(len(ev), -1, np.int64)
        cols["pmt"].append(pmt.astype(np.int32))
        cols["time"].append(ev.time.astype(np.float32))
        cols["q"].append(ev.energy.astype(np.float32))
        cols["parent"].append(ev.instance if ev.instance is not None else neg)
        cols["cat"].append(ev.segment if ev.segment is not None else neg)
        p = ev.particles or Particles.empty()
        pstart.append(n_parts)
        n_parts += len(p)
        cols["parts"].append(p.to_table())
        if len(p):
            mom = p.momentum[0].astype(float)
            pm = float(np.linalg.norm(mom)) or 1.0
            labels.append(EVENT_LABELS.get(abs(int(p.pdg[0])), -1))
            ang.append([np.arccos(mom[2] / pm), np.arctan2(mom[1], mom[0])])
            ene.append([kinetic_energy_mev(p, 0)])
        else:
            labels.append(-1)
            ang.append([0.0, 0.0])
            ene.append([0.0])
        v = ev.vertices[0] if ev.vertices is not None and len(ev.vertices) else np.zeros(3)
        pos.append([v])
    if not starts:
        raise DataError(f"{path}: no events to write")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f["event_hits_index"] = np.asarray(starts, np.int64)
        f["hit_pmt"] = np.concatenate(cols["pmt"])
        f["hit_time"] = np.concatenate(cols["time"])
        f["hit_charge"] = np.concatenate(cols["q"])
        f["hit_parent"] = np.concatenate(cols["parent"]).astype(np.int64)
        f["hit_category"] = np.concatenate(cols["cat"]).astype(np.int64)
        f["labels"] = np.asarray(labels, np.int32)
        f["positions"] = np.asarray(pos, np.float32)
        f["angles"] = np.asarray(ang, np.float32)
        f["energies"] = np.asarray(ene, np.float32)
        f["pmt_position"] = np.asarray(pmt_position, np.float32)
        f["particles"] = np.concatenate(cols["parts"])
        f["particle_index"] = np.asarray(pstart, np.int64)
    return len(starts)


def _load(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in (*REQUIRED, "pmt_position") if k not in f]
            if missing:
                raise DataError(f"{path}: not a WatChMaL file with PMT positions: no {missing}")
            arrays = {str(k): np.asarray(f[k]) for k in f if isinstance(f[k], h5py.Dataset)}
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file: {e}") from e
    start = arrays["event_hits_index"]
    n_hits = len(arrays["hit_pmt"])
    if any(len(arrays[k]) != n_hits for k in REQUIRED[1:]):
        raise DataError(f"{path}: hit arrays of different lengths (inconsistent sizes)")
    if len(start) and (start[0] != 0 or (np.diff(start) < 0).any() or start[-1] > n_hits):
        bad = int(np.argmax(np.r_[start[0] != 0, np.diff(start) < 0])) if len(start) else 0
        raise DataError(f"{path}: event_hits_index is not increasing within the hits (event {bad})")
    if len(arrays["hit_pmt"]) and int(arrays["hit_pmt"].max()) >= len(arrays["pmt_position"]):
        raise DataError(f"{path}: hit_pmt beyond the {len(arrays['pmt_position'])} PMTs")
    return arrays


def count_watchmal(path: str | os.PathLike) -> int:
    return len(_load(str(path))["event_hits_index"])


def iter_watchmal(path: str | os.PathLike, indices: Sequence[int] | None = None) -> Iterator[Event]:
    """Events of a WatChMaL file: coord = PMT positions (m), energy = charge (pe), time (ns);
    ``meta`` holds the event truth of :func:`nufm.data.water_cherenkov.event_truth` when the
    file has nufm's particle tables."""
    path = str(path)
    a = _load(path)
    start = a["event_hits_index"]
    end = np.r_[start[1:], len(a["hit_pmt"])]
    wanted = range(len(start)) if indices is None else list(indices)
    bad = [i for i in wanted if not 0 <= i < len(start)]
    if bad:
        raise IndexError(f"{path}: events {bad} out of range (the file holds {len(start)})")
    p_end = None
    if "particle_index" in a:
        p_end = np.r_[a["particle_index"][1:], len(a["particles"])]
    for i in wanted:
        sl = slice(int(start[i]), int(end[i]))
        parent = a["hit_parent"][sl] if "hit_parent" in a else None
        particles = None
        if p_end is not None:
            p = a["particles"][int(a["particle_index"][i]) : int(p_end[i])]
            particles = Particles.from_table(p)
        yield Event(
            coord=a["pmt_position"][a["hit_pmt"][sl]].astype(np.float32),
            energy=a["hit_charge"][sl].astype(np.float32),
            time=a["hit_time"][sl].astype(np.float32),
            instance=parent,
            segment=a["hit_category"][sl] if "hit_category" in a else None,
            interaction=None if parent is None else np.where(parent >= 0, 0, -1),
            particles=particles,
            vertices=a["positions"][i].astype(np.float32) if "positions" in a else None,
            event_id=i,
            source=path,
            meta={"detector": "water-cherenkov", **event_truth(particles)},
        )
