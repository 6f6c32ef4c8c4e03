"""Physics formulas of the simulator against tabulated and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from nufm.sim.physics import (
    MICHEL_ENDPOINT_MEV,
    MMU,
    MP,
    compton_attenuation,
    csda_range_cm,
    dedx_bethe,
    longo_profile,
    michel_pdf,
    shower_tmax,
)
from nufm.sim.plots import PDG_MUON_CSDA


def test_muon_minimum_ionization_is_pdg_value() -> None:
    # PDG liquid-argon table: minimum ionization 1.508 MeV cm^2/g -> 2.105 MeV/cm
    ke = np.geomspace(50.0, 5000.0, 400)
    dedx = np.array([dedx_bethe(float(t), MMU, 0.0) for t in ke])
    assert dedx.min() == pytest.approx(2.105, rel=0.02)
    # minimum near beta*gamma ~ 3.5 (KE ~ 260 MeV for a muon)
    assert 150.0 < ke[dedx.argmin()] < 450.0


def test_restricted_loss_is_below_mean_and_tends_to_it() -> None:
    full = dedx_bethe(300.0, MMU, 0.0)
    assert dedx_bethe(300.0, MMU, 1.0) < dedx_bethe(300.0, MMU, 3.0) < full
    # a cut above W_max is the unrestricted formula
    assert dedx_bethe(300.0, MMU, 1.0e4) == pytest.approx(full)


def test_muon_csda_range_matches_pdg_table() -> None:
    ke, rng_gcm2 = PDG_MUON_CSDA
    ours = csda_range_cm(ke, MMU)
    np.testing.assert_allclose(ours, rng_gcm2 / 1.396, rtol=0.02)


def test_proton_csda_range_100_mev() -> None:
    # NIST PSTAR (argon): 100 MeV proton CSDA range ~ 10.75 g/cm^2 = 7.7 cm in LAr
    assert float(csda_range_cm(100.0, MP)) == pytest.approx(7.7, rel=0.05)


def test_compton_attenuation_at_1_mev() -> None:
    # Klein-Nishina sigma(1 MeV) = 0.2112 b per electron; n_e(LAr) = 3.788e23 / cm^3
    assert compton_attenuation(1.0) == pytest.approx(0.2112e-24 * 3.788e23, rel=0.01)


def test_michel_pdf_normalised_with_mean_0p7() -> None:
    x = np.linspace(0.0, 1.0, 20001)
    pdf = michel_pdf(x)
    assert np.trapezoid(pdf, x) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(x * pdf, x) == pytest.approx(0.7, abs=1e-6)  # 2 (3/4 - 2/5)
    assert pytest.approx(52.8, abs=0.05) == MICHEL_ENDPOINT_MEV


def test_longo_profile_peaks_at_tmax_and_is_normalised() -> None:
    t = np.linspace(0.0, 40.0, 40001)
    for pdg_is_photon in (False, True):
        prof = longo_profile(t, 1000.0, pdg_is_photon)
        assert np.trapezoid(prof, t) == pytest.approx(1.0, abs=1e-4)
        assert t[prof.argmax()] == pytest.approx(shower_tmax(1000.0, pdg_is_photon), abs=1e-3)
    assert shower_tmax(1000.0, False) == pytest.approx(np.log(1000.0 / 32.0) - 0.5)


def test_bethe_ratio_is_one_at_the_reference_point_and_rises_when_slow() -> None:
    from nufm.sim.physics import bethe_ratio

    for i_ev in (75.0, 150.0):
        assert float(bethe_ratio(3.5, i_ev)) == 1.0
        bg = np.array([0.3, 1.0, 3.5])
        b2 = bg**2 / (1 + bg**2)
        f = (np.log(2 * 0.511e6 * bg**2 / i_ev) - b2) / b2  # the formula by hand
        np.testing.assert_allclose(bethe_ratio(bg, i_ev), f / f[2])
        assert bethe_ratio(0.3, i_ev) > 5


def test_bethe_ratio_is_held_at_the_bragg_peak_below_it() -> None:
    """The formula turns negative below beta gamma = sqrt(I / 2 m_e c^2) (a slow proton of a
    collider-TPC event got -2e5 keV hits, seed 21 event 1252); below the peak at
    sqrt(e I / 2 m_e c^2) the ratio is the peak's: positive, continuous, largest there."""
    from nufm.sim.collider_tpc import ColliderTPCConfig, simulate_collider_event
    from nufm.sim.physics import bethe_ratio

    for i_ev in (75.0, 150.0):
        peak = np.sqrt(np.e * i_ev / (2 * 0.511e6))
        bg = np.logspace(-5, 2, 400)
        r = bethe_ratio(bg, i_ev)
        assert (r > 0).all() and r.max() == pytest.approx(float(bethe_ratio(peak, i_ev)))
        assert (r[bg <= peak] == r.max()).all()  # held below the peak
        falling = (bg > peak) & (bg < 3.0)
        assert (np.diff(r[falling]) < 0).all()  # falls from the peak to the minimum region
        f_peak = (np.log(np.e) - peak**2 / (1 + peak**2)) / (peak**2 / (1 + peak**2))
        b2 = 3.5**2 / (1 + 3.5**2)
        f_ref = (np.log(2 * 0.511e6 * 3.5**2 / i_ev) - b2) / b2
        assert float(bethe_ratio(1e-4, i_ev)) == pytest.approx(f_peak / f_ref)
    # the event of generate_collider_events(n, seed=21) that had the negative charges
    rng = np.random.default_rng((21, 1252, 0xC011))
    event = simulate_collider_event(ColliderTPCConfig(), rng, event_id=1252)
    assert len(event) > 1000 and (event.energy > 0).all()
