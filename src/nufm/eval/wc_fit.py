"""A classical reconstruction baseline for water Cherenkov events, beside the networks: a
time-residual point fit of the vertex, the direction from the charge pattern and the energy
from the total charge (the field's full likelihood fitter is fiTQun; this is the simpler point
fit that comes before it).

Owns :func:`fit_vertex`, :func:`fit_direction`, :class:`EnergyCalibration`,
:func:`fit_energy_calibration`, the truth readers :func:`true_vertex` and :func:`true_direction`
and :func:`evaluate_fit`. For hit i (PMT position x_i, time
t_i, charge q_i) and a vertex v emitting at t0:

* **Vertex**: the time residual ``r_i = t_i - t0 - |x_i - v| n / c``; the fit maximises
  ``sum_i exp(-r_i^2 / (2 sigma^2))`` (a Gaussian kernel: dark-noise hits, scattered light and
  late decay electrons sit in its tails and do not pull). A grid over the tank gives each
  point its best t0 (the mode of ``t_i - |x_i - v| n / c``, a windowed histogram); the best grid
  points are refined by Nelder-Mead over (x, y, z, t0) with a shrinking sigma, the vertex kept
  inside the tank. Only hits within the tank's longest flight time of the busiest moment
  enter. For a track or shower the fit lands on the light's centre, downstream of the true
  vertex along the particle (no track correction).
* **Direction**: the charge-weighted mean of the unit vectors from the vertex to the in-time
  hits, ``sum_i q_i u_i / |sum_i q_i u_i|`` (on a Cherenkov ring of half-angle theta it is
  cos(theta) times the particle direction).
* **Energy**: a least-squares line ``E = slope * Q + intercept`` of the first primary's
  kinetic energy (MeV, ``meta['primary_energy']``) against the total charge Q (pe; the charge
  of the in-time hits alone resolved no better on a mixed e / mu / pi0 / pi+ sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from nufm.data.event import Event
from nufm.eval.metrics import regression_metrics, vector_error_block
from nufm.sim.water_cherenkov import C_M_PER_NS, WaterCherenkovConfig

_DETECTOR = WaterCherenkovConfig()
GRID_SPACING = 2.5
"""m, spacing of the coarse vertex grid."""
GRID_WINDOW = 12.0
"""ns, width of the t0 window on the grid (a grid point is up to ~2 m, ~10 ns, off)."""
SIGMAS = (6.0, 3.0)
"""ns, kernel widths of the successive Nelder-Mead refinements (the last ~ the 2.5 ns TTS)."""
CANDIDATES = 4
"""Grid points refined."""
IN_TIME = (-10.0, 50.0)
"""ns, residual window of the hits used for the direction (light from along the track arrives
late with respect to a point source)."""


def _hits(event: Event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) float64 PMT positions m, (N,) times ns, (N,) charges pe; refuses what cannot be
    fitted."""
    if event.time is None:
        raise ValueError(f"{event.where}: the water Cherenkov fit needs hit times")
    if len(event) < 4:
        raise ValueError(
            f"{event.where}: the water Cherenkov fit needs at least 4 hits, got {len(event)}"
        )
    return (
        event.coord.astype(np.float64),
        event.time.astype(np.float64),
        event.energy.astype(np.float64),
    )


def _flight_time(coord: np.ndarray, vertex: np.ndarray, n_water: float) -> np.ndarray:
    """(..., N) ns from vertices (..., 3) to the PMTs ``coord`` (N, 3) at c / n."""
    if vertex.ndim == 1:
        diff = coord - vertex  # (N, 3)
        d2 = np.einsum("nk,nk->n", diff, diff)
    else:  # |x|^2 + |v|^2 - 2 v.x through a matrix product, fast for a grid of vertices
        d2 = (coord**2).sum(1) + (vertex**2).sum(-1)[..., None] - 2 * vertex @ coord.T
    return np.sqrt(np.maximum(d2, 0.0)) * (n_water / C_M_PER_NS)


def _grid(radius: float, half_height: float, spacing: float) -> np.ndarray:
    """(G, 3) grid points inside the cylinder, half a spacing from the walls."""
    xy = np.arange(-radius + spacing / 2, radius, spacing)
    z = np.arange(-half_height + spacing / 2, half_height, spacing)
    gx, gy, gz = np.meshgrid(xy, xy, z, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], 1)
    return pts[np.hypot(pts[:, 0], pts[:, 1]) < radius - spacing / 2]


