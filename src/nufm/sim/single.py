"""Single-particle simulation at the deposit level, for validation plots and physics tests.

Owns :func:`single_particle_deposits`: one primary transported through an optionally larger
liquid-argon world, returning the raw 1 mm step deposits before voxelization, so that dE/dx,
ranges and shower profiles can be measured directly. Same physics as the event simulator
(:mod:`nufm.sim.transport`; PDG ch. 34; PILArNet arXiv:2006.01993 for the event context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nufm.data.event import Particles
from nufm.data.lartpc import PDG_TO_PID, PID_NONE, SHOWER, TRACK
from nufm.sim import kernel as kn
from nufm.sim.config import SimConfig
from nufm.sim.generator import _MASS, SIZE_CM, params_from_config
from nufm.sim.transport import transport


@dataclass
class Deposits:
    """Step-level energy deposits of one simulated primary (M deposits, P particles).

    Attributes:
        position: (M, 3) float64 mid-step positions, cm, world frame.
        energy: (M,) float64 MeV.
        instance: (M,) int64 particle id (row of ``particles``), -1 for low-energy deposits.
        segment: (M,) int64 semantic code of the depositing particle.
        particles: the particle table (momenta GeV/c, ``start`` in cm here).
    """

    position: np.ndarray
    energy: np.ndarray
    instance: np.ndarray
    segment: np.ndarray
    particles: Particles


def single_particle_deposits(
    pdg: int,
    ke_mev: float,
    seed: int,
    cfg: SimConfig = SimConfig(),
    world_cm: float = SIZE_CM,
    start_cm: np.ndarray | None = None,
    direction: np.ndarray | None = None,
) -> Deposits:
    """Transport one primary and return its (and its descendants') step deposits.

    Args:
        pdg: PDG code of the primary (22, +-11, +-13, +-211, 2212).
        ke_mev: kinetic energy, MeV.
        seed: numba RNG seed.
        cfg: simulator configuration (transport part).
        world_cm: edge of the cubic LAr world, cm (larger than the detector for range tests).
        start_cm: (3,) start point, cm; default the centre of the world.
        direction: (3,) initial direction; default +x.

    Returns:
        The deposits, in transport order (a particle's own deposits are contiguous and ordered
        along its path).
    """
    if abs(pdg) not in _MASS:
        raise ValueError(f"single_particle_deposits: unsupported pdg {pdg}")
    if ke_mev <= 0:
        raise ValueError(f"single_particle_deposits: ke_mev must be > 0, got {ke_mev}")
    start = np.full(3, world_cm / 2.0) if start_cm is None else np.asarray(start_cm, np.float64)
    d = np.array([1.0, 0.0, 0.0]) if direction is None else np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    prm = params_from_config(cfg)
    prm[kn.P_SIZE] = world_cm
    cap = 1 << 16
    while True:
        stk = np.zeros((cap, 10))
        dep = np.zeros((8 * cap, 8))
        lab = np.zeros((cap, 4), np.int64)
        par = np.zeros((cap, 10))
        p_gev = math.sqrt(ke_mev * (ke_mev + 2.0 * _MASS[abs(pdg)])) * 1e-3
        par[0] = (pdg, *(p_gev * d), *start, 1.0, 0, -1)
        lab[0] = (0, SHOWER if abs(pdg) in (11, 22) else TRACK, PDG_TO_PID.get(pdg, PID_NONE), 0)
        lab[1] = (-1, 4, PID_NONE, 0)
        stk[0] = (*start, *d, ke_mev, pdg, 0, 0)
        cnt = np.array([0, 1, 2, 1], np.int64)
        status = transport(stk, dep, lab, par, cnt, np.array([1], np.int64), prm, seed)
        if status == kn.STATUS_OK:
            break
        cap *= 2
    dep = dep[: cnt[0]]
    lab = lab[: cnt[2]]
    par = par[: cnt[3]]
    rows = dep[:, 4].astype(np.int64)
    particles = Particles(
        id=np.arange(len(par), dtype=np.int64),
        pdg=par[:, 0].astype(np.int64),
        momentum=par[:, 1:4].astype(np.float32),
        start=par[:, 4:7].astype(np.float32),
        is_primary=par[:, 7] > 0.5,
        interaction=par[:, 8].astype(np.int64),
        parent=par[:, 9].astype(np.int64),
    )
    return Deposits(
        position=dep[:, :3],
        energy=dep[:, 3],
        instance=lab[rows, 0],
        segment=lab[rows, 1],
        particles=particles,
    )


def track_profile(dep: Deposits, instance: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Path geometry of one particle's own deposits.

    Returns:
        (residual_range (K,) cm of each deposit measured along the path to the last deposit
        plus half a step, energy (K,) MeV, path length cm).
    """
    own = dep.instance == instance
    pos = dep.position[own]
    e = dep.energy[own]
    if len(pos) < 2:
        return np.zeros(len(pos)), e, 0.0
    seg = np.linalg.norm(np.diff(pos, axis=0), axis=1)  # (K-1,)
    # the first deposit sits half a step after the start, the last at the middle of the last
    # (possibly partial) piece: add the distance start -> first deposit and half of the last
    start = dep.particles.start[instance].astype(np.float64)
    head = float(np.linalg.norm(pos[0] - start))
    cum_to_end = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    tail = max(float(seg[-1]) - head, 0.0)  # last deposit -> end: half the last piece
    length = head + float(seg.sum()) + tail
    return cum_to_end + tail, e, length
