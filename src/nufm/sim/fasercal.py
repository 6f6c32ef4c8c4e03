"""Fast simulator of a FASERCal-like detector (the FASERCal foundation-model study,
arXiv:2604.07037): TeV-scale forward neutrino interactions in a 3D scintillator calorimeter read
in three orthogonal 2D views, with an ECAL, a coarse HCAL and a muon spectrometer behind it.
The geometry is in :mod:`nufm.data.fasercal`; every physics number below is a config field.

Owns :class:`FaserCalConfig`, :func:`simulate_fasercal_event` and
:func:`generate_fasercal_events`.

* **Interactions**: neutrino energy log-uniform in ``nu_energy``; CC nu_e / nu_mu / nu_tau and
  NC drawn from ``mix`` (CC:NC 3:1, nu_mu dominated); inelasticity y uniform, Bjorken x from a
  Beta(1.2, 4) shape, Q^2 = 2 M E x y. The CC lepton carries (1 - y) E at transverse momentum
  sqrt(Q^2 (1 - y)); the hadronic system carries y E split among charged and neutral pions and
  protons (multiplicity growing with ln W^2, Dirichlet energy shares, exponential transverse
  momenta of mean 0.35 GeV/c, total transverse momentum balancing the lepton's). In
  ``charm_fraction`` of CC events a charm hadron (m = 1.87 GeV, c tau = 0.03 cm) takes a
  Beta(3, 2) share of the hadronic energy and decays to e, mu (with a kaon, a neutrino taking
  the rest) or hadrons after its flight. A tau (c tau = 87 um) decays to e, mu (17.8 %,
  17.4 %) or hadrons.
* **Transport** through an effective medium of X0 = 23 cm and lambda = 69 cm (8.7 X0 and 2.9
  lambda over the 200 cm block): charged particles leave ``mip_mev_per_cm`` in every cm of
  track (Gamma-distributed fluctuations); electrons and photons (after an exponential 9/7 X0)
  shower with a Gamma longitudinal profile (t_max = ln(E / E_c) -/+ 0.5) and a two-component
  lateral profile of Moliere radius ``moliere_cm``, the scintillator seeing
  ``sampling_fraction`` of the energy; pi0 -> gamma gamma with exact two-body kinematics;
  hadrons interact after an exponential lambda and start a cascade of secondaries (down to
  ``hadron_cutoff_gev``, below which the energy is left as a local blob). Energy that reaches
  the back of the block goes to the ECAL (electromagnetic) or the HCAL (hadronic); muons
  leave MIP signals in both and hit the spectrometer planes, bent by a dipole.
* **Readout**: the true voxel energies are projected on the three views (XY per module, XZ,
  YZ), converted to photoelectrons (Poisson, ``light_yield`` per MeV per view) with a small
  noise rate, thresholded, and re-intersected: a voxel is reconstructed when its three pixels
  are all on, so real voxels come with **ghosts**. Voxel charges are estimated from the view
  charges by multiplicative tomographic iterations (ART/MLEM). Each reconstructed voxel is
  labelled ghost or real, with hierarchy and category from the true energy it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from nufm.data import fasercal as fc
from nufm.data.event import Event, Particles
from nufm.sim.physics import perpendicular, rotate_about, shower_tmax, unit

M_N = 0.938  # GeV, nucleon
M_TAU = 1.777  # GeV
CTAU_TAU_CM = 0.00871
M_CHARM = 1.87  # GeV
CTAU_CHARM_CM = 0.03
M_PI0 = 0.135
_CATEGORY = {11: 0, 22: 0, 111: 0, 13: 1, 15: 1}
"""PDG -> category (electromagnetic 0, muonic 1); every other particle is hadronic (2)."""


@dataclass(frozen=True, kw_only=True)
class FaserCalConfig:
    """Physics and readout settings of the FASERCal-like simulator."""

    nu_energy: tuple[float, float] = (100.0, 3000.0)
    """Neutrino energy range, GeV (log-uniform)."""
    mix: tuple[float, float, float, float] = (0.15, 0.55, 0.05, 0.25)
    """Probabilities of CC nu_e, CC nu_mu, CC nu_tau and NC."""
    charm_fraction: float = 0.1
    """Fraction of CC events with a charm hadron."""
    vertex_xy: float = 20.0
    """Vertices uniform in |x|, |y| < this, cm."""
    vertex_z: tuple[float, float] = (-95.0, 40.0)
    """Vertex z range, cm (the block spans -100..100)."""
    mip_mev_per_cm: float = 2.0
    """Visible energy of a minimum-ionising particle per cm of scintillator, MeV."""
    sampling_fraction: float = 0.85
    """Share of shower energy deposited in the scintillator (the rest in tungsten)."""
    critical_energy_gev: float = 0.03
    """Effective critical energy of the block."""
    moliere_cm: float = 3.0
    """Effective Moliere radius of the block, cm."""
    hadron_cutoff_gev: float = 1.0
    """Hadrons below this energy stop as a local blob instead of cascading."""
    max_particles: int = 400
    """Cascade size cap per event: further hadron interactions become blobs."""
    light_yield: float = 10.0
    """Photoelectrons per MeV seen by each view."""
    view_threshold_pe: float = 4.0
    """A view pixel is on at this many photoelectrons."""
    noise_rate: float = 2e-4
    """Probability that a view pixel fires on noise (with threshold-level charge)."""
    art_iterations: int = 3
    """Rounds of the three-view multiplicative charge estimate."""
    ecal_noise_mev: float = 30.0
    """Gaussian noise per ECAL cell, MeV (energies clipped at 0)."""
    hcal_threshold_mev: float = 100.0
    """HCAL cells below this are not read out."""
    muon_resolution_cm: float = 0.05
    """Spectrometer hit resolution, cm."""

    def __post_init__(self) -> None:
        if not 0 < self.nu_energy[0] <= self.nu_energy[1]:
            raise ValueError(f"FaserCalConfig.nu_energy {self.nu_energy}: need 0 < low <= high")
        if len(self.mix) != 4 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"FaserCalConfig.mix {self.mix}: four non-negative probabilities")
        if not 0 <= self.charm_fraction <= 1:
            raise ValueError(f"FaserCalConfig.charm_fraction {self.charm_fraction} not in [0, 1]")


@dataclass
class _Deposits:
    """Visible energy deposits: position (cm), MeV, owning particle, category, primary flag."""

    pos: list[np.ndarray] = field(default_factory=list)
    mev: list[np.ndarray] = field(default_factory=list)
    owner: list[np.ndarray] = field(default_factory=list)
    cat: list[np.ndarray] = field(default_factory=list)
    primary: list[np.ndarray] = field(default_factory=list)

    def add(self, pos: np.ndarray, mev: np.ndarray, owner: int, cat: int, primary) -> None:
        n = len(mev)
        self.pos.append(pos.reshape(n, 3))
        self.mev.append(mev)
        self.owner.append(np.full(n, owner, np.int64))
        self.cat.append(np.full(n, cat, np.int64))
        self.primary.append(np.broadcast_to(np.asarray(primary, bool), (n,)))

    def arrays(self):
        if not self.mev:
            z = np.zeros(0, np.int64)
            return np.zeros((0, 3)), np.zeros(0), z, z, np.zeros(0, bool)
        return (
            np.concatenate(self.pos),
            np.concatenate(self.mev),
            np.concatenate(self.owner),
            np.concatenate(self.cat),
            np.concatenate(self.primary),
        )


@dataclass
class _Particle:
    id: int
    pdg: int
    energy: float  # GeV
    start: np.ndarray  # (3,) cm
    direction: np.ndarray  # (3,) unit
    primary: bool
    parent: int


@dataclass
class _State:
    """Everything one event accumulates while its particles are transported."""

    cfg: FaserCalConfig
    rng: np.random.Generator
    deposits: _Deposits = field(default_factory=_Deposits)
    particles: list[_Particle] = field(default_factory=list)
    queue: list[_Particle] = field(default_factory=list)
    ecal_mev: np.ndarray = field(default_factory=lambda: np.zeros((fc.ECAL_N, fc.ECAL_N)))
    hcal_pos: list[np.ndarray] = field(default_factory=list)
    hcal_mev: list[np.ndarray] = field(default_factory=list)
    muon_hits: list[tuple[np.ndarray, int]] = field(default_factory=list)

    def new(self, pdg: int, energy: float, start, direction, primary: bool, parent: int) -> None:
        p = _Particle(
            len(self.particles),
            pdg,
            float(energy),
            np.asarray(start, float),
            unit(np.asarray(direction, float)),
            primary,
            parent,
        )
        self.particles.append(p)
        self.queue.append(p)


def _tilt(d: np.ndarray, theta: float, phi: float) -> np.ndarray:
    """The direction at polar angle theta and azimuth phi around the unit vector d (3,)."""
    return unit(rotate_about(d[None], np.array([theta]), np.array([phi]))[0])


def _exit_length(start: np.ndarray, d: np.ndarray) -> float:
    """Path length from ``start`` (inside) until the ray leaves the scintillator block, cm."""
    lo, hi = fc.SCINT_MIN.astype(float), fc.SCINT_MAX.astype(float)
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (hi - start) / d, np.where(d < 0, (lo - start) / d, np.inf))
    return max(float(t.min()), 0.0)


def _inside(p: np.ndarray) -> np.ndarray:
    return np.all((p >= fc.SCINT_MIN) & (p < fc.SCINT_MAX), axis=-1)


# --- transport ------------------------------------------------------------------------------


def _track(st: _State, p: _Particle, length: float) -> None:
    """MIP deposits every 0.5 cm along a straight charged track of ``length`` cm."""
    n = int(length / 0.5)
    if n <= 0:
        return
    s = (np.arange(n) + 0.5) * 0.5
    pos = p.start + s[:, None] * p.direction
    mev = st.rng.gamma(4.0, st.cfg.mip_mev_per_cm * 0.5 / 4.0, n)
    st.deposits.add(pos, mev, p.id, _CATEGORY.get(abs(p.pdg), 2), p.primary)


def _to_ecal(st: _State, pos: np.ndarray, gev: np.ndarray) -> None:
    """Add energy arriving at transverse positions ``pos`` (M, >=2) cm to the ECAL cells."""
    half = fc.ECAL_N * fc.ECAL_CELL_CM / 2
    ij = np.floor((pos[:, :2] + half) / fc.ECAL_CELL_CM).astype(np.int64)
    ok = np.all((ij >= 0) & (ij < fc.ECAL_N), axis=1)
    np.add.at(st.ecal_mev, (ij[ok, 0], ij[ok, 1]), gev[ok] * 1000.0)


def _at_z(start: np.ndarray, d: np.ndarray, z: float) -> np.ndarray:
    """Where the straight line from ``start`` along ``d`` crosses the plane at ``z``."""
    return start + d * (z - start[2]) / max(d[2], 1e-6)


def _downstream(st: _State, p: _Particle, exit_pos: np.ndarray) -> None:
    """A particle leaving the back of the block: ECAL, HCAL and the muon spectrometer."""
    if p.direction[2] <= 0.05:
        return  # leaves sideways or backwards: lost
    e_front = _at_z(exit_pos, p.direction, fc.ECAL_Z[0])
    apdg = abs(p.pdg)
    if apdg in (13, 15):
        _to_ecal(st, e_front[None], np.array([0.3]))
        zs = fc.HCAL_MIN[2] + fc.HCAL_CELL_CM * (np.arange(fc.HCAL_N_Z) + 0.5)
        pts = np.stack([_at_z(exit_pos, p.direction, z) for z in zs])
        st.hcal_pos.append(pts)
        st.hcal_mev.append(st.rng.gamma(4.0, 150.0 / 4.0, len(zs)))
        if apdg == 13:
            z1 = fc.MUON_PLANES_Z[0]
            charge = -1.0 if p.pdg > 0 else 1.0
            for z in fc.MUON_PLANES_Z:
                hit = _at_z(exit_pos, p.direction, z)
                hit[0] += charge * fc.MUON_BEND_CM_GEV * ((z - z1 + 100.0) / 100.0) / p.energy
                hit[:2] += st.rng.normal(0.0, st.cfg.muon_resolution_cm, 2)
                if np.all(np.abs(hit[:2]) < fc.MUON_HALF_WIDTH):
                    st.muon_hits.append((hit, p.id))
        return
    if apdg in (11, 22, 111):
        _to_ecal(st, e_front[None], np.array([p.energy]))
        return
    # a hadron: some energy in the ECAL (about one interaction length), the rest in the HCAL
    in_ecal = p.energy * (st.rng.uniform(0.1, 0.4) if st.rng.random() < 0.6 else 0.02)
    _to_ecal(st, e_front[None], np.array([in_ecal]))
    rest = p.energy - in_ecal
    n = int(np.clip(20 * math.sqrt(rest), 10, 400))
    depth = st.rng.gamma(2.0, fc.HCAL_LAMBDA_CM / 1.5, n)
    front = _at_z(exit_pos, p.direction, fc.HCAL_MIN[2])
    pts = front + depth[:, None] * p.direction + np.c_[st.rng.normal(0, 8.0, (n, 2)), np.zeros(n)]
    st.hcal_pos.append(pts)
    st.hcal_mev.append(np.full(n, rest * 1000.0 / n))


def _em_shower(st: _State, p: _Particle, start: np.ndarray) -> None:
    """Electromagnetic shower of ``p`` from ``start``: scintillator deposits, ECAL leakage."""
    cfg, rng = st.cfg, st.rng
    e = p.energy
    ec = cfg.critical_energy_gev * 1000.0  # MeV
    t_max = max(shower_tmax(max(e * 1000.0, ec), abs(p.pdg) == 22, ec), 0.5)
    b = 0.5
    n = int(np.clip(200 * math.sqrt(e), 40, 4000))
    t = rng.gamma(b * t_max + 1.0, 1.0 / b, n)  # depth in X0
    core = rng.random(n) < 0.85
    r = cfg.moliere_cm * np.sqrt(-np.log(rng.random(n))) * np.where(core, 0.35, 1.5)
    phi = rng.uniform(0, 2 * math.pi, n)
    (u,), (v,) = perpendicular(p.direction[None])
    pos = (
        start
        + (t * fc.X0_CM)[:, None] * p.direction
        + (r * np.cos(phi))[:, None] * u
        + (r * np.sin(phi))[:, None] * v
    )
    per = e / n  # GeV per sample
    inside = _inside(pos)
    primary = p.primary & (t < 1.0) & (r < 1.0)
    st.deposits.add(
        pos[inside],
        np.full(int(inside.sum()), per * 1000.0 * cfg.sampling_fraction),
        p.id,
        0,
        primary[inside],
    )
    back = ~inside & (pos[:, 2] >= fc.SCINT_MAX[2])
    if back.any():
        _to_ecal(st, pos[back], np.full(int(back.sum()), per))


def _cascade(st: _State, p: _Particle, at: np.ndarray) -> None:
    """A hadron interacting at ``at``: secondaries, or a local blob below the cutoff."""
    cfg, rng = st.cfg, st.rng
    if p.energy < cfg.hadron_cutoff_gev or len(st.particles) >= cfg.max_particles:
        n = 12
        pos = at + rng.normal(0.0, 2.0, (n, 3))
        ok = _inside(pos)
        mev = np.full(n, p.energy * 1000.0 * 0.6 / n)[ok]
        st.deposits.add(pos[ok], mev, p.id, 2, False)
        return
    avail = 0.85 * p.energy  # the rest: binding energy, neutrons
    k = int(np.clip(2 + rng.poisson(1.2 * math.log1p(p.energy)), 2, 12))
    share = rng.dirichlet(np.full(k, 0.8))
    for f in share:
        u = rng.random()
        pdg = 111 if u < 0.3 else (2212 if u < 0.4 else (211 if rng.random() < 0.5 else -211))
        en = max(float(f * avail), 0.05)
        pt = rng.exponential(0.35)
        theta = math.atan2(pt, en)
        st.new(pdg, en, at, _tilt(p.direction, theta, rng.uniform(0, 2 * math.pi)), False, p.id)


def _hadron(st: _State, p: _Particle) -> None:
    length = _exit_length(p.start, p.direction)
    d_int = st.rng.exponential(fc.LAMBDA_CM)
    charged = p.pdg not in (2112, 130)
    if d_int < length:
        if charged:
            _track(st, p, d_int)
        _cascade(st, p, p.start + d_int * p.direction)
        return
    if charged:
        _track(st, p, length)
    if p.energy >= st.cfg.hadron_cutoff_gev:
        _downstream(st, p, p.start + length * p.direction)


def _decay(st: _State, p: _Particle, modes: tuple[float, float]) -> None:
    """A tau or charm hadron: flight, then e / mu / hadrons with probabilities ``modes``
    (e, mu; the rest hadrons)."""
    rng = st.rng
    mass, ctau = (M_TAU, CTAU_TAU_CM) if abs(p.pdg) == 15 else (M_CHARM, CTAU_CHARM_CM)
    flight = rng.exponential(p.energy / mass * ctau)
    flight = min(flight, _exit_length(p.start, p.direction))
    _track(st, p, flight)
    at = p.start + flight * p.direction
    u = rng.random()
    sign = 1 if p.pdg > 0 else -1
    if u < modes[0] + modes[1]:
        lepton = 11 if u < modes[0] else 13
        kids = [sign * lepton] + ([] if abs(p.pdg) == 15 else [-sign * 321])
        visible = rng.beta(2.0, 2.0) if abs(p.pdg) == 15 else rng.beta(3.0, 2.0)
    else:
        n = 1 + 2 * int(rng.random() < 0.3) if abs(p.pdg) == 15 else 2 + int(rng.random() < 0.5)
        kids = [211 * (1 if i % 2 == 0 else -1) * sign for i in range(n)]
        if rng.random() < 0.5:
            kids.append(111)
        visible = rng.beta(4.0, 2.0)
    share = rng.dirichlet(np.ones(len(kids))) * visible * p.energy
    for pdg, en in zip(kids, share, strict=True):
        theta = abs(rng.normal(0.0, mass / max(p.energy, mass)))
        st.new(
            pdg,
            max(float(en), 0.05),
            at,
            _tilt(p.direction, theta, rng.uniform(0, 6.3)),
            False,
            p.id,
        )


def _transport(st: _State, p: _Particle) -> None:
    apdg = abs(p.pdg)
    if apdg == 111:  # pi0 -> gamma gamma, exact two-body kinematics (beta ~ 1)
        e1 = p.energy * st.rng.random()
        e2 = p.energy - e1
        cos_a = 1.0 - M_PI0**2 / (2.0 * max(e1 * e2, 1e-9))
        alpha = math.acos(float(np.clip(cos_a, -1.0, 1.0)))
        th1 = math.atan2(e2 * math.sin(alpha), e1 + e2 * math.cos(alpha))
        phi = st.rng.uniform(0, 2 * math.pi)
        st.new(22, e1, p.start, _tilt(p.direction, th1, phi), False, p.id)
        st.new(22, e2, p.start, _tilt(p.direction, alpha - th1, phi + math.pi), False, p.id)
    elif apdg == 22:
        conv = st.rng.exponential(9.0 / 7.0 * fc.X0_CM)
        length = _exit_length(p.start, p.direction)
        if conv < length:
            _em_shower(st, p, p.start + conv * p.direction)
        else:
            _downstream(st, p, p.start + length * p.direction)
    elif apdg == 11:
        _em_shower(st, p, p.start)
    elif apdg == 13:
        length = _exit_length(p.start, p.direction)
        _track(st, p, length)
        _downstream(st, p, p.start + length * p.direction)
    elif apdg == 15:
        _decay(st, p, (0.178, 0.174))
    elif apdg in (411, 421):
        _decay(st, p, (0.15, 0.15))
    elif apdg in (12, 14, 16):
        return  # invisible
    else:
        _hadron(st, p)


# --- the interaction ------------------------------------------------------------------------


def _interaction(st: _State) -> dict:
    """Draw the neutrino interaction, create its final-state particles; returns the truth."""
    cfg, rng = st.cfg, st.rng
    lo, hi = cfg.nu_energy
    e_nu = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    mix = np.asarray(cfg.mix, float)
    kind = int(rng.choice(4, p=mix / mix.sum()))  # 0 nue CC, 1 numu CC, 2 nutau CC, 3 NC
    vertex = np.array(
        [
            rng.uniform(-cfg.vertex_xy, cfg.vertex_xy),
            rng.uniform(-cfg.vertex_xy, cfg.vertex_xy),
            rng.uniform(*cfg.vertex_z),
        ]
    )
    y = rng.uniform(0.02, 0.98)
    x = rng.beta(1.2, 4.0)
    q2 = 2 * M_N * e_nu * x * y
    is_cc = kind < 3
    lep_phi = rng.uniform(0, 2 * math.pi)
    lep_p = np.zeros(3)
    if is_cc:
        e_l = (1 - y) * e_nu
        pt_l = math.sqrt(max(q2 * (1 - y), 0.0))
        pt_l = min(pt_l, 0.5 * e_l)
        lep_p = np.array(
            [pt_l * math.cos(lep_phi), pt_l * math.sin(lep_phi), math.sqrt(e_l**2 - pt_l**2)]
        )
        pdg = (11, 13, 15)[kind]
        st.new(pdg, e_l, vertex, lep_p, True, -1)
    else:
        pt_l = math.sqrt(max(q2 * (1 - y), 0.0))
    # hadronic system: y E, total transverse momentum opposite the lepton's
    e_h = y * e_nu
    w2 = M_N**2 + 2 * M_N * e_nu * y * (1 - x)
    n_had = int(np.clip(1 + rng.poisson(max(0.8 * math.log(w2), 0.5)), 1, 25))
    charm_share = 0.0
    if is_cc and rng.random() < cfg.charm_fraction:
        charm_share = float(rng.beta(3.0, 2.0))
    shares = rng.dirichlet(np.full(n_had, 0.7)) * (1 - charm_share)
    energies = list(shares * e_h)
    pdgs = []
    for _ in range(n_had):
        u = rng.random()
        pdgs.append(
            111 if u < 0.3 else (2212 if u < 0.4 else (211 if rng.random() < 0.5 else -211))
        )
    if charm_share > 0:
        energies.append(charm_share * e_h)
        pdgs.append(421 if rng.random() < 0.6 else 411)
    pts = rng.exponential(0.35, len(energies))
    phis = rng.uniform(0, 2 * math.pi, len(energies))
    pvec = np.c_[pts * np.cos(phis), pts * np.sin(phis)]
    pvec -= (pvec.sum(0) + pt_l * np.array([math.cos(lep_phi), math.sin(lep_phi)])) / len(energies)
    jet = np.zeros(3)
    first_charm = len(st.particles) + len(energies) - 1
    for k, (pdg, en) in enumerate(zip(pdgs, energies, strict=True)):
        en = max(float(en), 0.2)
        pt = pvec[k]
        pz = math.sqrt(max(en**2 - float(pt @ pt), 1e-6))
        d = np.array([pt[0], pt[1], pz])
        jet += d
        st.new(pdg, en, vertex, d, True, -1)
    if charm_share > 0:
        st.queue[-1].energy = max(st.queue[-1].energy, M_CHARM)
    flavour = (0, 1, 2, 5)[kind]
    return {
        "kind": kind,
        "is_cc": int(is_cc),
        "nu_energy": e_nu,
        "vertex": vertex,
        "lepton_p": lep_p,
        "jet_p": jet,
        "flavour": flavour,
        "charm_id": first_charm if charm_share > 0 else -1,
    }


def _flavour_and_charm(st: _State, truth: dict) -> tuple[int, int]:
    """Flavour and charm classes from the decays that happened (tau and charm daughters)."""

    def daughters(pid: int) -> set[int]:
        return {abs(q.pdg) for q in st.particles if q.parent == pid}

    flavour = truth["flavour"]
    if truth["kind"] == 2:  # nu_tau CC: the tau's decay mode
        tau = next(q for q in st.particles if abs(q.pdg) == 15 and q.parent < 0)
        kids = daughters(tau.id)
        flavour = 2 if 11 in kids else (3 if 13 in kids else 4)
    charm = 0
    if truth["charm_id"] >= 0:
        kids = daughters(truth["charm_id"])
        charm = 1 if 11 in kids else (2 if 13 in kids else 3)
    return flavour, charm


# --- readout --------------------------------------------------------------------------------


def _voxels(cfg: FaserCalConfig, rng: np.random.Generator, dep) -> dict:
    """True voxel sums, the three views, ghosts and the reconstructed voxels with labels."""
    pos, mev, owner, cat, primary = dep
    shape = (fc.N_XY, fc.N_XY, fc.N_Z)
    ijk = np.floor((pos - fc.SCINT_MIN) / fc.VOXEL_CM).astype(np.int64)
    ok = np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)
    ijk, mev, owner, cat, primary = ijk[ok], mev[ok], owner[ok], cat[ok], primary[ok]
    flat = np.ravel_multi_index(ijk.T, shape) if len(mev) else np.zeros(0, np.int64)
    size = int(np.prod(shape))
    true_e = np.bincount(flat, mev, minlength=size).reshape(shape)  # (48, 48, 200) MeV
    # three views: XY per module, XZ (summed over y), YZ (summed over x)
    xy = true_e.reshape(fc.N_XY, fc.N_XY, fc.N_MODULES, fc.MODULE_DEPTH).sum(-1)  # (48, 48, 10)
    views = [xy, true_e.sum(1), true_e.sum(0)]  # (48,48,10) (48,200) (48,200)
    measured, on = [], []
    for q in views:
        pe = rng.poisson(q * cfg.light_yield).astype(float)
        noise = rng.random(q.shape) < cfg.noise_rate
        pe = np.where(noise, np.maximum(pe, cfg.view_threshold_pe), pe)
        is_on = pe >= cfg.view_threshold_pe
        measured.append(np.where(is_on, pe / cfg.light_yield, 0.0))
        on.append(is_on)
    module = np.arange(fc.N_Z) // fc.MODULE_DEPTH
    cand = on[0][:, :, module] & on[1][:, None, :] & on[2][None, :, :]  # (48, 48, 200)
    # charge: multiplicative three-view tomography on the candidate voxels
    c = cand.astype(float)
    for _ in range(cfg.art_iterations):
        for v, q in enumerate(measured):
            if v == 0:
                proj = c.reshape(fc.N_XY, fc.N_XY, fc.N_MODULES, fc.MODULE_DEPTH).sum(-1)
                ratio = np.divide(q, proj, out=np.zeros_like(q), where=proj > 0)[:, :, module]
            elif v == 1:
                proj = c.sum(1)
                ratio = np.divide(q, proj, out=np.zeros_like(q), where=proj > 0)[:, None, :]
            else:
                proj = c.sum(0)
                ratio = np.divide(q, proj, out=np.zeros_like(q), where=proj > 0)[None, :, :]
            c = c * ratio
    rec = np.flatnonzero(cand)
    # truth per voxel: energy by category, by hierarchy, and the largest contributor
    by_cat = np.bincount(flat * 3 + cat, mev, minlength=size * 3).reshape(size, 3)
    prim_e = np.bincount(flat, mev * primary, minlength=size)
    m = int(owner.max(initial=0)) + 1
    key, inv = np.unique(flat * m + owner, return_inverse=True)  # (voxel, particle) pairs
    pair_e = np.bincount(inv, mev)
    order = np.lexsort((-pair_e, key // m))  # by voxel, largest contribution first
    vox_of_pair = key[order] // m
    first = np.r_[True, vox_of_pair[1:] != vox_of_pair[:-1]]
    dominant = np.full(size, -1, np.int64)
    dominant[vox_of_pair[first]] = (key[order] % m)[first]
    e_true = true_e.reshape(-1)[rec]
    real = e_true > 0
    frac = np.where(real[:, None], by_cat[rec] / np.maximum(e_true, 1e-12)[:, None], 0.0)
    hierarchy = np.where(real, np.where(prim_e[rec] >= 0.5 * e_true, 1, 2), 0)
    category = np.where(real, np.argmax(by_cat[rec], 1), -1)
    centre = np.stack(np.unravel_index(rec, shape), 1) * fc.VOXEL_CM + fc.SCINT_MIN + 0.5
    return {
        "coord": centre.astype(np.float32),
        "mev": c.reshape(-1)[rec].astype(np.float32),
        "ghost": (~real).astype(np.float32),
        "hierarchy": hierarchy,
        "category": category,
        "fractions": frac,
        "instance": np.where(real, dominant[rec], -1),
        "n_true": int((true_e > 0).sum()),
        "n_true_found": int(real.sum()),
    }


def _cells(pos: np.ndarray, mev: np.ndarray, lo: np.ndarray, cell: float, n: tuple) -> tuple:
    """Sum deposits into the cells of a regular grid; returns (centres (C, 3), MeV (C,))."""
    ijk = np.floor((pos - lo) / cell).astype(np.int64)
    ok = np.all((ijk >= 0) & (ijk < np.array(n)), axis=1)
    flat = np.ravel_multi_index(ijk[ok].T, n) if ok.any() else np.zeros(0, np.int64)
    e = np.bincount(flat, mev[ok], minlength=int(np.prod(n)))
    idx = np.flatnonzero(e)
    centre = np.stack(np.unravel_index(idx, n), 1) * cell + lo + cell / 2
    return centre, e[idx]


Gun = tuple[int, float, tuple[float, float, float], tuple[float, float, float]]
"""A particle gun entry: PDG code, energy GeV, start cm, direction."""


def _gun_truth(st: _State, gun: list[Gun]) -> dict:
    for pdg, energy, start, direction in gun:
        st.new(pdg, energy, start, direction, True, -1)
    return {
        "kind": -1,
        "is_cc": 0,
        "nu_energy": 0.0,
        "vertex": np.asarray(gun[0][2], float),
        "lepton_p": np.zeros(3),
        "jet_p": np.zeros(3),
        "flavour": -1,
        "charm_id": -1,
    }


def simulate_fasercal_event(
    cfg: FaserCalConfig,
    rng: np.random.Generator,
    event_id: int = -1,
    gun: list[Gun] | None = None,
) -> Event:
    """One neutrino interaction in the FASERCal-like detector (see the module docstring), or
    the particles of ``gun`` (flavour -1 then, no neutrino truth).

    Returns an :class:`Event`, coordinates in cm: stream 0 the reconstructed scintillator
    voxels (real and ghost), 1 the 25 ECAL cells, 2 the HCAL cells above threshold, 3 the
    spectrometer hits; ``labels`` the columns of :data:`nufm.data.fasercal.LABEL_NAMES`,
    ``segment`` the category (ghosts and other streams -1), ``instance`` the particle giving
    the voxel most energy, ``meta`` the event truth (:func:`event_truth_names`).
    """
    st = _State(cfg, rng)
    truth = _interaction(st) if gun is None else _gun_truth(st, gun)
    while st.queue:
        _transport(st, st.queue.pop(0))
    vox = _voxels(cfg, rng, st.deposits.arrays())
    flavour, charm = _flavour_and_charm(st, truth)
    # ECAL: every cell of the 5 x 5 matrix, with noise
    half = fc.ECAL_N * fc.ECAL_CELL_CM / 2
    grid = (np.arange(fc.ECAL_N) + 0.5) * fc.ECAL_CELL_CM - half
    ex, ey = np.meshgrid(grid, grid, indexing="ij")
    ecal_xyz = np.c_[ex.ravel(), ey.ravel(), np.full(fc.ECAL_N**2, sum(fc.ECAL_Z) / 2)]
    ecal_e = np.maximum(st.ecal_mev.ravel() + rng.normal(0, cfg.ecal_noise_mev, fc.ECAL_N**2), 0)
    # HCAL: occupied cells above threshold
    if st.hcal_mev:
        n = (fc.HCAL_N_XY, fc.HCAL_N_XY, fc.HCAL_N_Z)
        h_xyz, h_e = _cells(
            np.concatenate(st.hcal_pos),
            np.concatenate(st.hcal_mev),
            fc.HCAL_MIN,
            fc.HCAL_CELL_CM,
            n,
        )
        keep = h_e >= cfg.hcal_threshold_mev
        h_xyz, h_e = h_xyz[keep], h_e[keep]
    else:
        h_xyz, h_e = np.zeros((0, 3)), np.zeros(0)
    m_xyz = np.array([h for h, _ in st.muon_hits]).reshape(-1, 3)
    m_owner = np.array([o for _, o in st.muon_hits], np.int64)
    n_v, n_h, n_m = len(vox["mev"]), len(h_e), len(m_owner)
    n_other = fc.ECAL_N**2 + n_h + n_m
    labels = np.full((n_v + n_other, len(fc.LABEL_NAMES)), -1.0, np.float32)
    labels[:n_v, 0] = vox["ghost"]
    labels[:n_v, 1] = vox["hierarchy"]
    labels[:n_v, 2] = vox["category"]
    labels[:n_v, 3:6] = vox["fractions"]
    instance = np.r_[vox["instance"], np.full(fc.ECAL_N**2 + n_h, -1), m_owner].astype(np.int64)
    table = Particles(
        id=np.array([p.id for p in st.particles], np.int64),
        pdg=np.array([p.pdg for p in st.particles], np.int64),
        momentum=np.array([p.direction * p.energy for p in st.particles], np.float32).reshape(
            -1, 3
        ),
        start=np.array([p.start for p in st.particles], np.float32).reshape(-1, 3),
        is_primary=np.array([p.primary for p in st.particles], bool),
        interaction=np.zeros(len(st.particles), np.int64),
        parent=np.array([p.parent for p in st.particles], np.int64),
    )
    # visible energy: the final state at the vertex less what decay neutrinos carry away
    visible = sum(p.energy for p in st.particles if p.primary)
    for p in st.particles:
        if abs(p.pdg) in (15, 411, 421):
            visible -= p.energy - sum(q.energy for q in st.particles if q.parent == p.id)
    meta = {
        "detector": "fasercal",
        "flavour": flavour,
        "charm": charm,
        "is_cc": truth["is_cc"],
        "nu_energy": truth["nu_energy"],
        "visible_energy": float(visible),
        **{f"lepton_p{a}": float(v) for a, v in zip("xyz", truth["lepton_p"], strict=True)},
        **{f"jet_p{a}": float(v) for a, v in zip("xyz", truth["jet_p"], strict=True)},
        **{f"vertex_{a}": float(v) for a, v in zip("xyz", truth["vertex"], strict=True)},
        "n_ghost": int(vox["ghost"].sum()),
    }
    return Event(
        coord=np.concatenate([vox["coord"], ecal_xyz, h_xyz, m_xyz]).astype(np.float32),
        energy=np.r_[vox["mev"], ecal_e, h_e, np.full(n_m, 1.0)].astype(np.float32),
        segment=np.r_[vox["category"], np.full(n_other, -1)].astype(np.int64),
        instance=instance,
        interaction=np.where(instance >= 0, 0, -1).astype(np.int64),
        stream=np.repeat(
            np.array([fc.SCINT, fc.ECAL, fc.HCAL, fc.MUON]), [n_v, fc.ECAL_N**2, n_h, n_m]
        ).astype(np.int64),
        labels=labels,
        particles=table,
        vertices=truth["vertex"][None].astype(np.float32),
        event_id=event_id,
        source="nufm.sim.fasercal",
        meta=meta,
    )


def generate_fasercal_events(
    n: int, seed: int = 0, cfg: FaserCalConfig | None = None
) -> Iterator[Event]:
    """Events ``0..n-1``; event i depends only on ``(seed, i)``."""
    cfg = cfg or FaserCalConfig()
    for i in range(n):
        yield simulate_fasercal_event(cfg, np.random.default_rng((seed, i, 0xFA5E)), event_id=i)
