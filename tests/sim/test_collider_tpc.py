"""The collider-TPC simulator against its physics: helix radius R = pT / (0.3 B), one hit per
layer crossing, curling and non-reaching tracks, the noise fraction, determinism; the TPCpp
layout round trip, read with plain numpy, and its bad files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nufm.cli import main
from nufm.data.detectors import detector_of
from nufm.data.formats import detect_layout, read_any
from nufm.data.pilarnet import DataError, MissingFileError
from nufm.data.tpcpp import COLUMNS, read_tpcpp, write_tpcpp
from nufm.errors import ConfigError
from nufm.sim.collider_tpc import (
    ColliderTPCConfig,
    generate_collider_events,
    simulate_collider_event,
)
from nufm.viz.display import save_figure
from nufm.viz.display_tpc import display_tpc_event

EXACT = ColliderTPCConfig(
    x0_gas=1e12, diffusion_t=0.0, diffusion_l=0.0, pad_resolution=0.0, n_secondaries=0.0
)
"""No scattering, diffusion or secondaries: hits lie on the ideal helices."""


def _circle_radius(xy: np.ndarray) -> float:
    a = np.c_[2 * xy, np.ones(len(xy))]
    c = np.linalg.lstsq(a, (xy**2).sum(1), rcond=None)[0]
    return float(np.sqrt(c[2] + c[0] ** 2 + c[1] ** 2))


def _primaries(ev):
    p = ev.particles
    pt = np.hypot(p.momentum[:, 0], p.momentum[:, 1])
    return p, pt


def test_helix_radius_is_pt_over_03_b() -> None:
    ratios = []
    for ev in generate_collider_events(20, seed=1, cfg=EXACT):
        p, pt = _primaries(ev)
        for t in np.nonzero(p.is_primary)[0]:
            hits = ev.coord[ev.instance == t, :2].astype(np.float64)
            if len(hits) >= 20:
                ratios.append(_circle_radius(hits) / (100 * pt[t] / (0.3 * 1.4)))
    assert len(ratios) > 100
    assert np.median(np.abs(np.asarray(ratios) - 1)) < 0.002  # float32 hits, no smearing


def test_a_stiff_central_track_crosses_each_layer_once() -> None:
    cfg = EXACT
    seen = 0
    for ev in generate_collider_events(20, seed=2, cfg=cfg):
        p, pt = _primaries(ev)
        eta = np.arcsinh(p.momentum[:, 2] / pt)
        for t in np.nonzero(p.is_primary & (pt > 0.5) & (np.abs(eta) < 0.5))[0]:
            if abs(p.start[t, 2]) > 40:
                continue
            r = np.hypot(*ev.coord[ev.instance == t, :2].T)
            layer = np.rint(r - cfg.r_inner - 0.5).astype(int)
            assert np.array_equal(np.sort(layer), np.arange(cfg.n_layers))
            np.testing.assert_allclose(np.sort(r), cfg.layer_radii, atol=1e-3)
            seen += 1
    assert seen > 20


def test_curling_and_soft_tracks() -> None:
    """2R below the inner radius: no hits; 2R inside the TPC: hits only below 2R, each layer
    crossed on the way out and on the way back in (one full turn followed)."""
    cfg = EXACT
    n_soft = n_curl = 0
    for ev in generate_collider_events(40, seed=3, cfg=cfg):
        p, pt = _primaries(ev)
        two_r = 2 * 100 * pt / (0.3 * 1.4)
        eta = np.arcsinh(p.momentum[:, 2] / pt)
        for t in np.nonzero(p.is_primary)[0]:
            r = np.hypot(*ev.coord[ev.instance == t, :2].T)
            if two_r[t] < cfg.r_inner:
                assert len(r) == 0
                n_soft += 1
            elif two_r[t] < cfg.r_outer - 2 and abs(eta[t]) < 0.2 and abs(p.start[t, 2]) < 20:
                kinetic = np.hypot(pt[t], 0.13957) - 0.13957
                if abs(p.pdg[t]) != 211 or kinetic < 0.05:
                    continue
                assert r.max() <= two_r[t] + 1e-3
                reached = int(np.sum(cfg.layer_radii < two_r[t]))
                assert len(r) == 2 * reached
                n_curl += 1
    assert n_soft > 5 and n_curl > 3


def test_noise_fraction_and_labels() -> None:
    cfg = replace(ColliderTPCConfig(), n_secondaries=0.0, noise_fraction=0.05)
    events = list(generate_collider_events(100, seed=4, cfg=cfg))
    hits = np.concatenate([e.instance for e in events])
    assert abs(float(np.mean(hits == -1)) - 0.05) < 0.005
    for ev in events[:10]:
        noise = ev.instance == -1
        assert (ev.interaction[noise] == -1).all() and (ev.interaction[~noise] >= 0).all()
        assert set(np.unique(ev.segment)) <= {0, 1, 2, 3, 4}
        assert (np.abs(ev.coord[:, 2]) < cfg.half_length + 1).all()
        assert detector_of(ev).name == "collider-tpc"
    with_secondaries = list(generate_collider_events(50, seed=4))
    tagged = np.concatenate([e.interaction == -1 for e in with_secondaries])
    random_ = np.concatenate([e.instance == -1 for e in with_secondaries])
    assert tagged.mean() > random_.mean()  # looping secondaries are tagged as noise too


def test_events_depend_only_on_seed_and_index() -> None:
    a = list(generate_collider_events(3, seed=5))
    b = simulate_collider_event(ColliderTPCConfig(), np.random.default_rng((5, 2, 0xC011)), 2)
    np.testing.assert_array_equal(a[2].coord, b.coord)
    assert not np.array_equal(a[0].coord[:10], a[1].coord[:10])


def test_tpcpp_round_trip_and_plain_numpy(tmp_path: Path) -> None:
    events = list(generate_collider_events(5, seed=6))
    path = tmp_path / "tpc.npz"
    assert write_tpcpp(path, events) == 5
    assert detect_layout(path) == "tpcpp-npz"
    with np.load(path) as f:  # what a physicist's own script sees
        assert tuple(f["columns"]) == COLUMNS
        assert f["size"].tolist() == [len(e) for e in events]
        assert f["data"].shape == (sum(len(e) for e in events), len(COLUMNS))
    back = read_tpcpp(path)
    for a, b in zip(events, back, strict=True):
        np.testing.assert_array_equal(a.coord, b.coord)
        np.testing.assert_array_equal(a.energy, b.energy)
        for name in ("segment", "instance", "interaction"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.particles is not None and b.particles is not None
        np.testing.assert_array_equal(a.particles.pdg, b.particles.pdg)
        np.testing.assert_allclose(a.particles.momentum, b.particles.momentum)
        np.testing.assert_allclose(a.vertices, b.vertices)
    (third,) = read_any(path, [2])
    np.testing.assert_array_equal(third.coord, events[2].coord)


def test_bad_tpcpp_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="no such file"):
        read_tpcpp(tmp_path / "none.npz")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match=r"trunc\.npz: not a readable \.npz"):
        read_any(tmp_path / "trunc.npz")
    np.savez(tmp_path / "nosize.npz", data=np.zeros((3, 4)), other=np.zeros(2))
    with pytest.raises(DataError, match=r"nosize\.npz: not a TPCpp file: no 'size'"):
        read_tpcpp(tmp_path / "nosize.npz")
    np.savez(tmp_path / "sizes.npz", data=np.zeros((5, 8)), size=np.array([2, 2]))
    with pytest.raises(DataError, match=r"sizes\.npz: 'size' sums to 4 hits but 'data' holds 5"):
        read_tpcpp(tmp_path / "sizes.npz")
    np.savez(tmp_path / "ok.npz", data=np.zeros((4, 4)), size=np.array([2, 2]))
    with pytest.raises(IndexError, match=r"ok\.npz: events \[7\] out of range"):
        read_tpcpp(tmp_path / "ok.npz", [7])
    unlabelled = read_tpcpp(tmp_path / "ok.npz")
    assert len(unlabelled) == 2 and unlabelled[0].instance is None


def test_cli_simulate_info_display(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tpc.npz"
    main(["simulate", "--detector", "collider-tpc", "--events", "4", "--out", str(out)])
    main(["info", str(out)])
    text = capsys.readouterr().out
    assert "collider TPC" in text and "coordinates in cm" in text and "pion" in text
    main(["display", str(out), "--event", "1", "--out", str(tmp_path / "d.png")])
    assert (tmp_path / "d.png").stat().st_size > 10_000
    with pytest.raises(SystemExit):
        main(["simulate", "--detector", "collider-tpc", "--out", str(tmp_path / "x.h5")])
    with pytest.raises(ConfigError):
        from nufm.cli import simulate

        simulate(detector="collider-tpc", out=tmp_path / "x.h5", events=1)


def test_display_colours_by_every_label(tmp_path: Path) -> None:
    (ev,) = list(generate_collider_events(1, seed=7))
    for color in ("segment", "instance", "interaction", "energy"):
        fig = display_tpc_event(ev, color=color)
        assert len(fig.axes) == 2
        save_figure(fig, tmp_path / f"{color}.png")
    with pytest.raises(ValueError, match="color must be one of"):
        display_tpc_event(ev, color="pid")
