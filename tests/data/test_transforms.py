"""Transforms keep labels aligned, move truth with the points, and match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from nufm.data.event import Event
from nufm.data.lartpc import LOW_ENERGY
from nufm.data.pilarnet import DataError
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import (
    Compose,
    EnergySmear,
    EnergyThreshold,
    Jitter,
    LogEnergy,
    MakeFeatures,
    NormalizeCoord,
    Preprocess,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomScale,
    RemoveLowEnergy,
    log_energy,
    random_rotation_matrix,
)

LABELS = ("segment", "pid", "instance", "interaction")


def _traced(seed: int = 0) -> Event:
    """A synthetic event whose ``stream`` field carries each point's original index."""
    e = synthetic_event(seed=seed, n_interactions=2)
    return e.with_fields(stream=np.arange(len(e), dtype=np.int64))


def _assert_labels_follow_points(out: Event, original: Event) -> np.ndarray:
    ids = out.stream
    assert ids is not None and len(np.unique(ids)) == len(ids)
    for name in LABELS:
        np.testing.assert_array_equal(getattr(out, name), getattr(original, name)[ids], name)
    return ids


ALL = [
    EnergyThreshold(),
    RemoveLowEnergy(),
    NormalizeCoord(),
    LogEnergy(),
    MakeFeatures(),
    RandomRotation(),
    RandomFlip(),
    RandomScale(),
    Jitter(),
    EnergySmear(),
    RandomCrop(),
]


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_every_transform_keeps_labels_aligned_and_is_seeded(transform: object) -> None:
    e = _traced()
    out = transform(e, np.random.default_rng(1))
    _assert_labels_follow_points(out, e)
    again = transform(e, np.random.default_rng(1))
    np.testing.assert_array_equal(out.coord, again.coord)
    np.testing.assert_array_equal(out.energy, again.energy)
    assert e.meta == {"n_interactions": 2}  # the input event is never modified


def test_rotation_preserves_distances_and_moves_truth() -> None:
    e = NormalizeCoord()(_traced(), np.random.default_rng(0))
    out = RandomRotation()(e, np.random.default_rng(5))
    ids = _assert_labels_follow_points(out, e)
    np.testing.assert_allclose(pdist(out.coord), pdist(e.coord[ids]), atol=1e-6)
    assert not np.allclose(out.coord, e.coord[ids], atol=1e-3)
    # point-to-vertex distances and momentum magnitudes are unchanged: truth rotated too
    d_before = np.linalg.norm(e.coord[:, None] - e.vertices[None], axis=2)
    d_after = np.linalg.norm(out.coord[:, None] - out.vertices[None], axis=2)
    np.testing.assert_allclose(d_after, d_before[ids], atol=1e-6)
    np.testing.assert_allclose(
        np.linalg.norm(out.particles.momentum, axis=1),
        np.linalg.norm(e.particles.momentum, axis=1),
        rtol=1e-5,
    )
    r = random_rotation_matrix(np.random.default_rng(2))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_rotation_is_uniform_on_average() -> None:
    # E[R] = 0 for the Haar measure on SO(3)
    rng = np.random.default_rng(0)
    mean = np.mean([random_rotation_matrix(rng) for _ in range(4000)], axis=0)
    assert np.abs(mean).max() < 0.05


def test_flip_scale_jitter_geometry() -> None:
    e = NormalizeCoord()(_traced(), np.random.default_rng(0))
    flipped = RandomFlip(p=1.0)(e, np.random.default_rng(0))
    np.testing.assert_allclose(flipped.coord, -e.coord, atol=1e-7)
    np.testing.assert_allclose(flipped.particles.momentum, -e.particles.momentum, atol=1e-7)
    scaled = RandomScale(low=2.0, high=2.0)(e, np.random.default_rng(0))
    np.testing.assert_allclose(pdist(scaled.coord), 2.0 * pdist(e.coord), rtol=1e-5)
    np.testing.assert_allclose(scaled.vertices, 2.0 * e.vertices, rtol=1e-6)
    jittered = Jitter(sigma=0.01, clip=0.002)(e, np.random.default_rng(0))
    shift = np.abs(jittered.coord - e.coord)
    assert shift.max() <= 0.002 + 1e-7 and shift.max() > 0.001


def test_energy_threshold_counts_removed_points() -> None:
    e = _traced()
    out = EnergyThreshold(threshold=0.3)(e, np.random.default_rng(0))
    ids = _assert_labels_follow_points(out, e)
    np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(e.energy > 0.3))
    assert out.meta["n_removed_threshold"] == int((e.energy <= 0.3).sum()) > 0
    with pytest.raises(DataError, match="synthetic event 0: no point above"):
        EnergyThreshold(threshold=1e9)(e, np.random.default_rng(0))


