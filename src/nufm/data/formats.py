"""Every event file layout nufm reads, behind one door: detect the layout of a file, iterate its
events, and give a PILArNet-M copy to the code that needs that layout (data sets with a point
index, ``nufm finetune --finetune.data``).

Layouts (readers in :mod:`nufm.data.pilarnet` and :mod:`nufm.data.field_formats`):

* ``pilarnet-h5``: PILArNet-M HDF5 (``point`` / ``cluster`` data sets), nufm's own layout;
* ``mlreco-npz``: the lartpc_mlreco3d tutorial npz (``Trajectory k`` arrays), one event;
* ``larsoft-root``: LArSoft analysis trees (``ana/AnaTPCTree``), read 16 entries at a time by
  ``uproot``;
* ``jaxtpc-h5``: JAXTPC Geant4 step truth (``pstep/lar_vol``), event by event;
* ``tpcpp-npz``: collider-TPC hits, all events in ``data`` with ``size`` hits each
  (:mod:`nufm.data.tpcpp`);
* ``watchmal-h5``: water Cherenkov PMT hits, WatChMaL flat layout (:mod:`nufm.data.watchmal`);
* ``lucid-h5``: water Cherenkov sensor digits, the sensor file of a LUCiD version-5 batch (its
  labl, step and hits files beside it give the truth; :mod:`nufm.data.lucid`);
* ``fasercal-h5``: FASERCal-like voxels and calorimeter cells, nufm's flat layout
  (:mod:`nufm.data.fasercal_h5`).

The last four are not LArTPC events and cannot become PILArNet-M.

Owns :data:`LAYOUTS`, :func:`detect_layout`, :func:`count_any`, :func:`iter_any`,
:func:`read_any`, :func:`convert` and :func:`as_pilarnet` (conversions cached under
``$NUFM_CACHE_DIR``, default ``~/.cache/nufm``, keyed by the source's path, size and
modification time, so a run's recorded data path stays valid).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, get_args

import h5py
import numpy as np

from nufm.data.detectors import detector_for_layout
from nufm.data.event import Event
from nufm.data.fasercal_h5 import LAYOUT as FASERCAL_LAYOUT
from nufm.data.fasercal_h5 import count_fasercal, iter_fasercal
from nufm.data.field_formats import (
    count_larsoft_root,
    iter_larsoft_root,
    read_jaxtpc_h5,
    read_mlreco_npz,
)
from nufm.data.lucid import count_lucid, is_lucid, iter_lucid
from nufm.data.pilarnet import (
    DataError,
    MissingFileError,
    WriteSummary,
    iter_events,
    read_events,
    write_events,
)
from nufm.data.tpcpp import count_tpcpp, iter_tpcpp
from nufm.data.watchmal import count_watchmal, iter_watchmal

log = logging.getLogger(__name__)

Layout = Literal[
    "pilarnet-h5",
    "mlreco-npz",
    "larsoft-root",
    "jaxtpc-h5",
    "tpcpp-npz",
    "watchmal-h5",
    "lucid-h5",
    "fasercal-h5",
]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)


def detect_layout(path: str | os.PathLike) -> Layout:
    """The layout of ``path`` from its suffix and content.

    Raises:
        MissingFileError: no such file.
        DataError: a layout nufm does not read (the message names the file and what it found).
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{p}: no such file")
    match p.suffix.lower():
        case ".npz":
            try:
                with np.load(p, allow_pickle=False) as f:
                    names = set(f.files)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(f"{p}: not a readable .npz file: {e}") from e
            return "tpcpp-npz" if {"data", "size"} <= names else "mlreco-npz"
        case ".root":
            return "larsoft-root"
        case ".h5" | ".hdf5" | ".hdf":
            try:
                with h5py.File(p, "r") as f:
                    names = set(f.keys())
                    layout_attr = f.attrs.get("layout")
                    lucid = is_lucid(f)
            except OSError as e:
                raise DataError(f"{p}: not a readable HDF5 file: {e}") from e
            if layout_attr == FASERCAL_LAYOUT:
                return "fasercal-h5"
            if "pstep" in names:
                return "jaxtpc-h5"
            if "event_hits_index" in names:
                return "watchmal-h5"
            if lucid:
                return "lucid-h5"
            if {"point", "cluster"} <= names:
                return "pilarnet-h5"
            raise DataError(
                f"{p}: HDF5 file with {sorted(names)[:8]}: neither PILArNet-M (point, cluster), "
                "JAXTPC (pstep), WatChMaL (event_hits_index), LUCiD (config/format_version) "
                "nor nufm-fasercal"
            )
        case suffix:
            raise DataError(
                f"{p}: unknown event file type {suffix!r}; nufm reads PILArNet-M / JAXTPC "
                ".h5, mlreco .npz and LArSoft analysis-tree .root"
            )