def _mode(u: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``u`` (G, N), the centre (G,) of the ``window``-wide interval holding most
    entries and that count (G,): a histogram of window / 4 bins, summed over 4 bins."""
    G = u.shape[0]
    b = window / 4
    lo = float(u.min())
    idx = ((u - lo) / b).astype(np.int64)  # (G, N)
    nb = int(idx.max()) + 1
    hist = np.bincount((idx + nb * np.arange(G)[:, None]).ravel(), minlength=G * nb)
    cum = np.concatenate([np.zeros((G, 1), np.int64), hist.reshape(G, nb).cumsum(1)], 1)
    width = min(4, nb)
    counts = cum[:, width:] - cum[:, :-width]  # (G, nb - width + 1)
    best = counts.argmax(1)
    return lo + (best + width / 2) * b, counts[np.arange(G), best]


def _prompt(t: np.ndarray, det: WaterCherenkovConfig) -> np.ndarray:
    """(N,) bool: the hits within the tank's longest flight time of the busiest moment (all when
    fewer than 4 are); no vertex in the tank puts the others in time with it, and leaving them
    out bounds the histograms however long the readout window is."""
    crossing = float(np.hypot(2 * det.radius, 2 * det.half_height)) * det.n_water / C_M_PER_NS
    busiest = float(_mode(t[None], crossing)[0][0])
    near = np.abs(t - busiest) <= crossing + GRID_WINDOW
    return near if near.sum() >= 4 else np.ones(len(t), bool)


def _inside(v: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """(3,) ``v`` moved onto the cylinder if it is outside."""
    r = float(np.hypot(v[0], v[1]))
    out = v.copy()
    if r > radius:
        out[:2] *= radius / r
    out[2] = np.clip(v[2], -half_height, half_height)
    return out


def fit_vertex(
    event: Event, detector: WaterCherenkovConfig | None = None
) -> tuple[np.ndarray, float]:
    """The point-fit vertex and emission time of one event (module docstring).

    Args:
        event: hits with ``coord`` (N, 3) m, ``time`` (N,) ns.
        detector: tank size and refractive index (the simulator's defaults if None).

    Returns:
        vertex (3,) float64 m inside the tank, t0 ns.

    Raises:
        ValueError: the event has no times or fewer than 4 hits (named).
    """
    det = detector or _DETECTOR
    coord, t, _ = _hits(event)
    R, H, n = det.radius, det.half_height, det.n_water
    prompt = _prompt(t, det)
    coord, t = coord[prompt], t[prompt]
    grid = _grid(R, H, GRID_SPACING)  # (G, 3)
    t0, counts = _mode(t[None] - _flight_time(coord, grid, n), GRID_WINDOW)
    order = np.argsort(-counts, kind="stable")[:CANDIDATES]

    def loss(p: np.ndarray, sigma: float) -> float:
        v = _inside(p[:3], R, H)
        r = t - p[3] - _flight_time(coord, v, n)  # (N,)
        outside = float(np.linalg.norm(p[:3] - v))  # pulls a step that left the tank back
        return -float(np.exp(-0.5 * (r / sigma) ** 2).sum()) + 10.0 * outside

    best, best_loss = np.r_[grid[order[0]], t0[order[0]]], np.inf
    for g in order:
        p = np.r_[grid[g], t0[g]]
        for sigma in SIGMAS:
            step = np.r_[np.full(3, sigma * C_M_PER_NS / n), sigma]  # one sigma in space and time
            simplex = np.vstack([p, p + np.diag(step)])  # (5, 4)
            res = minimize(
                loss,
                p,
                args=(sigma,),
                method="Nelder-Mead",
                options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-6},
            )
            p = res.x
        value = loss(p, SIGMAS[-1])
        if value < best_loss:
            best, best_loss = p, value
    return _inside(best[:3], R, H), float(best[3])


def _in_time(
    coord: np.ndarray, t: np.ndarray, vertex: np.ndarray, t0: float, n_water: float
) -> np.ndarray:
    """(N,) bool: the hit's residual lies in :data:`IN_TIME`."""
    r = t - t0 - _flight_time(coord, vertex, n_water)
    return (r >= IN_TIME[0]) & (r <= IN_TIME[1])


def fit_direction(
    event: Event,
    vertex: np.ndarray,
    t0: float | None = None,
    detector: WaterCherenkovConfig | None = None,
) -> np.ndarray:
    """Unit (3,) float64 direction: the charge-weighted mean of the unit vectors from ``vertex``
    (3,) m to the hits whose residual lies in :data:`IN_TIME` (t0 from the residual mode if
    None; all hits when none is in time).

    Raises:
        ValueError: the event has no times or fewer than 4 hits, or a zero mean (named).
    """
    det = detector or _DETECTOR
    coord, t, q = _hits(event)
    v = np.asarray(vertex, np.float64)
    if t0 is None:
        prompt = _prompt(t, det)
        u = t[prompt] - _flight_time(coord[prompt], v, det.n_water)  # (N',) emission times
        t0 = float(_mode(u[None], SIGMAS[-1])[0][0])
    keep = _in_time(coord, t, v, t0, det.n_water)
    if not keep.any():
        keep = np.ones(len(t), bool)
    u = coord[keep] - v
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)  # (N', 3)
    mean = (q[keep, None] * u).sum(0)
    norm = float(np.linalg.norm(mean))
    if not norm > 0:
        raise ValueError(f"{event.where}: the hits' directions from the vertex cancel")
    return mean / norm


