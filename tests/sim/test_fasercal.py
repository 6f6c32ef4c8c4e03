"""The FASERCal-like simulator: ghosts from the three views, MIP and shower numbers, the
spectrometer, the interaction mix and the per-voxel truth."""

import dataclasses

import numpy as np
import pytest
from scipy.special import gammainc

from nufm.data import fasercal as fc
from nufm.sim.fasercal import (
    FaserCalConfig,
    _voxels,
    generate_fasercal_events,
    simulate_fasercal_event,
)

QUIET = FaserCalConfig(noise_rate=0.0, light_yield=1e4, view_threshold_pe=1.0)
"""No view noise and a light yield so high that the Poisson smearing is negligible."""


def _deposits(points, mev, owner=None, cat=None, primary=None):
    pos = np.asarray(points, float)
    n = len(pos)
    return (
        pos,
        np.asarray(mev, float),
        np.asarray(owner if owner is not None else np.zeros(n), np.int64),
        np.asarray(cat if cat is not None else np.zeros(n), np.int64),
        np.asarray(primary if primary is not None else np.ones(n), bool),
    )


def test_three_views_make_ghosts_only_where_a_layer_has_two_x_and_two_y():
    # two voxels in different layers: each layer's XZ and YZ pixels meet once, no ghost
    dep = _deposits([[-10.5, 5.5, -99.5], [3.5, -7.5, -98.5]], [5.0, 7.0], owner=[0, 1])
    vox = _voxels(QUIET, np.random.default_rng(0), dep)
    assert len(vox["coord"]) == 2 and vox["ghost"].sum() == 0
    # layers -99.5 and -95.5 (one module) each hold two voxels of different x and y, so the
    # module's XY view has all four (x, y) pairs on: each layer re-intersects to 2 x 2 voxels,
    # two of them ghosts
    dep = _deposits(
        [[-10.5, 5.5, -99.5], [3.5, -7.5, -99.5], [-10.5, -7.5, -95.5], [3.5, 5.5, -95.5]],
        [5.0, 7.0, 4.0, 6.0],
        owner=[0, 1, 2, 3],
    )
    vox = _voxels(QUIET, np.random.default_rng(0), dep)
    coords = {tuple(c) for c in vox["coord"].tolist()}
    assert len(vox["coord"]) == 8
    assert vox["ghost"].sum() == 4
    ghosts = {tuple(c) for c, g in zip(vox["coord"].tolist(), vox["ghost"], strict=True) if g}
    assert ghosts == {
        (-10.5, -7.5, -99.5),
        (3.5, 5.5, -99.5),
        (-10.5, 5.5, -95.5),
        (3.5, -7.5, -95.5),
    }
    assert coords >= {(-10.5, 5.5, -99.5), (3.5, -7.5, -99.5)}
    # ghosts carry no truth; real voxels their owner and full category fraction
    g = vox["ghost"] == 1
    assert (vox["instance"][g] == -1).all() and (vox["category"][g] == -1).all()
    assert (vox["hierarchy"][g] == 0).all() and (vox["fractions"][g] == 0).all()
    assert sorted(vox["instance"][~g].tolist()) == [0, 1, 2, 3]


def test_isolated_voxel_charge_is_its_energy():
    dep = _deposits([[0.5, 0.5, 10.5]], [12.0])
    vox = _voxels(QUIET, np.random.default_rng(1), dep)
    assert len(vox["mev"]) == 1
    assert vox["mev"][0] == pytest.approx(12.0, rel=0.01)


def test_voxel_truth_splits_energy_by_category_and_hierarchy():
    # one voxel: 3 MeV electromagnetic from a secondary, 1 MeV muonic from a primary
    dep = _deposits(
        [[0.2, 0.2, 0.2], [0.7, 0.7, 0.7]], [3.0, 1.0], owner=[4, 2], cat=[0, 1], primary=[0, 1]
    )
    vox = _voxels(QUIET, np.random.default_rng(0), dep)
    assert vox["fractions"][0].tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert vox["category"][0] == 0 and vox["instance"][0] == 4
    assert vox["hierarchy"][0] == 2  # the primary holds 25 % < half: secondary


