"""A classical per-hit particle-identification baseline for the collider TPC, beside the networks:
tracks from the Hough transform, momentum from their curvature in the solenoid field, specific
energy loss from a truncated mean of the hit charges, and the species whose Bethe-Bloch band is
nearest at that momentum. Every hit inherits its track's species; hits on no track are "other"
(or low-momentum electrons, below).

Owns :class:`TrackMeasurements`, :class:`TrackFit`, :func:`track_measurements`,
:class:`DedxCalibration`, :func:`fit_dedx_calibration`, :func:`classify_tracks`,
:func:`classify_hits` and
:func:`dedx_pid_block` (the study row of the ``tpc-pid`` task: the ``semantic`` block of
``nufm.eval.tasks.evaluate_task``).

* **Tracks**: :func:`nufm.eval.track_finding.hough_tracks` (circles through the beam line).
* **Momentum**: a least-squares circle through the origin in x-y (the conformal-map line fit,
  ``x^2 + y^2 = 2 a x + 2 b y``, centre (a, b)) gives ``pT = 0.3 B R``; a free circle fit
  (``x^2 + y^2 = 2 a x + 2 b y + c``) gives the distance of closest approach (DCA) to the beam
  line. Tracks whose hits lie more than ``displaced_rms`` (0.15 cm rms) from the circle
  through the origin, and three times closer to the free one or with a DCA above
  ``displaced_dca`` (3 cm), are displaced (loopers that do not come from a collision) and use
  the free circle instead. The dip comes from a robust (Theil-Sen) line of z against the
  transverse arc length s along the circle: ``p = pT sqrt(1 + (dz/ds)^2)``. Hits more than
  ``z_cut`` (3 cm) from that line (other particles' hits on the same circle) are dropped and
  the fits repeated.
* **dE/dx**: each hit's charge over its path length in its layer, ``pitch sqrt(1 + (dz/ds)^2) /
  cos(psi)`` (psi: angle between the circle's tangent and the radial direction at the hit,
  the path capped at 10 pitches as in the simulator), then the mean of the lowest
  ``truncation`` fraction (70 %) of them, which removes the Landau tail.
* **Bands**: ``kev_per_cm * bethe_ratio(p / m, I)`` of :mod:`nufm.sim.physics` (the simulator's
  own dE/dx model, gas excitation energy ``I_GAS_EV``) for pion, kaon, proton and electron.
  The scale and the relative resolution (``sigma(log dE/dx) = resolution / sqrt(n)``, n hits
  in the mean) are fitted on training events: pion tracks matched to found tracks.
* **Species**: the class maximising ``prior_power * log(prior) - d^2 / 2`` with
  ``d = log(dedx / band) / sigma``; "other" when ``|d|`` exceeds ``max_sigma`` for every band.
  The priors are the fractions of track hits of each species in the training events.
* **Off-track hits**: "other", except hits above ``offtrack_kev`` with another off-track hit
  within ``offtrack_radius`` (the dense, high-charge hits of low-momentum loopers that the
  Hough transform of circles through the beam line misses), which get ``offtrack_class``.
* **Decision rules**: ``prior_power``, ``max_sigma``, the class of displaced tracks and
  ``offtrack_kev`` (with ``offtrack_class``, the majority class of such training hits) are the
  grid point of the best macro F1 on the training hits.

Limits: muons (class "other") lie on the pion band and are called pions; kaons above about
0.8 GeV/c and protons above about 1.5 GeV/c cross the pion band, electrons cross the kaon band
near 0.4 GeV/c and the proton band near 0.7 GeV/c; tracks the Hough transform merges get one
class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.spatial import cKDTree  # pyright: ignore[reportAttributeAccessIssue]  # stub gap

from nufm.data.event import Event
from nufm.eval.metrics import metrics_from_counts
from nufm.eval.track_finding import hough_tracks
from nufm.sim.collider_tpc import CLASS_NAMES, I_GAS_EV, ColliderTPCConfig
from nufm.sim.physics import bethe_ratio

SPECIES_CLASSES = np.array([1, 2, 3, 4], np.int64)
"""The classes of the dE/dx hypotheses (pion, kaon, proton, electron); 0 is "other"."""
SPECIES_MASS_GEV = np.array([0.13957, 0.49368, 0.93827, 0.000511])
"""Masses of the hypotheses (PDG), GeV/c^2, in the order of :data:`SPECIES_CLASSES`."""
NUM_CLASSES = len(CLASS_NAMES)
_DEFAULT = ColliderTPCConfig()


@dataclass(frozen=True, kw_only=True)
class TrackMeasurements:
    """What the baseline measures on each found track (T rows, arrays (T,))."""

    track: np.ndarray
    """int64 track label (of :func:`nufm.eval.track_finding.hough_tracks`), increasing."""
    n_hits: np.ndarray
    """int64 hits on the track."""
    n_used: np.ndarray
    """int64 hits in the fits and the truncated mean (those within ``z_cut`` of the line)."""
    pt: np.ndarray
    """GeV/c, from the curvature."""
    p: np.ndarray
    """GeV/c, pT sqrt(1 + (dz/ds)^2)."""
    dedx: np.ndarray
    """keV/cm, truncated mean of the path-corrected hit charges."""
    dca: np.ndarray
    """cm, distance of closest approach of the free circle fit to the beam line."""
    displaced: np.ndarray
    """bool, not from the beam line (``displaced_rms``, ``displaced_dca``): the free circle is
    used."""

    def __len__(self) -> int:
        return int(self.track.shape[0])

    @classmethod
    def concatenate(cls, parts: Sequence[TrackMeasurements]) -> TrackMeasurements:
        """The rows of several events' measurements, in order."""
        if not parts:
            return _empty_measurements()
        return cls(
            **{f.name: np.concatenate([getattr(m, f.name) for m in parts]) for f in fields(cls)}
        )