def test_remove_low_energy() -> None:
    e = _traced()
    out = RemoveLowEnergy()(e, np.random.default_rng(0))
    assert (out.segment != LOW_ENERGY).all()
    assert out.meta["n_removed_low_energy"] == int((e.segment == LOW_ENERGY).sum()) > 0
    with pytest.raises(DataError, match="needs segment"):
        RemoveLowEnergy()(e.with_fields(segment=None), np.random.default_rng(0))


def test_normalize_coord_maps_cube_into_unit_ball() -> None:
    corners = np.array([[0, 0, 0], [768, 768, 768], [384, 384, 384]], np.float32)
    e = Event(coord=corners, energy=np.ones(3, np.float32))
    out = NormalizeCoord()(e, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(out.coord, axis=1), [1.0, 1.0, 0.0], atol=1e-6)


def test_log_energy_hand_values() -> None:
    # formula: 2*(log10(x+eps)-log10(eps))/(log10(eps+emax)-log10(eps))-1, eps 0.01, emax 20
    # x = 0     -> -1 ;  x = 20 -> +1
    # x = 0.09  -> log10(0.1) = -1: 2*(-1+2)/(log10(20.01)+2) - 1 = 2/3.3012471 - 1 = -0.3941677
    # x = 0.99  -> log10(1) = 0:    2*2/3.3012471 - 1 = 0.2116646
    got = log_energy(np.array([0.0, 20.0, 0.09, 0.99]))
    np.testing.assert_allclose(got, [-1.0, 1.0, -0.3941677, 0.2116646], atol=2e-6)
    assert math.log10(20.01) == pytest.approx(1.3012471, abs=1e-7)
    e = Event(coord=np.zeros((1, 3), np.float32), energy=np.array([0.99], np.float32))
    np.testing.assert_allclose(
        LogEnergy()(e, np.random.default_rng(0)).energy, [0.2116646], atol=2e-6
    )
    with pytest.raises(DataError, match="negative"):
        LogEnergy()(e.with_fields(energy=np.array([-1.0], np.float32)), np.random.default_rng(0))


def test_random_crop_keeps_nearest_points() -> None:
    e = _traced()
    out = RandomCrop(min_fraction=0.3, max_fraction=0.3)(e, np.random.default_rng(4))
    ids = _assert_labels_follow_points(out, e)
    assert len(out) == math.ceil(0.3 * len(e))
    assert (np.diff(ids) > 0).all()  # original order kept
    removed = np.setdiff1d(np.arange(len(e)), ids)
    # some kept point is a centre whose kept points are all nearer than every removed one
    ok = False
    for c in e.coord[ids]:
        d_kept = np.linalg.norm(e.coord[ids] - c, axis=1).max()
        d_removed = np.linalg.norm(e.coord[removed] - c, axis=1).min()
        ok |= bool(d_kept <= d_removed)
    assert ok


def test_energy_smear_is_multiplicative_and_non_negative() -> None:
    e = _traced()
    out = EnergySmear(sigma=0.1)(e, np.random.default_rng(0))
    ratio = out.energy / e.energy
    assert (out.energy >= 0).all() and 0.0 < ratio.std() < 0.2


def test_preprocess_contract_and_serialisation() -> None:
    pre = Preprocess(remove_low_energy=True, min_points=10, log_energy_eps=0.13)
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocess.from_dict({**pre.to_dict(), "emax": 3})
    with pytest.raises(ValueError, match="energy_threshold"):
        Preprocess(energy_threshold=-1.0)
    names = [type(t).__name__ for t in pre.transforms([RandomRotation()]).transforms]
    assert names == [
        "EnergyThreshold",
        "RemoveLowEnergy",
        "NormalizeCoord",
        "RandomRotation",
        "LogEnergy",
        "MakeFeatures",
    ]
    e = _traced()
    out = pre.transforms()(e, np.random.default_rng(0))
    ids = _assert_labels_follow_points(out, e)
    assert out.feat.shape == (len(out), 4) and out.feat.dtype == np.float32
    expected_xyz = (e.coord[ids] - 384.0) / (768 * math.sqrt(3) / 2)
    np.testing.assert_allclose(out.feat[:, :3], expected_xyz, atol=1e-6)
    np.testing.assert_allclose(out.feat[:, 3], log_energy(e.energy[ids], 0.13, 20.0), atol=1e-6)
    assert (e.energy[ids] > 0.13).all() and (out.segment != LOW_ENERGY).all()