def _gun(pdg, energy, start=(0.3, 0.3, -100.0), direction=(0.0, 0.0, 1.0), cfg=QUIET, seed=0):
    return simulate_fasercal_event(
        cfg, np.random.default_rng(seed), gun=[(pdg, energy, start, direction)]
    )


def test_straight_muon_is_a_ghost_free_mip_track_that_reaches_every_plane():
    ev = _gun(13, 100.0)
    scint = ev.stream == fc.SCINT
    assert scint.sum() == fc.N_Z  # one cube per layer along the whole block
    assert ev.labels[scint, 0].sum() == 0  # a single track makes no ghost
    assert np.mean(ev.energy[scint]) == pytest.approx(2.0, rel=0.1)  # MIP: 2 MeV per cm
    assert (ev.labels[scint, 2] == 1).all() and (ev.labels[scint, 1] == 1).all()
    hits = ev.coord[ev.stream == fc.MUON]
    assert len(hits) == len(fc.MUON_PLANES_Z)
    assert hits[:, 2].tolist() == pytest.approx(list(fc.MUON_PLANES_Z))
    # a mu- bends to -x, a mu+ to +x, by k L / p at the last plane
    bend = fc.MUON_BEND_CM_GEV * ((fc.MUON_PLANES_Z[-1] - fc.MUON_PLANES_Z[0] + 100) / 100) / 100.0
    assert hits[-1, 0] == pytest.approx(0.3 - bend, abs=0.3)
    plus = _gun(-13, 100.0).coord[-1]
    assert plus[0] == pytest.approx(0.3 + bend, abs=0.3)


def test_electron_shower_depth_and_energy_split():
    cfg = QUIET
    # depth: a 2 GeV shower, mostly contained; the Gamma profile (b = 0.5, a = b t_max + 1,
    # t_max = ln(E / Ec) - 0.5) truncated at the block's end has mean a/b * P(a+1, bT) / P(a, bT)
    ev = _gun(11, 2.0, cfg=cfg)
    real = (ev.stream == fc.SCINT) & (ev.labels[:, 0] == 0)
    depth = (ev.coord[real, 2] + 100.0) / fc.X0_CM  # X0
    a = 0.5 * (np.log(2.0 / cfg.critical_energy_gev) - 0.5) + 1
    t_end = 200.0 / fc.X0_CM
    expected = a / 0.5 * gammainc(a + 1, 0.5 * t_end) / gammainc(a, 0.5 * t_end)
    assert np.average(depth, weights=ev.energy[real]) == pytest.approx(expected, abs=0.3)
    # energy: visible in the block = sampling fraction x contained share; the rest in the ECAL
    e_gev = 200.0
    ev = _gun(11, e_gev, cfg=cfg)
    scint = ev.stream == fc.SCINT
    ecal = ev.energy[ev.stream == fc.ECAL].sum() / 1000.0
    visible = ev.energy[scint].sum() / 1000.0
    assert 0.2 * e_gev < ecal < 0.8 * e_gev  # 8.7 X0 leaks a large part of 200 GeV
    assert visible / cfg.sampling_fraction + ecal == pytest.approx(e_gev, rel=0.03)
    real = scint & (ev.labels[:, 0] == 0)
    assert (ev.labels[real, 2] == 0).all()  # electromagnetic


def test_pi0_gives_two_photons_of_the_pi0_mass():
    ev = _gun(111, 50.0)
    photons = ev.particles.pdg == 22
    assert photons.sum() == 2
    p = ev.particles.momentum[photons].astype(float)
    e = np.linalg.norm(p, axis=1)
    mass = np.sqrt(max((e.sum()) ** 2 - np.sum(p.sum(0) ** 2), 0.0))
    assert mass == pytest.approx(0.135, rel=0.02)


