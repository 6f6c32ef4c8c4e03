"""Fast simulator of a water Cherenkov detector (Super-Kamiokande-like, the geometry of the WAND
data set used by Panda arXiv:2512.01324): particles stepped through water, Cherenkov light
summed analytically into the expected photoelectrons of every PMT (no photon tracking, as the
likelihood fitter fiTQun computes its predictions), Poisson photoelectrons, first-photon
times, dark noise.

Owns :class:`WaterCherenkovConfig`, :func:`pmt_positions`, :func:`simulate_wc_event` and
:func:`generate_wc_events`. Physics (every number is a config field):

* **Geometry**: a cylinder of radius 16.9 m and height 36.2 m; 10,764 PMTs of 50 cm diameter:
  a barrel of 50 rows x 149 columns and two caps of 1,657 on a hexagonal lattice (pitch about
  0.71 m), about 38 % photocathode coverage. Coordinates in metres, z along the axis.
* **Particles** are stepped in ``step`` (<= 10 cm) with the mean energy loss of a
  minimum-ionising particle scaled by a simplified Bethe-Bloch ratio; muons and charged pions
  scatter (Highland formula, X0 = 36 cm). A muon that stops decays to a Michel electron
  (energy from the Michel spectrum, isotropic, after an exponential 2.2 us). A charged pion
  interacts after an exponential path (interaction length 83.6 cm) and gives a secondary pion
  with part of its kinetic energy. Electrons and photons shower: a photon converts after an
  exponential 9/7 X0, and a shower becomes charged segments of total length E / (2 MeV/cm),
  spread along a Gamma longitudinal profile and in angle around the axis (fuzzy rings).
  pi0 -> gamma gamma with exact two-body kinematics.
* **Light**: on a cone of cos(theta) = 1 / (n beta), n = 1.33, above threshold (kinetic
  energy e 0.26 MeV, mu 54.6 MeV, pi 72 MeV); Frank-Tamm yield in 300-600 nm,
  2 pi alpha (1/300 nm - 1/600 nm) sin^2(theta) = 764 sin^2(theta) photons per cm (332 at
  beta = 1). The expected photoelectrons of PMT j from a step:
  ``N g(theta_j - theta_c) / (2 pi sin theta_j) * Omega_j * QE * exp(-d / L) * a(eta)``:
  g a normalised Gaussian in angle (``cone_width``: chromatic dispersion and scattering),
  Omega_j = A cos(eta) / d^2 the PMT solid angle, quantum and collection efficiency ``qe``,
  attenuation length ``attenuation``, angular acceptance a(eta) = cos(eta)^0.5 for incidence
  angle eta, plus a diffuse scattered fraction ``scattered`` spread over all PMTs.
* **Hits**: Poisson photoelectrons per PMT, charge smeared by ``charge_resolution`` per pe;
  time = emission time + flight time at c / n + a Gaussian transit-time spread (2.5 ns);
  dark noise at ``dark_rate`` per PMT in the ``window``.

Per-hit truth: ``instance`` = the particle that gave the PMT most of its light (-1 dark
noise), ``segment`` = its category (0 primary, 1 decay electron, 2 secondary pion, 3 gamma
from pi0, and its products), ``interaction`` 0 (-1 dark noise). ``energy`` is the charge in
photoelectrons, ``time`` the hit time in ns. The particle table keeps every particle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.water_cherenkov import MASS_MEV, event_truth
from nufm.sim.nu_interactions import cc_interaction
from nufm.sim.physics import bethe_ratio, perpendicular, rotate_about, unit
from nufm.sim.wc_light import light_sum

CATEGORY_NAMES = ("primary", "decay_electron", "secondary_pion", "pi0_gamma")
"""Per-hit categories (``Event.segment``) of the water Cherenkov detector."""
PARTICLES = ("e-", "mu-", "pi+", "pi0", "gamma", "p")
_PDG = {"e-": 11, "mu-": 13, "pi+": 211, "pi0": 111, "gamma": 22, "p": 2212}
_MASS = {name: MASS_MEV[pdg] for name, pdg in _PDG.items()}  # MeV
C_M_PER_NS = 0.299792458
I_WATER_EV = 75.0
"""Mean excitation energy of water, eV."""


@dataclass(frozen=True, kw_only=True)
class WaterCherenkovConfig:
    """Every knob of :func:`simulate_wc_event` (Super-Kamiokande-like defaults)."""

    radius: float = 16.9
    """m, inner detector radius."""
    height: float = 36.2
    """m."""
    barrel_rows: int = 50
    barrel_columns: int = 149
    cap_pmts: int = 1657
    """PMTs per end cap (hexagonal lattice, the ones nearest the axis)."""
    pmt_radius: float = 0.254
    """m (50 cm diameter)."""
    n_water: float = 1.33
    qe: float = 0.2
    """Quantum times collection efficiency."""
    attenuation: float = 80.0
    """m."""
    cone_width: float = 0.05
    """rad, Gaussian width of the Cherenkov angle (dispersion, scattering, step)."""
    scattered: float = 0.05
    """Fraction of the direct light added as diffuse light on every PMT."""
    tts: float = 2.5
    """ns, transit-time spread."""
    charge_resolution: float = 0.3
    """Relative charge smearing per photoelectron."""
    dark_rate: float = 4e3
    """Hz per PMT."""
    window: float = 1500.0
    """ns, hits from t = -500 ns to window - 500 ns (decay electrons later are dropped)."""
    step: float = 0.1
    """m, stepping length (<= 10 cm)."""
    fiducial_margin: float = 2.0
    """m, vertices at least this far from the walls."""
    mip_dedx: float = 2.0
    """MeV / cm of a minimum-ionising particle in water."""
    radiation_length: float = 0.361
    """m."""
    pion_interaction_length: float = 0.836
    """m."""
    muon_lifetime: float = 2197.0
    """ns."""
    shower_spread: float = 0.35
    """rad, angular spread of shower segments around the axis."""

    @property
    def half_height(self) -> float:
        return self.height / 2


@dataclass(frozen=True)
class PMTs:
    """PMT positions (P, 3) m and inward unit normals (P, 3)."""

    position: np.ndarray
    normal: np.ndarray
    is_barrel: np.ndarray  # (P,) bool


@lru_cache(maxsize=4)
def pmt_positions(cfg: WaterCherenkovConfig) -> PMTs:
    """The PMT layout of ``cfg``: barrel rows x columns and two hexagonal caps."""
    R, H = cfg.radius, cfg.half_height
    dz = cfg.height / cfg.barrel_rows
    z = -H + dz * (np.arange(cfg.barrel_rows) + 0.5)
    phi = 2 * math.pi * (np.arange(cfg.barrel_columns) + 0.5) / cfg.barrel_columns
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    barrel = np.stack([R * np.cos(pp), R * np.sin(pp), zz], -1).reshape(-1, 3)
    b_norm = np.stack([-np.cos(pp), -np.sin(pp), np.zeros_like(pp)], -1).reshape(-1, 3)
    pitch = 2 * math.pi * R / cfg.barrel_columns
    k = np.arange(-40, 41)
    i, j = np.meshgrid(k, k, indexing="ij")
    hx = pitch * (i + 0.5 * j).ravel()
    hy = pitch * (math.sqrt(3) / 2 * j).ravel()
    order = np.argsort(np.hypot(hx, hy), kind="stable")[: cfg.cap_pmts]
    cap = np.stack([hx[order], hy[order]], 1)
    top = np.c_[cap, np.full(len(cap), H)]
    bottom = np.c_[cap, np.full(len(cap), -H)]
    pos = np.concatenate([barrel, top, bottom])
    normal = np.concatenate(
        [b_norm, np.tile([0.0, 0.0, -1.0], (len(cap), 1)), np.tile([0.0, 0.0, 1.0], (len(cap), 1))]
    )
    is_barrel = np.r_[np.ones(len(barrel), bool), np.zeros(2 * len(cap), bool)]
    return PMTs(pos, normal, is_barrel)


@dataclass
class _Segments:
    """Light-emitting steps: midpoints, directions, lengths (m), beta, time (ns), owner."""

    pos: list[np.ndarray] = field(default_factory=list)
    dirs: list[np.ndarray] = field(default_factory=list)
    length: list[np.ndarray] = field(default_factory=list)
    beta: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    owner: list[np.ndarray] = field(default_factory=list)

    def add(self, pos, dirs, length, beta, time, owner: int) -> None:
        self.pos.append(pos)
        self.dirs.append(dirs)
        self.length.append(length)
        self.beta.append(beta)
        self.time.append(time)
        self.owner.append(np.full(len(length), owner, np.int64))


@dataclass
class _Particle:
    name: str
    ke: float  # MeV kinetic energy
    start: np.ndarray  # (3,) m
    direction: np.ndarray  # (3,)
    t0: float  # ns
    category: int
    parent: int


def _inside(cfg: WaterCherenkovConfig, p: np.ndarray) -> np.ndarray:
    return (np.hypot(p[..., 0], p[..., 1]) < cfg.radius) & (np.abs(p[..., 2]) < cfg.half_height)


def _track(
    cfg: WaterCherenkovConfig,
    p: _Particle,
    idx: int,
    seg: _Segments,
    rng: np.random.Generator,
    queue: list[_Particle],
) -> None:
    """Step a muon, charged pion or proton until it stops, interacts or leaves; queue its
    products (protons: no hadronic interaction; below 480 MeV kinetic they give no light)."""
    m = _MASS[p.name]
    pos, d, ke, t = p.start.astype(float), unit(p.direction.astype(float)), p.ke, p.t0
    interact_at = rng.exponential(cfg.pion_interaction_length) if p.name == "pi+" else np.inf
    path = 0.0
    ps, ds, ls, bs, ts = [], [], [], [], []
    while ke > 0.5 and _inside(cfg, pos):
        e = ke + m
        pmom = math.sqrt(e * e - m * m)
        beta = pmom / e
        dedx = cfg.mip_dedx * 100 * float(bethe_ratio(pmom / m, I_WATER_EV))  # MeV / m
        step = min(cfg.step, ke / dedx + 1e-6)
        ps.append(pos + 0.5 * step * d)
        ds.append(d)
        ls.append(step)
        bs.append(beta)
        ts.append(t + 0.5 * step / (beta * C_M_PER_NS))
        pos = pos + step * d
        t += step / (beta * C_M_PER_NS)
        ke -= dedx * step
        path += step
        x = step / cfg.radiation_length
        theta0 = 13.6 / (beta * pmom) * math.sqrt(x) * (1 + 0.038 * math.log(x))
        d = unit(
            rotate_about(
                d[None], np.array([abs(rng.normal(0, theta0))]), rng.uniform(0, 2 * math.pi, 1)
            )[0]
        )
        if path >= interact_at and ke > 20:
            out = unit(rng.normal(size=3))
            queue.append(_Particle("pi+", ke * rng.uniform(0.2, 0.7), pos.copy(), out, t, 2, idx))
            ke = 0.0
    if ps:
        seg.add(np.array(ps), np.array(ds), np.array(ls), np.array(bs), np.array(ts), idx)
    if p.name == "mu-" and ke <= 0.5 and _inside(cfg, pos):  # stopped: Michel decay
        x = _michel_x(rng)
        queue.append(
            _Particle(
                "e-",
                52.8 * x,
                pos.copy(),
                unit(rng.normal(size=3)),
                t + rng.exponential(cfg.muon_lifetime),
                1,
                idx,
            )
        )


def _michel_x(rng: np.random.Generator) -> float:
    """x = E / E_max from the Michel spectrum x^2 (3 - 2x) (accept-reject)."""
    while True:
        x, u = rng.uniform(), rng.uniform()
        if u <= x * x * (3 - 2 * x):
            return float(x)


def _shower(
    cfg: WaterCherenkovConfig, p: _Particle, idx: int, seg: _Segments, rng: np.random.Generator
) -> None:
    """An electromagnetic shower as charged segments (beta = 1) around its axis."""
    d = unit(p.direction.astype(float))
    start = p.start.astype(float)
    if p.name == "gamma":
        start = start + d * rng.exponential(9 / 7 * cfg.radiation_length)
    total = p.ke / (cfg.mip_dedx * 100)  # m of charged track
    n = max(1, math.ceil(total / cfg.step))
    lengths = np.full(n, total / n)
    # longitudinal profile: Gamma(a, 1/b) in radiation lengths, a from the shower maximum
    t_max = max(math.log(max(p.ke, 1.0) / 80.0) + (0.5 if p.name == "gamma" else -0.5), 0.3)
    depth = rng.gamma(t_max * 0.5 + 1, 2.0, n) * cfg.radiation_length
    spread = cfg.shower_spread * np.clip(np.sqrt(50.0 / max(p.ke, 1.0)), 0.3, 2.0)
    dirs = rotate_about(
        np.tile(d, (n, 1)), np.abs(rng.normal(0, spread, n)), rng.uniform(0, 2 * math.pi, n)
    )
    pos = start + depth[:, None] * d
    keep = _inside(cfg, pos)
    if keep.any():
        t = p.t0 + depth[keep] / C_M_PER_NS
        seg.add(pos[keep], unit(dirs[keep]), lengths[keep], np.ones(int(keep.sum())), t, idx)


def _expected_pe(
    cfg: WaterCherenkovConfig, pmts: PMTs, seg: _Segments
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected pe per PMT (P,), the segment giving each PMT most light (P,), its time (P,)
    (:func:`nufm.sim.wc_light.light_sum`; a PMT without direct light takes the brightest
    segment, the scattered light's main source)."""
    P = len(pmts.position)
    if not seg.length:
        return np.zeros(P), np.full(P, -1), np.zeros(P)
    pos = np.concatenate(seg.pos)
    direct, best, best_dist, mean_omega, per_step = light_sum(
        pos,
        np.concatenate(seg.dirs),
        np.concatenate(seg.length),
        np.concatenate(seg.beta),
        pmts.position,
        pmts.normal,
        n_water=cfg.n_water,
        pmt_radius=cfg.pmt_radius,
        cone_width=cfg.cone_width,
        qe=cfg.qe,
        attenuation=cfg.attenuation,
    )
    diffuse = cfg.scattered * direct.sum() * mean_omega / mean_omega.sum()
    brightest = int(per_step.argmax())  # the scattered light's main source
    diffuse_only = ~(direct > 0)  # no direct light at all
    best = np.where(diffuse_only, brightest, best)
    to_brightest = np.linalg.norm(pmts.position - pos[brightest], axis=1)
    dist = np.where(diffuse_only, to_brightest, best_dist)
    t_hit = np.concatenate(seg.time)[best] + dist * cfg.n_water / C_M_PER_NS
    return direct + diffuse, best, t_hit


