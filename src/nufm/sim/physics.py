"""Liquid-argon physics formulas used by the simulator (numba-compiled scalar functions).

Owns: material constants, Bethe-Bloch mean and restricted stopping power with the Sternheimer
density effect, CSDA range tables, Highland multiple scattering, Klein-Nishina Compton
sampling, pair-production and Compton attenuation, the Michel spectrum, the Longo shower profile.
Formulas follow the PDG Review "Passage of particles through matter" (Workman et al., PTEP 2022
083C01, ch. 34), the Michel spectrum (Michel 1950), the Klein-Nishina sampling of Butcher and
Messel (Nucl. Phys. 20 (1960) 15) and the longitudinal shower profile of Longo and Sestili
(NIM 128 (1975) 283). Re-implemented from the formulas; simulator design context:
PILArNet (arXiv:2006.01993).

Units: MeV, cm, g/cm^3; kinetic energies unless stated.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

# --- material: liquid argon (PDG atomic and nuclear properties) --------------------------------
Z_OVER_A = 18.0 / 39.948
"""Z/A of argon, mol/g."""
I_MEV = 188.0e-6
"""Mean excitation energy, MeV."""
DENSITY = 1.396
"""Liquid-argon density, g/cm^3."""
X0_CM = 14.0
"""Radiation length, cm."""
CRITICAL_ENERGY_MEV = 32.0
"""Critical energy (Rossi definition) for electrons, MeV."""
MOLIERE_CM = 9.0
"""Moliere radius, cm."""
K_BETHE = 0.307075
"""4 pi N_A r_e^2 m_e c^2, MeV cm^2 / mol."""
ME = 0.51099895
"""Electron mass, MeV."""
MMU = 105.6584
MPI = 139.5704
MP = 938.2721
MICHEL_ENDPOINT_MEV = 52.83
"""Michel endpoint (m_mu / 2 less the electron mass correction), MeV."""
R_E_CM = 2.8179403e-13
"""Classical electron radius, cm."""
N_ELECTRON_PER_CM3 = DENSITY * 6.02214076e23 * Z_OVER_A
"""Electron density of LAr, 1/cm^3."""
# Sternheimer density-effect parameters for liquid argon (PDG table).
_STERN_X0, _STERN_X1, _STERN_A, _STERN_K, _STERN_CBAR = 0.2, 3.0, 0.19559, 3.0, 5.2146
_LN10 = math.log(10.0)
_PAIR_LOG_E = np.log(np.array([1.022, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0, 1.0e5]))
_PAIR_FRACTION = np.array([0.0, 0.02, 0.15, 0.29, 0.45, 0.63, 0.74, 0.93, 1.0])


@numba.njit(cache=True)
def density_effect(beta_gamma: float) -> float:
    """Sternheimer density-effect correction delta(beta gamma) for LAr (dimensionless)."""
    if beta_gamma <= 0.0:
        return 0.0
    x = math.log10(beta_gamma)
    if x >= _STERN_X1:
        return 2.0 * _LN10 * x - _STERN_CBAR
    if x >= _STERN_X0:
        return 2.0 * _LN10 * x - _STERN_CBAR + _STERN_A * (_STERN_X1 - x) ** _STERN_K
    return 0.0


@numba.njit(cache=True)
def dedx_bethe(ke: float, mass: float, tcut: float) -> float:
    """Mean (tcut <= 0) or restricted (energy transfers < tcut) collision stopping power.

    Args:
        ke: kinetic energy, MeV.
        mass: particle mass, MeV (charge 1).
        tcut: restriction on the delta-ray energy, MeV; <= 0 for the full Bethe-Bloch value.

    Returns:
        -dE/dx in MeV/cm for liquid argon. Below beta*gamma = 0.05 the value at 0.05 is used
        (the formula is invalid there; such particles stop within a step).
    """
    bg_min = 0.05
    gamma = 1.0 + ke / mass
    bg2 = gamma * gamma - 1.0
    if bg2 < bg_min * bg_min:
        bg2 = bg_min * bg_min
        gamma = math.sqrt(1.0 + bg2)
    beta2 = bg2 / (gamma * gamma)
    ratio = ME / mass
    wmax = 2.0 * ME * bg2 / (1.0 + 2.0 * gamma * ratio + ratio * ratio)
    delta = density_effect(math.sqrt(bg2))
    if 0.0 < tcut < wmax:
        bracket = (
            0.5 * math.log(2.0 * ME * bg2 * tcut / (I_MEV * I_MEV))
            - 0.5 * beta2 * (1.0 + tcut / wmax)
            - 0.5 * delta
        )
    else:
        bracket = 0.5 * math.log(2.0 * ME * bg2 * wmax / (I_MEV * I_MEV)) - beta2 - 0.5 * delta
    return max(K_BETHE * Z_OVER_A * DENSITY / beta2 * bracket, 0.0)


@numba.njit(cache=True)
def max_energy_transfer(ke: float, mass: float) -> float:
    """W_max, the largest kinetic energy given to a free electron in one collision, MeV."""
    gamma = 1.0 + ke / mass
    bg2 = gamma * gamma - 1.0
    ratio = ME / mass
    return 2.0 * ME * bg2 / (1.0 + 2.0 * gamma * ratio + ratio * ratio)


@numba.njit(cache=True)
def highland_step_sigma(ke: float, mass: float, step_cm: float) -> float:
    """Plane-projected MCS angle sigma (rad) over one step, Highland without the log term.

    theta0 = 13.6 MeV / (beta c p) * sqrt(x / X0). The logarithmic term of the Highland formula
    is dropped per step because it does not compose over many small steps (it is zero at
    x = X0, so the scattering over one radiation length is reproduced).
    """
    p = math.sqrt(ke * (ke + 2.0 * mass))
    beta = p / (ke + mass)
    return 13.6 / (beta * p) * math.sqrt(step_cm / X0_CM)


@numba.njit(cache=True)
def compton_attenuation(e_mev: float) -> float:
    """Compton attenuation coefficient (Klein-Nishina per electron x n_e), 1/cm."""
    k = e_mev / ME
    a = 1.0 + 2.0 * k
    lg = math.log(a)
    sigma = (
        2.0
        * math.pi
        * R_E_CM
        * R_E_CM
        * (
            (1.0 + k) / (k * k) * (2.0 * (1.0 + k) / a - lg / k)
            + lg / (2.0 * k)
            - (1.0 + 3.0 * k) / (a * a)
        )
    )
    return sigma * N_ELECTRON_PER_CM3


@numba.njit(cache=True)
def pair_attenuation(e_mev: float) -> float:
    """Pair-production attenuation coefficient, 1/cm: (7/9)/X0 times an energy-dependent
    fraction that rises from 0 at threshold (2 m_e) to 1 at high energy. The fraction is an
    approximation (not a fit) of the screened Bethe-Heitler energy dependence for argon,
    where complete screening needs E >> 137 m_e Z^(-1/3) ~ 27 MeV: 0.15 at 5 MeV, 0.29 at
    10 MeV, 0.45 at 20 MeV, 0.74 at 100 MeV, 0.93 at 1 GeV."""
    if e_mev <= 2.0 * ME:
        return 0.0
    frac = np.interp(math.log(e_mev), _PAIR_LOG_E, _PAIR_FRACTION)
    return frac * 7.0 / 9.0 / X0_CM


@numba.njit(cache=True)
def sample_compton(e_mev: float) -> tuple[float, float]:
    """Sample a Compton scatter off a free electron (Klein-Nishina, Butcher-Messel method).

    Returns:
        (eps, cos_theta): scattered-photon energy fraction E'/E and the photon's polar angle.
    """
    k = e_mev / ME
    eps0 = 1.0 / (1.0 + 2.0 * k)
    a1 = -math.log(eps0)
    a2 = 0.5 * (1.0 - eps0 * eps0)
    while True:
        if np.random.random() * (a1 + a2) < a1:
            eps = math.exp(-a1 * np.random.random())
        else:
            eps = math.sqrt(eps0 * eps0 + (1.0 - eps0 * eps0) * np.random.random())
        t = (1.0 - eps) / (k * eps)
        sin2 = t * (2.0 - t)
        g = 1.0 - eps * sin2 / (1.0 + eps * eps)
        if np.random.random() < g:
            return eps, 1.0 - t


@numba.njit(cache=True)
def sample_michel_energy() -> float:
    """Michel electron energy, MeV: x = E / E_max with density x^2 (3 - 2x) on [0, 1]."""
    while True:
        x = np.random.random()
        if np.random.random() < x * x * (3.0 - 2.0 * x):
            return x * MICHEL_ENDPOINT_MEV


def bethe_ratio(beta_gamma: np.ndarray | float, i_ev: float) -> np.ndarray:
    """Mean dE/dx relative to its value at beta gamma = 3.5 (about the minimum), from the
    Bethe-Bloch formula without density correction, for any material of mean excitation
    energy ``i_ev`` (eV): ``(ln(2 m_e c^2 (beta gamma)^2 / I) - beta^2) / beta^2``. Used by the
    collider-TPC (gas) and water Cherenkov simulators; the LArTPC uses :func:`dedx_bethe`.

    Below the formula's maximum (the Bragg peak, beta gamma = sqrt(e I / (2 m_e c^2)) when
    beta << 1: 0.022 in the TPC gas) the formula fails (it turns negative below
    sqrt(I / (2 m_e c^2))), so a slower particle gets the peak value: positive, continuous."""

    def f(bg: np.ndarray) -> np.ndarray:
        b2 = bg**2 / (1 + bg**2)
        return (np.log(2 * 0.511e6 * bg**2 / i_ev) - b2) / b2

    peak = math.sqrt(math.e * i_ev / (2 * 0.511e6))
    bg = np.maximum(np.asarray(beta_gamma, np.float64), peak)
    return f(bg) / f(np.array(3.5))


def michel_pdf(x: np.ndarray) -> np.ndarray:
    """Normalised Michel density in x = E / E_max: 2 x^2 (3 - 2 x) on [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    return np.where((x >= 0) & (x <= 1), 2.0 * x * x * (3.0 - 2.0 * x), 0.0)


@lru_cache(maxsize=16)
def csda_range_table(
    mass: float, ke_max: float = 1.0e5, n: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """CSDA range by integrating 1 / (dE/dx) of the full Bethe-Bloch formula.

    Args:
        mass: particle mass, MeV.
        ke_max: largest kinetic energy of the table, MeV.
        n: number of log-spaced points.

    Returns:
        (ke (n,) MeV, range (n,) cm), range increasing with ke. The range below the first
        point (1e-3 of the mass) is approximated as ke / (dE/dx).
    """
    ke = np.geomspace(1.0e-3 * mass, ke_max, n)
    dedx = np.array([dedx_bethe(float(t), mass, 0.0) for t in ke])
    inv = 1.0 / dedx
    seg = 0.5 * (inv[1:] + inv[:-1]) * np.diff(ke)
    rng = np.concatenate([[ke[0] * inv[0]], ke[0] * inv[0] + np.cumsum(seg)])
    return ke, rng


def csda_range_cm(ke: np.ndarray | float, mass: float) -> np.ndarray:
    """CSDA range in LAr for kinetic energy ``ke`` (MeV) of a particle of ``mass`` (MeV), cm."""
    tk, tr = csda_range_table(float(mass))
    return np.exp(np.interp(np.log(np.asarray(ke, np.float64)), np.log(tk), np.log(tr)))


def longo_profile(t: np.ndarray, energy_mev: float, is_photon: bool) -> np.ndarray:
    """Longitudinal shower profile (1/E) dE/dt in units of 1/X0 (Gamma-function form).

    dE/dt = E b (b t)^(a-1) exp(-b t) / Gamma(a), with b = 0.5 and a from
    t_max = (a - 1) / b = ln(E / E_c) + C, C = -0.5 (electron), +0.5 (photon).
    """
    from scipy.special import gamma as gamma_fn

    b = 0.5
    t_max = shower_tmax(energy_mev, is_photon)
    a = b * t_max + 1.0
    t = np.asarray(t, np.float64)
    return b * (b * t) ** (a - 1.0) * np.exp(-b * t) / gamma_fn(a)


def shower_tmax(
    energy_mev: float, is_photon: bool, critical_mev: float = CRITICAL_ENERGY_MEV
) -> float:
    """Depth of the shower maximum in radiation lengths: ln(E / E_c) + C_j (C = -0.5 e, +0.5 g);
    E_c the medium's critical energy (argon's by default)."""
    return math.log(energy_mev / critical_mev) + (0.5 if is_photon else -0.5)


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` (..., 3) scaled to unit length along its last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def perpendicular(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to each unit row of d (S, 3) and to each other."""
    a = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = unit(np.cross(d, a))
    return u, np.cross(d, u)


def rotate_about(d: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Directions at polar angle theta, azimuth phi around each unit row of d (S, 3)."""
    u, v = perpendicular(d)
    return (
        d * np.cos(theta)[:, None]
        + (u * np.cos(phi)[:, None] + v * np.sin(phi)[:, None]) * np.sin(theta)[:, None]
    )