@dataclass(frozen=True, kw_only=True)
class EnergyCalibration:
    """Kinetic energy (MeV) = ``slope`` * total charge (pe) + ``intercept``."""

    slope: float
    """MeV per pe."""
    intercept: float
    """MeV."""

    def predict(self, event: Event) -> float:
        """MeV estimated from the event's total charge."""
        return self.slope * total_charge(event) + self.intercept


def total_charge(event: Event) -> float:
    """pe summed over the event's hits.

    Raises:
        ValueError: the event has no times or fewer than 4 hits (named).
    """
    return float(_hits(event)[2].sum())


def fit_energy_calibration(events: Sequence[Event]) -> EnergyCalibration:
    """Least-squares line of ``meta['primary_energy']`` (MeV) against :func:`total_charge`.

    Raises:
        ValueError: fewer than 2 events, an event without ``primary_energy`` (named) or all
            events with the same charge.
    """
    if len(events) < 2:
        raise ValueError(f"fit_energy_calibration: needs at least 2 events, got {len(events)}")
    for e in events:
        if "primary_energy" not in e.meta:
            raise ValueError(f"{e.where}: no event truth 'primary_energy' in meta")
    q = np.array([total_charge(e) for e in events])  # (E,)
    energy = np.array([float(e.meta["primary_energy"]) for e in events])  # (E,)
    if np.ptp(q) == 0:
        raise ValueError("fit_energy_calibration: every event has the same charge")
    slope, intercept = np.polyfit(q, energy, 1)
    return EnergyCalibration(slope=float(slope), intercept=float(intercept))


def true_vertex(event: Event) -> np.ndarray:
    """(3,) float64 first true vertex, m (the event task's ``vertex_x/y/z``).

    Raises:
        ValueError: the event has no true vertex (named).
    """
    if event.vertices is None or len(event.vertices) == 0:
        raise ValueError(f"{event.where}: no true vertex")
    return event.vertices[0].astype(np.float64)


def true_direction(event: Event) -> np.ndarray:
    """(3,) unit momentum of the first primary particle (the event task's ``dir_x/y/z``)."""
    p = event.particles
    primary = np.flatnonzero(p.is_primary) if p is not None else np.zeros(0, np.int64)
    mom = p.momentum[primary[0]].astype(np.float64) if p is not None and len(primary) else None
    if mom is None or not np.linalg.norm(mom) > 0:
        raise ValueError(f"{event.where}: no primary particle with momentum")
    return mom / np.linalg.norm(mom)


def evaluate_fit(
    train_events: Sequence[Event],
    test_events: Sequence[Event],
    detector: WaterCherenkovConfig | None = None,
) -> dict[str, float | int]:
    """Calibrate the energy on ``train_events``, fit every test event and score it as the
    network rows are scored (:func:`nufm.eval.metrics.vector_error_block`,
    :func:`nufm.eval.metrics.regression_metrics`).

    Returns:
        ``n_events``; ``vertex_m_median`` / ``vertex_m_q68``: distance to the true vertex (m);
        ``angle_deg_median`` / ``angle_deg_q68``: angle to the first primary's momentum;
        ``energy_relative_resolution`` (half-width of the central 68.27 % of
        (E_pred - E_true) / E_true), ``energy_relative_bias`` (its median) and
        ``energy_bias_mev`` (median E_pred - E_true).
    """
    if not test_events:
        raise ValueError("evaluate_fit: no test events")
    calibration = fit_energy_calibration(train_events)
    vertex, vertex_true, direction, direction_true, energy, energy_true = [], [], [], [], [], []
    for e in test_events:
        if "primary_energy" not in e.meta:
            raise ValueError(f"{e.where}: no event truth 'primary_energy' in meta")
        v, t0 = fit_vertex(e, detector)
        vertex.append(v)
        vertex_true.append(true_vertex(e))
        direction.append(fit_direction(e, v, t0, detector))
        direction_true.append(true_direction(e))
        energy.append(calibration.predict(e))
        energy_true.append(float(e.meta["primary_energy"]))
    dist = vector_error_block(
        ("vertex_x", "vertex_y", "vertex_z"), np.stack(vertex), np.stack(vertex_true)
    )
    angle = vector_error_block(
        ("dir_x", "dir_y", "dir_z"), np.stack(direction), np.stack(direction_true)
    )
    reg = regression_metrics(np.asarray(energy), np.asarray(energy_true))
    return {
        "n_events": len(test_events),
        "vertex_m_median": dist["vertex_distance"]["median"],
        "vertex_m_q68": dist["vertex_distance"]["q68"],
        "angle_deg_median": angle["direction_angle_deg"]["median"],
        "angle_deg_q68": angle["direction_angle_deg"]["q68"],
        "energy_relative_resolution": reg.relative_resolution,
        "energy_relative_bias": reg.relative_bias,
        "energy_bias_mev": reg.median,
    }
