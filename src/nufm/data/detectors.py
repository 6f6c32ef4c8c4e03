"""Detector descriptions: what an event of each detector means. One description per detector,
selected by name (``nufm simulate --detector``, ``nufm info``), so the event record, readers,
summaries and displays stay detector-agnostic.

Owns :class:`Detector`, :data:`DETECTORS`, :func:`get_detector`, :func:`detector_for_layout`
and :func:`detector_of`. A description names the
coordinate unit, what ``energy`` holds, the meaning and class names of the per-point labels of
:class:`~nufm.data.event.Event`, the file layouts the detector's events come in, and the
default preprocessing (coordinate centre and scale, log scaling of ``energy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nufm.data import fasercal
from nufm.data.event import Event
from nufm.data.lartpc import CENTER, NORM_SCALE, PID_NAMES, SEGMENT_NAMES
from nufm.data.transforms import Preprocess
from nufm.errors import ConfigError


@dataclass(frozen=True)
class Detector:
    """What the fields of a detector's events mean."""

    name: str
    title: str
    coord_unit: str
    """Unit of ``Event.coord`` in files."""
    energy: str
    """What ``Event.energy`` holds, with its unit."""
    segment_names: tuple[str, ...]
    """Class names of ``Event.segment`` (index = class id)."""
    pid_names: tuple[str, ...]
    """Class names of ``Event.pid`` (empty when the detector has none)."""
    instance: str
    """What ``Event.instance`` identifies."""
    interaction: str
    """What ``Event.interaction`` identifies (-1 meaning included)."""
    layouts: tuple[str, ...]
    """File layouts (:data:`nufm.data.formats.LAYOUTS`) holding this detector's events."""
    preprocess: Preprocess
    """Default preprocessing of its events."""
    label_names: tuple[str, ...] = ()
    """Names of the columns of ``Event.labels`` (empty when its events have none)."""
    stream_names: tuple[str, ...] = ()
    """Names of the sub-detector streams of ``Event.stream`` (empty: one stream)."""
    event_classes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Class-valued per-event truth in ``Event.meta``: (key, class names) pairs."""
    symmetry: Literal["any", "z", "none"] = "any"
    """Rotations that leave its physics unchanged, the rotation augmentation it allows: any
    (a LArTPC cube), about the z axis (a cylinder around z), none (a beam along z)."""


DETECTORS: dict[str, Detector] = {
    "lartpc": Detector(
        name="lartpc",
        title="liquid-argon TPC (PILArNet-like, 768^3 voxels of 3 mm)",
        coord_unit="voxel (3 mm)",
        energy="deposited energy per voxel, MeV",
        segment_names=SEGMENT_NAMES,
        pid_names=PID_NAMES,
        instance="particle (group) id",
        interaction="interaction id (-1 none)",
        layouts=("pilarnet-h5", "mlreco-npz", "larsoft-root", "jaxtpc-h5"),
        preprocess=Preprocess(center=CENTER, scale=NORM_SCALE),
    ),
    "collider-tpc": Detector(
        name="collider-tpc",
        title="collider TPC (sPHENIX-like: 48 layers, r 30-78 cm, |z| < 105 cm, 1.4 T)",
        coord_unit="cm",
        energy="hit charge, keV",
        segment_names=("other", "pion", "kaon", "proton", "electron"),
        pid_names=(),
        instance="track id (-1 random noise hit)",
        interaction="collision id in the pile-up (-1 hit tagged as noise)",
        layouts=("tpcpp-npz",),
        symmetry="z",
        preprocess=Preprocess(
            energy_threshold=0.0, center=0.0, scale=130.0, log_energy_eps=0.1, log_energy_max=100.0
        ),
    ),
    "water-cherenkov": Detector(
        name="water-cherenkov",
        title="water Cherenkov (Super-K-like: r 16.9 m, h 36.2 m, 10,764 PMTs)",
        coord_unit="m (PMT positions)",
        energy="PMT charge, photoelectrons (hit time in Event.time, ns)",
        segment_names=("primary", "decay_electron", "secondary_pion", "pi0_gamma"),
        pid_names=(),
        instance="particle that gave the PMT most light (-1 dark noise)",
        interaction="0, -1 for dark noise",
        layouts=("watchmal-h5", "lucid-h5"),
        symmetry="z",
        preprocess=Preprocess(
            energy_threshold=0.0,
            center=0.0,
            scale=20.0,
            log_energy_eps=0.1,
            log_energy_max=1000.0,
            time_scale=100.0,
        ),
    ),
    "fasercal": Detector(
        name="fasercal",
        title=(
            "FASERCal-like (10 scintillator modules of 48 x 48 x 20 cubes of 1 cm read in 3 "
            "views, 5 x 5 ECAL, HCAL, muon spectrometer)"
        ),
        coord_unit="cm",
        energy="MeV (scintillator voxels: the three-view charge estimate)",
        segment_names=fasercal.CATEGORY_NAMES,
        pid_names=(),
        instance="particle giving the voxel most energy (-1 ghost or none)",
        interaction="0, -1 for ghosts and calorimeter cells",
        layouts=("fasercal-h5",),
        preprocess=Preprocess(
            energy_threshold=0.0, center=0.0, scale=100.0, log_energy_eps=0.1, log_energy_max=1e6
        ),
        label_names=fasercal.LABEL_NAMES,
        stream_names=fasercal.STREAM_NAMES,
        event_classes=(("flavour", fasercal.FLAVOUR_NAMES), ("charm", fasercal.CHARM_NAMES)),
        symmetry="none",
    ),
}
"""Every detector nufm knows, by name."""


def get_detector(name: str) -> Detector:
    """The description ``name``; unknown names are refused with the known ones."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def detector_for_layout(layout: str) -> Detector:
    """The detector whose events a file layout holds (:data:`nufm.data.formats.LAYOUTS`)."""
    for det in DETECTORS.values():
        if layout in det.layouts:
            return det
    raise ConfigError(f"no detector description lists the layout {layout!r}")


def detector_of(event: Event) -> Detector:
    """The description of the detector an event comes from (``event.meta['detector']``,
    LArTPC when unset)."""
    return get_detector(event.meta.get("detector", "lartpc"))
