"""Charged-current interactions on a nucleon at rest (nufm.sim.nu_interactions) and the water
Cherenkov numu / nue CC events built on them."""

from __future__ import annotations

import numpy as np
import pytest

from nufm.sim.nu_interactions import (
    M_A,
    M_N,
    M_P,
    cc_interaction,
    ccqe_energy,
    ccqe_threshold,
)
from nufm.sim.water_cherenkov import BEAM_DIRECTION, generate_wc_cc_events


@pytest.mark.parametrize("flavour", ["numu", "nue"])
@pytest.mark.parametrize("channel", ["ccqe", "cc1pi"])
def test_four_momentum_is_conserved(flavour: str, channel: str) -> None:
    rng = np.random.default_rng(3)
    direction = np.array([0.3, -0.4, 0.866])
    beam = direction / np.linalg.norm(direction)
    for e_nu in (400.0, 900.0, 2500.0):
        fs = cc_interaction(flavour, e_nu, rng, channel, direction)  # type: ignore[arg-type]
        assert fs is not None
        target = M_N if channel == "ccqe" else M_P
        assert fs.energy.sum() == pytest.approx(e_nu + target, rel=1e-12)
        np.testing.assert_allclose(fs.momentum.sum(0), e_nu * beam, atol=1e-7)
        mass2 = fs.energy**2 - (fs.momentum**2).sum(1)
        np.testing.assert_allclose(np.sqrt(np.maximum(mass2, 0)), fs.masses, rtol=1e-6, atol=1e-4)
        assert fs.names[0] == ("mu-" if flavour == "numu" else "e-")
        assert fs.names[1:] == (("p",) if channel == "ccqe" else ("p", "pi+"))


def test_the_ccqe_energy_formula_recovers_the_neutrino_energy_exactly() -> None:
    rng = np.random.default_rng(0)
    for flavour, m_l in (("numu", 105.658), ("nue", 0.511)):
        for e_nu in rng.uniform(200, 3000, 50):
            fs = cc_interaction(flavour, float(e_nu), rng, "ccqe")  # type: ignore[arg-type]
            assert fs is not None
            p = fs.momentum[0]
            cos = p[2] / np.linalg.norm(p)  # beam along +z
            e_rec = ccqe_energy(fs.energy[0], float(np.linalg.norm(p)), float(cos), m_l)
            assert e_rec == pytest.approx(e_nu, rel=1e-9)


def test_q2_follows_the_dipole_shape_and_the_delta_peaks_at_1232() -> None:
    rng = np.random.default_rng(1)
    q2, w = [], []
    for _ in range(20_000):
        fs = cc_interaction("numu", 5000.0, rng, "ccqe")
        assert fs is not None
        e_l, p = fs.energy[0], fs.momentum[0]
        q2.append(2 * 5000.0 * (e_l - p[2]) - fs.masses[0] ** 2)
    # density 3 (1 + x)^-4 in x = Q^2 / M_A^2 has mean 1/2 (the kinematic limit at 5 GeV cuts
    # x > 8.9, 0.1 % of the mass, about -0.015 on the mean)
    assert np.mean(q2) / M_A**2 == pytest.approx(0.5, abs=0.04)
    assert np.median(q2) / M_A**2 == pytest.approx(2 ** (1 / 3) - 1, abs=0.02)
    for _ in range(3000):
        fs = cc_interaction("numu", 2000.0, rng, "cc1pi")
        assert fs is not None
        e, p = fs.energy[1:].sum(), fs.momentum[1:].sum(0)
        w.append(np.sqrt(e**2 - p @ p))
    assert min(w) >= 1080 and max(w) <= 1400
    assert np.median(w) == pytest.approx(1232, abs=15)


def test_thresholds() -> None:
    assert ccqe_threshold("numu") == pytest.approx(110.16, abs=0.01)
    assert ccqe_threshold("nue") == 0.0
    rng = np.random.default_rng(0)
    assert cc_interaction("numu", 105.0, rng, "ccqe") is None
    assert cc_interaction("numu", 300.0, rng, "cc1pi") is None  # below the Delta
    with pytest.raises(ValueError, match="flavour"):
        cc_interaction("nutau", 1000.0, rng)  # type: ignore[arg-type]


@pytest.mark.parametrize(("flavour", "label"), [("numu", 2), ("nue", 1)])
def test_water_cherenkov_cc_events(flavour: str, label: int) -> None:
    events = list(generate_wc_cc_events(8, seed=4, flavour=flavour, cc1pi_fraction=0.5))  # type: ignore[arg-type]
    again = list(generate_wc_cc_events(8, seed=4, flavour=flavour, cc1pi_fraction=0.5))  # type: ignore[arg-type]
    assert all(np.array_equal(a.energy, b.energy) for a, b in zip(events, again, strict=True))
    for ev in events:
        assert ev.meta["wc_label"] == label and 300 <= ev.meta["nu_energy"] <= 2000
        t = ev.particles
        assert t is not None
        primary = t.is_primary
        assert t.pdg[primary].tolist()[:2] == [13 if flavour == "numu" else 11, 2212]
        assert t.pdg[primary].tolist()[2:] == ([211] if ev.meta["cc1pi"] else [])
        # the primaries carry the neutrino's momentum (GeV/c in the table, float32)
        total = t.momentum[primary].sum(0).astype(np.float64) * 1000.0
        np.testing.assert_allclose(total, ev.meta["nu_energy"] * BEAM_DIRECTION, atol=0.05)
        assert len(ev) > 0
    assert {ev.meta["cc1pi"] for ev in events} == {0, 1}
