"""Fast simulator of a collider TPC (sPHENIX-like, the detector of FM4NPP arXiv:2508.14087):
proton-proton-like collisions with pile-up, charged particles on helices in a solenoid field,
one hit per layer crossing, Landau-fluctuated charge, diffusion, noise.

Owns :class:`ColliderTPCConfig`, :func:`simulate_collider_event` and
:func:`generate_collider_events`. Physics (every number is a config field):

* **Geometry**: ``n_layers`` (48) cylindrical read-out layers at radii ``r_inner + (k + 1/2)
  pitch`` (30.5 ... 77.5 cm), active for ``|z| < half_length`` (105 cm); solenoid field
  ``b_field`` (1.4 T) along z. Coordinates in cm, the beam along z.
* **Collisions**: ``1 + Poisson(pileup_mean)`` per event, vertices ``(0, 0, N(0, sigma_z))``.
  Charged primaries: ``Poisson(dn_deta * (eta_max - eta_min))`` per collision with eta
  uniform; pT from ``pT exp(-pT / T)`` (a Gamma(2, T) law, mean 2T = 0.4 GeV/c); species
  pi / K / p / e / mu with ``species_fractions``; charge +-1 at random.
* **Helices**: radius ``R = pT / (0.3 B)`` (R in m, pT in GeV/c, B in T); a particle turns by
  ``alpha`` with ``x = x0 + s R (sin(phi0 + s alpha) - sin phi0)``,
  ``y = y0 - s R (cos(phi0 + s alpha) - cos phi0)``, ``z = z0 + R alpha pz / pT``,
  ``s = -charge`` (positive particles turn clockwise seen from +z). Tracks with ``2R`` below
  the inner radius never reach the TPC; smaller ones curl inside it and cross layers on the way
  back in (followed for ``max_turns``). Multiple scattering in the gas (radiation length
  ``x0_gas``, Highland formula) is a random walk of the direction across the track. A track
  stops where its energy loss (dE/dx at its starting value, over the path from the vertex)
  reaches its kinetic energy, so slow protons and kaons range out; otherwise the momentum loss
  in the gas (below 1 MeV) is neglected.
* **Hits**: one per layer crossing inside the active length, at the crossing point, smeared by
  transverse and longitudinal diffusion ``D sqrt(drift length)`` (drift to the nearer end
  plate) plus the pad resolution. Charge (keV): ``mip_kev`` times the Bethe-Bloch ratio to a
  minimum-ionising particle, the path length in the layer, and a Landau (Moyal) fluctuation.
* **Noise**: low-momentum secondary electrons (``Poisson(n_secondaries)``, pT uniform in
  ``secondary_pt``) that loop inside the TPC, and random hits so that ``noise_fraction`` of the
  hits are random; both are tagged as noise.

Per-hit labels of the returned :class:`~nufm.data.event.Event` (the ``collider-tpc``
description in :mod:`nufm.data.detectors`): ``instance`` = track id (-1 random noise),
``segment`` = particle class (0 other, 1 pi, 2 K, 3 p, 4 e), ``interaction`` = collision id,
-1 for hits tagged as noise. ``energy`` is the hit charge in keV.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nufm.data.event import Event, Particles
from nufm.sim.physics import bethe_ratio

CLASS_NAMES = ("other", "pion", "kaon", "proton", "electron")
"""Per-hit particle classes (``Event.segment``) of the collider TPC."""
SPECIES = ("pion", "kaon", "proton", "electron", "muon")
_MASS = {"pion": 0.13957, "kaon": 0.49368, "proton": 0.93827, "electron": 0.000511, "muon": 0.10566}
_PDG = {"pion": 211, "kaon": 321, "proton": 2212, "electron": -11, "muon": -13}
_CLASS = {"pion": 1, "kaon": 2, "proton": 3, "electron": 4, "muon": 0}
I_GAS_EV = 150.0
"""Mean excitation energy of the gas (Ne/CF4-like), eV."""


@dataclass(frozen=True, kw_only=True)
class ColliderTPCConfig:
    """Every knob of :func:`simulate_collider_event` (sPHENIX-like defaults)."""

    n_layers: int = 48
    r_inner: float = 30.0
    """cm; layer k sits at r_inner + (k + 0.5) * pitch."""
    pitch: float = 1.0
    """cm between layers."""
    half_length: float = 105.0
    """cm; hits need |z| below this."""
    b_field: float = 1.4
    """T, along z."""
    pileup_mean: float = 1.0
    """Mean number of extra collisions per event (Poisson)."""
    sigma_z: float = 10.0
    """cm, spread of collision vertices along the beam."""
    dn_deta: float = 3.0
    """Charged primaries per unit pseudorapidity per collision."""
    eta_min: float = -1.5
    eta_max: float = 1.5
    pt_slope: float = 0.2
    """GeV/c, T of the pT exp(-pT / T) spectrum."""
    species_fractions: tuple[float, float, float, float, float] = (0.80, 0.10, 0.06, 0.03, 0.01)
    """pi, K, p, e, mu."""
    max_turns: float = 1.0
    """Turns a curling track is followed for."""
    x0_gas: float = 10_000.0
    """cm, radiation length of the gas."""
    diffusion_t: float = 0.006
    """cm / sqrt(cm), transverse diffusion."""
    diffusion_l: float = 0.012
    """cm / sqrt(cm), longitudinal diffusion."""
    pad_resolution: float = 0.015
    """cm, intrinsic resolution added in quadrature (r-phi and z)."""
    mip_kev: float = 2.0
    """keV deposited per cm by a minimum-ionising particle."""
    landau_width: float = 0.2
    """Relative width of the Moyal fluctuation of the hit charge."""
    n_secondaries: float = 1.0
    """Mean low-momentum secondary electrons per event (tagged as noise)."""
    secondary_pt: tuple[float, float] = (0.02, 0.06)
    """GeV/c range of the secondaries' pT (radius 8 to 25 cm: they loop)."""
    noise_fraction: float = 0.02
    """Fraction of all hits that are random noise hits."""
    step: float = 0.5
    """cm of transverse arc between helix samples (below the layer pitch)."""

    def __post_init__(self) -> None:
        if self.step >= self.pitch:
            raise ValueError("ColliderTPCConfig: step must be below the layer pitch")
        if not 0 <= self.noise_fraction < 1:
            raise ValueError("ColliderTPCConfig: noise_fraction must be in [0, 1)")
        if abs(sum(self.species_fractions) - 1) > 1e-6:
            raise ValueError("ColliderTPCConfig: species_fractions must sum to 1")

    @property
    def layer_radii(self) -> np.ndarray:
        """(n_layers,) cm."""
        return self.r_inner + (np.arange(self.n_layers) + 0.5) * self.pitch

    @property
    def r_outer(self) -> float:
        return self.r_inner + self.n_layers * self.pitch

    def helix_radius(self, pt: np.ndarray | float) -> np.ndarray | float:
        """cm: R = pT / (0.3 B) metres."""
        return 100.0 * np.asarray(pt) / (0.3 * self.b_field)


