"""PILArNet-M HDF5 files: read and write events, one event per row of each dataset.

PILArNet-M (arXiv:2502.02558, PoLAr-MAE; continuation of PILArNet, arXiv:2006.01993) stores
each event as one row of several variable-length (HDF5 vlen) datasets, flattened:

* ``point``   vlen float32, reshaped (N, 8): x, y, z, voxel value, energy deposit, absolute
  time, n electrons, dx. Coordinates are voxel indices of the 768^3 cube (3 mm voxels).
* ``cluster`` vlen int, reshaped (M, 5) in v1 = [n_points, fragment, group, interaction,
  semantic] and (M, 6) from v2 = [..., pid]. Points are stored ordered by cluster, so the
  first ``cluster[0, 0]`` points belong to cluster 0, which is the low-energy-scatter cluster.
* ``cluster_extra`` vlen float32 (v2 family), reshaped (M, 5 | 6) = [mass MeV, |p| GeV,
  vertex x, y, z, is_primary]; the public v2 files carry the first 5 columns, pimm's v3 all 6.

nufm writes exactly this layout (with the 6-column ``cluster_extra``) plus datasets that the
standard readers ignore, so a file written here round-trips every truth field of an
:class:`~nufm.data.event.Event`: ``particle`` (P*11 float64), ``vertex`` (I*3 float64),
``meta`` (JSON string) and ``nufm_fields`` (int32 bitmask of which optional fields were set).
The column tables and conventions are in ``docs/data.md``.

Owns: :func:`write_events`, :func:`read_event`, :func:`open_pilarnet`, :func:`num_events`,
:func:`iter_events`, :func:`read_events`, :func:`count_points`, :func:`cluster_order`,
:class:`DataError`, :class:`WriteSummary`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import h5py
import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.lartpc import LOW_ENERGY, PID_NONE, VOLUME_SIZE
from nufm.errors import EventIndexError, InputError, NotFoundError

log = logging.getLogger(__name__)

POINT_WIDTH = 8
"""Columns of ``point``: x, y, z, voxel value, energy deposit, time, n electrons, dx."""
CLUSTER_WIDTH = {1: 5, 2: 6}
"""Columns of ``cluster`` per layout version: n_points, fragment, group, interaction, semantic
(, pid from v2)."""
CLUSTER_EXTRA_WIDTH = 6
"""Columns written to ``cluster_extra``: mass MeV, |p| GeV, vertex x, y, z, is_primary."""
PARTICLE_WIDTH = 11
"""Columns of the nufm ``particle`` dataset: id, pdg, px, py, pz (GeV/c), start x, y, z,
is_primary, interaction, parent."""
LAYOUT_ATTR = "nufm_layout_version"
"""File attribute marking a file written by nufm (value: :data:`NUFM_LAYOUT_VERSION`)."""
NUFM_LAYOUT_VERSION = 1
VERSION_ATTR = "pilarnet_version"
"""File attribute holding the PILArNet layout version (1 or 2) of a nufm-written file."""

_FIELD_BITS = {
    "segment": 1,
    "pid": 2,
    "instance": 4,
    "interaction": 8,
    "particles": 16,
    "vertices": 32,
}
"""Bits of the ``nufm_fields`` dataset: which optional Event fields were set (not None)."""

PDG_MASS_MEV = {
    11: 0.51099895,
    13: 105.6583755,
    22: 0.0,
    111: 134.9768,
    211: 139.57039,
    321: 493.677,
    2112: 939.56542052,
    2212: 938.27208816,
}
"""Rest masses used to fill the ``cluster_extra`` mass column; other PDG codes get -1."""


class DataError(InputError):
    """A data file or event is unusable; the message names the file, the event and the fault."""


class MissingFileError(DataError, NotFoundError):
    """A data file does not exist (also catchable as ``FileNotFoundError``)."""


@dataclass(frozen=True, kw_only=True)
class WriteSummary:
    """What :func:`write_events` wrote."""

    path: str
    """Final path of the file."""
    version: int
    """PILArNet layout version written (1: 5-column clusters, 2: 6-column + cluster_extra)."""
    n_events: int
    """Rows written."""
    n_points: int
    """Points written over all events."""
    n_clusters: int
    """Clusters written over all events (including the leading low-energy cluster)."""


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _labels(event: Event) -> np.ndarray:
    """(N, 4) int64 [instance, interaction, segment, pid], -1 where a field is unset."""
    n = len(event)
    cols = [getattr(event, name) for name in ("instance", "interaction", "segment", "pid")]
    return np.stack(
        [np.full(n, -1, np.int64) if c is None else np.asarray(c, np.int64) for c in cols], axis=1
    )


def cluster_order(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """Group the points of ``event`` into PILArNet clusters.

    A cluster is the set of points sharing (instance, interaction, segment, pid), so each
    per-point label is a cluster attribute and round-trips exactly. Low-energy-scatter
    clusters (segment 4, instance -1) come first; when there is none, an empty one is added so
    that cluster 0 is always the low-energy-scatter cluster (readers that drop cluster 0 never
    drop a particle).

    Args:
        event: the event; unset label fields count as -1.

    Returns:
        order: (N,) int64 point permutation that sorts points by cluster (stable).
        keys: (M, 5) int64 per cluster [n_points, instance, interaction, segment, pid].
    """
    lab = _labels(event)  # (N, 4)
    keys, inverse, sizes = np.unique(lab, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    is_led = (keys[:, 2] == LOW_ENERGY) & (keys[:, 0] == -1)  # (M,)
    rank_of_key = np.empty(len(keys), np.int64)
    ranked = np.concatenate([np.flatnonzero(is_led), np.flatnonzero(~is_led)])
    rank_of_key[ranked] = np.arange(len(keys))
    order = np.argsort(rank_of_key[inverse], kind="stable")
    table = np.concatenate([sizes[:, None], keys], axis=1)[ranked]  # (M, 5)
    if not is_led.any():
        empty_led = np.array([[0, -1, -1, LOW_ENERGY, -1]], np.int64)
        table = np.concatenate([empty_led, table], axis=0)
    return order, table


def _fragments(table: np.ndarray) -> np.ndarray:
    """(M,) fragment ids: the largest cluster of a particle gets the particle (group) id, the
    other clusters of that particle fresh ids above every group id; -1 where group is -1."""
    group = table[:, 1]
    fragment = np.full(len(table), -1, np.int64)
    next_id = int(max(group.max(initial=-1), -1)) + 1
    for g in np.unique(group[group >= 0]):
        rows = np.flatnonzero(group == g)
        lead = rows[np.argmax(table[rows, 0])]
        fragment[lead] = g
        for r in rows[rows != lead]:
            fragment[r] = next_id
            next_id += 1
    return fragment


def _cluster_extra(table: np.ndarray, event: Event) -> np.ndarray:
    """(M, 6) float32 [mass MeV, |p| GeV, vertex x, y, z, is_primary], -1 where unknown."""
    extra = np.full((len(table), CLUSTER_EXTRA_WIDTH), -1.0, np.float32)
    parts = event.particles
    row_of_id = {int(pid): r for r, pid in enumerate(parts.id)} if parts is not None else {}
    for m, (_, inst, inter, _, _) in enumerate(table):
        if parts is not None and inst >= 0 and int(inst) in row_of_id:
            r = row_of_id[int(inst)]
            extra[m, 0] = PDG_MASS_MEV.get(abs(int(parts.pdg[r])), -1.0)
            extra[m, 1] = float(np.linalg.norm(parts.momentum[r]))
            extra[m, 5] = float(bool(parts.is_primary[r]))
        if event.vertices is not None and 0 <= inter < len(event.vertices):
            extra[m, 2:5] = event.vertices[inter]
    return extra


def _check_event_for_writing(event: Event, k: int, path: str) -> None:
    where = f"{path}: input event {k} ({event.where})"
    if len(event) == 0:
        raise DataError(f"{where}: event has no points; PILArNet-M rows must be non-empty")
    if not (np.isfinite(event.coord).all() and np.isfinite(event.energy).all()):
        raise DataError(f"{where}: coord or energy contains NaN/inf")
    if event.coord.min() < 0 or event.coord.max() > VOLUME_SIZE:
        raise DataError(
            f"{where}: coordinates span [{event.coord.min():.1f}, "
            f"{event.coord.max():.1f}], outside the [0, {VOLUME_SIZE}] voxel cube "
            f"(write raw voxel coordinates, not normalised ones)"
        )
    if event.stream is not None and np.unique(event.stream).size > 1:
        raise DataError(f"{where}: multi-stream events cannot be stored in PILArNet-M files")


def _encode(event: Event, version: int) -> dict[str, object]:
    """One event as the flat rows of every dataset."""
    order, table = cluster_order(event)
    n = len(event)
    point = np.zeros((n, POINT_WIDTH), np.float32)  # (N, 8)
    point[:, 0:3] = event.coord[order]
    point[:, 3] = event.energy[order]  # voxel value
    point[:, 4] = event.energy[order]  # energy deposit
    cluster = np.stack(
        [table[:, 0], _fragments(table), table[:, 1], table[:, 2], table[:, 3], table[:, 4]], axis=1
    )  # (M, 6)
    row: dict[str, object] = {
        "point": point.reshape(-1),
        "cluster": cluster[:, : CLUSTER_WIDTH[version]].astype(np.int32).reshape(-1),
    }
    if version >= 2:
        row["cluster_extra"] = _cluster_extra(table, event).reshape(-1)
    parts = event.particles if event.particles is not None else Particles.empty()
    row["particle"] = (
        np.concatenate(
            [
                parts.id[:, None],
                parts.pdg[:, None],
                parts.momentum,
                parts.start,
                parts.is_primary[:, None],
                parts.interaction[:, None],
                parts.parent[:, None],
            ],
            axis=1,
        )
        .astype(np.float64)
        .reshape(-1)
    )
    verts = event.vertices if event.vertices is not None else np.zeros((0, 3))
    row["vertex"] = np.asarray(verts, np.float64).reshape(-1)
    meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in event.meta.items()}
    row["meta"] = json.dumps(meta)
    row["nufm_fields"] = sum(
        bit for name, bit in _FIELD_BITS.items() if getattr(event, name) is not None
    )
    return row


def write_events(
    path: str | os.PathLike,
    events: Iterable[Event],
    version: int = 2,
    progress: bool = False,
    chunk_events: int = 256,
) -> WriteSummary:
    """Write events to a PILArNet-M HDF5 file, atomically.

    The file is written to a temporary file in the same directory and renamed into place on
    success; on any failure the temporary file is removed and no file appears at ``path``.
    Points are reordered by cluster (see :func:`cluster_order`); the energy goes to both the
    "voxel value" and the "energy deposit" columns, time / n electrons / dx are 0.

    Args:
        path: destination ``.h5`` file (replaced if it exists).
        events: events with raw voxel coordinates in [0, 768] and energies in MeV.
        version: 2 (default) writes 6-column ``cluster`` + ``cluster_extra``; 1 writes the
            5-column v1 ``cluster`` (no pid) and no ``cluster_extra``.
        progress: show a tqdm progress bar.
        chunk_events: events buffered per HDF5 write.

    Returns:
        A :class:`WriteSummary`.

    Raises:
        DataError: an event is empty, has NaN/inf, or lies outside the voxel cube (the message
            names the destination and the input event index).
    """
    if version not in CLUSTER_WIDTH:
        raise ValueError(f"write_events: version must be 1 or 2, got {version}")
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise NotFoundError(f"{path}: directory {directory} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    if progress:
        from tqdm import tqdm

        events = tqdm(events, desc=f"writing {os.path.basename(path)}", unit="event")
    n_events = n_points = n_clusters = 0
    try:
        with h5py.File(tmp, "w", libver="latest") as f:
            f.attrs[LAYOUT_ATTR] = NUFM_LAYOUT_VERSION
            f.attrs[VERSION_ATTR] = version
            dsets = {
                "point": f.create_dataset(
                    "point", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.float32)
                ),
                "cluster": f.create_dataset(
                    "cluster", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.int32)
                ),
                "particle": f.create_dataset(
                    "particle", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.float64)
                ),
                "vertex": f.create_dataset(
                    "vertex", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.float64)
                ),
                "meta": f.create_dataset("meta", (0,), maxshape=(None,), dtype=h5py.string_dtype()),
                "nufm_fields": f.create_dataset(
                    "nufm_fields", (0,), maxshape=(None,), dtype=np.int32
                ),
            }
            if version >= 2:
                dsets["cluster_extra"] = f.create_dataset(
                    "cluster_extra", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.float32)
                )
            buffer: list[dict[str, object]] = []

            def flush() -> None:
                start = dsets["point"].shape[0]
                for name, ds in dsets.items():
                    ds.resize((start + len(buffer),))
                    values = [row[name] for row in buffer]
                    if ds.dtype.kind == "O" and name != "meta":
                        for j, v in enumerate(values):  # row by row: vlen rows differ in size
                            ds[start + j] = v
                    else:
                        ds[start:] = values
                buffer.clear()

            for k, event in enumerate(events):
                _check_event_for_writing(event, k, path)
                row = _encode(event, version)
                buffer.append(row)
                n_events += 1
                n_points += len(event)
                n_clusters += len(row["cluster"]) // CLUSTER_WIDTH[version]  # type: ignore
                if len(buffer) >= chunk_events:
                    flush()
            if buffer:
                flush()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    log.info("wrote %d events (%d points) to %s", n_events, n_points, path)
    return WriteSummary(
        path=path, version=version, n_events=n_events, n_points=n_points, n_clusters=n_clusters
    )


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def open_pilarnet(path: str | os.PathLike) -> h5py.File:
    """Open a PILArNet-M file read-only after checking it exists and has the layout.

    Raises:
        MissingFileError: no such file.
        DataError: not a readable HDF5 file (truncated/corrupt), or missing ``point`` /
            ``cluster``, or datasets of different lengths.
    """
    path = str(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such PILArNet-M file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from err
    try:
        missing = [name for name in ("point", "cluster") if name not in f]
        if missing:
            raise DataError(
                f"{path}: not a PILArNet-M file: missing dataset(s) {missing}; "
                f"found {sorted(f.keys())}"
            )
        lengths = {
            name: _dataset(f, name).shape[0]
            for name in ("point", "cluster", "cluster_extra")
            if name in f
        }
        if len(set(lengths.values())) != 1:
            raise DataError(f"{path}: datasets have different numbers of events {lengths}")
    except Exception:
        f.close()
        raise
    return f


def num_events(h5file: h5py.File) -> int:
    """Number of events (rows) in an open PILArNet-M file."""
    return int(_dataset(h5file, "point").shape[0])


def _event_energy(point: np.ndarray) -> np.ndarray:
    """(N,) energy in MeV: column 4 (energy deposit) where nonzero, else column 3 (voxel value)."""
    return np.where(point[:, 4] != 0, point[:, 4], point[:, 3]).astype(np.float32)


def _dataset(h5file: h5py.File, name: str) -> h5py.Dataset:
    """``h5file[name]``, which must be a dataset (not a group or a named type)."""
    obj = h5file[name]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{h5file.filename}: '{name}' is a {type(obj).__name__}, not a dataset")
    return obj


def _row(h5file: h5py.File, name: str, i: int) -> np.ndarray:
    try:
        return np.asarray(_dataset(h5file, name)[i])
    except OSError as err:
        raise DataError(
            f"{h5file.filename} event {i}: cannot read '{name}' (truncated or corrupt file?): {err}"
        ) from err


def _cluster_width(
    h5file: h5py.File, cluster: np.ndarray, n_points: int, extra: np.ndarray | None
) -> int:
    """Column count of this event's cluster table: 6 (v2) or 5 (v1)."""
    if LAYOUT_ATTR in h5file.attrs:
        return CLUSTER_WIDTH[int(cast(np.integer, h5file.attrs[VERSION_ATTR]))]
    preferred = (6, 5) if extra is not None else (5, 6)
    for width in preferred:
        if cluster.size % width or (cluster.size == 0):
            continue
        m = cluster.size // width
        if cluster.reshape(m, width)[:, 0].sum() != n_points:
            continue
        if extra is not None and extra.size % m:
            continue
        return width
    dividing = [w for w in preferred if cluster.size % w == 0]  # best guess for the message
    return dividing[0] if dividing else preferred[0]


