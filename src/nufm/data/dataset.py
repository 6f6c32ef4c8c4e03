"""PILArNet-M as a map-style torch dataset: lazy per-event reads, cached point index, splits.

Data set of PoLAr-MAE (arXiv:2502.02558). Several HDF5 files act as one data set. Each
``__getitem__`` reads one event (:func:`nufm.data.pilarnet.read_event`) from a file handle that
is opened lazily in the calling process and reopened after a fork, so the data set is safe in
``DataLoader`` workers. A per-file index of point counts, ``<file>.points.npy``, is built once and
reused until the file's size or modification time changes; it gives ``points_per_event`` for
:class:`nufm.data.collate.PointBudgetSampler` and the ``min_points`` filter without reading
events. Train/val/test splits are by whole events and deterministic for a seed.

Owns: :class:`PILArNetDataset`, :class:`FilterReport`, :func:`load_point_index`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from nufm.data.event import Event
from nufm.data.event_split import split_events
from nufm.data.formats import as_pilarnet
from nufm.data.lartpc import ENERGY_THRESHOLD_MEV
from nufm.data.pilarnet import MissingFileError, count_points, open_pilarnet, read_event
from nufm.data.transforms import Transform

log = logging.getLogger(__name__)

INDEX_SUFFIX = ".points.npy"
"""The point index of ``run.h5`` is ``run.h5.points.npy``."""
_INDEX_MAGIC = 0x6E75666D  # "nufm"
_INDEX_FORMAT = 1

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, kw_only=True)
class FilterReport:
    """How many events each selection step kept or removed (nothing is dropped silently)."""

    n_total: int
    """Events in all files."""
    n_in_split: int
    """Events in the requested split (all events when no split)."""
    n_removed_min_points: int
    """Events of the split with fewer than ``min_points`` points above the energy threshold."""
    n_kept: int
    """Events served by the data set."""
    min_points: int
    """Effective minimum point count (at least 1: events empty after the threshold are removed)."""
    energy_threshold: float
    """MeV; points at or below it are not counted."""


def _index_header(path: str, energy_threshold: float) -> np.ndarray:
    st = os.stat(path)
    thr_bits = np.array([energy_threshold], np.float64).view(np.int64)[0]
    return np.array(
        [[st.st_size, st.st_mtime_ns], [thr_bits, _INDEX_MAGIC * 16 + _INDEX_FORMAT]], np.int64
    )


def load_point_index(
    path: str, energy_threshold: float = ENERGY_THRESHOLD_MEV, use_cache: bool = True
) -> np.ndarray:
    """Point counts per event of one file, from the cache beside it when still valid.

    The cache ``<path>.points.npy`` is an int64 array (2 + E, 2): row 0 = [file size in bytes,
    file mtime in ns], row 1 = [energy threshold as float64 bits, format tag], rows 2.. =
    [all points, points with energy > threshold] per event. It is rebuilt when the file's size
    or mtime or the threshold differ. If it cannot be written (read-only directory) the index
    is kept in memory and a log message says so.

    Args:
        path: PILArNet-M file.
        energy_threshold: MeV.
        use_cache: read/write the cache file.

    Returns:
        (E, 2) int64 [all points, points above threshold].
    """
    cache = path + INDEX_SUFFIX
    header = _index_header(path, energy_threshold)
    if use_cache and os.path.exists(cache):
        try:
            stored = np.load(cache, allow_pickle=False)
            if stored.ndim == 2 and stored.shape[1] == 2 and np.array_equal(stored[:2], header):
                return stored[2:]
            log.info("point index %s is stale (file changed or other threshold); rebuilding", cache)
        except (OSError, ValueError) as err:
            log.info("point index %s unreadable (%s); rebuilding", cache, err)
    with open_pilarnet(path) as f:
        counts = count_points(f, energy_threshold)
    if use_cache:
        tmp = f"{cache}.{os.getpid()}.tmp.npy"
        try:
            np.save(tmp, np.concatenate([header, counts]))
            os.replace(tmp, cache)
        except OSError as err:
            log.info("cannot write point index %s (%s); keeping it in memory", cache, err)
            if os.path.exists(tmp):
                os.remove(tmp)
    return counts


class PILArNetDataset:
    """One or more PILArNet-M files as a map-style data set of :class:`Event`.

    Class ids (see :mod:`nufm.data.lartpc`): segment 0 shower, 1 track, 2 Michel, 3 delta,
    4 low-energy deposit; pid 0 photon, 1 electron, 2 muon, 3 pion, 4 proton, 5 none.

    Args:
        paths: one file or a list of files, read as one data set in the given order.
        transform: applied as ``transform(event, rng)`` with a generator seeded by
            ``(seed, epoch, index)``, so results do not depend on worker count or order.
        min_points: keep events with at least this many points above ``energy_threshold``
            (events with none are always removed).
        split: None for all events, or 'train' / 'val' / 'test'.
        split_fractions: fractions of train, val, test; must sum to 1
            (sizes by :func:`nufm.data.event_split.split_counts`).
        seed: seed of the split permutation and of the transform generators.
        energy_threshold: MeV, used only to count points for ``min_points`` and
            ``points_per_event``; the points themselves are thresholded by the transform
            (``Preprocess.energy_threshold``), so keep the two equal.
        use_index_cache: read/write ``<file>.points.npy``.

    Attributes:
        filter_report: a :class:`FilterReport` of the selection.
        points_per_event: (len,) int64 points above the threshold of each served event.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        transform: Transform | None = None,
        min_points: int = 0,
        split: str | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        energy_threshold: float = ENERGY_THRESHOLD_MEV,
        use_index_cache: bool = True,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("PILArNetDataset: no files given")
        for path in paths:
            if not os.path.isfile(path):
                raise MissingFileError(f"{path}: no such event file")
        # other layouts (mlreco npz, LArSoft ROOT, JAXTPC) are read through a cached copy
        self.paths = [str(as_pilarnet(p)) for p in paths]
        if split is not None and split not in SPLITS:
            raise ValueError(
                f"PILArNetDataset: split must be one of {SPLITS} or None, got {split!r}"
            )
        if (
            len(split_fractions) != 3
            or min(split_fractions) < 0
            or abs(sum(split_fractions) - 1.0) > 1e-6
        ):
            raise ValueError(
                f"PILArNetDataset: split_fractions must be 3 non-negative numbers "
                f"summing to 1, got {split_fractions}"
            )
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.energy_threshold = energy_threshold
        counts = [load_point_index(p, energy_threshold, use_index_cache) for p in self.paths]
        file_of = np.concatenate([np.full(len(c), k, np.int64) for k, c in enumerate(counts)])
        row_of = np.concatenate([np.arange(len(c), dtype=np.int64) for c in counts])
        above = np.concatenate([c[:, 1] for c in counts]) if counts else np.zeros(0, np.int64)
        n_total = len(file_of)

        chosen = np.arange(n_total)
        if split is not None:
            chosen = split_events(n_total, split_fractions, seed)[SPLITS.index(split)]
        effective_min = max(int(min_points), 1)
        is_kept = above[chosen] >= effective_min
        kept = chosen[is_kept]
        self.filter_report = FilterReport(
            n_total=n_total,
            n_in_split=len(chosen),
            n_removed_min_points=int((~is_kept).sum()),
            n_kept=len(kept),
            min_points=effective_min,
            energy_threshold=energy_threshold,
        )
        log.info(
            "PILArNetDataset(%d files, split=%s): %d events, %d in split, %d removed with "
            "< %d points above %.3g MeV, %d kept",
            len(self.paths),
            split,
            n_total,
            len(chosen),
            self.filter_report.n_removed_min_points,
            effective_min,
            energy_threshold,
            len(kept),
        )
        self._file = file_of[kept]
        self._row = row_of[kept]
        self.points_per_event = above[kept]
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._file.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Change the transform seeds (call before each epoch; not seen by persistent workers)."""
        self.epoch = epoch

    def where(self, index: int) -> str:
        """'file.h5 event 12' for item ``index`` (for error messages)."""
        path, row = self.location(index)
        return f"{path} event {row}"

    def location(self, index: int) -> tuple[str, int]:
        """(file path, row in file) of item ``index``."""
        return self.paths[int(self._file[index])], int(self._row[index])

    def _handle(self, k: int) -> h5py.File:
        if os.getpid() != self._pid:  # forked: never share HDF5 handles across processes
            self._handles = {}
            self._pid = os.getpid()
        f = self._handles.get(k)
        if f is None:
            f = open_pilarnet(self.paths[k])
            self._handles[k] = f
        return f

    def read_raw(self, index: int) -> Event:
        """Item ``index`` as stored, before the transform."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"PILArNetDataset: index {index} out of range ({len(self)} events)")
        index %= len(self)
        k = int(self._file[index])
        return read_event(self._handle(k), int(self._row[index]))

    def __getitem__(self, index: int) -> Event:
        event = self.read_raw(index)
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index % len(self)))
            event = self.transform(event, rng)
        return event

    def close(self) -> None:
        """Close the file handles of this process."""
        if os.getpid() == self._pid:
            for f in self._handles.values():
                f.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        # Any error must be swallowed here: at interpreter shutdown h5py (or this object's
        # attributes, after a failed __init__) may already be gone.
        with contextlib.suppress(Exception):
            self.close()