@dataclass
class _Tracks:
    """Charged particles to propagate (T rows)."""

    x0: np.ndarray  # (T, 3) cm start
    pt: np.ndarray  # (T,) GeV/c
    pz: np.ndarray
    phi: np.ndarray
    charge: np.ndarray  # (T,) +-1
    mass: np.ndarray
    cls: np.ndarray  # (T,) hit class
    pdg: np.ndarray
    collision: np.ndarray  # (T,) collision id, -1 = tagged as noise
    parent: np.ndarray


def _primaries(cfg: ColliderTPCConfig, rng: np.random.Generator) -> tuple[_Tracks, np.ndarray]:
    n_coll = 1 + rng.poisson(cfg.pileup_mean)
    vertices = np.zeros((n_coll, 3))
    vertices[:, 2] = rng.normal(0, cfg.sigma_z, n_coll)
    n = rng.poisson(cfg.dn_deta * (cfg.eta_max - cfg.eta_min), n_coll)
    coll = np.repeat(np.arange(n_coll), n)
    T = len(coll)
    eta = rng.uniform(cfg.eta_min, cfg.eta_max, T)
    pt = rng.gamma(2.0, cfg.pt_slope, T)
    species = rng.choice(len(SPECIES), T, p=np.asarray(cfg.species_fractions))
    names = [SPECIES[s] for s in species]
    charge = rng.choice([-1.0, 1.0], T)
    pdg = np.array([_PDG[s] for s in names], np.int64) * charge.astype(np.int64)
    tracks = _Tracks(
        x0=vertices[coll],
        pt=pt,
        pz=pt * np.sinh(eta),
        phi=rng.uniform(-math.pi, math.pi, T),
        charge=charge,
        mass=np.array([_MASS[s] for s in names]),
        cls=np.array([_CLASS[s] for s in names], np.int64),
        pdg=pdg,
        collision=coll.astype(np.int64),
        parent=np.full(T, -1, np.int64),
    )
    return tracks, vertices


