"""The TPCpp ``.npz`` layout of collider-TPC events (the FM4NPP data, arXiv:2508.14087): all
hits of all events concatenated in ``data``, the hits per event in ``size``.

nufm writes, and reads back, these arrays (plain ``numpy.load`` reads them too):

==================  ===============  ======================================================
array               shape / dtype    content
==================  ===============  ======================================================
``data``            (H, 8) float32   per hit: x, y, z (cm), charge (keV), track id (-1 random
                                     noise), particle class (0 other, 1 pi, 2 K, 3 p, 4 e),
                                     noise flag (1 = tagged as noise), collision id (-1
                                     noise); the names are in ``columns``
``size``            (E,) int64       hits per event, in event order
``columns``         (8,) str         the column names of ``data``
``particles``       (P, 11) float64  per particle: id, PDG code, px, py, pz (GeV/c), start
                                     x, y, z (cm), is primary, collision id, parent id
``particle_size``   (E,) int64       particles per event
``vertices``        (V, 3) float32   collision vertices (cm); ``vertex_size`` (E,) per event
==================  ===============  ======================================================

A file with only ``data`` (at least x, y, z, charge) and ``size`` is read too: the labels are
then absent. Owns :func:`write_tpcpp`, :func:`read_tpcpp`, :func:`count_tpcpp`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from nufm.atomic import atomic_output
from nufm.data.event import Event, Particles
from nufm.data.pilarnet import DataError, MissingFileError

COLUMNS = ("x", "y", "z", "charge", "track_id", "particle_class", "noise", "collision")
PARTICLE_COLUMNS = Particles.TABLE_COLUMNS


def write_tpcpp(path: str | os.PathLike, events: Iterable[Event], progress: bool = False) -> int:
    """Write collider-TPC events (coord in cm, energy = charge in keV, labels as produced by
    :mod:`nufm.sim.collider_tpc`) to ``path`` atomically; returns the number of events.

    Raises:
        DataError: an event has NaN/inf coordinates or no hits (naming the event).
    """
    path = str(path)
    if not path.endswith(".npz"):
        raise DataError(f"{path}: the TPCpp layout is a .npz file")
    if progress:
        from tqdm import tqdm

        events = tqdm(events, desc=f"writing {os.path.basename(path)}", unit="event")
    hits, sizes, parts, psizes, verts, vsizes = [], [], [], [], [], []
    for k, ev in enumerate(events):
        n = len(ev)
        if n == 0 or not np.isfinite(ev.coord).all():
            raise DataError(f"{path}: event {k} is empty or has NaN/inf coordinates")
        neg = np.full(n, -1, np.int64)
        inst = ev.instance if ev.instance is not None else neg
        coll = ev.interaction if ev.interaction is not None else neg
        seg = ev.segment if ev.segment is not None else np.zeros(n, np.int64)
        cols = [
            ev.coord,
            ev.energy[:, None],
            inst[:, None],
            seg[:, None],
            (coll < 0)[:, None],
            coll[:, None],
        ]
        hits.append(np.concatenate([np.asarray(c, np.float32).reshape(n, -1) for c in cols], 1))
        sizes.append(n)
        p = ev.particles or Particles.empty()
        parts.append(p.to_table())
        psizes.append(len(p))
        v = ev.vertices if ev.vertices is not None else np.zeros((0, 3), np.float32)
        verts.append(np.asarray(v, np.float32))
        vsizes.append(len(v))
    if not sizes:
        raise DataError(f"{path}: no events to write")
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            data=np.concatenate(hits),
            size=np.asarray(sizes, np.int64),
            columns=np.asarray(COLUMNS),
            particles=np.concatenate(parts),
            particle_size=np.asarray(psizes, np.int64),
            vertices=np.concatenate(verts),
            vertex_size=np.asarray(vsizes, np.int64),
        )
    return len(sizes)


def _open(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from e
    for name in ("data", "size"):
        if name not in arrays:
            raise DataError(f"{path}: not a TPCpp file: no '{name}' array (found {sorted(arrays)})")
    data, size = arrays["data"], arrays["size"]
    if data.ndim != 2 or data.shape[1] < 4:
        raise DataError(f"{path}: 'data' has shape {data.shape}; needs (hits, >= 4 columns)")
    if size.ndim != 1 or (size < 0).any() or int(size.sum()) != len(data):
        raise DataError(
            f"{path}: 'size' sums to {int(size.sum())} hits but 'data' holds {len(data)} "
            "(inconsistent sizes)"
        )
    for name, total in (("particle_size", "particles"), ("vertex_size", "vertices")):
        if name in arrays and int(arrays[name].sum()) != len(arrays.get(total, [])):
            raise DataError(f"{path}: '{name}' does not match the rows of '{total}'")
    return arrays


def count_tpcpp(path: str | os.PathLike) -> int:
    """Events in a TPCpp file."""
    return len(_open(str(path))["size"])


def read_tpcpp(path: str | os.PathLike, indices: Sequence[int] | None = None) -> list[Event]:
    """Events ``indices`` (all when None) of a TPCpp file (module docstring)."""
    return list(iter_tpcpp(path, indices))


def iter_tpcpp(path: str | os.PathLike, indices: Sequence[int] | None = None) -> Iterator[Event]:
    """Yield the events of a TPCpp file, one at a time."""
    path = str(path)
    a = _open(path)
    size = a["size"]
    ends = np.cumsum(size)
    starts = ends - size
    wanted = range(len(size)) if indices is None else list(indices)
    bad = [i for i in wanted if not 0 <= i < len(size)]
    if bad:
        raise IndexError(f"{path}: events {bad} out of range (the file holds {len(size)})")
    labelled = a["data"].shape[1] >= len(COLUMNS)
    p_ends = np.cumsum(a["particle_size"]) if "particle_size" in a else None
    v_ends = np.cumsum(a["vertex_size"]) if "vertex_size" in a else None
    for i in wanted:
        d = a["data"][starts[i] : ends[i]]
        instance = d[:, 4].astype(np.int64) if labelled else None
        segment = d[:, 5].astype(np.int64) if labelled else None
        interaction = d[:, 7].astype(np.int64) if labelled else None
        particles = None
        if p_ends is not None:
            p = a["particles"][p_ends[i] - a["particle_size"][i] : p_ends[i]]
            particles = Particles.from_table(p)
        vertices = None
        if v_ends is not None:
            vertices = a["vertices"][v_ends[i] - a["vertex_size"][i] : v_ends[i]]
        yield Event(
            coord=d[:, :3].astype(np.float32),
            energy=d[:, 3].astype(np.float32),
            particles=particles,
            vertices=vertices,
            event_id=i,
            source=path,
            meta={"detector": "collider-tpc"},
            instance=instance,
            segment=segment,
            interaction=interaction,
        )
