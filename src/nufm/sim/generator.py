"""Event generation: choose the primaries of an image, transport them, voxelize, label.

Owns :func:`simulate_event` and :func:`generate_events`. The image content follows the
PILArNet recipe (Adams et al., arXiv:2006.01993, the data set behind PoLAr-MAE,
arXiv:2502.02558): multi-particle vertices (MPV, 1 to 5 primaries from a common point), isolated
particles (MPR, each its own interaction) and cosmic-like muons crossing the cube.

Coordinates: the simulator works in cm inside [0, 230.4)^3; the returned ``Event.coord`` is the
integer voxel index (0..767) stored as float32, as PILArNet stores it (no +0.5).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Iterator
from functools import lru_cache, partial

import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.lartpc import PDG_TO_PID, PID_NONE, SHOWER, TRACK, VOLUME_SIZE, VOXEL_SIZE_CM
from nufm.sim import kernel as kn
from nufm.sim.config import SimConfig
from nufm.sim.physics import ME, MMU, MP, MPI
from nufm.sim.transport import transport
from nufm.sim.voxelize import voxelize_deposits

log = logging.getLogger(__name__)

SIZE_CM = VOLUME_SIZE * VOXEL_SIZE_CM
"""Edge of the cube in cm (230.4)."""
_TYPE_PDG = (22, 11, 13, 211, 2212)
"""PDG code (positive) of the primary types in ``SimConfig.particle_weights`` order."""
_MASS = {22: 0.0, 11: ME, 13: MMU, 211: MPI, 2212: MP}


@lru_cache(maxsize=8)
def _moyal_clipped_moments(clip: float) -> tuple[float, float]:
    """(mean, std) of min(M, clip) for M = -ln(Z^2), Z ~ N(0, 1) (Moyal), by quadrature."""
    from scipy.integrate import quad

    def pdf(x: float) -> float:
        return math.exp(-0.5 * (x + math.exp(-x))) / math.sqrt(2.0 * math.pi)

    tail, _ = quad(pdf, clip, 80.0, limit=200)
    m1, _ = quad(lambda x: x * pdf(x), -20.0, clip, limit=200)
    m2, _ = quad(lambda x: x * x * pdf(x), -20.0, clip, limit=200)
    mean = m1 + clip * tail
    return mean, math.sqrt(m2 + clip * clip * tail - mean * mean)


def params_from_config(cfg: SimConfig) -> np.ndarray:
    """Pack the transport parameters of ``cfg`` into the kernel's float64 vector."""
    prm = np.zeros(kn.N_PARAMS, np.float64)
    prm[kn.P_STEP] = cfg.step_cm
    prm[kn.P_DELTA_CUT] = cfg.delta_cut_mev
    prm[kn.P_LANDAU_W] = cfg.landau_width
    prm[kn.P_MOYAL_CLIP] = cfg.moyal_clip
    prm[kn.P_MOYAL_MEAN], prm[kn.P_MOYAL_STD] = _moyal_clipped_moments(float(cfg.moyal_clip))
    prm[kn.P_LAMBDA_PI] = cfg.pion_interaction_length_cm
    prm[kn.P_LAMBDA_P] = cfg.proton_interaction_length_cm
    prm[kn.P_CAPTURE] = cfg.mu_minus_capture_prob
    prm[kn.P_BREM_CUT] = cfg.brem_cut_mev
    prm[kn.P_E_CUT] = cfg.electron_cut_mev
    prm[kn.P_G_CUT] = cfg.photon_cut_mev
    prm[kn.P_LED_MAX] = cfg.led_max_mev
    prm[kn.P_NUC_MEAN] = cfg.nuclear_gamma_mean
    prm[kn.P_NUC_E] = cfg.nuclear_gamma_energy_mev
    prm[kn.P_SIZE] = SIZE_CM
    return prm