def _secondaries(cfg: ColliderTPCConfig, rng: np.random.Generator, n_primaries: int) -> _Tracks:
    n = rng.poisson(cfg.n_secondaries) if n_primaries else 0
    r = rng.uniform(cfg.r_inner, cfg.r_outer, n)
    ang = rng.uniform(-math.pi, math.pi, n)
    start = np.stack([r * np.cos(ang), r * np.sin(ang), rng.uniform(-80, 80, n)], 1)
    pt = rng.uniform(*cfg.secondary_pt, n)
    charge = rng.choice([-1.0, 1.0], n)
    return _Tracks(
        x0=start,
        pt=pt,
        pz=pt * rng.uniform(-0.5, 0.5, n),
        phi=rng.uniform(-math.pi, math.pi, n),
        charge=charge,
        mass=np.full(n, _MASS["electron"]),
        cls=np.full(n, _CLASS["electron"], np.int64),
        pdg=(11 * charge).astype(np.int64),
        collision=np.full(n, -1, np.int64),
        parent=rng.integers(0, max(n_primaries, 1), n).astype(np.int64),
    )


def _hits(cfg: ColliderTPCConfig, tr: _Tracks, rng: np.random.Generator):
    """Layer crossings of every track: positions (H, 3), track row (H,), path (H,) cm."""
    T = len(tr.pt)
    if T == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0)
    R = np.asarray(cfg.helix_radius(tr.pt))  # (T,) cm
    s = -tr.charge
    s_max = np.minimum(cfg.max_turns * 2 * math.pi * R, 3 * cfg.r_outer)  # transverse arc, cm
    K = math.ceil(float(s_max.max()) / cfg.step) + 1
    arc = np.arange(K) * cfg.step  # (K,)
    alpha = arc[None, :] / R[:, None]  # (T, K) turning angle
    phi = tr.phi[:, None]
    x = tr.x0[:, :1] + s[:, None] * R[:, None] * (np.sin(phi + s[:, None] * alpha) - np.sin(phi))
    y = tr.x0[:, 1:2] - s[:, None] * R[:, None] * (np.cos(phi + s[:, None] * alpha) - np.cos(phi))
    tan_lambda = (tr.pz / tr.pt)[:, None]
    z = tr.x0[:, 2:3] + arc[None, :] * tan_lambda
    # multiple scattering: Highland angle per step, random walk of the direction (2 planes)
    p = np.hypot(tr.pt, tr.pz)
    beta = p / np.hypot(p, tr.mass)
    ds3 = cfg.step * np.sqrt(1 + tan_lambda[:, 0] ** 2)  # (T,) 3D path per step
    t = ds3 / cfg.x0_gas
    theta0 = 0.0136 / (beta * p) * np.sqrt(t) * (1 + 0.038 * np.log(t))  # (T,) rad
    kicks = rng.normal(size=(2, T, K)) * theta0[None, :, None]
    walk = np.cumsum(np.cumsum(kicks, axis=2), axis=2) * ds3[None, :, None]  # (2, T, K) cm
    dirx, diry = np.cos(phi + s[:, None] * alpha), np.sin(phi + s[:, None] * alpha)
    x = x - diry * walk[0]
    y = y + dirx * walk[0]
    z = z + walk[1]
    r = np.hypot(x, y)  # (T, K)
    # stop at the end plates, and where the particle has lost its kinetic energy (range out;
    # dE/dx kept at its starting value)
    kinetic = np.hypot(p, tr.mass) - tr.mass  # (T,) GeV
    loss = cfg.mip_kev * 1e-6 * bethe_ratio(p / tr.mass, I_GAS_EV)  # (T,) GeV / cm
    path3 = arc[None, :] * np.sqrt(1 + tan_lambda**2)  # (T, K) cm
    alive = (np.abs(z) < cfg.half_length) & (path3 * loss[:, None] < kinetic[:, None])
    alive &= arc[None, :] <= s_max[:, None]  # each track's own number of turns
    alive = np.cumprod(alive, axis=1).astype(bool)
    # layer crossings between consecutive samples (at most one per step: step < pitch)
    c = np.floor((r - cfg.r_inner) / cfg.pitch - 0.5)  # index of the last layer radius below r
    c0, c1 = c[:, :-1], c[:, 1:]
    crossing = (
        (c0 != c1)
        & alive[:, 1:]
        & (np.maximum(c0, c1) >= 0)
        & (np.minimum(c0, c1) < cfg.n_layers - 1)
    )
    ti, ki = np.nonzero(crossing)
    layer = np.maximum(c0[ti, ki], c1[ti, ki]).astype(np.int64)  # the radius crossed
    r_k = cfg.layer_radii[np.clip(layer, 0, cfg.n_layers - 1)]
    r0, r1 = r[ti, ki], r[ti, ki + 1]
    f = np.clip((r_k - r0) / np.where(r1 != r0, r1 - r0, 1.0), 0.0, 1.0)
    pos = np.stack(
        [
            x[ti, ki] + f * (x[ti, ki + 1] - x[ti, ki]),
            y[ti, ki] + f * (y[ti, ki + 1] - y[ti, ki]),
            z[ti, ki] + f * (z[ti, ki + 1] - z[ti, ki]),
        ],
        1,
    )
    # path length in the layer: pitch over the cosine of the angle to the radial direction
    step3 = np.stack(
        [x[ti, ki + 1] - x[ti, ki], y[ti, ki + 1] - y[ti, ki], z[ti, ki + 1] - z[ti, ki]], 1
    )
    dr = np.abs(r1 - r0)
    path = cfg.pitch * np.linalg.norm(step3, axis=1) / np.maximum(dr, 1e-3)
    keep = (layer < cfg.n_layers) & (layer >= 0)
    return pos[keep], ti[keep], np.minimum(path[keep], 10 * cfg.pitch)