def read_event(h5file: h5py.File | str | os.PathLike, i: int) -> Event:
    """Read event ``i`` of a PILArNet-M file (v1 or v2 layout) into an :class:`Event`.

    Field mapping: coord = point columns 0..2 (voxel units); energy = column 4 ("energy
    deposit") where nonzero, else column 3 ("voxel value", which PoLAr-MAE uses as energy);
    instance = cluster group id; interaction = interaction id; segment = semantic type;
    pid = pid column (v2), where -1 on a foreign file (no particle, e.g. the low-energy cluster)
    becomes 5 ("none", pimm's convention); v1 files have no pid column: pid = -1. Files written
    by nufm store pid verbatim and also restore particles, vertices, meta and which label
    fields were unset. Points come back in file order (grouped by cluster).

    Args:
        h5file: an open file (from :func:`open_pilarnet` or ``h5py.File``) or a path.
        i: row index.

    Raises:
        IndexError: ``i`` out of range.
        DataError: bad row (point length not a multiple of 8, empty event, NaN/inf, coordinates
            outside the cube, cluster sizes not adding up to the point count); the message
            names the file and the event.
    """
    if not isinstance(h5file, h5py.File):
        with open_pilarnet(h5file) as f:
            return read_event(f, i)
    path = str(h5file.filename)
    n_ev = num_events(h5file)
    if not 0 <= i < n_ev:
        raise EventIndexError(f"{path}: event {i} out of range (file has {n_ev} events)")
    where = f"{path} event {i}"
    flat = _row(h5file, "point", i)
    if flat.size % POINT_WIDTH:
        raise DataError(f"{where}: 'point' row has {flat.size} values, not a multiple of 8")
    point = flat.reshape(-1, POINT_WIDTH)  # (N, 8)
    n = point.shape[0]
    if n == 0:
        raise DataError(f"{where}: empty event (0 points)")
    bad = ~np.isfinite(point[:, :5]).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} of {n} points have NaN/inf coordinates or energies"
        )
    coord = point[:, 0:3].astype(np.float32)
    outside = ((coord < 0) | (coord > VOLUME_SIZE)).any(axis=1)
    if outside.any():
        raise DataError(
            f"{where}: {int(outside.sum())} of {n} points lie outside the "
            f"[0, {VOLUME_SIZE}] voxel cube (coord range {coord.min():.1f} to "
            f"{coord.max():.1f})"
        )
    cluster_flat = _row(h5file, "cluster", i).astype(np.int64)
    extra = _row(h5file, "cluster_extra", i) if "cluster_extra" in h5file else None
    width = _cluster_width(h5file, cluster_flat, n, extra)
    if cluster_flat.size % width:
        raise DataError(
            f"{where}: 'cluster' row has {cluster_flat.size} values, not a multiple of {width}"
        )
    cluster = cluster_flat.reshape(-1, width)  # (M, 5|6)
    sizes = cluster[:, 0]
    if (sizes < 0).any():
        raise DataError(f"{where}: negative cluster sizes {sizes[sizes < 0].tolist()}")
    if int(sizes.sum()) != n:
        raise DataError(
            f"{where}: cluster sizes add up to {int(sizes.sum())} but the event has {n} points"
        )
    if extra is not None and len(cluster) and extra.size % len(cluster):
        raise DataError(
            f"{where}: 'cluster_extra' has {extra.size} values for {len(cluster)} clusters"
        )
    is_nufm = LAYOUT_ATTR in h5file.attrs
    pid_col = cluster[:, 5].copy() if width == 6 else np.full(len(cluster), -1, np.int64)
    if width == 6 and not is_nufm:
        pid_col[pid_col == -1] = PID_NONE
    fields: dict[str, Any] = {  # Event keyword arguments of different types
        "segment": np.repeat(cluster[:, 4], sizes),
        "pid": np.repeat(pid_col, sizes),
        "instance": np.repeat(cluster[:, 2], sizes),
        "interaction": np.repeat(cluster[:, 3], sizes),
    }
    meta: dict = {}
    if is_nufm:
        fields.update(_read_nufm_truth(h5file, i, where))
        meta = json.loads(_row(h5file, "meta", i).item() or "{}") if "meta" in h5file else {}
        flags = int(_row(h5file, "nufm_fields", i)) if "nufm_fields" in h5file else -1
        for name, bit in _FIELD_BITS.items():
            if flags >= 0 and not flags & bit:
                fields[name] = None
    return Event(
        coord=coord, energy=_event_energy(point), event_id=i, source=path, meta=meta, **fields
    )