def _isotropic(rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(-1.0, 1.0)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    s = math.sqrt(1.0 - c * c)
    return np.array([s * math.cos(phi), s * math.sin(phi), c])


def _sample_primary(rng: np.random.Generator, cfg: SimConfig) -> tuple[int, float]:
    """Draw (pdg, kinetic energy MeV) of one MPV/MPR primary."""
    w = np.asarray(cfg.particle_weights, np.float64)
    kind = int(rng.choice(5, p=w / w.sum()))
    pdg = _TYPE_PDG[kind]
    lo, hi = (
        cfg.photon_energy,
        cfg.electron_energy,
        cfg.muon_energy,
        cfg.pion_energy,
        cfg.proton_energy,
    )[kind]
    ke = float(rng.uniform(lo, hi))
    if pdg in (13, 211) and rng.random() < 0.5:
        pdg = -pdg
    return pdg, ke


def _cosmic(rng: np.random.Generator, cfg: SimConfig) -> tuple[int, float, np.ndarray, np.ndarray]:
    """A cosmic-like muon: cos^2 zenith law around -y, entering through the cube surface."""
    cos_z = rng.random() ** (1.0 / 3.0)
    sin_z = math.sqrt(1.0 - cos_z * cos_z)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    d = np.array([sin_z * math.cos(phi), -cos_z, sin_z * math.sin(phi)])
    p = rng.uniform(0.0, SIZE_CM, 3)
    # walk back from p along -d to the surface
    with np.errstate(divide="ignore"):
        t_face = np.where(d > 0, p / np.abs(d), np.where(d < 0, (SIZE_CM - p) / np.abs(d), np.inf))
    start = p - d * (float(t_face.min()) - 1e-4)
    lo, hi = cfg.cosmic_energy
    ke = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    pdg = -13 if rng.random() < 0.55 else 13
    return pdg, ke, start, d


def _primaries(
    rng: np.random.Generator, cfg: SimConfig
) -> tuple[list[tuple], np.ndarray, list[int]]:
    """Choose the interactions of one image.

    Returns:
        (primaries, vertices (I, 3) cm, mpv interaction ids); each primary is
        (pdg, ke MeV, start (3,) cm, direction (3,), interaction id).
    """
    k = cfg.busyness_shape
    busy = float(rng.gamma(k, 1.0 / k)) if k > 0 else 1.0
    n_mpv = int(rng.poisson(cfg.mpv_mean * busy))
    n_mpr = int(rng.poisson(cfg.mpr_mean * busy))
    n_cos = int(rng.random() < cfg.cosmic_fraction)
    if n_mpv + n_mpr + n_cos == 0:
        n_mpv = 1  # never an empty image
    prims: list[tuple] = []
    vertices: list[np.ndarray] = []
    lo, hi = cfg.vertex_margin_cm, SIZE_CM - cfg.vertex_margin_cm
    for _ in range(n_mpv):
        iid = len(vertices)
        v = rng.uniform(lo, hi, 3)
        vertices.append(v)
        for _ in range(int(rng.integers(cfg.mpv_particles[0], cfg.mpv_particles[1] + 1))):
            pdg, ke = _sample_primary(rng, cfg)
            prims.append((pdg, ke, v, _isotropic(rng), iid))
    for _ in range(n_mpr):
        iid = len(vertices)
        v = rng.uniform(1.0, SIZE_CM - 1.0, 3)
        vertices.append(v)
        pdg, ke = _sample_primary(rng, cfg)
        prims.append((pdg, ke, v, _isotropic(rng), iid))
    for _ in range(n_cos):
        iid = len(vertices)
        pdg, ke, start, d = _cosmic(rng, cfg)
        vertices.append(start)
        prims.append((pdg, ke, start, d, iid))
    return prims, np.asarray(vertices, np.float64).reshape(-1, 3), list(range(n_mpv))


def _run_kernel(
    prims: list[tuple],
    vertices: np.ndarray,
    mpv_ids: list[int],
    cfg: SimConfig,
    kernel_seed: int,
    nuc_rng: np.random.Generator,
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, int]:
    """Fill the initial tables and transport; grow the tables and rerun while they overflow."""
    prm = params_from_config(cfg)
    n_p, n_inter = len(prims), len(vertices)
    # vertex de-excitation photons of MPV interactions (low-energy-deposit label)
    nuc = []
    for iid in mpv_ids:
        for _ in range(int(nuc_rng.poisson(cfg.nuclear_gamma_mean))):
            e = min(float(nuc_rng.exponential(cfg.nuclear_gamma_energy_mev)), 10.0)
            nuc.append((e, _isotropic(nuc_rng), iid))
    cap = {"dep": 1 << 16, "stk": 2048, "lab": 512 + 2 * (n_p + n_inter), "par": 512 + 2 * n_p}
    while True:
        stk = np.zeros((cap["stk"] + n_p + len(nuc), 10))
        dep = np.empty((cap["dep"], 8))  # only rows [0, cnt[0]) are read
        lab = np.zeros((cap["lab"], 4), np.int64)
        par = np.zeros((cap["par"], 10))
        led_rows = np.arange(n_p, n_p + n_inter, dtype=np.int64)
        for i, (pdg, ke, start, d, iid) in enumerate(prims):
            p_gev = math.sqrt(ke * (ke + 2.0 * _MASS[abs(pdg)])) * 1e-3
            par[i] = (pdg, *(p_gev * d), *start, 1.0, iid, -1)
            lab[i] = (
                i,
                SHOWER if abs(pdg) in (11, 22) else TRACK,
                PDG_TO_PID.get(pdg, PID_NONE),
                iid,
            )
            stk[i] = (*start, *d, ke, pdg, i, i)
        for j in range(n_inter):
            lab[n_p + j] = (-1, 4, PID_NONE, j)
        for k, (e, d, iid) in enumerate(nuc):
            stk[n_p + k] = (*vertices[iid], *d, e, 22, n_p + iid, -1)
        cnt = np.array([0, n_p + len(nuc), n_p + n_inter, n_p], np.int64)
        status = transport(stk, dep, lab, par, cnt, led_rows, prm, kernel_seed)
        if status == kn.STATUS_OK:
            return dep, int(cnt[0]), lab[: cnt[2]], par[: cnt[3]], n_p
        cap = {k: 2 * v for k, v in cap.items()}
        log.debug("sim: tables full, retrying with capacities %s", cap)


def simulate_event(seed: int, cfg: SimConfig = SimConfig(), event_id: int = 0) -> Event:
    """Simulate one fully labelled LArTPC image.

    Args:
        seed: the only source of randomness; equal seeds give identical events.
        cfg: simulator configuration.
        event_id: stored in ``Event.event_id`` (does not change the content).

    Returns:
        An :class:`Event` with N voxels: ``coord`` (N, 3) float32 integer voxel indices in
        [0, 768) (PILArNet convention, no +0.5), ``energy`` (N,) float32 MeV summed per voxel,
        ``segment``/``pid``/``instance``/``interaction`` (N,) int64 labels of the voxel's
        dominant contributor (low-energy deposits: instance -1, pid 5), ``particles`` (P rows,
        ``start`` in voxel units, momentum in GeV/c), ``vertices`` (I, 3) float32 voxel units,
        ``meta`` {n_interactions, n_particles, total_energy, n_outside_deposits}, source 'sim'.
    """
    if seed < 0:
        raise ValueError(f"simulate_event: seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    prims, vertices_cm, mpv_ids = _primaries(rng, cfg)
    kernel_seed = int(rng.integers(0, 2**31 - 1))
    dep, n_dep, lab, par, _n_p = _run_kernel(prims, vertices_cm, mpv_ids, cfg, kernel_seed, rng)
    index, energy, label, n_outside = voxelize_deposits(
        dep, n_dep, len(lab), VOXEL_SIZE_CM, VOLUME_SIZE
    )
    keep = energy > cfg.voxel_threshold_mev
    index, energy, label = index[keep], energy[keep], label[keep]
    particles = Particles(
        id=np.arange(len(par), dtype=np.int64),
        pdg=par[:, 0].astype(np.int64),
        momentum=par[:, 1:4].astype(np.float32),
        start=(par[:, 4:7] / VOXEL_SIZE_CM).astype(np.float32),
        is_primary=par[:, 7] > 0.5,
        interaction=par[:, 8].astype(np.int64),
        parent=par[:, 9].astype(np.int64),
    )
    return Event(
        coord=index.astype(np.float32),
        energy=energy.astype(np.float32),
        segment=lab[label, 1].astype(np.int64),
        pid=lab[label, 2].astype(np.int64),
        instance=lab[label, 0].astype(np.int64),
        interaction=lab[label, 3].astype(np.int64),
        particles=particles,
        vertices=(vertices_cm / VOXEL_SIZE_CM).astype(np.float32),
        event_id=event_id,
        source="sim",
        meta={
            "n_interactions": len(vertices_cm),
            "n_particles": len(par),
            "total_energy": float(energy.sum()),
            "n_outside_deposits": int(n_outside),
        },
    )


def event_seed(seed: int, index: int) -> int:
    """Seed of event ``index`` of a stream started with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def simulate_indexed(
    index: int,
    seed: int,
    cfg: SimConfig = SimConfig(),
    energy_threshold: float = 0.0,
    min_points: int = 1,
) -> Event:
    """Event ``index`` of the stream ``seed``, never empty.

    A draw with fewer than ``min_points`` deposits above ``energy_threshold`` MeV (a photon
    born at the edge of the volume and leaving it, or what preprocessing would leave empty)
    is replaced by a redraw from the seeds ``(seed, index, 1)``, ``(seed, index, 2)``, ...,
    so the event is the same on every call.

    Raises:
        RuntimeError: 100 redraws were all empty (a configuration that makes no deposits).
    """
    event = simulate_event(event_seed(seed, index), cfg, event_id=index)
    for attempt in range(1, 101):
        if int((event.energy > energy_threshold).sum()) >= min_points:
            return event
        redraw = np.random.SeedSequence([seed, index, attempt])
        event = simulate_event(int(redraw.generate_state(1, np.uint64)[0] >> 1), cfg, index)
    raise RuntimeError(f"simulate_indexed: event {index} (seed {seed}): 100 redraws left it empty")


class SimulatedEvents:
    """Map-style data set of ``n`` simulated events, each simulated when it is read.

    Item i is event i of :func:`generate_events` ``(n, seed, cfg)``, the same on every read, so
    a long pretraining run streams fresh events without holding them in memory. Event sizes
    are not known before simulation: ``points_per_event`` reports 1 point each, so point-budget
    batches hold ``max_events`` events.

    An event with fewer than ``min_points`` deposits above ``energy_threshold`` MeV (which
    preprocessing would leave empty) is redrawn (:func:`simulate_indexed`).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        cfg: SimConfig = SimConfig(),
        energy_threshold: float = 0.0,
        min_points: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError(f"SimulatedEvents: need n >= 1, got {n}")
        self.n = n
        self.seed = seed
        self.cfg = cfg
        self.energy_threshold = energy_threshold
        self.min_points = min_points

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Event:
        if not 0 <= index < self.n:
            raise IndexError(f"SimulatedEvents: index {index} outside [0, {self.n})")
        return simulate_indexed(index, self.seed, self.cfg, self.energy_threshold, self.min_points)

    def points_per_event(self) -> np.ndarray:
        """(n,) ones: sizes are unknown until an event is simulated."""
        return np.ones(self.n, dtype=np.int64)

    def where(self, index: int) -> str:
        return f"simulated event {index} (seed {self.seed})"


def generate_events(
    n: int, seed: int, cfg: SimConfig = SimConfig(), workers: int = 1, progress: bool = False
) -> Iterator[Event]:
    """Yield events 0..n-1 in order; event i depends only on (seed, i) and is never empty
    (:func:`simulate_indexed`: an empty draw is redrawn).

    Args:
        n: number of events.
        seed: stream seed.
        cfg: simulator configuration.
        workers: processes; the output is identical for any value (ordered ``imap``).
        progress: show a tqdm progress bar.
    """
    if n < 0 or workers < 1:
        raise ValueError(
            f"generate_events: need n >= 0 and workers >= 1, got n={n}, workers={workers}"
        )
    work = partial(simulate_indexed, seed=seed, cfg=cfg)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="simulate", unit="ev")
    try:
        if workers == 1:
            for i in range(n):
                yield work(i)
                if bar is not None:
                    bar.update(1)
            return
        chunk = max(1, min(64, n // (4 * workers)))
        with multiprocessing.get_context().Pool(workers) as pool:
            for ev in pool.imap(work, range(n), chunksize=chunk):
                yield ev
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
