"""Water Cherenkov event truth: the per-event targets of its tasks, derived from the true
particle table so that every reader and the simulator give the same numbers.

Owns :data:`EVENT_LABELS` / :data:`EVENT_LABEL_NAMES` (the WatChMaL labels, gamma 0, electron
1, muon 2, extended by nufm with pi0 3 and pi+ 4), :data:`MASS_MEV`, :func:`cherenkov_threshold`,
:func:`kinetic_energy_mev` and :func:`event_truth`, which writes into ``Event.meta``:

* ``wc_label``: label of the first primary particle (-1 when it has none);
* ``n_rings``: Cherenkov rings = primary charged particles (e, mu, charged pi) above their
  Cherenkov threshold, plus photons of at least :data:`RING_MIN_PHOTON_MEV` that are primary
  or come from a primary pi0 (each starts an electromagnetic shower, a fuzzy ring). Decay
  electrons (delayed light) and secondary pions are not counted, as in the single-vs-multi-ring
  selections of the Super-Kamiokande analyses;
* ``primary_energy``: kinetic energy of the first primary, MeV (the layout's ``energies``).
"""

from __future__ import annotations

import math

import numpy as np

from nufm.data.event import Particles

EVENT_LABELS = {22: 0, 11: 1, 13: 2, 111: 3, 211: 4}
"""|PDG code| of the first primary -> event label."""
EVENT_LABEL_NAMES = ("gamma", "e", "mu", "pi0", "pi+")
"""Event label names (index = label)."""
REFRACTIVE_INDEX = 1.33
"""Water (the simulator's value)."""
MASS_MEV = {
    11: 0.511,
    13: 105.66,
    22: 0.0,
    111: 134.98,
    211: 139.57,
    321: 493.68,
    2112: 939.57,
    2212: 938.27,
}
"""Rest mass by |PDG code|, MeV."""
RING_MIN_PHOTON_MEV = 10.0
"""Smallest photon energy counted as a ring."""


def cherenkov_threshold(mass_mev: float, n: float = REFRACTIVE_INDEX) -> float:
    """Kinetic energy (MeV) above which a particle of ``mass_mev`` emits Cherenkov light:
    ``beta > 1/n``, i.e. ``KE > m (1 / sqrt(1 - 1/n^2) - 1)`` (e 0.26, mu 54.6, pi 72.1 MeV
    in water)."""
    return mass_mev * (1.0 / math.sqrt(1.0 - 1.0 / n**2) - 1.0)


def kinetic_energy_mev(p: Particles, i: int) -> float:
    """Kinetic energy (MeV) of particle row ``i`` from its momentum (GeV/c) and mass."""
    mass = MASS_MEV.get(abs(int(p.pdg[i])), 0.0)
    pm = float(np.linalg.norm(p.momentum[i].astype(np.float64))) * 1000.0
    return math.hypot(pm, mass) - mass


def event_truth(particles: Particles | None) -> dict[str, float | int]:
    """``wc_label``, ``n_rings`` and ``primary_energy`` of an event (module docstring); empty
    when the event has no particle table."""
    if particles is None or len(particles) == 0:
        return {}
    primary = np.nonzero(particles.is_primary)[0]
    first = int(primary[0]) if len(primary) else 0
    label = EVENT_LABELS.get(abs(int(particles.pdg[first])), -1)
    pi0_ids = {int(particles.id[i]) for i in primary if abs(int(particles.pdg[i])) == 111}
    rings = 0
    for i in range(len(particles)):
        pdg = abs(int(particles.pdg[i]))
        ke = kinetic_energy_mev(particles, i)
        if pdg == 22 and (particles.is_primary[i] or int(particles.parent[i]) in pi0_ids):
            rings += ke >= RING_MIN_PHOTON_MEV
        elif particles.is_primary[i] and pdg in (11, 13, 211, 2212):
            rings += ke > cherenkov_threshold(MASS_MEV[pdg])
    return {
        "wc_label": label,
        "n_rings": int(rings),
        "primary_energy": kinetic_energy_mev(particles, first),
    }
