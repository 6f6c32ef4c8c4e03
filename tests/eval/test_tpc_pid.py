"""The classical dE/dx particle-identification baseline of the collider TPC: momentum from
hand-made circles, proton / pion bands on a hand-made track, the metrics block against
scikit-learn, and the baseline on simulated events."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from nufm.data.event import Event
from nufm.eval.tpc_pid import (
    SPECIES_MASS_GEV,
    DedxCalibration,
    classify_hits,
    dedx_pid_block,
    fit_circle_origin,
    fit_dedx_calibration,
    pt_from_radius,
    track_measurements,
)
from nufm.sim.collider_tpc import CLASS_NAMES, I_GAS_EV, ColliderTPCConfig, generate_collider_events
from nufm.sim.physics import bethe_ratio

CFG = ColliderTPCConfig()
CAL = DedxCalibration(kev_per_cm=2.07, resolution=0.33, prior=(0.78, 0.10, 0.06, 0.06))


def _helix(radius: float, tan_dip: float, phi_c: float = 0.7, z0: float = 5.0) -> np.ndarray:
    """(n, 3) outgoing layer crossings of a helix from the origin whose transverse circle has
    ``radius`` cm (centre in direction ``phi_c``)."""
    r = CFG.layer_radii[CFG.layer_radii < 2 * radius * 0.999]  # (n,)
    alpha = 2 * np.arcsin(r / (2 * radius))  # turning angle from the origin
    theta = phi_c + math.pi + alpha  # angle of the hit seen from the centre
    x = radius * math.cos(phi_c) + radius * np.cos(theta)
    y = radius * math.sin(phi_c) + radius * np.sin(theta)
    return np.stack([x, y, z0 + tan_dip * radius * alpha], 1)


def _track_event(pt: float, tan_dip: float, species: int, noise: np.ndarray | None = None) -> Event:
    """One track whose hit charges lie exactly on the band of ``species`` (index into
    :data:`SPECIES_MASS_GEV`) times the path in the layer; ``noise`` (M, 3) extra 2 keV hits."""
    radius = float(100 * pt / (0.3 * CFG.b_field))
    coord = _helix(radius, tan_dip)
    r = np.hypot(coord[:, 0], coord[:, 1])
    path = CFG.pitch * math.sqrt(1 + tan_dip**2) / np.sqrt(1 - (r / (2 * radius)) ** 2)
    p = pt * math.sqrt(1 + tan_dip**2)
    band = CAL.kev_per_cm * float(bethe_ratio(p / SPECIES_MASS_GEV[species], I_GAS_EV))
    energy = band * path
    if noise is not None:
        coord = np.concatenate([coord, noise])
        energy = np.concatenate([energy, np.full(len(noise), 2.0)])
    return Event(coord=coord.astype(np.float32), energy=energy.astype(np.float32))


@pytest.mark.parametrize("radius", [25.0, 60.0, 150.0, 600.0])
def test_momentum_from_curvature(radius: float) -> None:
    xyz = _helix(radius, 0.0) + np.random.default_rng(0).normal(0, 0.02, (1, 3)) * [1, 1, 0]
    _, _, fitted = fit_circle_origin(xyz[:, 0], xyz[:, 1])
    expected = 0.3 * 1.4 * radius / 100
    assert float(pt_from_radius(fitted, 1.4)) == pytest.approx(expected, rel=0.02)
    ev = _track_event(expected, 0.8, species=0)
    m = track_measurements(ev, np.zeros(len(ev), np.int64))
    assert len(m) == 1 and m.n_hits[0] == len(ev) and not m.displaced[0]
    assert m.pt[0] == pytest.approx(expected, rel=0.02)
    assert m.p[0] == pytest.approx(expected * math.sqrt(1 + 0.8**2), rel=0.02)
    # the path-corrected truncated mean of charges on the band is the band
    band = CAL.kev_per_cm * float(bethe_ratio(m.p[0] / SPECIES_MASS_GEV[0], I_GAS_EV))
    assert m.dedx[0] == pytest.approx(band, rel=0.02)


def test_proton_and_pion_bands_at_low_momentum() -> None:
    noise = np.array([[-60.0, -20.0, -50.0], [-40.0, -50.0, 30.0], [-70.0, 10.0, 80.0]])
    for species, cls in ((2, 3), (0, 1)):  # proton, pion
        ev = _track_event(0.35, 0.5, species, noise)  # p = 0.39 GeV/c
        pred = classify_hits(ev, CAL)  # Hough track finding inside
        assert (pred[:-3] == cls).all() and (pred[-3:] == 0).all()
    # low-momentum electron loopers off tracks: high-charge hits with a neighbour
    ev = _track_event(0.35, 0.5, 0, noise)
    loop = np.array([[-30.0, -60.0, 0.0], [-31.0, -60.5, 0.5], [-32.0, -61.0, 1.0]])
    ev = Event(
        coord=np.concatenate([ev.coord, loop]).astype(np.float32),
        energy=np.concatenate([ev.energy, [8.0, 9.0, 2.0]]).astype(np.float32),
    )
    cal = dataclasses.replace(CAL, offtrack_kev=3.0, offtrack_class=4)
    pred = classify_hits(ev, cal)
    assert (pred[-6:] == [0, 0, 0, 4, 4, 0]).all()
    # no track: everything "other"
    assert (classify_hits(ev, CAL, labels=np.full(len(ev), -1)) == 0).all()


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(generate_collider_events(40, seed=2))


def test_block_agrees_with_scikit_learn(events: list[Event]) -> None:
    train, test = events[:8], events[30:34]
    block = dedx_pid_block(train, test)
    cal = fit_dedx_calibration(train)
    pred = np.concatenate([classify_hits(ev, cal) for ev in test])
    target = np.concatenate([ev.segment for ev in test if ev.segment is not None])
    assert block["class_names"] == list(CLASS_NAMES) and block["num_points"] == len(target)
    assert block["confusion_matrix"] == confusion_matrix(target, pred, labels=range(5)).tolist()
    # macro F1 over the classes present in target or prediction, as scikit-learn's default
    assert block["macro_f1"] == pytest.approx(f1_score(target, pred, average="macro"))
    assert block["accuracy"] == pytest.approx(accuracy_score(target, pred))
    for c, name in enumerate(CLASS_NAMES):
        f1 = block["per_class"][name]["f1"]
        if (target == c).any() or (pred == c).any():
            assert f1 == pytest.approx(float(f1_score(target == c, pred == c)))
        else:  # absent from both: no score, left out of the macro mean
            assert math.isnan(f1) and not block["per_class"][name]["in_macro"]
    with pytest.raises(ValueError, match="class names"):
        dedx_pid_block(train, test, class_names=("a", "b"))
    with pytest.raises(ValueError, match="segment and instance"):
        fit_dedx_calibration([dataclasses.replace(events[0], instance=None)])


def test_baseline_on_simulated_events(events: list[Event]) -> None:
    train, test = events[:30], events[30:]
    block = dedx_pid_block(train, test)
    target = np.concatenate([ev.segment for ev in test if ev.segment is not None])
    majority = np.bincount(target).max() / len(target)  # pions: 0.72
    f1 = {name: v["f1"] for name, v in block["per_class"].items()}
    # measured: accuracy 0.91, macro F1 0.81, F1 pion 0.955, kaon 0.77, proton 0.86
    assert block["accuracy"] > majority + 0.1
    assert f1["pion"] > 0.9 and f1["proton"] > 0.65 and f1["kaon"] > 0.5
    assert block["macro_f1"] > 0.65