def simulate_collider_event(
    cfg: ColliderTPCConfig, rng: np.random.Generator, event_id: int = -1
) -> Event:
    """One labelled event (module docstring): coord (N, 3) cm, energy (N,) keV."""
    prim, vertices = _primaries(cfg, rng)
    sec = _secondaries(cfg, rng, len(prim.pt))
    tracks = _Tracks(*(np.concatenate([getattr(prim, f), getattr(sec, f)]) for f in prim.__dict__))
    pos, row, path = _hits(cfg, tracks, rng)
    # diffusion over the drift to the nearer end plate, plus the pad resolution
    drift = cfg.half_length - np.abs(pos[:, 2])
    sig_t = np.hypot(cfg.diffusion_t * np.sqrt(drift), cfg.pad_resolution)
    sig_l = np.hypot(cfg.diffusion_l * np.sqrt(drift), cfg.pad_resolution)
    rphi = rng.normal(size=len(pos)) * sig_t
    rr = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-6)
    pos = pos + np.stack(
        [-pos[:, 1] / rr * rphi, pos[:, 0] / rr * rphi, rng.normal(size=len(pos)) * sig_l], 1
    )
    p = np.hypot(tracks.pt, tracks.pz)[row]
    bg = p / tracks.mass[row]
    moyal = -np.log(np.maximum(rng.normal(size=len(pos)) ** 2, 1e-12))  # Landau-like tail
    charge = (
        cfg.mip_kev
        * bethe_ratio(bg, I_GAS_EV)
        * path
        * np.maximum(1 + cfg.landau_width * moyal, 0.05)
    )
    # random noise hits: uniform on the layers, so that noise_fraction of all hits are noise
    n_sig = len(pos)
    n_noise = rng.binomial(n_sig, cfg.noise_fraction / (1 - cfg.noise_fraction)) if n_sig else 0
    lay = rng.integers(0, cfg.n_layers, n_noise)
    ang = rng.uniform(-math.pi, math.pi, n_noise)
    rad = cfg.layer_radii[lay]
    noise_pos = np.stack(
        [
            rad * np.cos(ang),
            rad * np.sin(ang),
            rng.uniform(-cfg.half_length, cfg.half_length, n_noise),
        ],
        1,
    )
    noise_q = cfg.mip_kev * np.maximum(
        1 + cfg.landau_width * -np.log(rng.normal(size=n_noise) ** 2 + 1e-12), 0.05
    )
    coord = np.concatenate([pos, noise_pos]).astype(np.float32)
    n_tr = len(tracks.pt)
    particles = Particles(
        id=np.arange(n_tr, dtype=np.int64),
        pdg=tracks.pdg,
        momentum=np.stack(
            [tracks.pt * np.cos(tracks.phi), tracks.pt * np.sin(tracks.phi), tracks.pz], 1
        ).astype(np.float32),
        start=tracks.x0.astype(np.float32),
        is_primary=tracks.parent < 0,
        interaction=tracks.collision,
        parent=tracks.parent,
    )
    return Event(
        coord=coord,
        energy=np.concatenate([charge, noise_q]).astype(np.float32),
        segment=np.concatenate([tracks.cls[row], np.zeros(n_noise, np.int64)]),
        instance=np.concatenate([row.astype(np.int64), np.full(n_noise, -1, np.int64)]),
        interaction=np.concatenate([tracks.collision[row], np.full(n_noise, -1, np.int64)]),
        particles=particles,
        vertices=vertices.astype(np.float32),
        event_id=event_id,
        source="nufm.sim.collider_tpc",
        meta={"detector": "collider-tpc", "n_collisions": len(vertices), "n_noise_hits": n_noise},
    )


def generate_collider_events(
    n: int, seed: int = 0, cfg: ColliderTPCConfig | None = None
) -> Iterator[Event]:
    """Events ``0..n-1``; event i depends only on ``(seed, i)``."""
    cfg = cfg or ColliderTPCConfig()
    for i in range(n):
        yield simulate_collider_event(cfg, np.random.default_rng((seed, i, 0xC011)), event_id=i)
