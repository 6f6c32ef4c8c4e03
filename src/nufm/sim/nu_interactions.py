"""Charged-current neutrino interactions on a nucleon at rest: the final-state particles of
numu / nue CC-like events for the fast simulators (a stand-in for a neutrino-interaction
generator such as NEUT or GENIE, which nufm does not ship).

Two channels, exact relativistic two-body kinematics, no nuclear effects (no Fermi motion,
binding or final-state interactions), which is what makes the sample easy to check:

* quasi-elastic (CCQE): nu + n -> l- + p, with Q^2 drawn from the dipole axial form factor
  shape (1 + Q^2 / M_A^2)^-4, M_A = 1.03 GeV (Llewellyn Smith, Phys. Rep. 3 (1972) 261; the
  value of the MiniBooNE-era fits);
* single pion through the Delta (CC1pi): nu + p -> l- + Delta++ -> l- + p + pi+, with the
  Delta's mass from a Breit-Wigner (1232 MeV, width 117 MeV) cut to [1080, 1400] MeV, Q^2
  from the same dipole shape, and an isotropic decay in the Delta's rest frame.

With the target at rest, the CCQE neutrino energy follows from the lepton alone,
E = (2 M_n E_l - m_l^2 - M_n^2 + M_p^2) / (2 (M_n - E_l + p_l cos(theta))), the formula
water Cherenkov analyses use; here it is exact, which the tests check.

Owns :class:`FinalState` and :func:`cc_interaction`. Energies in MeV; the neutrino comes
along ``direction``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

M_N = 939.565  # neutron, MeV
M_P = 938.272  # proton
M_PI = 139.570  # charged pion
M_DELTA, W_DELTA = 1232.0, 117.0
M_A = 1030.0  # axial mass, MeV
LEPTON = {"numu": ("mu-", 105.658), "nue": ("e-", 0.511)}
"""Flavour -> (charged lepton, its mass in MeV)."""
CHANNELS = ("ccqe", "cc1pi")


@dataclass(frozen=True)
class FinalState:
    """The outgoing particles of one interaction.

    Attributes:
        channel: 'ccqe' or 'cc1pi'.
        nu_energy: MeV.
        names: particle names (``nufm.sim.water_cherenkov.PARTICLES`` plus 'p').
        energy: (P,) total energies, MeV.
        momentum: (P, 3) momenta, MeV/c.
        masses: (P,) MeV.
    """

    channel: str
    nu_energy: float
    names: tuple[str, ...]
    energy: np.ndarray
    momentum: np.ndarray
    masses: np.ndarray

    @property
    def kinetic(self) -> np.ndarray:
        """(P,) kinetic energies, MeV."""
        return self.energy - self.masses


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An orthonormal frame whose third vector is ``axis`` (unit)."""
    a = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(a, u), a


def _two_body(
    e_nu: float, target: float, lepton_mass: float, recoil: float, rng: np.random.Generator
) -> tuple[float, float, float] | None:
    """nu (e_nu, along z) + target at rest -> lepton + recoil of mass ``recoil``: (lepton
    energy, its momentum, cos theta) with Q^2 from the dipole shape; None when the recoil is
    too heavy for this energy."""
    s = target * target + 2 * target * e_nu
    if math.sqrt(s) <= lepton_mass + recoil:
        return None
    for _ in range(1000):
        # Q^2 with density (1 + Q^2/M_A^2)^-4 on [0, inf): inverse transform of its CDF
        q2 = M_A * M_A * ((1 - rng.uniform()) ** (-1 / 3) - 1)
        e_l = e_nu - (q2 + recoil * recoil - target * target) / (2 * target)
        if e_l <= lepton_mass:
            continue
        p_l = math.sqrt(e_l * e_l - lepton_mass * lepton_mass)
        cos = (2 * e_nu * e_l - lepton_mass * lepton_mass - q2) / (2 * e_nu * p_l)
        if -1.0 <= cos <= 1.0:
            return e_l, p_l, cos
    return None