def simulate_wc_event(
    cfg: WaterCherenkovConfig,
    rng: np.random.Generator,
    particles: list[tuple[str, float]],
    event_id: int = -1,
    vertex: np.ndarray | None = None,
    directions: Sequence[np.ndarray] | None = None,
    meta: dict | None = None,
) -> Event:
    """One event of ``particles`` ((name, kinetic energy MeV) pairs, names in
    :data:`PARTICLES`) from one vertex, uniform in the fiducial volume unless given, directions
    isotropic unless given (one per particle); ``meta`` is added to the event's."""
    pmts = pmt_positions(cfg)
    if vertex is None:
        r = (cfg.radius - cfg.fiducial_margin) * math.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * math.pi)
        h = cfg.half_height - cfg.fiducial_margin
        vertex = np.array([r * math.cos(a), r * math.sin(a), rng.uniform(-h, h)])
    if directions is None:
        directions = [unit(rng.normal(size=3)) for _ in particles]
    if len(directions) != len(particles):
        raise ValueError(
            f"water Cherenkov: {len(directions)} directions, {len(particles)} particles"
        )
    queue = [
        _Particle(name, float(ke), vertex.astype(float), unit(np.asarray(d, float)), 0.0, 0, -1)
        for (name, ke), d in zip(particles, directions, strict=True)
    ]
    for name, _ in particles:
        if name not in PARTICLES:
            raise ValueError(f"water Cherenkov: unknown particle {name!r}; known {PARTICLES}")
    seg = _Segments()
    done: list[_Particle] = []
    while queue:
        p = queue.pop(0)
        idx = len(done)
        done.append(p)
        match p.name:
            case "mu-" | "pi+" | "p":
                _track(cfg, p, idx, seg, rng, queue)
            case "e-" | "gamma":
                _shower(cfg, p, idx, seg, rng)
            case "pi0":  # two-body decay in the rest frame, boosted along the pi0 direction
                m = _MASS["pi0"]
                e = p.ke + m
                gamma_ = e / m
                beta = math.sqrt(1 - 1 / gamma_**2)
                cos_s = rng.uniform(-1, 1)
                sin_s = math.sqrt(1 - cos_s**2)
                phi = rng.uniform(0, 2 * math.pi)
                for sign in (1.0, -1.0):
                    pz = sign * m / 2 * cos_s
                    pt = m / 2 * sin_s
                    e_lab = gamma_ * (m / 2 + beta * pz)
                    pz_lab = gamma_ * (pz + beta * m / 2)
                    axis = unit(p.direction[None].astype(float))
                    u, v = perpendicular(axis)
                    lab = pz_lab * axis[0] + sign * pt * (
                        math.cos(phi) * u[0] + math.sin(phi) * v[0]
                    )
                    queue.append(_Particle("gamma", e_lab, p.start, unit(lab), p.t0, 3, idx))
    mu, best, t_hit = _expected_pe(cfg, pmts, seg)
    owner = np.concatenate(seg.owner)[best] if seg.owner else np.full(len(mu), -1)
    pe = rng.poisson(mu)
    t_hit = t_hit + rng.normal(0, cfg.tts, len(mu))
    signal = (pe > 0) & (t_hit < cfg.window - 500)
    n_dark = rng.poisson(cfg.dark_rate * cfg.window * 1e-9 * len(mu))
    dark_pmt = rng.integers(0, len(mu), n_dark)
    dark_pmt = dark_pmt[~signal[dark_pmt]]
    hit_pmt = np.r_[np.nonzero(signal)[0], dark_pmt]
    q = np.r_[pe[signal].astype(float), np.ones(len(dark_pmt))]
    q = np.maximum(q + rng.normal(size=len(q)) * cfg.charge_resolution * np.sqrt(q), 0.1)
    time = np.r_[t_hit[signal], rng.uniform(-500, cfg.window - 500, len(dark_pmt))]
    cat = np.array([p.category for p in done], np.int64)
    own = np.r_[owner[signal], np.full(len(dark_pmt), -1)]
    m_arr = np.array([_MASS[p.name] for p in done])
    ke_arr = np.array([p.ke for p in done])
    pmom = np.sqrt(np.maximum((ke_arr + m_arr) ** 2 - m_arr**2, 0))
    dirs = np.array([unit(p.direction.astype(float)) for p in done])
    table = Particles(
        id=np.arange(len(done), dtype=np.int64),
        pdg=np.array([_PDG[p.name] for p in done], np.int64),
        momentum=(dirs * pmom[:, None] / 1000.0).astype(np.float32),
        start=np.array([p.start for p in done], np.float32),
        is_primary=np.array([p.parent < 0 for p in done]),
        interaction=np.zeros(len(done), np.int64),
        parent=np.array([p.parent for p in done], np.int64),
    )
    return Event(
        coord=pmts.position[hit_pmt].astype(np.float32),
        energy=q.astype(np.float32),
        time=time.astype(np.float32),
        segment=np.where(own >= 0, cat[np.maximum(own, 0)], -1),
        instance=own.astype(np.int64),
        interaction=np.where(own >= 0, 0, -1).astype(np.int64),
        particles=table,
        vertices=vertex[None].astype(np.float32),
        event_id=event_id,
        source="nufm.sim.water_cherenkov",
        meta={
            "detector": "water-cherenkov",
            "n_dark": len(dark_pmt),
            **event_truth(table),
            **(meta or {}),
        },
    )