def test_time_channel_is_the_hit_time_about_its_median() -> None:
    e = Event(
        coord=np.zeros((4, 3), np.float32),
        energy=np.ones(4, np.float32),
        time=np.array([10.0, 30.0, 50.0, 2050.0], np.float32),  # median 40 ns
        event_id=3,
        source="wc.h5",
    )
    out = MakeFeatures(time_scale=100.0)(e, np.random.default_rng(0))
    np.testing.assert_allclose(out.feat[:, 4], [-0.3, -0.1, 0.1, 20.1], atol=1e-6)
    assert MakeFeatures()(e, np.random.default_rng(0)).feat.shape == (4, 4)
    pre = Preprocess(energy_threshold=0.0, time_scale=100.0)
    assert pre.feature_names == ("x", "y", "z", "log_energy", "time")
    assert Preprocess().feature_names == ("x", "y", "z", "log_energy")
    assert pre.transforms()(e, np.random.default_rng(0)).feat.shape == (4, 5)
    with pytest.raises(ValueError, match=r"wc\.h5 event 3: .* no hit times"):
        pre.transforms()(e.with_fields(time=None), np.random.default_rng(0))
    with pytest.raises(ValueError, match="time_scale"):
        Preprocess(time_scale=-1.0)


def test_compose_shares_generator_deterministically() -> None:
    t = Compose([NormalizeCoord(), RandomRotation(), RandomFlip(), Jitter()])
    e = _traced()
    a = t(e, np.random.default_rng(9))
    b = t(e, np.random.default_rng(9))
    c = t(e, np.random.default_rng(10))
    np.testing.assert_array_equal(a.coord, b.coord)
    assert not np.allclose(a.coord, c.coord)


def test_rotation_about_z_keeps_z_and_radius() -> None:
    """A cylinder's augmentation: z and the distance from the axis are kept, the azimuth
    turns by one angle for every point."""
    from nufm.data.event import Event
    from nufm.data.transforms import RandomRotation

    rng = np.random.default_rng(4)
    coord = rng.normal(size=(20, 3)).astype(np.float32)
    ev = Event(coord=coord, energy=np.ones(20, np.float32))
    out = RandomRotation(axis="z")(ev, np.random.default_rng(1))
    np.testing.assert_allclose(out.coord[:, 2], coord[:, 2], atol=1e-6)
    np.testing.assert_allclose(
        np.hypot(out.coord[:, 0], out.coord[:, 1]), np.hypot(coord[:, 0], coord[:, 1]), atol=1e-5
    )
    turn = np.arctan2(out.coord[:, 1], out.coord[:, 0]) - np.arctan2(coord[:, 1], coord[:, 0])
    turn = np.mod(turn, 2 * np.pi)
    np.testing.assert_allclose(turn, turn[0], atol=1e-4)
    assert 1e-3 < turn[0] < 2 * np.pi - 1e-3


def test_augmentations_follow_the_detector_symmetry() -> None:
    from nufm.config import DataConfig
    from nufm.data.detectors import DETECTORS
    from nufm.data.transforms import RandomRotation
    from nufm.train.components import build_augmentations

    cfg = DataConfig(augment=True, rotate=True)
    axes = {}
    for name, det in DETECTORS.items():
        steps = build_augmentations(cfg, symmetry=det.symmetry)
        rot = [s for s in steps if isinstance(s, RandomRotation)]
        axes[name] = rot[0].axis if rot else None
    assert axes == {
        "lartpc": "any",
        "collider-tpc": "z",
        "water-cherenkov": "z",
        "fasercal": None,
    }


def test_direction_target_turns_with_the_event() -> None:
    from nufm.data.event import Event, Particles
    from nufm.data.transforms import RandomRotation
    from nufm.tasks.event_task import AddEventTargets

    parts = Particles(
        id=np.array([0]),
        pdg=np.array([13]),
        momentum=np.array([[0.3, 0.0, 0.4]], np.float32),
        start=np.zeros((1, 3), np.float32),
        is_primary=np.array([True]),
        interaction=np.array([0]),
        parent=np.array([-1]),
    )
    ev = Event(
        coord=np.array([[1.0, 0.0, 0.0]], np.float32),
        energy=np.ones(1, np.float32),
        particles=parts,
        vertices=np.zeros((1, 3), np.float32),
    )
    out = AddEventTargets(direction=True)(
        RandomRotation(axis="z")(ev, np.random.default_rng(2)), None
    )  # type: ignore[arg-type]
    d = np.array([out.meta["dir_x"], out.meta["dir_y"], out.meta["dir_z"]])
    assert np.linalg.norm(d) == pytest.approx(1.0)
    assert d[2] == pytest.approx(0.8)  # z kept by the rotation about z
    turned = np.arctan2(d[1], d[0])
    moved = np.arctan2(out.coord[0, 1], out.coord[0, 0])
    assert turned == pytest.approx(moved, abs=1e-5)  # the same azimuth turn as the points
