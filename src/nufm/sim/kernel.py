"""Bookkeeping shared by the numba transport kernel: table layouts, parameters, helpers.

Owns the packed-table column layout, the parameter-vector indices, the label codes used inside
the kernel (PILArNet codes, arXiv:2006.01993) and the small njit helpers (geometry, random
directions, Moyal fluctuations, appending to the deposit / stack / particle / label tables,
nuclear de-excitation photons). The physics loops live in :mod:`nufm.sim.transport`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nufm.sim.physics import ME, MMU, MP, MPI, max_energy_transfer

# Column layout of the packed tables (float64 / int64 2-D arrays, grown by the caller).
# stack (S, 10) float64: x, y, z, dx, dy, dz, ke, pdg, label row, particle row
# deposit (M, 8) float64: x, y, z (step midpoint), energy, label row, hx, hy, hz (half step
#   vector; zero for a point deposit). The voxelizer shares a step's energy among the voxels
#   the step crosses, in proportion to the chord length.
# label (L, 4) int64: instance, segment, pid, interaction
# particle (P, 10) float64: pdg, px, py, pz (GeV), x, y, z (cm), is_primary, interaction, parent
STATUS_OK, STATUS_FULL = 0, 1

# Parameter vector layout (float64), filled by ``params_from_config``.
(
    P_STEP,
    P_DELTA_CUT,
    P_LANDAU_W,
    P_MOYAL_CLIP,
    P_MOYAL_MEAN,
    P_LAMBDA_PI,
    P_LAMBDA_P,
    P_CAPTURE,
    P_BREM_CUT,
    P_E_CUT,
    P_G_CUT,
    P_LED_MAX,
    P_NUC_MEAN,
    P_NUC_E,
    P_SIZE,
    P_MOYAL_STD,
) = range(16)
N_PARAMS = 16
CDELTA = 0.5 * 0.307075 * 18.0 / 39.948 * 1.396
"""K/2 Z/A rho = 0.0966 MeV/cm: xi = CDELTA * x / beta^2 (Landau width parameter)."""

SHOWER, TRACK, MICHEL, DELTA, LOW_ENERGY = 0, 1, 2, 3, 4
PHOTON, ELECTRON, MUON, PION, PROTON, PID_NONE = 0, 1, 2, 3, 4, 5


@numba.njit(cache=True)
def _mass(pdg: int) -> float:
    a = abs(pdg)
    if a == 11:
        return ME
    if a == 13:
        return MMU
    if a == 211:
        return MPI
    if a == 2212:
        return MP
    return 0.0


@numba.njit(cache=True)
def _pid(pdg: int) -> int:
    a = abs(pdg)
    if a == 22:
        return PHOTON
    if a == 11:
        return ELECTRON
    if a == 13:
        return MUON
    if a == 211:
        return PION
    if a == 2212:
        return PROTON
    return PID_NONE


@numba.njit(cache=True)
def _inside(x: float, y: float, z: float, size: float) -> bool:
    return 0.0 <= x < size and 0.0 <= y < size and 0.0 <= z < size


@numba.njit(cache=True)
def _isotropic() -> tuple[float, float, float]:
    c = 2.0 * np.random.random() - 1.0
    s = math.sqrt(max(0.0, 1.0 - c * c))
    phi = 2.0 * math.pi * np.random.random()
    return s * math.cos(phi), s * math.sin(phi), c


@numba.njit(cache=True)
def _rotate(
    dx: float, dy: float, dz: float, cos_t: float, phi: float
) -> tuple[float, float, float]:
    """Turn unit vector d by polar angle acos(cos_t) at azimuth phi around itself."""
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    # orthonormal basis (u, v) perpendicular to d
    if abs(dz) < 0.9:
        ux, uy, uz = -dy, dx, 0.0
    else:
        ux, uy, uz = 0.0, -dz, dy
    nu = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / nu, uy / nu, uz / nu
    vx, vy, vz = dy * uz - dz * uy, dz * ux - dx * uz, dx * uy - dy * ux
    cp, sp = math.cos(phi), math.sin(phi)
    nx = cos_t * dx + sin_t * (cp * ux + sp * vx)
    ny = cos_t * dy + sin_t * (cp * uy + sp * vy)
    nz = cos_t * dz + sin_t * (cp * uz + sp * vz)
    n = math.sqrt(nx * nx + ny * ny + nz * nz)
    return nx / n, ny / n, nz / n


@numba.njit(cache=True)
def _moyal(clip: float) -> float:
    """Moyal variate -ln(Z^2), Z ~ N(0, 1), clipped above at ``clip``."""
    z = np.random.normal()
    m = -math.log(max(z * z, 1e-300))
    return min(m, clip)


@numba.njit(cache=True)
def _fluctuate(mean: float, ke: float, mass: float, wcut: float, prm: np.ndarray) -> float:
    """Energy lost in one step: mean * (1 + w (M - <M>)), M a clipped Moyal (Landau-like)
    variate. The relative width follows the Bohr variance xi * W (1 - beta^2 / 2) of collisions
    below W = min(wcut, W_max), capped at ``landau_width`` * std(M) (thin-absorber limit)."""
    gamma = 1.0 + ke / mass
    beta2 = max(1.0 - 1.0 / (gamma * gamma), 1e-4)
    xi = CDELTA * prm[P_STEP] / beta2
    wm = min(wcut, max_energy_transfer(ke, mass))
    rel = math.sqrt(xi * wm * (1.0 - 0.5 * beta2)) / max(mean, 1e-12)
    w = min(prm[P_LANDAU_W], rel / prm[P_MOYAL_STD])
    loss = mean * (1.0 + w * (_moyal(prm[P_MOYAL_CLIP]) - prm[P_MOYAL_MEAN]))
    return min(max(loss, 0.0), ke)


@numba.njit(cache=True)
def _deposit(
    dep: np.ndarray, cnt: np.ndarray, x: float, y: float, z: float, e: float, label: int
) -> bool:
    """Append a point deposit (local absorption): False when the table is full."""
    return _deposit_step(dep, cnt, x, y, z, e, label, 0.0, 0.0, 0.0)


@numba.njit(cache=True)
def _deposit_step(
    dep: np.ndarray,
    cnt: np.ndarray,
    x: float,
    y: float,
    z: float,
    e: float,
    label: int,
    hx: float,
    hy: float,
    hz: float,
) -> bool:
    """Append the deposit of a straight step with midpoint (x, y, z) and half vector h."""
    i = cnt[0]
    if i >= dep.shape[0]:
        return False
    dep[i, 0], dep[i, 1], dep[i, 2], dep[i, 3], dep[i, 4] = x, y, z, e, label
    dep[i, 5], dep[i, 6], dep[i, 7] = hx, hy, hz
    cnt[0] = i + 1
    return True


@numba.njit(cache=True)
def _push(
    stk: np.ndarray,
    cnt: np.ndarray,
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
) -> bool:
    i = cnt[1]
    if i >= stk.shape[0]:
        return False
    stk[i, 0], stk[i, 1], stk[i, 2] = x, y, z
    stk[i, 3], stk[i, 4], stk[i, 5] = dx, dy, dz
    stk[i, 6], stk[i, 7], stk[i, 8], stk[i, 9] = ke, pdg, label, part
    cnt[1] = i + 1
    return True


@numba.njit(cache=True)
def _new_particle(
    par: np.ndarray,
    lab: np.ndarray,
    cnt: np.ndarray,
    pdg: int,
    x: float,
    y: float,
    z: float,
    dx: float,
    dy: float,
    dz: float,
    ke: float,
    interaction: int,
    parent: int,
    segment: int,
) -> tuple[int, int]:
    """Append a labelled secondary: returns (particle row, label row), (-1, -1) when full."""
    ip, il = cnt[3], cnt[2]
    if ip >= par.shape[0] or il >= lab.shape[0]:
        return -1, -1
    m = _mass(pdg)
    p = math.sqrt(ke * (ke + 2.0 * m)) * 1e-3
    par[ip, 0] = pdg
    par[ip, 1], par[ip, 2], par[ip, 3] = p * dx, p * dy, p * dz
    par[ip, 4], par[ip, 5], par[ip, 6] = x, y, z
    par[ip, 7], par[ip, 8], par[ip, 9] = 0.0, interaction, parent
    lab[il, 0], lab[il, 1], lab[il, 2], lab[il, 3] = ip, segment, _pid(pdg), interaction
    cnt[3], cnt[2] = ip + 1, il + 1
    return ip, il


@numba.njit(cache=True)
def _led_label(lab: np.ndarray, cnt: np.ndarray, led_rows: np.ndarray, interaction: int) -> int:
    """Label row of the low-energy deposits of ``interaction`` (created on first use)."""
    if led_rows[interaction] >= 0:
        return led_rows[interaction]
    il = cnt[2]
    if il >= lab.shape[0]:
        return -1
    lab[il, 0], lab[il, 1], lab[il, 2], lab[il, 3] = -1, LOW_ENERGY, PID_NONE, interaction
    cnt[2] = il + 1
    led_rows[interaction] = il
    return il


@numba.njit(cache=True)
def _nuclear_gammas(
    stk: np.ndarray,
    lab: np.ndarray,
    cnt: np.ndarray,
    led_rows: np.ndarray,
    prm: np.ndarray,
    x: float,
    y: float,
    z: float,
    interaction: int,
) -> bool:
    """Emit Poisson(nuclear_gamma_mean) de-excitation photons (low-energy-deposit label)."""
    n = np.random.poisson(prm[P_NUC_MEAN])
    if n == 0:
        return True
    row = _led_label(lab, cnt, led_rows, interaction)
    if row < 0:
        return False
    for _ in range(n):
        e = min(np.random.exponential(prm[P_NUC_E]), 10.0)
        ux, uy, uz = _isotropic()
        if not _push(stk, cnt, x, y, z, ux, uy, uz, e, 22, row, -1):
            return False
    return True
