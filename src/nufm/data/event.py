"""The in-memory event record: one detector event as numpy arrays with fixed names and units.

This is the single place where field names, dtypes and units are defined. Readers return it,
the simulator produces it, transforms map ``Event -> Event`` keeping every per-point array
aligned, and :func:`nufm.data.collate.collate` packs a list of them into a
:class:`nufm.batch.PointBatch`.

Per-point fields (N points):

============  ===========  =====================================================================
field         dtype        meaning
============  ===========  =====================================================================
coord         float32 N,3  position. Raw files: voxel units of the 768^3 cube (3 mm voxels).
                           After ``NormalizeCoord``: (coord - 384) / 665.1 (unit ball).
energy        float32 N    deposited energy in MeV (after ``LogEnergy``: scaled to [-1, 1]).
segment       int64 N      semantic class: 0 shower, 1 track, 2 Michel, 3 delta, 4 low-energy;
                           -1 unknown.
pid           int64 N      particle type: 0 photon, 1 electron, 2 muon, 3 pion, 4 proton, 5 none.
instance      int64 N      particle (group) id within the event, -1 none.
interaction   int64 N      interaction id within the event, -1 none.
feat          float32 N,C  optional model input features (set by ``MakeFeatures``); detector-
                           agnostic models read only ``coord`` and ``feat``.
stream        int64 N      optional sub-detector / stream id (multi-stream detectors).
time          float32 N    optional hit time, ns (water Cherenkov PMT hits).
labels        float32 N,K  optional further per-point label channels, named by the detector
                           description (``Detector.label_names``); -1 where one does not apply.
============  ===========  =====================================================================

Per-particle truth (P particles), ``particles``: a :class:`Particles` table.
Per-interaction truth (I interactions), ``vertices`` (I, 3) float32, voxel units, row i is the
vertex of interaction id i.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nufm.batch import EventGroups

POINT_FIELDS = (
    "coord",
    "energy",
    "segment",
    "pid",
    "instance",
    "interaction",
    "feat",
    "stream",
    "time",
    "labels",
    "descriptors",
)
"""Names of the per-point arrays; transforms index all of them together."""


@dataclass
class Particles:
    """Per-particle truth, one row per particle (P rows).

    Attributes:
        id: (P,) int64, the particle id used in ``Event.instance``.
        pdg: (P,) int64 PDG code.
        momentum: (P, 3) float32, GeV/c, detector frame.
        start: (P, 3) float32 start point, same units as ``Event.coord``.
        is_primary: (P,) bool, True = produced at the interaction vertex.
        interaction: (P,) int64 interaction id, -1 none.
        parent: (P,) int64 parent particle id, -1 for primaries.
    """

    id: np.ndarray
    pdg: np.ndarray
    momentum: np.ndarray
    start: np.ndarray
    is_primary: np.ndarray
    interaction: np.ndarray
    parent: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])

    TABLE_COLUMNS = (
        "id",
        "pdg",
        "px",
        "py",
        "pz",
        "x",
        "y",
        "z",
        "is_primary",
        "interaction",
        "parent",
    )
    """Columns of :meth:`to_table` (the flat layouts store particle tables this way)."""

    def to_table(self) -> np.ndarray:
        """(P, 11) float64 rows in :attr:`TABLE_COLUMNS` order."""
        cols = [
            self.id,
            self.pdg,
            self.momentum,
            self.start,
            self.is_primary,
            self.interaction,
            self.parent,
        ]
        return np.concatenate([np.asarray(c, np.float64).reshape(len(self), -1) for c in cols], 1)

    @staticmethod
    def from_table(table: np.ndarray) -> Particles:
        """Inverse of :meth:`to_table`."""
        t = np.asarray(table, np.float64).reshape(-1, 11)
        return Particles(
            id=t[:, 0].astype(np.int64),
            pdg=t[:, 1].astype(np.int64),
            momentum=t[:, 2:5].astype(np.float32),
            start=t[:, 5:8].astype(np.float32),
            is_primary=t[:, 8] > 0,
            interaction=t[:, 9].astype(np.int64),
            parent=t[:, 10].astype(np.int64),
        )

    @staticmethod
    def empty() -> Particles:
        z = np.zeros(0, np.int64)
        return Particles(
            z,
            z.copy(),
            np.zeros((0, 3), np.float32),
            np.zeros((0, 3), np.float32),
            np.zeros(0, bool),
            z.copy(),
            z.copy(),
        )


@dataclass
class Event:
    """One detector event. See the module docstring for fields and units."""

    coord: np.ndarray
    energy: np.ndarray
    segment: np.ndarray | None = None
    pid: np.ndarray | None = None
    instance: np.ndarray | None = None
    interaction: np.ndarray | None = None
    feat: np.ndarray | None = None
    stream: np.ndarray | None = None
    time: np.ndarray | None = None
    """Optional per-point time, ns (e.g. a PMT hit's first-photon time)."""
    labels: np.ndarray | None = None
    """Optional (N, K) float32 label channels named by ``Detector.label_names`` (e.g. the
    FASERCal ghost flag, hierarchy, category and category fractions)."""
    particles: Particles | None = None
    vertices: np.ndarray | None = None
    event_id: int = -1
    """Index of the event in its source (file row), -1 if not from a file."""
    source: str = ""
    """Where the event came from (file path or 'sim'), for error messages."""
    meta: dict = field(default_factory=dict)
    """Free-form per-event scalars (e.g. number of interactions); never per-point data."""
    groups: EventGroups | None = None
    """Token groups of these points, attached by the data pipeline (``nufm.models.tokenizers
    .EventGrouper``); any change of the point set (:meth:`select`) drops them."""
    descriptors: np.ndarray | None = None
    """Optional (N, D) float32 per-point context features attached by the data pipeline
    (``nufm.models.geometric.EventDescriptors``: local-shape descriptors computed once on
    the whole event); ``meta['descriptor_key']`` names what they are."""

    def __post_init__(self) -> None:
        n = self.coord.shape[0]
        if self.coord.ndim != 2 or self.coord.shape[1] != 3:
            raise ValueError(f"{self.where}: coord must be (N, 3), got {self.coord.shape}")
        for name in POINT_FIELDS[1:]:
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != n:
                raise ValueError(
                    f"{self.where}: field '{name}' has {arr.shape[0]} rows, coord has {n}"
                )

    @property
    def where(self) -> str:
        """Human-readable location for error messages: 'file.h5 event 12'."""
        return f"{self.source or '<memory>'} event {self.event_id}"

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    def select(self, keep: np.ndarray) -> Event:
        """Return a new event with only the points ``keep`` (bool (N,) or int indices).

        Every per-point field is indexed together, so labels stay aligned; token groups refer
        to the old rows and are dropped.
        """
        updates = {
            name: getattr(self, name)[keep]
            for name in POINT_FIELDS
            if getattr(self, name) is not None
        }
        return replace(self, groups=None, **updates)

    def with_fields(self, **updates) -> Event:
        """Return a copy with some fields replaced (validated again)."""
        return replace(self, **updates)
