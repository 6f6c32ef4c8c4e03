"""The water Cherenkov simulator against its physics: the PMT layout and coverage, the
Cherenkov angle, photoelectrons per MeV of muons, thresholds, two rings from pi0; the WatChMaL
layout round trip, read with plain h5py, and its bad files; the display."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from nufm.cli import main
from nufm.data.formats import convert, detect_layout, read_any
from nufm.data.pilarnet import DataError, MissingFileError
from nufm.data.watchmal import iter_watchmal, write_watchmal
from nufm.sim.water_cherenkov import (
    WaterCherenkovConfig,
    _expected_pe,
    _Segments,
    generate_wc_events,
    pmt_positions,
    simulate_wc_event,
)
from nufm.viz.display import save_figure
from nufm.viz.display_wc import display_wc_event

CFG = WaterCherenkovConfig()


def test_pmt_layout_and_coverage() -> None:
    pmts = pmt_positions(CFG)
    assert len(pmts.position) == 10_764 and int(pmts.is_barrel.sum()) == 50 * 149
    caps = pmts.position[~pmts.is_barrel]
    assert np.hypot(caps[:, 0], caps[:, 1]).max() < CFG.radius  # the caps fit in the tank
    area = 2 * math.pi * CFG.radius * CFG.height + 2 * math.pi * CFG.radius**2
    coverage = len(pmts.position) * math.pi * CFG.pmt_radius**2 / area
    assert 0.37 < coverage < 0.40  # Super-K: about 38 %
    assert np.allclose(np.linalg.norm(pmts.normal, axis=1), 1)


def test_light_of_a_step_peaks_at_the_cherenkov_angle() -> None:
    """One beta = 1 segment at the centre: the PMT with the most light sits at
    cos(theta) = 1 / n from the direction (41.2 deg), and nothing reaches the back."""
    pmts = pmt_positions(CFG)
    direct_only = replace(CFG, scattered=0.0)
    seg = _Segments()
    d = np.array([[1.0, 0.0, 0.0]])
    seg.add(np.zeros((1, 3)), d, np.array([0.01]), np.array([1.0]), np.zeros(1), 0)
    mu, _, _ = _expected_pe(direct_only, pmts, seg)
    u = pmts.position / np.linalg.norm(pmts.position, axis=1, keepdims=True)
    angle = np.degrees(np.arccos(u @ d[0]))
    weighted = float((angle * mu).sum() / mu.sum())
    assert abs(weighted - math.degrees(math.acos(1 / 1.33))) < 1.0
    assert mu[angle > 90].sum() < 1e-6 * mu.sum()
    # below threshold (beta < 1/n) there is no direct light
    seg2 = _Segments()
    seg2.add(np.zeros((1, 3)), d, np.array([0.01]), np.array([0.7]), np.zeros(1), 0)
    assert _expected_pe(direct_only, pmts, seg2)[0].sum() == 0


def test_photoelectrons_per_mev_of_muons() -> None:
    """About 8 pe per MeV lost above the Cherenkov threshold (Super-K: 6-9 hits / MeV)."""
    ratios = []
    for ev in generate_wc_events(10, seed=1, particle="mu-", energy=(400.0, 400.0)):
        pe = ev.energy[ev.instance == 0].sum()
        ratios.append(pe / (400.0 - 54.6))
    assert 5.0 < float(np.median(ratios)) < 12.0


def test_thresholds_and_decay_electrons() -> None:
    rng = np.random.default_rng(0)
    below = simulate_wc_event(CFG, rng, [("mu-", 40.0)])  # below 54.6 MeV: no ring
    assert (below.instance == 0).sum() == 0
    assert (below.segment[below.instance >= 0] == 1).all()  # only its decay electron shines
    ev = simulate_wc_event(CFG, np.random.default_rng(3), [("mu-", 500.0)])
    assert ev.particles is not None and 11 in ev.particles.pdg.tolist()  # Michel electron
    decay = ev.particles.pdg == 11
    assert (ev.particles.parent[decay] == 0).all()


def test_pi0_gives_two_rings() -> None:
    two = 0
    for ev in generate_wc_events(20, seed=2, particle="pi0", energy=(300.0, 300.0)):
        light = ev.energy[ev.instance >= 0].sum()
        fractions = [ev.energy[ev.instance == k].sum() / light for k in (1, 2)]
        assert ev.particles is not None and list(ev.particles.pdg[1:3]) == [22, 22]
        p = ev.particles.momentum[1:3].astype(float)
        assert abs(np.linalg.norm(p.sum(0)) * 1000 - math.sqrt(434.98**2 - 134.98**2)) < 1.0
        two += min(fractions) > 0.1
    assert two >= 12  # asymmetric decays leave one faint ring


def test_watchmal_round_trip_and_plain_h5py(tmp_path: Path) -> None:
    events = list(generate_wc_events(4, seed=4, particle="e-", energy=(200.0, 500.0)))
    path = tmp_path / "wc.h5"
    assert write_watchmal(path, events, pmt_positions(CFG).position) == 4
    assert detect_layout(path) == "watchmal-h5"
    with h5py.File(path) as f:  # a WatChMaL data set reads it
        idx = np.asarray(f["event_hits_index"])
        assert idx.tolist() == np.cumsum([0] + [len(e) for e in events[:-1]]).tolist()
        assert np.asarray(f["labels"]).tolist() == [1, 1, 1, 1]
        pmt = np.asarray(f["hit_pmt"])[: len(events[0])]
        np.testing.assert_allclose(np.asarray(f["pmt_position"])[pmt], events[0].coord)
    for a, b in zip(events, iter_watchmal(path), strict=True):
        np.testing.assert_allclose(a.coord, b.coord)
        np.testing.assert_array_equal(a.energy, b.energy)
        np.testing.assert_array_equal(a.time, b.time)
        np.testing.assert_array_equal(a.instance, b.instance)
        np.testing.assert_array_equal(a.segment, b.segment)
    (third,) = read_any(path, [2])
    np.testing.assert_array_equal(third.energy, events[2].energy)
    with pytest.raises(DataError, match=r"wc\.h5: watchmal-h5 events are not LArTPC events"):
        convert(path, tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_bad_watchmal_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        list(iter_watchmal(tmp_path / "none.h5"))
    with h5py.File(tmp_path / "part.h5", "w") as f:
        f["event_hits_index"] = np.array([0])
    with pytest.raises(DataError, match=r"part\.h5: not a WatChMaL file"):
        list(iter_watchmal(tmp_path / "part.h5"))
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["event_hits_index"] = np.array([0, 5, 3])
        for k in ("hit_pmt", "hit_time", "hit_charge"):
            f[k] = np.zeros(6)
        f["pmt_position"] = np.zeros((10, 3))
    with pytest.raises(DataError, match=r"bad\.h5: event_hits_index is not increasing"):
        read_any(tmp_path / "bad.h5")


def test_cli_simulate_info_display(tmp_path: Path, capsys) -> None:
    out = tmp_path / "wc.h5"
    args = ["--detector", "water-cherenkov", "--particle", "gamma", "--energy", "100", "300"]
    main(["simulate", *args, "--events", "3", "--out", str(out)])
    main(["info", str(out)])
    assert "water Cherenkov" in capsys.readouterr().out
    for color in ("energy", "segment", "instance"):
        main(
            [
                "display",
                str(out),
                "--event",
                "0",
                "--color",
                color,
                "--out",
                str(tmp_path / f"{color}.png"),
            ]
        )
        assert (tmp_path / f"{color}.png").stat().st_size > 10_000


def test_several_particles_share_one_vertex() -> None:
    (ev,) = list(generate_wc_events(1, seed=6, particle=("mu-", "pi+"), energy=(400.0, 400.0)))
    assert ev.particles is not None
    primaries = ev.particles.is_primary
    assert ev.particles.pdg[primaries].tolist() == [13, 211]
    assert np.allclose(ev.particles.start[primaries], ev.vertices[0])
    assert set(np.unique(ev.instance[ev.instance >= 0])) >= {0, 1}  # both make light


def test_display_time_colouring(tmp_path: Path) -> None:
    (ev,) = list(generate_wc_events(1, seed=5))
    save_figure(display_wc_event(ev, color="time"), tmp_path / "t.png")
    with pytest.raises(ValueError, match="color must be one of"):
        display_wc_event(ev, color="pid")
