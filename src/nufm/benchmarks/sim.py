"""Throughput benchmark of the built-in simulators: the LArTPC (:mod:`nufm.sim`) and the
collider TPC (:mod:`nufm.sim.collider_tpc`).

Owns :func:`bench_simulator`: events per second on one core (median over repeats) and points
(voxels or hits) per event, for the default LArTPC configuration, a cosmic-free one (the event
mix follows PILArNet, arXiv:2006.01993), the default collider TPC, 500 MeV muons and
electrons and numu CC events (300-2000 MeV) in the water Cherenkov detector (points are PMT
hits) and the FASERCal neutrino
interactions (points are reconstructed voxels, ghosts included, and calorimeter cells).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from nufm.sim import SimConfig, simulate_event
from nufm.sim.collider_tpc import ColliderTPCConfig, simulate_collider_event
from nufm.sim.fasercal import FaserCalConfig, simulate_fasercal_event
from nufm.sim.generator import event_seed
from nufm.sim.water_cherenkov import (
    WaterCherenkovConfig,
    generate_wc_cc_events,
    simulate_wc_event,
)

log = logging.getLogger(__name__)


def bench_simulator(n_events: int = 200, repeats: int = 3, seed: int = 0) -> list[dict]:
    """Time :func:`nufm.sim.simulate_event` in this process (one core).

    Args:
        n_events: events per repeat.
        repeats: timed repeats; the median is reported.
        seed: stream seed (each repeat simulates the same events).

    Returns:
        One dict per configuration: name, events_per_s (median), ms_per_event,
        points_per_event (mean), points_per_s, n_events, repeats.
    """
    if n_events < 1 or repeats < 1:
        raise ValueError(
            f"bench_simulator: need n_events >= 1 and repeats >= 1, got {n_events}, {repeats}"
        )
    simulate_event(0)  # load / compile the numba kernels outside the timing
    rows = []
    tpc = ColliderTPCConfig()
    wc = WaterCherenkovConfig()
    faser = FaserCalConfig()
    runs = {
        "default": lambda i: simulate_event(event_seed(seed, i), SimConfig()),
        "no_cosmics": lambda i: simulate_event(
            event_seed(seed, i), replace(SimConfig(), cosmic_fraction=0.0)
        ),
        "collider_tpc": lambda i: simulate_collider_event(
            tpc, np.random.default_rng((seed, i, 0xC011)), i
        ),
        "water_cherenkov_mu_500MeV": lambda i: simulate_wc_event(
            wc, np.random.default_rng((seed, i)), [("mu-", 500.0)], i
        ),
        "water_cherenkov_e_500MeV": lambda i: simulate_wc_event(
            wc, np.random.default_rng((seed, i)), [("e-", 500.0)], i
        ),
        "water_cherenkov_numu_cc": lambda i: next(
            generate_wc_cc_events(1, seed * 100_003 + i, "numu", cfg=wc)
        ),
        "fasercal": lambda i: simulate_fasercal_event(
            faser, np.random.default_rng((seed, i, 0xFA5E)), i
        ),
    }
    for name, run in runs.items():
        times, points = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            points = sum(len(run(i)) for i in range(n_events))
            times.append(time.perf_counter() - t0)
        dt = float(np.median(times))
        rows.append(
            {
                "name": name,
                "events_per_s": n_events / dt,
                "ms_per_event": 1e3 * dt / n_events,
                "points_per_event": points / n_events,
                "points_per_s": points / dt,
                "n_events": n_events,
                "repeats": repeats,
            }
        )
        log.info(
            "sim bench %s: %.0f events/s, %.0f points/event",
            name,
            rows[-1]["events_per_s"],
            rows[-1]["points_per_event"],
        )
    return rows