def _empty_measurements() -> TrackMeasurements:
    i, x = np.zeros(0, np.int64), np.zeros(0)
    return TrackMeasurements(
        track=i, n_hits=i, n_used=i, pt=x, p=x, dedx=x, dca=x, displaced=np.zeros(0, bool)
    )


def fit_circle_origin(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares circle through the origin: (centre x, centre y, radius), cm.

    Solves ``x^2 + y^2 = 2 a x + 2 b y`` (the line fit of the conformal map) for (a, b)."""
    A = np.stack([2 * x, 2 * y], 1)  # (n, 2)
    (a, b), *_ = np.linalg.lstsq(A, x**2 + y**2, rcond=None)
    return float(a), float(b), float(math.hypot(a, b))


def fit_circle_free(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic (Kasa) least-squares circle: (centre x, centre y, radius), cm."""
    A = np.stack([2 * x, 2 * y, np.ones_like(x)], 1)  # (n, 3)
    (a, b, c), *_ = np.linalg.lstsq(A, x**2 + y**2, rcond=None)
    return float(a), float(b), float(math.sqrt(max(c + a * a + b * b, 1e-12)))


def pt_from_radius(radius_cm: np.ndarray | float, b_field: float = _DEFAULT.b_field) -> np.ndarray:
    """GeV/c of a helix of transverse radius ``radius_cm`` in ``b_field`` T: 0.3 B R[m]."""
    return 0.3 * b_field * np.asarray(radius_cm, np.float64) / 100.0


def _arc_length(x: np.ndarray, y: np.ndarray, a: float, b: float, radius: float) -> np.ndarray:
    """(n,) cm transverse arc length of each hit along the circle, from the end after the
    largest angular gap (so an arc of less than one turn is in one piece)."""
    ang = np.arctan2(y - b, x - a)  # (n,)
    order = np.argsort(ang)
    sorted_ang = ang[order]
    gaps = np.diff(np.concatenate([sorted_ang, sorted_ang[:1] + 2 * math.pi]))  # (n,)
    start = sorted_ang[(int(gaps.argmax()) + 1) % len(ang)]
    return radius * np.mod(ang - start, 2 * math.pi)


def _robust_line(s: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(slope dz/ds, intercept) of the Theil-Sen line: the median slope over hit pairs at least
    1 cm apart in s, the median intercept; (0, median z) when s spans under 1 cm. Robust to
    the few hits of another particle that a track picks up far along the circle."""
    ds = s[None, :] - s[:, None]  # (n, n)
    pair = ds > 1.0
    if not pair.any():
        return 0.0, float(np.median(z))
    slope = float(np.median((z[None, :] - z[:, None])[pair] / ds[pair]))
    return slope, float(np.median(z - slope * s))


def _rms_distance(x: np.ndarray, y: np.ndarray, circle: tuple[float, float, float]) -> float:
    """cm, root-mean-square distance of the hits from the circle (centre x, centre y, radius)."""
    a, b, radius = circle
    return float(np.sqrt(np.mean((np.hypot(x - a, y - b) - radius) ** 2)))


def _track_geometry(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, displaced_rms: float, displaced_dca: float
) -> tuple[tuple[float, float, float], float, bool, np.ndarray, float, float]:
    """Circle (centre x, centre y, radius), DCA, displaced, arc length (n,), and the robust z
    line (slope, intercept) of a track's hits. The circle passes through the origin unless the
    track is displaced: its hits lie more than ``displaced_rms`` (rms) from that circle, and
    three times closer to the free circle or the free circle's DCA is above
    ``displaced_dca``."""
    free = fit_circle_free(x, y)
    origin = fit_circle_origin(x, y)
    dca = abs(math.hypot(free[0], free[1]) - free[2])
    rms_origin = _rms_distance(x, y, origin)
    displaced = rms_origin > displaced_rms and (
        rms_origin > 3 * _rms_distance(x, y, free) or dca > displaced_dca
    )
    circle = free if displaced else origin
    s = _arc_length(x, y, *circle)
    slope, z0 = _robust_line(s, z)
    return circle, dca, displaced, s, slope, z0


@dataclass(frozen=True, kw_only=True)
class TrackFit:
    """How :func:`track_measurements` fits a track and averages its charges."""

    b_field: float = _DEFAULT.b_field
    """T, the solenoid field."""
    pitch: float = _DEFAULT.pitch
    """cm between read-out layers (the radial path through one layer)."""
    truncation: float = 0.7
    """Fraction of the lowest path-corrected charges averaged."""
    displaced_rms: float = 0.15
    """cm; a track whose hits lie farther (rms) than this from the circle through the origin,
    and three times closer to the free circle or with a free-circle DCA above
    ``displaced_dca``, is displaced: the free circle replaces the one through the origin."""
    displaced_dca: float = 3.0
    """cm, see ``displaced_rms``."""
    z_cut: float = 3.0
    """cm; hits farther in z from the track's robust (arc length, z) line are left out of the
    fits and the truncated mean (the hits of other particles on its circle)."""


def track_measurements(
    event: Event, labels: np.ndarray, fit: TrackFit = TrackFit()
) -> TrackMeasurements:
    """Momentum and dE/dx of every found track (module docstring).

    Args:
        event: coord (N, 3) cm, energy (N,) keV hit charge.
        labels: (N,) int track label per hit, -1 on no track (:func:`hough_tracks`).
        fit: the fit settings.
    """
    labels = np.asarray(labels)
    tracks = np.unique(labels[labels >= 0])  # (T,)
    T = len(tracks)
    if T == 0:
        return _empty_measurements()
    out = {k: np.zeros(T) for k in ("pt", "p", "dedx", "dca")}
    n_hits, n_used = np.zeros(T, np.int64), np.zeros(T, np.int64)
    displaced = np.zeros(T, bool)
    coord = event.coord.astype(np.float64)
    charge = event.energy.astype(np.float64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.concatenate([tracks, [tracks[-1] + 1]]))
    for i in range(T):
        idx = order[bounds[i] : bounds[i + 1]]  # (n,) the track's hits
        n_hits[i] = len(idx)
        x, y, z = coord[idx, 0], coord[idx, 1], coord[idx, 2]
        circle, dca, off_beam, s, tan_dip, z0 = _track_geometry(
            x, y, z, fit.displaced_rms, fit.displaced_dca
        )
        core = np.abs(z - z0 - tan_dip * s) < fit.z_cut  # (n,) off: other particles' hits
        if 5 <= core.sum() < len(idx):
            idx = idx[core]
            x, y, z = coord[idx, 0], coord[idx, 1], coord[idx, 2]
            circle, dca, off_beam, s, tan_dip, z0 = _track_geometry(
                x, y, z, fit.displaced_rms, fit.displaced_dca
            )
        a, b, radius = circle
        n_used[i] = len(idx)
        out["dca"][i] = dca
        displaced[i] = off_beam
        out["pt"][i] = float(pt_from_radius(radius, fit.b_field))
        out["p"][i] = out["pt"][i] * math.sqrt(1 + tan_dip**2)
        # path in the layer: pitch / cos(angle between the tangent and the radial direction)
        r = np.maximum(np.hypot(x, y), 1e-6)
        cos_psi = np.abs((-(y - b) * x + (x - a) * y) / (radius * r))  # (n,) |tangent . radial|
        pitch = fit.pitch
        path = np.minimum(pitch * math.sqrt(1 + tan_dip**2) / np.maximum(cos_psi, 1e-3), 10 * pitch)
        q = np.sort(charge[idx] / path)  # (n,) keV/cm
        out["dedx"][i] = float(q[: max(1, math.ceil(fit.truncation * len(q)))].mean())
    return TrackMeasurements(
        track=tracks.astype(np.int64), n_hits=n_hits, n_used=n_used, displaced=displaced, **out
    )


def offtrack_candidates(event: Event, labels: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """(N,) bool: hits on no track with another hit on no track within ``radius`` cm (the dense
    hits of a looper, where random noise hits are isolated)."""
    off = np.nonzero(np.asarray(labels) < 0)[0]
    out = np.zeros(len(labels), bool)
    if len(off) < 2:
        return out
    pairs = cKDTree(event.coord[off]).query_pairs(radius, output_type="ndarray")  # (P, 2)
    out[off[pairs.ravel()]] = True
    return out


@dataclass(frozen=True, kw_only=True)
class DedxCalibration:
    """The dE/dx bands and decision rules fitted on training events
    (:func:`fit_dedx_calibration`; module docstring)."""

    kev_per_cm: float
    """Truncated-mean dE/dx (keV/cm) per unit of ``bethe_ratio``."""
    resolution: float
    """Relative dE/dx resolution of one hit: sigma(log dE/dx) = resolution / sqrt(n_used)."""
    prior: tuple[float, float, float, float]
    """Fraction of track hits of each hypothesis (pion, kaon, proton, electron)."""
    prior_power: float = 1.0
    """Weight of the log prior in the decision (0: nearest band only)."""
    max_sigma: float = math.inf
    """A track farther than this (in sigma) from every band is "other"."""
    displaced_class: int = -1
    """Class of displaced tracks (:attr:`TrackMeasurements.displaced`); -1: the bands decide."""
    offtrack_kev: float = math.inf
    """Off-track hits with a neighbour and a charge above this (keV) get ``offtrack_class``."""
    offtrack_class: int = 0
    offtrack_radius: float = 3.0
    """cm, the neighbourhood of :func:`offtrack_candidates`."""
    fit: TrackFit = TrackFit()
    """The track fit the bands were calibrated with."""

    def measure(self, event: Event, labels: np.ndarray) -> TrackMeasurements:
        """:func:`track_measurements` with this calibration's track fit."""
        return track_measurements(event, labels, self.fit)


def band_distance(meas: TrackMeasurements, kev_per_cm: float, resolution: float) -> np.ndarray:
    """(T, 4) signed distance in sigma of each track's dE/dx from the band of each hypothesis
    (:data:`SPECIES_CLASSES`): ``log(dedx / band) * sqrt(n_used) / resolution``."""
    bg = meas.p[:, None] / SPECIES_MASS_GEV[None, :]  # (T, 4)
    band = kev_per_cm * bethe_ratio(bg, I_GAS_EV)  # (T, 4) keV/cm
    log_ratio = np.log(np.maximum(meas.dedx, 1e-9)[:, None] / band)
    return log_ratio * np.sqrt(np.maximum(meas.n_used, 1))[:, None] / resolution


def classify_tracks(meas: TrackMeasurements, calibration: DedxCalibration) -> np.ndarray:
    """(T,) int64 class of every measured track (module docstring)."""
    cal = calibration
    if len(meas) == 0:
        return np.zeros(0, np.int64)
    d = band_distance(meas, cal.kev_per_cm, cal.resolution)  # (T, 4)
    log_prior = np.log(np.maximum(np.asarray(cal.prior), 1e-12))  # (4,)
    score = cal.prior_power * log_prior[None, :] - 0.5 * d**2  # (T, 4)
    cls = SPECIES_CLASSES[score.argmax(1)]
    cls[np.abs(d).min(1) > cal.max_sigma] = 0
    if cal.displaced_class >= 0:
        cls[meas.displaced] = cal.displaced_class
    return cls


def classify_hits(
    event: Event, calibration: DedxCalibration, labels: np.ndarray | None = None
) -> np.ndarray:
    """(N,) int64 predicted class of every hit: its track's class; off tracks "other" or, for
    the looper-like hits (:func:`offtrack_candidates` above ``offtrack_kev``),
    ``offtrack_class``.

    Args:
        labels: (N,) track labels; None runs :func:`hough_tracks` on ``event.coord``.
    """
    cal = calibration
    labels = hough_tracks(event.coord) if labels is None else np.asarray(labels)
    meas = cal.measure(event, labels)
    pred = np.zeros(len(labels), np.int64)
    on = labels >= 0
    if len(meas):
        track_cls = classify_tracks(meas, cal)  # (T,)
        pred[on] = track_cls[np.searchsorted(meas.track, labels[on])]
    if math.isfinite(cal.offtrack_kev):
        loop = offtrack_candidates(event, labels, cal.offtrack_radius)
        pred[loop & (event.energy > cal.offtrack_kev)] = cal.offtrack_class
    return pred


def _confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows target, columns prediction; target -1 ignored."""
    keep = target >= 0
    flat = target[keep].astype(np.int64) * num_classes + pred[keep]
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class _TrainingHits:
    """Measured tracks and off-track hits of the training events with their truth."""

    meas: TrackMeasurements  # T rows
    hit_counts: np.ndarray  # (T, C) int64 true class counts of each track's hits
    major: np.ndarray  # (T,) int64 true class of the track's majority particle (-1 noise)
    purity: np.ndarray  # (T,) fraction of the track's hits from that particle
    isolated: np.ndarray  # (C,) int64 true class counts of off-track hits with no neighbour
    candidate_kev: np.ndarray  # (H,) charge of the off-track hits with a neighbour
    candidate_class: np.ndarray  # (H,) int64 their true class


def _training_hits(
    events: Iterable[Event], num_classes: int, geometry: DedxCalibration
) -> _TrainingHits:
    """Measure the training events with ``geometry``'s settings and collect their truth."""
    parts: list[TrackMeasurements] = []
    counts, major, purity, cand_kev, cand_cls = [], [], [], [], []
    isolated = np.zeros(num_classes, np.int64)
    for ev in events:
        if ev.segment is None or ev.instance is None:
            raise ValueError(f"{ev.where}: the dE/dx calibration needs segment and instance")
        labels = hough_tracks(ev.coord)
        meas = geometry.measure(ev, labels)
        seg, inst = ev.segment, ev.instance
        labelled = seg >= 0
        cand = offtrack_candidates(ev, labels, geometry.offtrack_radius) & labelled
        isolated += np.bincount(seg[(labels < 0) & ~cand & labelled], minlength=num_classes)
        cand_kev.append(ev.energy[cand].astype(np.float64))
        cand_cls.append(seg[cand])
        for t in meas.track.tolist():
            on = labels == t
            counts.append(np.bincount(seg[on & labelled], minlength=num_classes))
            ids, n = np.unique(inst[on], return_counts=True)
            top = int(ids[n.argmax()])
            mine = on & (inst == top) & labelled
            purity.append(n.max() / on.sum())
            major.append(int(np.bincount(seg[mine]).argmax()) if top >= 0 and mine.any() else -1)
        parts.append(meas)
    return _TrainingHits(
        meas=TrackMeasurements.concatenate(parts),
        hit_counts=np.asarray(counts, np.int64).reshape(-1, num_classes),
        major=np.asarray(major, np.int64),
        purity=np.asarray(purity, np.float64),
        isolated=isolated,
        candidate_kev=np.concatenate(cand_kev) if cand_kev else np.zeros(0),
        candidate_class=np.concatenate(cand_cls) if cand_cls else np.zeros(0, np.int64),
    )


def fit_dedx_calibration(
    train_events: Iterable[Event],
    *,
    fit: TrackFit = TrackFit(),
    offtrack_radius: float = 3.0,
    prior_powers: Sequence[float] = (0.0, 0.5, 1.0),
    max_sigmas: Sequence[float] = (4.0, 8.0, math.inf),
    offtrack_kevs: Sequence[float] = (2.5, 3.0, 4.0, 5.0, math.inf),
    min_purity: float = 0.8,
) -> DedxCalibration:
    """Fit the bands and decision rules on labelled training events (module docstring).

    The scale is the median of ``dedx / bethe_ratio(p / m_pi)`` over found tracks, not
    displaced, whose majority particle (at least ``min_purity`` of the hits) is a pion; the
    resolution the robust spread (1.4826 MAD) of ``log(dedx / band) sqrt(n_used)`` over them.
    The decision rules are the grid point (``prior_powers`` x ``max_sigmas`` x the displaced
    class (-1 or a class) x ``offtrack_kevs``) of the best macro F1 on all training hits.

    Raises:
        ValueError: no pion track to calibrate on, or an event without segment / instance.
    """
    C = NUM_CLASSES
    probe = DedxCalibration(  # the geometry and truncation; scale, resolution, prior below
        kev_per_cm=1.0,
        resolution=1.0,
        prior=(0.25, 0.25, 0.25, 0.25),
        offtrack_radius=offtrack_radius,
        fit=fit,
    )
    tr = _training_hits(train_events, C, probe)
    m = tr.meas
    pions = (tr.major == 1) & (tr.purity >= min_purity) & ~m.displaced
    if not pions.any():
        raise ValueError("fit_dedx_calibration: no pion track in the training events")
    ratio = m.dedx[pions] / bethe_ratio(m.p[pions] / SPECIES_MASS_GEV[0], I_GAS_EV)
    scale = float(np.median(ratio))
    res = np.log(ratio / scale) * np.sqrt(m.n_used[pions])
    resolution = max(float(1.4826 * np.median(np.abs(res - np.median(res)))), 1e-3)
    on_tracks = tr.hit_counts[:, SPECIES_CLASSES].sum(0).astype(np.float64)  # (4,)
    prior = on_tracks / max(on_tracks.sum(), 1.0)
    base = replace(
        probe,
        kev_per_cm=scale,
        resolution=resolution,
        prior=(float(prior[0]), float(prior[1]), float(prior[2]), float(prior[3])),
    )
    # the off-track part of the confusion matrix for each charge cut (columns: prediction)
    offtrack: list[tuple[float, int, np.ndarray]] = []
    for kev in offtrack_kevs:
        above = tr.candidate_kev > kev
        cls = (
            int(np.bincount(tr.candidate_class[above], minlength=C).argmax()) if above.any() else 0
        )
        part = np.zeros((C, C), np.int64)
        part[:, 0] = tr.isolated + np.bincount(tr.candidate_class[~above], minlength=C)
        part[:, cls] += np.bincount(tr.candidate_class[above], minlength=C)
        offtrack.append((kev, cls, part))
    best, best_f1 = base, -math.inf
    for power in prior_powers:
        for max_sigma in max_sigmas:
            for displaced_class in range(-1, C):
                cal = replace(
                    base, prior_power=power, max_sigma=max_sigma, displaced_class=displaced_class
                )
                on_track = np.zeros((C, C), np.int64)
                np.add.at(on_track.T, classify_tracks(m, cal), tr.hit_counts)
                for kev, cls, part in offtrack:
                    f1 = metrics_from_counts(on_track + part).macro_f1
                    if f1 > best_f1:
                        best_f1 = f1
                        best = replace(cal, offtrack_kev=kev, offtrack_class=cls)
    return best


def dedx_pid_block(
    train_events: Iterable[Event],
    test_events: Iterable[Event],
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict:
    """The dE/dx baseline as a row of the ``tpc-pid`` study: calibrated on ``train_events``,
    scored on every hit of ``test_events`` (target -1 ignored) like the network semseg task
    (``nufm.eval.tasks.evaluate_task``'s ``semantic`` block,
    :meth:`nufm.eval.metrics.SemanticMetrics.to_dict`: per-class precision / recall / F1 /
    IoU, macro F1 and mIoU over the classes present, accuracy, confusion matrix).

    Raises:
        ValueError: ``class_names`` is not the simulator's 5 classes long, or an event without
            segment labels.
    """
    if len(class_names) != NUM_CLASSES:
        raise ValueError(
            f"dedx_pid_block: {len(class_names)} class names for the {NUM_CLASSES} classes "
            f"{CLASS_NAMES}"
        )
    calibration = fit_dedx_calibration(train_events)
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for ev in test_events:
        if ev.segment is None:
            raise ValueError(f"{ev.where}: scoring the dE/dx baseline needs segment labels")
        counts += _confusion(classify_hits(ev, calibration), ev.segment, NUM_CLASSES)
    return metrics_from_counts(counts).to_dict(class_names)
