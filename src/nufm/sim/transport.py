"""Particle transport through the liquid-argon cube: one numba kernel for a whole event.

Owns the stepping of every particle of an event and the bookkeeping of what it leaves behind:
energy deposits (position, energy, label row), the label table (instance, segment, pid,
interaction) and the particle table of labelled particles (primaries, delta rays, Michel
electrons, hadronic secondaries). Physics formulas come from :mod:`nufm.sim.physics` (PDG
ch. 34); the event content imitates PILArNet (arXiv:2006.01993).

Processes:

* heavy charged particles (mu, pi, p): 1 mm steps, restricted Bethe-Bloch mean loss with
  Moyal (Landau-like) fluctuations, explicit delta rays above ``delta_cut`` (1/T^2), Highland
  MCS, stop at the end of the range (Bragg peak by construction); mu+ and non-captured mu-
  decay to a Michel electron, pi+ -> mu+ (4.1 MeV), pi- and captured mu- give nuclear photons;
  pions and protons interact hadronically after an exponential distance and end in
  secondaries (p, pi, pi0 -> 2 gamma, nuclear photons).
* electrons/positrons: same stepping with the Bethe formula at the electron mass, discrete
  bremsstrahlung photons above ``brem_cut`` (Bethe-Heitler complete-screening spectrum,
  rate from X0), positron annihilation at rest into two 0.511 MeV photons.
* photons: exponential flights with Compton (Klein-Nishina) and pair-production attenuation;
  Compton electrons and pairs continue the cascade. A shower is therefore a branching set of
  short electron pieces separated by photon gaps, not a solid blob.

All randomness comes from numba's generator seeded once per event, so an event is a pure
function of its seed.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nufm.sim.kernel import (
    CDELTA,
    DELTA,
    MICHEL,
    P_BREM_CUT,
    P_CAPTURE,
    P_DELTA_CUT,
    P_E_CUT,
    P_G_CUT,
    P_LAMBDA_P,
    P_LAMBDA_PI,
    P_LED_MAX,
    P_SIZE,
    P_STEP,
    SHOWER,
    STATUS_FULL,
    STATUS_OK,
    TRACK,
    _deposit,
    _deposit_step,
    _fluctuate,
    _inside,
    _isotropic,
    _led_label,
    _mass,
    _new_particle,
    _nuclear_gammas,
    _push,
    _rotate,
)
from nufm.sim.physics import (
    ME,
    X0_CM,
    compton_attenuation,
    dedx_bethe,
    highland_step_sigma,
    max_energy_transfer,
    pair_attenuation,
    sample_compton,
    sample_michel_energy,
)


@numba.njit(cache=True)
def transport(
    stk: np.ndarray,
    dep: np.ndarray,
    lab: np.ndarray,
    par: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    seed: int,
) -> int:
    """Transport every particle on the stack (and all their descendants) to the end.

    Args:
        stk: (S, 10) float64 stack, rows [0, cnt[1]) hold the primaries on entry.
        dep: (M, 8) float64 output deposits (layout in :mod:`nufm.sim.kernel`), filled from
            row cnt[0].
        lab: (L, 4) int64 label table, rows [0, cnt[2]) prefilled for primaries.
        par: (P, 10) float64 particle table, rows [0, cnt[3]) prefilled for primaries.
        cnt: (4,) int64 counters [n_deposits, stack top, n_labels, n_particles].
        led_rows: (I,) int64, -1 everywhere on entry.
        prm: (N_PARAMS,) float64 parameters.
        seed: numba RNG seed.

    Returns:
        STATUS_OK, or STATUS_FULL when an output table ran out of rows (caller grows and reruns).
    """
    np.random.seed(seed)
    while cnt[1] > 0:
        cnt[1] -= 1
        i = cnt[1]
        x, y, z = stk[i, 0], stk[i, 1], stk[i, 2]
        dx, dy, dz = stk[i, 3], stk[i, 4], stk[i, 5]
        ke = stk[i, 6]
        pdg = int(stk[i, 7])
        label = int(stk[i, 8])
        part = int(stk[i, 9])
        interaction = lab[label, 3]
        apdg = abs(pdg)
        if apdg == 22:
            ok = _photon(
                stk, dep, lab, cnt, led_rows, prm, x, y, z, dx, dy, dz, ke, label, interaction
            )
        elif apdg == 11:
            ok = _electron(
                stk, dep, lab, cnt, led_rows, prm, x, y, z, dx, dy, dz, ke, pdg, label, interaction
            )
        else:
            ok = _heavy(
                stk,
                dep,
                lab,
                par,
                cnt,
                led_rows,
                prm,
                x,
                y,
                z,
                dx,
                dy,
                dz,
                ke,
                pdg,
                label,
                part,
                interaction,
            )
        if not ok:
            return STATUS_FULL
    return STATUS_OK


@numba.njit(cache=True)
def _photon(
    stk: np.ndarray,
    dep: np.ndarray,
    lab: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    dx: float,
    dy: float,
    dz: float,
    e: float,
    label: int,
    interaction: int,
) -> bool:
    """Follow a photon through Compton scatters until it converts, is absorbed or leaves."""
    size = prm[P_SIZE]
    is_shower = lab[label, 1] == SHOWER
    while True:
        if e < prm[P_G_CUT]:  # photo-absorption: local deposit
            if _inside(x, y, z, size):
                row = _led_label(lab, cnt, led_rows, interaction)
                if row < 0 or not _deposit(dep, cnt, x, y, z, e, row):
                    return False
            return True
        mu_c = compton_attenuation(e)
        mu_p = pair_attenuation(e)
        dist = np.random.exponential(1.0 / (mu_c + mu_p))
        x, y, z = x + dx * dist, y + dy * dist, z + dz * dist
        if not _inside(x, y, z, size):
            return True  # leaves the volume
        if np.random.random() * (mu_c + mu_p) < mu_p:
            avail = e - 2.0 * ME
            while True:  # Bethe-Heitler sharing: density 1 - 4/3 u (1 - u), rejection
                u = np.random.random()
                if np.random.random() < 1.0 - 4.0 / 3.0 * u * (1.0 - u):
                    break
            for k in range(2):
                t = avail * (u if k == 0 else 1.0 - u)
                th = np.random.normal() * ME / max(e, 1.0)
                ex, ey, ez = _rotate(dx, dy, dz, math.cos(th), 2.0 * math.pi * np.random.random())
                row = _child_label(lab, cnt, led_rows, prm, label, is_shower, t, interaction)
                if row < 0 or not _push(
                    stk, cnt, x, y, z, ex, ey, ez, t, 11 if k == 0 else -11, row, -1
                ):
                    return False
            return True
        eps, cos_g = sample_compton(e)
        t = e * (1.0 - eps)
        phi = 2.0 * math.pi * np.random.random()
        ndx, ndy, ndz = _rotate(dx, dy, dz, cos_g, phi)
        # electron momentum = photon momentum before - after
        pex, pey, pez = e * dx - e * eps * ndx, e * dy - e * eps * ndy, e * dz - e * eps * ndz
        pn = math.sqrt(pex * pex + pey * pey + pez * pez)
        row = _child_label(lab, cnt, led_rows, prm, label, is_shower, t, interaction)
        if row < 0:
            return False
        if t > prm[P_E_CUT] and pn > 0.0:
            if not _push(stk, cnt, x, y, z, pex / pn, pey / pn, pez / pn, t, 11, row, -1):
                return False
        elif not _deposit(dep, cnt, x, y, z, t, row):
            return False
        e *= eps
        dx, dy, dz = ndx, ndy, ndz


@numba.njit(cache=True)
def _child_label(
    lab: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    label: int,
    is_shower: bool,
    t: float,
    interaction: int,
) -> int:
    """Label of an electron set free by a photon: the shower's own label when the photon
    belongs to a shower and the electron is above ``led_max``; else low-energy deposit."""
    if is_shower and t >= prm[P_LED_MAX]:
        return label
    return _led_label(lab, cnt, led_rows, interaction)


@numba.njit(cache=True)
def _brem_rate(e: float, kcut: float) -> float:
    """Photons above kcut emitted per cm: (1/X0) int_{y_c}^1 (4/3 (1 - y) + y^2) / y dy."""
    if e <= kcut:
        return 0.0
    yc = kcut / e
    nu = 4.0 / 3.0 * (-math.log(yc)) - 4.0 / 3.0 * (1.0 - yc) + 0.5 * (1.0 - yc * yc)
    return nu / X0_CM


@numba.njit(cache=True)
def _brem_fraction(yc: float) -> float:
    """Photon energy fraction y in [yc, 1] with density ~ (4/3 (1 - y) + y^2) / y."""
    while True:
        y = yc ** np.random.random()
        if np.random.random() * 4.0 / 3.0 < 4.0 / 3.0 * (1.0 - y) + y * y:
            return y


@numba.njit(cache=True)
def _electron(
    stk: np.ndarray,
    dep: np.ndarray,
    lab: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    dx: float,
    dy: float,
    dz: float,
    ke: float,
    pdg: int,
    label: int,
    interaction: int,
) -> bool:
    """Step an electron/positron to rest or out of the volume, emitting brems photons."""
    size = prm[P_SIZE]
    step = prm[P_STEP]
    kcut = prm[P_BREM_CUT]
    soft_brem = 4.0 / 3.0 * kcut / X0_CM  # MeV/cm radiated below kcut, deposited locally
    rate = _brem_rate(ke, kcut)
    next_brem = np.random.exponential(1.0 / rate) if rate > 0 else 1e30
    travelled = 0.0
    while True:
        if ke < prm[P_E_CUT]:
            if not _deposit(dep, cnt, x, y, z, ke, label):
                return False
            break
        mean = (dedx_bethe(ke, ME, 0.0) + soft_brem) * step
        if mean >= ke:  # last piece of the range
            ln = ke / mean * step
            if not _deposit_step(
                dep,
                cnt,
                x + 0.5 * ln * dx,
                y + 0.5 * ln * dy,
                z + 0.5 * ln * dz,
                ke,
                label,
                0.5 * ln * dx,
                0.5 * ln * dy,
                0.5 * ln * dz,
            ):
                return False
            x, y, z = x + ln * dx, y + ln * dy, z + ln * dz
            ke = 0.0
            break
        loss = _fluctuate(mean, ke, ME, 0.5 * ke, prm)
        mx, my, mz = x + 0.5 * step * dx, y + 0.5 * step * dy, z + 0.5 * step * dz
        if not _inside(mx, my, mz, size):
            return True
        if not _deposit_step(
            dep, cnt, mx, my, mz, loss, label, 0.5 * step * dx, 0.5 * step * dy, 0.5 * step * dz
        ):
            return False
        x, y, z = x + step * dx, y + step * dy, z + step * dz
        ke -= loss
        travelled += step
        if travelled >= next_brem and ke > kcut:
            yfrac = _brem_fraction(kcut / ke)
            k = yfrac * ke
            if not _push(stk, cnt, x, y, z, dx, dy, dz, k, 22, label, -1):
                return False
            ke -= k
            rate = _brem_rate(ke, kcut)
            next_brem = travelled + (np.random.exponential(1.0 / rate) if rate > 0 else 1e30)
        sig = highland_step_sigma(max(ke, 1e-3), ME, step)
        tx, ty = np.random.normal() * sig, np.random.normal() * sig
        th = math.sqrt(tx * tx + ty * ty)
        dx, dy, dz = _rotate(dx, dy, dz, math.cos(min(th, math.pi)), math.atan2(ty, tx))
    if pdg == -11:  # positron annihilation at rest: two back-to-back 0.511 MeV photons
        ux, uy, uz = _isotropic()
        for sgn in (1.0, -1.0):
            if not _push(stk, cnt, x, y, z, sgn * ux, sgn * uy, sgn * uz, ME, 22, label, -1):
                return False
    return True


@numba.njit(cache=True)
def _heavy(
    stk: np.ndarray,
    dep: np.ndarray,
    lab: np.ndarray,
    par: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    dx: float,
    dy: float,
    dz: float,
    ke: float,
    pdg: int,
    label: int,
    part: int,
    interaction: int,
) -> bool:
    """Step a muon, pion or proton until it stops, interacts or leaves the volume."""
    size = prm[P_SIZE]
    step = prm[P_STEP]
    tcut = prm[P_DELTA_CUT]
    mass = _mass(pdg)
    apdg = abs(pdg)
    cdelta = CDELTA  # delta-ray density: CDELTA / beta^2 (1 - beta^2 T / W_max) / T^2
    lam = prm[P_LAMBDA_PI] if apdg == 211 else (prm[P_LAMBDA_P] if apdg == 2212 else 0.0)
    d_int = np.random.exponential(lam) if lam > 0 else 1e30
    travelled = 0.0
    stopped = False
    while True:
        mean = dedx_bethe(ke, mass, tcut) * step
        if mean >= ke or ke < 0.05:
            ln = ke / max(mean, 1e-12) * step
            if not _deposit_step(
                dep,
                cnt,
                x + 0.5 * ln * dx,
                y + 0.5 * ln * dy,
                z + 0.5 * ln * dz,
                ke,
                label,
                0.5 * ln * dx,
                0.5 * ln * dy,
                0.5 * ln * dz,
            ):
                return False
            x, y, z = x + ln * dx, y + ln * dy, z + ln * dz
            ke = 0.0
            stopped = True
            break
        # evaluate at mid-step energy for the steep Bragg region
        mean = dedx_bethe(max(ke - 0.5 * mean, 1e-3), mass, tcut) * step
        loss = _fluctuate(mean, ke, mass, tcut, prm)
        mx, my, mz = x + 0.5 * step * dx, y + 0.5 * step * dy, z + 0.5 * step * dz
        if not _inside(mx, my, mz, size):
            return True  # leaves the volume
        if not _deposit_step(
            dep, cnt, mx, my, mz, loss, label, 0.5 * step * dx, 0.5 * step * dy, 0.5 * step * dz
        ):
            return False
        ke -= loss
        # explicit delta rays above tcut: N = cdelta / beta^2 (1/tcut - 1/wmax) per cm
        wmax = max_energy_transfer(ke, mass)
        if wmax > tcut:
            gamma = 1.0 + ke / mass
            beta2 = 1.0 - 1.0 / (gamma * gamma)
            n_exp = cdelta / beta2 * (1.0 / tcut - 1.0 / wmax) * step
            if np.random.random() < n_exp:
                t = 1.0 / (1.0 / tcut - np.random.random() * (1.0 / tcut - 1.0 / wmax))
                t = min(t, ke)
                if np.random.random() > 1.0 - beta2 * t / wmax:  # spin-0 factor
                    t = 0.0
            else:
                t = 0.0
            if t > 0.0:
                p_in = math.sqrt(ke * (ke + 2.0 * mass))
                p_e = math.sqrt(t * (t + 2.0 * ME))
                cos_t = min(1.0, t / p_e * (ke + mass + ME) / p_in)
                ex, ey, ez = _rotate(dx, dy, dz, cos_t, 2.0 * math.pi * np.random.random())
                ip, il = _new_particle(
                    par, lab, cnt, 11, mx, my, mz, ex, ey, ez, t, interaction, part, DELTA
                )
                if ip < 0 or not _push(stk, cnt, mx, my, mz, ex, ey, ez, t, 11, il, ip):
                    return False
                ke -= t
        x, y, z = x + step * dx, y + step * dy, z + step * dz
        travelled += step
        if ke <= 0.0:
            stopped = True
            break
        if travelled >= d_int:
            return _hadronic(
                stk, lab, par, cnt, led_rows, prm, x, y, z, dx, dy, dz, ke, part, interaction
            )
        sig = highland_step_sigma(ke, mass, step)
        tx, ty = np.random.normal() * sig, np.random.normal() * sig
        th = math.sqrt(tx * tx + ty * ty)
        dx, dy, dz = _rotate(dx, dy, dz, math.cos(min(th, math.pi)), math.atan2(ty, tx))
    if not stopped:
        return True
    return _at_rest(stk, lab, par, cnt, led_rows, prm, x, y, z, pdg, part, interaction)


@numba.njit(cache=True)
def _at_rest(
    stk: np.ndarray,
    lab: np.ndarray,
    par: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    pdg: int,
    part: int,
    interaction: int,
) -> bool:
    """Decay or capture of a stopped muon or pion."""
    if pdg == -13 or (pdg == 13 and np.random.random() >= prm[P_CAPTURE]):
        e = max(sample_michel_energy() - ME, 0.01)  # kinetic energy of the Michel electron
        ux, uy, uz = _isotropic()
        epdg = -11 if pdg == -13 else 11
        ip, il = _new_particle(
            par, lab, cnt, epdg, x, y, z, ux, uy, uz, e, interaction, part, MICHEL
        )
        return ip >= 0 and _push(stk, cnt, x, y, z, ux, uy, uz, e, epdg, il, ip)
    if pdg == 13:  # nuclear capture
        return _nuclear_gammas(stk, lab, cnt, led_rows, prm, x, y, z, interaction)
    if pdg == 211:  # pi+ -> mu+ nu at rest: 4.12 MeV muon
        ux, uy, uz = _isotropic()
        ip, il = _new_particle(
            par, lab, cnt, -13, x, y, z, ux, uy, uz, 4.12, interaction, part, TRACK
        )
        return ip >= 0 and _push(stk, cnt, x, y, z, ux, uy, uz, 4.12, -13, il, ip)
    if pdg == -211:  # absorbed: a soft proton half of the time plus nuclear photons
        if np.random.random() < 0.5:
            ux, uy, uz = _isotropic()
            t = 5.0 + 35.0 * np.random.random()
            ip, il = _new_particle(
                par, lab, cnt, 2212, x, y, z, ux, uy, uz, t, interaction, part, TRACK
            )
            if ip < 0 or not _push(stk, cnt, x, y, z, ux, uy, uz, t, 2212, il, ip):
                return False
        return _nuclear_gammas(stk, lab, cnt, led_rows, prm, x, y, z, interaction)
    return True


@numba.njit(cache=True)
def _hadronic(
    stk: np.ndarray,
    lab: np.ndarray,
    par: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    dx: float,
    dy: float,
    dz: float,
    ke: float,
    part: int,
    interaction: int,
) -> bool:
    """Inelastic interaction in flight: the track ends in 1-3 secondaries plus nuclear photons.

    A fraction U(0.4, 0.9) of the kinetic energy is shared (uniform spacings) among the
    secondaries; each is a proton (55 %), a charged pion (25 %) or a pi0 -> 2 photons (20 %),
    emitted within a forward cone (cos theta uniform in [0, 1]).
    """
    avail = ke * (0.4 + 0.5 * np.random.random())
    n = 1 + int(np.random.random() * 3.0)
    cuts = np.sort(np.random.random(n - 1))
    prev = 0.0
    for k in range(n):
        hi = cuts[k] if k < n - 1 else 1.0
        t = avail * (hi - prev)
        prev = hi
        ex, ey, ez = _rotate(dx, dy, dz, np.random.random(), 2.0 * math.pi * np.random.random())
        r = np.random.random()
        if r < 0.2:  # pi0 -> 2 gamma, energies shared uniformly, roughly collinear
            etot = t + 134.977
            u = np.random.random()
            for j in range(2):
                eg = etot * (u if j == 0 else 1.0 - u)
                gx, gy, gz = _rotate(
                    ex,
                    ey,
                    ez,
                    math.cos(0.3 * np.random.random()),
                    2.0 * math.pi * np.random.random(),
                )
                ip, il = _new_particle(
                    par, lab, cnt, 22, x, y, z, gx, gy, gz, eg, interaction, part, SHOWER
                )
                if ip < 0 or not _push(stk, cnt, x, y, z, gx, gy, gz, eg, 22, il, ip):
                    return False
            continue
        spdg = 2212 if r < 0.75 else (211 if np.random.random() < 0.5 else -211)
        if t < 2.0:
            continue
        ip, il = _new_particle(
            par, lab, cnt, spdg, x, y, z, ex, ey, ez, t, interaction, part, TRACK
        )
        if ip < 0 or not _push(stk, cnt, x, y, z, ex, ey, ez, t, spdg, il, ip):
            return False
    return _nuclear_gammas(stk, lab, cnt, led_rows, prm, x, y, z, interaction)