def generate_wc_events(
    n: int,
    seed: int = 0,
    particle: str | Sequence[str] = "mu-",
    energy: tuple[float, float] = (100.0, 1000.0),
    cfg: WaterCherenkovConfig | None = None,
    one_of: bool = False,
) -> Iterator[Event]:
    """Particle-gun events ``0..n-1``: one particle, or several from one vertex (each with its
    own kinetic energy uniform in ``energy``, MeV, and its own isotropic direction); with
    ``one_of``, each event holds one particle drawn uniformly from ``particle`` (a mixed
    sample for particle identification). Event i depends only on ``(seed, i)``."""
    cfg = cfg or WaterCherenkovConfig()
    names = [particle] if isinstance(particle, str) else list(particle)
    for i in range(n):
        rng = np.random.default_rng((seed, i, 0x3C))
        chosen = [names[int(rng.integers(len(names)))]] if one_of else names
        gun = [(name, float(rng.uniform(*energy))) for name in chosen]
        yield simulate_wc_event(cfg, rng, gun, event_id=i)


BEAM_DIRECTION = np.array([1.0, 0.0, 0.0])
"""Direction of the neutrino beam of :func:`generate_wc_cc_events` (horizontal, along +x)."""


def generate_wc_cc_events(
    n: int,
    seed: int = 0,
    flavour: Literal["numu", "nue"] = "numu",
    energy: tuple[float, float] = (300.0, 2000.0),
    cc1pi_fraction: float = 0.3,
    cfg: WaterCherenkovConfig | None = None,
) -> Iterator[Event]:
    """numu or nue charged-current events ``0..n-1`` (:mod:`nufm.sim.nu_interactions`): the
    neutrino energy uniform in ``energy`` (MeV) along :data:`BEAM_DIRECTION`, quasi-elastic
    or, with probability ``cc1pi_fraction``, single pi+ through the Delta (quasi-elastic when
    the energy is below its threshold); vertices uniform in the fiducial volume. The lepton is
    the first particle, so ``wc_label`` is e or mu; ``meta`` also holds ``nu_energy`` (MeV)
    and ``cc1pi`` (0 or 1). Event i depends only on ``(seed, i)``."""
    cfg = cfg or WaterCherenkovConfig()
    if not 0.0 <= cc1pi_fraction <= 1.0:
        raise ValueError(f"generate_wc_cc_events: cc1pi_fraction {cc1pi_fraction} not in [0, 1]")
    for i in range(n):
        rng = np.random.default_rng((seed, i, 0xCC))
        e_nu = float(rng.uniform(*energy))
        channel: Literal["ccqe", "cc1pi"] = "cc1pi" if rng.uniform() < cc1pi_fraction else "ccqe"
        final = cc_interaction(flavour, e_nu, rng, channel, BEAM_DIRECTION)
        if final is None:
            channel = "ccqe"
            final = cc_interaction(flavour, e_nu, rng, channel, BEAM_DIRECTION)
        if final is None:
            raise ValueError(f"generate_wc_cc_events: {e_nu:.0f} MeV is below the CCQE threshold")
        particles = [(name, float(ke)) for name, ke in zip(final.names, final.kinetic, strict=True)]
        yield simulate_wc_event(
            cfg,
            rng,
            particles,
            event_id=i,
            directions=list(final.momentum),
            meta={"nu_energy": e_nu, "cc1pi": int(channel == "cc1pi")},
        )