def count_any(path: str | os.PathLike) -> int:
    """Events in a file of any layout (LArSoft: the tree header; TPCpp and WatChMaL files are
    loaded and checked whole, without building events)."""
    match detect_layout(path):
        case "pilarnet-h5":
            with h5py.File(path, "r") as f:
                return len(f["point"])  # type: ignore[arg-type]
        case "jaxtpc-h5":
            with h5py.File(path, "r") as f:
                return len(f["pstep/lar_vol"])  # type: ignore[arg-type]
        case "mlreco-npz":
            return 1
        case "larsoft-root":
            return count_larsoft_root(path)
        case "tpcpp-npz":
            return count_tpcpp(path)
        case "watchmal-h5":
            return count_watchmal(path)
        case "lucid-h5":
            return count_lucid(path)
        case "fasercal-h5":
            return count_fasercal(path)


def iter_any(path: str | os.PathLike) -> Iterator[Event]:
    """The events of a file of any layout, in file order, one at a time where the layout
    allows (LArSoft trees in chunks of 16 entries)."""
    match detect_layout(path):
        case "pilarnet-h5":
            yield from iter_events(path)
        case "mlreco-npz":
            yield read_mlreco_npz(path)
        case "larsoft-root":
            yield from iter_larsoft_root(path)
        case "jaxtpc-h5":
            for i in range(count_any(path)):
                yield read_jaxtpc_h5(path, i)
        case "tpcpp-npz":
            yield from iter_tpcpp(path)
        case "watchmal-h5":
            yield from iter_watchmal(path)
        case "lucid-h5":
            yield from iter_lucid(path)
        case "fasercal-h5":
            yield from iter_fasercal(path)


def read_any(path: str | os.PathLike, indices: Iterable[int] | None = None) -> list[Event]:
    """Events ``indices`` (all when None) of a file of any layout.

    Raises:
        IndexError: an index outside the file (naming the file and its event count).
    """
    layout = detect_layout(path)
    if layout == "pilarnet-h5":
        return read_events(path, indices)
    if layout == "tpcpp-npz":
        return list(iter_tpcpp(path, None if indices is None else list(indices)))
    if layout == "watchmal-h5":
        return list(iter_watchmal(path, None if indices is None else list(indices)))
    if layout == "lucid-h5":
        return list(iter_lucid(path, None if indices is None else list(indices)))
    if layout == "fasercal-h5":
        return list(iter_fasercal(path, None if indices is None else list(indices)))
    if layout == "jaxtpc-h5" and indices is not None:
        wanted = list(indices)
        n = count_any(path)
        bad = [i for i in wanted if not 0 <= i < n]
        if bad:
            raise IndexError(f"{path}: events {bad} out of range (the file holds {n})")
        return [read_jaxtpc_h5(path, i) for i in wanted]
    events = list(iter_any(path))
    if indices is None:
        return events
    wanted = list(indices)
    bad = [i for i in wanted if not 0 <= i < len(events)]
    if bad:
        raise IndexError(f"{path}: events {bad} out of range (the file holds {len(events)})")
    return [events[i] for i in wanted]


def convert(src: str | os.PathLike, dst: str | os.PathLike, progress: bool = True) -> WriteSummary:
    """Write the events of ``src`` (any layout) to ``dst`` as PILArNet-M, atomically and event
    by event (memory bounded by one event plus the writer's buffer, except LArSoft trees)."""
    layout = detect_layout(src)
    if detector_for_layout(layout).name != "lartpc":
        raise DataError(
            f"{src}: {layout} events are not LArTPC events; PILArNet-M (a LArTPC layout) "
            "cannot hold them"
        )
    if Path(src).resolve() == Path(dst).resolve():
        raise DataError(f"{dst}: the output would overwrite the input")
    log.info("converting %s (%s) to PILArNet-M %s", src, layout, dst)
    events = iter_any(src)
    first = next(events, None)
    if first is None:
        raise DataError(f"{src}: the file holds no events; nothing to convert")
    return write_events(dst, itertools.chain([first], events), progress=progress)


def cache_dir() -> Path:
    """Where conversions are cached: ``$NUFM_CACHE_DIR`` or ``~/.cache/nufm``."""
    root = os.environ.get("NUFM_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "nufm"


def as_pilarnet(path: str | os.PathLike) -> Path:
    """``path`` itself when it is PILArNet-M, else its cached PILArNet-M conversion (made on
    first use, logged)."""
    p = Path(path)
    if detect_layout(p) == "pilarnet-h5":
        return p
    st = p.stat()
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    out = cache_dir() / "converted" / f"{p.stem}-{hashlib.sha1(key).hexdigest()[:12]}.h5"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert(p, out, progress=False)
    log.info("%s: read through its PILArNet-M conversion %s", p, out)
    return out
