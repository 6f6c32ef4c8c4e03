"""Water Cherenkov event truth: Cherenkov thresholds, labels and ring counts on hand-made
particle tables, and the same truth from the simulator and from its WatChMaL file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nufm.data.event import Particles
from nufm.data.watchmal import iter_watchmal, write_watchmal
from nufm.data.water_cherenkov import cherenkov_threshold, event_truth
from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions


def _table(rows: list[tuple[int, float, bool, int]]) -> Particles:
    """rows: (pdg, momentum GeV/c along x, primary, parent)."""
    n = len(rows)
    return Particles(
        id=np.arange(n, dtype=np.int64),
        pdg=np.array([r[0] for r in rows], np.int64),
        momentum=np.array([[r[1], 0.0, 0.0] for r in rows], np.float32),
        start=np.zeros((n, 3), np.float32),
        is_primary=np.array([r[2] for r in rows]),
        interaction=np.zeros(n, np.int64),
        parent=np.array([r[3] for r in rows], np.int64),
    )


def test_cherenkov_thresholds_in_water() -> None:
    # the numbers: e 0.26, mu 54.6, charged pi 72 MeV
    assert cherenkov_threshold(0.511) == pytest.approx(0.264, abs=0.001)
    assert cherenkov_threshold(105.66) == pytest.approx(54.6, abs=0.1)
    assert cherenkov_threshold(139.57) == pytest.approx(72.1, abs=0.1)


def test_truth_of_hand_made_events() -> None:
    # pi0 with a 50 MeV and a 5 MeV photon: one visible ring (photons >= 10 MeV count)
    pi0 = _table([(111, 0.1, True, -1), (22, 0.05, False, 0), (22, 0.005, False, 0)])
    truth = event_truth(pi0)
    assert truth["wc_label"] == 3 and truth["n_rings"] == 1
    m = 134.98
    assert truth["primary_energy"] == pytest.approx(np.hypot(100.0, m) - m, rel=1e-5)
    # a muon 10 MeV below threshold makes no ring; its decay electron is not counted
    p_mu = np.sqrt((54.6 - 10 + 105.66) ** 2 - 105.66**2) / 1000
    mu = _table([(13, p_mu, True, -1), (11, 0.03, False, 0)])
    assert event_truth(mu) == pytest.approx(
        {"wc_label": 2, "n_rings": 0, "primary_energy": 44.6}, abs=1e-3
    )
    # e + mu + pi+ from one vertex, all above threshold: three rings, labelled by the first
    multi = _table([(11, 0.2, True, -1), (13, 0.3, True, -1), (211, 0.4, True, -1)])
    assert event_truth(multi)["n_rings"] == 3 and event_truth(multi)["wc_label"] == 1
    assert event_truth(None) == {} and event_truth(Particles.empty()) == {}


def test_simulator_and_file_give_the_same_truth(tmp_path: Path) -> None:
    cfg = WaterCherenkovConfig()
    names = ("e-", "mu-", "pi0", "pi+")
    events = list(generate_wc_events(12, 3, names, (150.0, 400.0), cfg, one_of=True))
    # one primary per event, drawn from the list; pi0 gives two rings here
    labels = {1: "e-", 2: "mu-", 3: "pi0", 4: "pi+"}
    for e in events:
        primaries = e.particles.pdg[e.particles.is_primary]
        assert len(primaries) == 1
        assert labels[e.meta["wc_label"]] in names
        assert e.meta["n_rings"] == (2 if e.meta["wc_label"] == 3 else 1)
        assert 150.0 <= e.meta["primary_energy"] <= 400.0 + 1e-3
    assert len({e.meta["wc_label"] for e in events}) >= 3  # a mixture, not one particle
    again = list(generate_wc_events(12, 3, names, (150.0, 400.0), cfg, one_of=True))
    assert [e.meta for e in again] == [e.meta for e in events]
    write_watchmal(tmp_path / "wc.h5", events, pmt_positions(cfg).position)
    for a, b in zip(events, iter_watchmal(tmp_path / "wc.h5"), strict=True):
        for key in ("wc_label", "n_rings"):
            assert b.meta[key] == a.meta[key]
        assert b.meta["primary_energy"] == pytest.approx(a.meta["primary_energy"], rel=1e-5)