def cc_interaction(
    flavour: Literal["numu", "nue"],
    e_nu: float,
    rng: np.random.Generator,
    channel: Literal["ccqe", "cc1pi"] = "ccqe",
    direction: np.ndarray | None = None,
) -> FinalState | None:
    """One CC interaction of a neutrino of ``e_nu`` MeV along ``direction`` (default +z) on
    a nucleon at rest; None below the channel's threshold.

    Raises:
        ValueError: an unknown flavour or channel.
    """
    if flavour not in LEPTON:
        raise ValueError(f"cc_interaction: flavour must be numu or nue, got {flavour!r}")
    if channel not in CHANNELS:
        raise ValueError(f"cc_interaction: channel must be one of {CHANNELS}, got {channel!r}")
    lepton, m_l = LEPTON[flavour]
    u, v, w = _frame(np.array([0.0, 0.0, 1.0]) if direction is None else direction)
    if channel == "ccqe":
        target, recoil = M_N, M_P
    else:
        target = M_P
        recoil = 0.0
        while not 1080.0 <= recoil <= 1400.0:  # Breit-Wigner, cut
            recoil = M_DELTA + 0.5 * W_DELTA * math.tan(math.pi * (rng.uniform() - 0.5))
    lep = _two_body(e_nu, target, m_l, recoil, rng)
    if lep is None:
        return None
    e_l, p_l, cos = lep
    sin = math.sqrt(max(1 - cos * cos, 0.0))
    phi = rng.uniform(0, 2 * math.pi)
    p_lep = p_l * (sin * math.cos(phi) * u + sin * math.sin(phi) * v + cos * w)  # (3,)
    p_rec = e_nu * w - p_lep
    e_rec = e_nu + target - e_l
    if channel == "ccqe":
        names, masses = (lepton, "p"), (m_l, M_P)
        energies, moms = [e_l, e_rec], [p_lep, p_rec]
    else:  # Delta++ -> p pi+, isotropic in its rest frame, boosted
        p_star = math.sqrt((recoil**2 - (M_P + M_PI) ** 2) * (recoil**2 - (M_P - M_PI) ** 2))
        p_star /= 2 * recoil
        c = rng.uniform(-1, 1)
        a = rng.uniform(0, 2 * math.pi)
        k = p_star * np.array(
            [math.sqrt(1 - c * c) * math.cos(a), math.sqrt(1 - c * c) * math.sin(a), c]
        )
        beta = p_rec / e_rec
        gamma = e_rec / recoil
        b2 = float(beta @ beta)
        out_e, out_p = [], []
        for sign, m in ((1.0, M_P), (-1.0, M_PI)):
            q = sign * k
            e = math.sqrt(m * m + p_star * p_star)
            bq = float(beta @ q)
            out_p.append(q + ((gamma - 1) * bq / b2 + gamma * e) * beta if b2 > 0 else q)
            out_e.append(gamma * (e + bq))
        names, masses = (lepton, "p", "pi+"), (m_l, M_P, M_PI)
        energies, moms = [e_l, *out_e], [p_lep, *out_p]
    return FinalState(
        channel=channel,
        nu_energy=e_nu,
        names=names,
        energy=np.array(energies),
        momentum=np.array(moms),
        masses=np.array(masses),
    )


def ccqe_energy(
    lepton_energy: float, lepton_momentum: float, cos: float, lepton_mass: float
) -> float:
    """The CCQE neutrino energy from the lepton (target neutron at rest), MeV."""
    num = 2 * M_N * lepton_energy - lepton_mass**2 - M_N**2 + M_P**2
    return num / (2 * (M_N - lepton_energy + lepton_momentum * cos))


def ccqe_threshold(flavour: Literal["numu", "nue"]) -> float:
    """The smallest neutrino energy of a CCQE interaction on a neutron at rest, MeV."""
    m_l = LEPTON[flavour][1]
    return max(((m_l + M_P) ** 2 - M_N**2) / (2 * M_N), 0.0)  # nue: M_p + m_e < M_n
