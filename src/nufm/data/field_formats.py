"""Readers of the file formats of the field's own tools into :class:`~nufm.data.event.Event`.

Their sample files are simulated events from the field's own simulation chains, used for
loader tests and sanity checks; they are not shipped with the repository (the tests marked
``real_data`` read them from ``$NUFM_REAL_DATA``):

* :func:`read_mlreco_npz`: one PILArNet-style event of the lartpc_mlreco3d tutorials (the data
  of PILArNet, arXiv:2006.01993), already voxelised in the 768^3 cube.
* :func:`iter_larsoft_root` / :func:`read_larsoft_root`: LArSoft analysis trees
  (``ana/AnaTPCTree``) of true 3D energy deposits in cm, voxelised here at 3 mm and shifted
  into the cube (needs ``uproot``), streamed a few entries at a time.
* :func:`read_jaxtpc_h5`: Geant4 step truth of JAXTPC (mm), voxelised at 3 mm with labels.

Voxelisation sums the energy of all deposits in a voxel; the voxel takes the labels of its
largest deposit. Coordinates are voxel indices (integer-valued float32), as in PILArNet-M.
The cube is placed where it holds the most energy; deposits outside it are dropped and counted in
``meta['n_outside']`` (logged).

Owns: the three readers and :func:`merge_deposits`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, cast

import h5py
import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.lartpc import (
    DELTA,
    MICHEL,
    PDG_TO_PID,
    PID_NONE,
    SHOWER,
    TRACK,
    VOLUME_SIZE,
    VOXEL_SIZE_CM,
)
from nufm.data.pilarnet import DataError, MissingFileError

log = logging.getLogger(__name__)

MLRECO_COLUMNS = (
    "x",
    "y",
    "z",
    "batch",
    "energy",
    "fragment",
    "group",
    "interaction",
    "unused",
    "semantic",
)
"""Columns of each ``Trajectory k`` array of the mlreco tutorial npz."""
_TRACK_LIKE_PDG = (13, 211, 321, 2212)


def merge_deposits(
    voxel: np.ndarray, energy: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Merge deposits that share a voxel.

    Args:
        voxel: (N, 3) int64 voxel indices.
        energy: (N,) MeV.
        labels: (N, L) int64 per-deposit labels, or None.

    Returns:
        coord (V, 3) float32 unique voxels (sorted), energy (V,) float32 summed MeV, and labels
        (V, L) of the largest deposit of each voxel (None if no labels).
    """
    uniq, inverse = np.unique(voxel, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    summed = np.bincount(inverse, weights=np.asarray(energy, np.float64), minlength=len(uniq))
    out_labels = None
    if labels is not None:
        order = np.lexsort((-np.asarray(energy, np.float64), inverse))  # by voxel, max E first
        first = np.ones(len(order), bool)
        first[1:] = inverse[order][1:] != inverse[order][:-1]
        out_labels = labels[order[first]]
    return uniq.astype(np.float32), summed.astype(np.float32), out_labels


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such file")


def read_mlreco_npz(path: str | os.PathLike) -> Event:
    """Read the lartpc_mlreco3d tutorial event (keys ``Trajectory 0..``, (n, 10) each).

    Columns: x, y, z (voxel index), batch, energy (MeV), fragment, group, interaction, -1,
    semantic. instance = group, segment = semantic, pid = -1 (not in the file). Voxels listed
    in more than one array are merged (energy summed, labels of the larger deposit kept); their
    count is ``meta['n_duplicates_merged']`` (11 in the tutorial file: 4986 rows, 4975 voxels).

    Returns:
        One Event, ``event_id=0``, ``source=path``.
    """
    path = str(path)
    _check_exists(path)
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable npz file: {err}") from err
    keys = sorted(
        (k for k in data.files if k.startswith("Trajectory ")), key=lambda k: int(k.split()[1])
    )
    if not keys:
        raise DataError(f"{path}: no 'Trajectory k' arrays (found {data.files})")
    arrays = [np.asarray(data[k], np.float64) for k in keys]
    for k, a in zip(keys, arrays, strict=False):
        if a.ndim != 2 or a.shape[1] != len(MLRECO_COLUMNS):
            raise DataError(f"{path}: '{k}' has shape {a.shape}, expected (n, 10)")
    rows = np.concatenate(arrays)  # (N, 10)
    if not np.isfinite(rows).all():
        raise DataError(f"{path}: NaN/inf values")
    labels = rows[:, [6, 7, 9]].astype(np.int64)  # group, interaction, semantic
    coord, energy, lab = merge_deposits(rows[:, :3].astype(np.int64), rows[:, 4], labels)
    n_dup = len(rows) - len(coord)
    if n_dup:
        log.info(
            "%s: merged %d duplicated voxels (%d rows -> %d voxels)",
            path,
            n_dup,
            len(rows),
            len(coord),
        )
    assert lab is not None
    return Event(
        coord=coord,
        energy=energy,
        segment=lab[:, 2].copy(),
        pid=np.full(len(coord), -1, np.int64),
        instance=lab[:, 0].copy(),
        interaction=lab[:, 1].copy(),
        event_id=0,
        source=path,
        meta={"n_duplicates_merged": n_dup, "n_rows": len(rows)},
    )


def _into_cube(
    pos: np.ndarray, energy: np.ndarray, voxel_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices placing the cube where it contains the most deposited energy.

    Per axis, the window of the cube's length holding the most energy is found (sliding window
    over the sorted deposits); the deposits inside it are centred in the cube on that axis.

    Args:
        pos: (N, 3) positions, any length unit.
        energy: (N,) deposited energy (weights).
        voxel_size: voxel pitch in the same unit as ``pos``.

    Returns:
        voxel (N, 3) int64 indices (may lie outside [0, 768)) and the (3,) position mapped to
        the cube centre.
    """
    centre = np.zeros(3)
    length = VOLUME_SIZE * voxel_size * (1.0 - 1e-9)
    for axis in range(3):
        if len(pos) == 0:
            break
        order = np.argsort(pos[:, axis], kind="stable")
        x = pos[order, axis]  # (N,) sorted
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(energy, np.float64)[order])])
        end = np.searchsorted(x, x + length, side="left")  # (N,) exclusive window ends
        best = int(np.argmax(cum[end] - cum[np.arange(len(x))]))
        centre[axis] = 0.5 * (x[best] + x[end[best] - 1])
    voxel = np.floor((pos - centre) / voxel_size).astype(np.int64) + VOLUME_SIZE // 2
    return voxel, centre


def _crop(voxel: np.ndarray, *arrays: np.ndarray) -> tuple[int, list[np.ndarray]]:
    is_inside = ((voxel >= 0) & (voxel < VOLUME_SIZE)).all(axis=1)
    return int((~is_inside).sum()), [voxel[is_inside]] + [a[is_inside] for a in arrays]


LARSOFT_BRANCHES = ("EnDepX", "EnDepY", "EnDepZ", "EnDepE")
"""Branches a LArSoft analysis tree must have (true deposits: cm, MeV)."""
LARSOFT_OPTIONAL = (
    "RunID",
    "SubRunID",
    "EventID",
    "TruePrimariesPDG",
    "TrueVx",
    "TrueVy",
    "TrueVz",
    "TrueVEnergy",
)
"""Branches read when present (event ids and neutrino truth)."""


@contextlib.contextmanager
def _larsoft_tree(path: str, tree: str) -> Iterator[Any]:
    """The open ``uproot.TTree`` ``tree`` of ``path``, checked (its file closes on exit)."""
    _check_exists(path)
    try:
        import uproot
    except ImportError as err:
        raise ImportError("reading LArSoft files needs uproot: pip install 'nufm[root]'") from err
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises many types for non-ROOT input
        raise DataError(f"{path}: not a readable ROOT file: {err}") from err
    if not isinstance(f, uproot.ReadOnlyDirectory):  # only with a "file:object" path
        raise DataError(f"{path}: not a ROOT file path (it names an object inside a file)")
    with f:
        if tree not in f:
            raise DataError(f"{path}: no tree '{tree}' (found {f.keys()})")
        t = f[tree]
        if not isinstance(t, uproot.TTree):
            raise DataError(f"{path}: '{tree}' is a {type(t).__name__}, not a TTree")
        missing = [b for b in LARSOFT_BRANCHES if b not in t]
        if missing:
            raise DataError(f"{path}:{tree}: missing branches {missing}")
        yield t


def count_larsoft_root(path: str | os.PathLike, tree: str = "ana/AnaTPCTree") -> int:
    """Entries of a LArSoft analysis tree (read from the tree's header, no event data)."""
    with _larsoft_tree(str(path), tree) as t:
        return int(t.num_entries)


def iter_larsoft_root(
    path: str | os.PathLike, tree: str = "ana/AnaTPCTree", step: int = 16
) -> Iterator[Event]:
    """The entries of a LArSoft analysis tree as Events, in order, reading ``step`` entries at
    a time (memory bounded by ``step`` events, whatever the file's size).

    ``EnDepX/Y/Z`` (cm) are binned into 3 mm voxels; on each axis the cube (230.4 cm) is placed
    where it holds the most deposited energy; deposits beyond the cube are dropped (count in
    ``meta['n_outside']``); ``EnDepE`` (MeV) is summed per voxel. No per-point labels exist.
    Event-level truth: ``meta`` = run, subrun, event, n_deposits, n_outside, nu_energy_gev and
    the number of primaries of each kind (n_primary_muon, _proton, _neutron, _pion,
    _electron, _photon, _other); ``particles`` = the primaries (pdg; momentum unknown: NaN;
    start = vertex); ``vertices`` (1, 3) = true neutrino vertex in the event's voxel frame.

    Raises:
        ImportError: uproot is not installed (``pip install 'nufm[root]'``).
        MissingFileError, DataError: missing file or tree/branches, NaN deposits (naming the
            file and entry).
    """
    path = str(path)
    if step < 1:
        raise ValueError(f"iter_larsoft_root: step must be >= 1, got {step}")
    with _larsoft_tree(path, tree) as t:
        names = list(LARSOFT_BRANCHES) + [b for b in LARSOFT_OPTIONAL if b in t]
        first = 0
        for chunk in t.iterate(names, step_size=step, library="np"):
            n = len(chunk["EnDepX"])
            for j in range(n):
                yield _larsoft_event(path, first + j, {k: v[j] for k, v in chunk.items()})
            first += n


def read_larsoft_root(path: str | os.PathLike, tree: str = "ana/AnaTPCTree") -> list[Event]:
    """Every entry of a LArSoft analysis tree (:func:`iter_larsoft_root`, as a list)."""
    return list(iter_larsoft_root(path, tree))


def _larsoft_event(path: str, i: int, row: dict[str, Any]) -> Event:
    """Entry ``i`` of a LArSoft tree (its branch values in ``row``) -> Event."""
    voxel_cm = VOXEL_SIZE_CM
    pos = np.stack([np.asarray(row[b], np.float64) for b in ("EnDepX", "EnDepY", "EnDepZ")], 1)
    de = np.asarray(row["EnDepE"], np.float64)
    if not (np.isfinite(pos).all() and np.isfinite(de).all()):
        raise DataError(f"{path} event {i}: NaN/inf deposits")
    voxel, centre = _into_cube(pos, de, voxel_cm)
    n_out, (voxel, de) = _crop(voxel, de)
    if n_out:
        log.info(
            "%s event %d: %d of %d deposits outside the cube dropped", path, i, n_out, len(pos)
        )
    coord, energy, _ = merge_deposits(voxel, de)
    if len(coord) == 0:
        log.warning("%s event %d: no deposit inside the cube", path, i)
    meta: dict[str, float | int] = {"n_deposits": len(pos), "n_outside": n_out}
    for key, name in (("RunID", "run"), ("SubRunID", "subrun"), ("EventID", "event")):
        if key in row:
            meta[name] = int(row[key])
    vertices = None
    if all(k in row for k in ("TrueVx", "TrueVy", "TrueVz")):
        vtx = np.array([row[k] for k in ("TrueVx", "TrueVy", "TrueVz")], np.float64)
        vertices = ((vtx - centre) / voxel_cm + VOLUME_SIZE // 2)[None, :].astype(np.float32)
    if "TrueVEnergy" in row:
        meta["nu_energy_gev"] = float(row["TrueVEnergy"])
    particles = None
    if "TruePrimariesPDG" in row:
        pdg = np.asarray(row["TruePrimariesPDG"], np.int64)
        kinds = {
            "muon": (13,),
            "proton": (2212,),
            "neutron": (2112,),
            "pion": (211, 111),
            "electron": (11,),
            "photon": (22,),
        }
        known = np.zeros(len(pdg), bool)
        for name, codes in kinds.items():
            is_kind = np.isin(np.abs(pdg), codes)
            meta[f"n_primary_{name}"] = int(is_kind.sum())
            known |= is_kind
        meta["n_primary_other"] = int((~known).sum())
        p = len(pdg)
        start = (
            np.repeat(vertices, p, 0)
            if vertices is not None
            else np.full((p, 3), np.nan, np.float32)
        )
        particles = Particles(
            id=np.arange(p, dtype=np.int64),
            pdg=pdg,
            momentum=np.full((p, 3), np.nan, np.float32),
            start=start,
            is_primary=np.ones(p, bool),
            interaction=np.zeros(p, np.int64),
            parent=np.full(p, -1, np.int64),
        )
    return Event(
        coord=coord,
        energy=energy,
        particles=particles,
        vertices=vertices,
        event_id=i,
        source=path,
        meta=meta,
    )


def _segment_of(pdg: np.ndarray, parent_pdg: np.ndarray, process: list[str]) -> np.ndarray:
    """(P,) semantic class of each Geant4 particle from its PDG code, parent and creator."""
    apdg = np.abs(pdg)
    is_track = np.isin(apdg, _TRACK_LIKE_PDG) | (apdg > 1_000_000_000)
    parent_is_track = np.isin(np.abs(parent_pdg), _TRACK_LIKE_PDG)
    seg = np.full(len(pdg), -1, np.int64)
    seg[is_track] = TRACK
    is_em = np.isin(apdg, (11, 22))
    seg[is_em] = SHOWER
    for k in np.flatnonzero((apdg == 11) & parent_is_track):
        if "Ioni" in process[k]:
            seg[k] = DELTA
        elif "Decay" in process[k] or "decay" in process[k]:
            seg[k] = MICHEL
    return seg


def _h5_row(f: h5py.File, name: str, event: int) -> np.ndarray:
    """Row ``event`` of data set ``name``: the event's structured array of records."""
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{f.filename}: '{name}' is a {type(ds).__name__}, not a dataset")
    return cast(np.ndarray, ds[event])  # h5py returns the stored numpy array, untyped


def read_jaxtpc_h5(path: str | os.PathLike, event: int = 0) -> Event:
    """Read one Geant4 event of a JAXTPC file (step truth in liquid argon), voxelised at 3 mm.

    Steps ``pstep/lar_vol[event]`` (x, y, z in mm; de in MeV) are binned into 3 mm voxels, the
    cube placed as in :func:`read_larsoft_root`. Labels come from the Geant4 particle of the largest
    deposit in each voxel (``particle/geant4``): instance = Geant4 track id, pid from the PDG
    code (5 none for others), segment: track for mu/pi/K/p/nuclei, delta for e+- made by
    ionisation of a track-like parent, Michel for e+- from a track-like parent's decay, shower
    for other e+-/photons, -1 otherwise. Particles: every Geant4 particle (momentum in GeV/c,
    start in the voxel frame); vertices: the primary vertex.
    """
    path = str(path)
    _check_exists(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file: {err}") from err
    with f:
        for name in ("pstep/lar_vol", "particle/geant4"):
            if name not in f:
                raise DataError(f"{path}: not a JAXTPC file: missing '{name}'")
        steps = _h5_row(f, "pstep/lar_vol", event)
        parts = _h5_row(f, "particle/geant4", event)
        vtx_table = _h5_row(f, "vertex/geant4", event) if "vertex/geant4" in f else None
    pos = np.stack([steps["x"], steps["y"], steps["z"]], 1).astype(np.float64)  # (S, 3) mm
    de = steps["de"].astype(np.float64)
    voxel, centre = _into_cube(pos, de, VOXEL_SIZE_CM * 10.0)
    track = parts["track_id"].astype(np.int64)
    pdg = parts["pdg"].astype(np.int64)
    parent = parts["parent_track_id"].astype(np.int64)
    row_of = {int(t): r for r, t in enumerate(track)}
    parent_pdg = np.array([pdg[row_of[int(p)]] if int(p) in row_of else 0 for p in parent])
    process = [(x.decode() if isinstance(x, bytes) else str(x)) for x in parts["proc_name_start"]]
    seg_of_particle = _segment_of(pdg, parent_pdg, process)
    step_row = np.array([row_of.get(int(t), -1) for t in steps["track_id"]])
    step_pdg = steps["pdg"].astype(np.int64)
    labels = np.stack(
        [
            steps["track_id"].astype(np.int64),
            np.where(step_row >= 0, seg_of_particle[step_row], -1),
            np.array([PDG_TO_PID.get(int(p), PID_NONE) for p in step_pdg]),
        ],
        1,
    )  # (S, 3) instance, segment, pid
    n_out, (voxel, de, labels) = _crop(voxel, de, labels)
    coord, energy, lab = merge_deposits(voxel, de, labels)
    assert lab is not None

    def to_vox(x: np.ndarray) -> np.ndarray:
        return (
            (np.asarray(x, np.float64) - centre) / (VOXEL_SIZE_CM * 10.0) + VOLUME_SIZE // 2
        ).astype(np.float32)

    particles = Particles(
        id=track,
        pdg=pdg,
        momentum=(np.stack([parts["px"], parts["py"], parts["pz"]], 1) / 1000.0).astype(np.float32),
        start=to_vox(np.stack([parts["x"], parts["y"], parts["z"]], 1)),
        is_primary=parent == -1,
        interaction=np.zeros(len(track), np.int64),
        parent=parent,
    )
    vertices = None
    if vtx_table is not None and len(vtx_table):
        vertices = to_vox(np.stack([vtx_table["x"], vtx_table["y"], vtx_table["z"]], 1))
    return Event(
        coord=coord,
        energy=energy,
        segment=lab[:, 1].copy(),
        pid=lab[:, 2].copy(),
        instance=lab[:, 0].copy(),
        interaction=np.zeros(len(coord), np.int64),
        particles=particles,
        vertices=vertices,
        event_id=event,
        source=path,
        meta={"n_steps": len(pos), "n_outside": n_out},
    )