def test_events_depend_only_on_seed_and_index():
    a = list(generate_fasercal_events(3, seed=5))
    b = list(generate_fasercal_events(2, seed=5))
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(x.coord, y.coord)
        np.testing.assert_array_equal(x.labels, y.labels)


@pytest.mark.parametrize("seed", [0])
def test_interaction_mix_and_truth(seed):
    cfg = dataclasses.replace(FaserCalConfig(), charm_fraction=0.3)
    evs = list(generate_fasercal_events(240, seed=seed, cfg=cfg))
    flavour = np.array([e.meta["flavour"] for e in evs])
    cc = np.array([e.meta["is_cc"] for e in evs])
    n = len(evs)
    # CC:NC 3:1 and nu_mu CC 55 %: binomial 4-sigma bands
    for observed, p in ((cc.mean(), 0.75), ((flavour == 1).mean(), 0.55)):
        assert abs(observed - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert ((flavour == 5) == (cc == 0)).all()
    charm = np.array([e.meta["charm"] for e in evs])
    assert (charm[cc == 0] == 0).all()
    share = (charm[cc == 1] > 0).mean()
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / (cc == 1).sum())
    for e in evs:
        scint = e.stream == fc.SCINT
        ghost = e.labels[scint, 0] == 1
        assert e.meta["n_ghost"] == ghost.sum()
        # every real voxel's category fractions sum to 1 and the category is their argmax
        f = e.labels[scint][~ghost, 3:6]
        np.testing.assert_allclose(f.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(np.argmax(f, 1), e.labels[scint][~ghost, 2])
        assert (e.stream == fc.ECAL).sum() == 25
        # transverse momentum balance of lepton and jet (CC): |pT sum| ~ 0
        if e.meta["is_cc"]:
            ptx = e.meta["lepton_px"] + e.meta["jet_px"]
            assert abs(ptx) < 1e-3 * e.meta["nu_energy"] + 1e-3
        # voxel centres sit on the 1 cm grid inside the block
        c = e.coord[scint]
        np.testing.assert_allclose(c - np.floor(c), 0.5)
        assert (c >= fc.SCINT_MIN).all() and (c < fc.SCINT_MAX).all()


def test_display_writes_every_colouring(tmp_path):
    from matplotlib.image import imread

    from nufm.viz.display import save_figure
    from nufm.viz.display_fasercal import FASERCAL_COLOR_OPTIONS, display_fasercal_event

    (ev,) = list(generate_fasercal_events(1, seed=2))
    for color in FASERCAL_COLOR_OPTIONS:
        path = tmp_path / f"{color}.png"
        save_figure(display_fasercal_event(ev, color=color), path)
        img = imread(path)
        assert img.shape[0] > 500 and img[..., :3].std() > 0.05  # drawn, not blank
    with pytest.raises(ValueError, match="color must be one of"):
        display_fasercal_event(ev, color="pid")


def test_cli_simulate_info_display(tmp_path, capsys):
    from nufm.cli import main

    out = tmp_path / "fc.h5"
    main(["simulate", "--detector", "fasercal", "--events", "3", "--out", str(out)])
    main(["info", str(out)])
    text = capsys.readouterr().out
    assert "fasercal-h5" in text and "label ghost:" in text and "event flavour:" in text
    main(["display", str(out), "--color", "ghost", "--out", str(tmp_path / "g.png")])
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_the_side_by_side_grid_speaks_the_detectors_units_and_classes():
    from nufm.viz.display import display_events_grid

    events = list(generate_fasercal_events(2, seed=2))
    fig = display_events_grid(events, color="segment")
    labels = {ax.get_xlabel() for ax in fig.axes}
    assert "x [cm]" in labels and not any("voxel" in lab for lab in labels)
    legend_names = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert {"electromagnetic", "hadronic"} <= legend_names
    assert "shower" not in legend_names
    assert "axes in cm" in fig.get_suptitle()