def _read_nufm_truth(h5file: h5py.File, i: int, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "particle" in h5file:
        flat = _row(h5file, "particle", i)
        if flat.size % PARTICLE_WIDTH:
            raise DataError(
                f"{where}: 'particle' row has {flat.size} values, not a multiple "
                f"of {PARTICLE_WIDTH}"
            )
        p = flat.reshape(-1, PARTICLE_WIDTH)  # (P, 11)
        out["particles"] = Particles(
            id=p[:, 0].astype(np.int64),
            pdg=p[:, 1].astype(np.int64),
            momentum=p[:, 2:5].astype(np.float32),
            start=p[:, 5:8].astype(np.float32),
            is_primary=p[:, 8] != 0,
            interaction=p[:, 9].astype(np.int64),
            parent=p[:, 10].astype(np.int64),
        )
    if "vertex" in h5file:
        flat = _row(h5file, "vertex", i)
        if flat.size % 3:
            raise DataError(f"{where}: 'vertex' row has {flat.size} values, not a multiple of 3")
        out["vertices"] = flat.reshape(-1, 3).astype(np.float32)
    return out


def count_points(h5file: h5py.File, energy_threshold: float = 0.0, chunk: int = 1024) -> np.ndarray:
    """Points per event, all and above an energy threshold, reading every row once.

    Args:
        h5file: an open PILArNet-M file.
        energy_threshold: MeV; counts points with energy > threshold (energy as in
            :func:`read_event`).
        chunk: rows read at a time.

    Returns:
        (E, 2) int64: column 0 all points, column 1 points above the threshold.
    """
    ds = _dataset(h5file, "point")
    n_ev = ds.shape[0]
    out = np.zeros((n_ev, 2), np.int64)
    for start in range(0, n_ev, chunk):
        try:
            rows = ds[start : start + chunk]
        except OSError as err:
            raise DataError(
                f"{h5file.filename} events {start}..{start + chunk - 1}: cannot "
                f"read 'point' (truncated or corrupt file?): {err}"
            ) from err
        for k, flat in enumerate(rows):
            point = np.asarray(flat).reshape(-1, POINT_WIDTH)
            out[start + k, 0] = point.shape[0]
            out[start + k, 1] = int((_event_energy(point) > energy_threshold).sum())
    return out


def iter_events(path: str | os.PathLike) -> Iterator[Event]:
    """Every event of a file in row order, read one at a time (the file stays open while
    iterating)."""
    with open_pilarnet(path) as f:
        for i in range(num_events(f)):
            yield read_event(f, i)


def read_events(path: str | os.PathLike, indices: Iterable[int] | None = None) -> list[Event]:
    """Events ``indices`` (all when None) of a file, in the order given."""
    with open_pilarnet(path) as f:
        rows = range(num_events(f)) if indices is None else indices
        return [read_event(f, int(i)) for i in rows]
