"""Tiny, dependency-free fake LArTPC events for tests: straight tracks, blob showers, scatters.

This is NOT the physics simulator (that is :mod:`nufm.sim`). It makes small, fully labelled
:class:`~nufm.data.event.Event` records in the PILArNet-M voxel cube (arXiv:2502.02558;
docs/references.md) fast enough for unit tests: every point has a semantic class, PID, particle
(instance) and interaction id, and the particle table and interaction vertices are filled and
consistent with the per-point labels.

Owns: :func:`synthetic_event`, :func:`synthetic_events`.
"""

from __future__ import annotations

import numpy as np

from nufm.data.event import Event, Particles
from nufm.data.lartpc import (
    DELTA,
    ELECTRON,
    LOW_ENERGY,
    MICHEL,
    MUON,
    PHOTON,
    PID_NONE,
    PION,
    PROTON,
    SHOWER,
    TRACK,
    VOLUME_SIZE,
)

_TRACK_PIDS = ((MUON, 13), (PROTON, 2212), (PION, 211))
_SHOWER_PIDS = ((ELECTRON, 11), (PHOTON, 22))


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _line(start: np.ndarray, direction: np.ndarray, length: float) -> np.ndarray:
    """(L, 3) points every 0.5 voxel along a straight segment."""
    steps = np.arange(0.0, length, 0.5)[:, None]  # (L, 1)
    return start[None, :] + steps * direction[None, :]


def synthetic_event(
    seed: int = 0,
    *,
    n_tracks: int = 2,
    n_showers: int = 1,
    n_interactions: int = 1,
    n_scatter: int = 20,
    michel: bool = True,
    track_length: tuple[float, float] = (20.0, 60.0),
    shower_points: tuple[int, int] = (30, 80),
) -> Event:
    """One small labelled event on the integer voxel grid of the 768^3 cube.

    Per interaction: ``n_tracks`` straight tracks (muon first, then protons/pions) and
    ``n_showers`` cone-shaped blobs (electrons/photons) start at a common vertex; the muon
    gets a Michel electron at its end when ``michel``; one delta ray hangs off the first track.
    ``n_scatter`` isolated low-energy deposits (segment 4, instance -1) are sprinkled around.
    Points landing on the same voxel are merged (first label kept, energies summed), so every
    voxel is unique as in PILArNet-M.

    Args:
        seed: seed of the generator; the same seed gives the same event.
        n_tracks: track-like primaries per interaction (>= 1 when ``michel``).
        n_showers: shower-like primaries per interaction.
        n_interactions: number of interactions (vertices).
        n_scatter: low-energy scatter points (segment 4).
        michel: add a Michel electron at the end of the muon.
        track_length: range of track lengths in voxels.
        shower_points: range of points per shower.

    Returns:
        Event with coord (N, 3) float32 voxel units (integer-valued), energy (N,) float32 MeV,
        segment/pid/instance/interaction (N,) int64, particles, vertices (I, 3) float32,
        ``source='synthetic'``, ``event_id=seed``, ``meta={'n_interactions': I}``.
    """
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    labels: list[tuple[int, int, int, int]] = []  # (segment, pid, instance, interaction)
    energies: list[np.ndarray] = []
    part_rows: list[tuple[int, int, np.ndarray, np.ndarray, bool, int, int]] = []
    vertices = rng.uniform(200.0, VOLUME_SIZE - 200.0, size=(n_interactions, 3))

    def add(
        points: np.ndarray, energy: np.ndarray, seg: int, pid: int, inst: int, inter: int
    ) -> None:
        pts.append(points)
        energies.append(energy.astype(np.float64))
        labels.append((seg, pid, inst, inter))

    pid_counter = 0
    for inter in range(n_interactions):
        vtx = vertices[inter]
        for t in range(n_tracks):
            pid, pdg = _TRACK_PIDS[0] if t == 0 else _TRACK_PIDS[1 + (t - 1) % 2]
            d = _unit(rng)
            length = rng.uniform(*track_length)
            line = _line(vtx, d, length)
            mom = d * rng.uniform(0.2, 1.0)
            track_id = pid_counter
            part_rows.append((track_id, pdg, mom, vtx, True, inter, -1))
            pid_counter += 1
            add(line, rng.gamma(4.0, 0.5, len(line)), TRACK, pid, track_id, inter)
            if t == 0 and michel:
                end = line[-1]
                md = _unit(rng)
                mline = _line(end + md, md, rng.uniform(5.0, 12.0))
                part_rows.append((pid_counter, 11, md * 0.03, end, False, inter, track_id))
                add(mline, rng.gamma(2.0, 0.5, len(mline)), MICHEL, ELECTRON, pid_counter, inter)
                pid_counter += 1
            if t == 0:
                mid = line[len(line) // 2]
                dd = _unit(rng)
                dline = _line(mid + dd, dd, rng.uniform(3.0, 6.0))
                part_rows.append((pid_counter, 11, dd * 0.005, mid, False, inter, track_id))
                add(dline, rng.gamma(2.0, 0.3, len(dline)), DELTA, ELECTRON, pid_counter, inter)
                pid_counter += 1
        for _ in range(n_showers):
            pid, pdg = _SHOWER_PIDS[int(rng.integers(0, 2))]
            d = _unit(rng)
            gap = 0.0 if pid == ELECTRON else rng.uniform(5.0, 20.0)  # photons convert later
            start = vtx + gap * d
            n = int(rng.integers(*shower_points))
            depth = rng.gamma(3.0, 4.0, n)  # (n,) longitudinal depth, voxels
            spread = rng.normal(size=(n, 3)) * (0.3 * depth[:, None] + 0.5)
            blob = start[None, :] + depth[:, None] * d[None, :] + spread
            part_rows.append((pid_counter, pdg, d * rng.uniform(0.05, 0.5), start, True, inter, -1))
            add(blob, rng.exponential(0.8, n) + 0.05, SHOWER, pid, pid_counter, inter)
            pid_counter += 1
    centre = vertices.mean(0)
    scatter = centre[None, :] + rng.normal(size=(n_scatter, 3)) * 40.0
    add(scatter, rng.uniform(0.02, 0.4, n_scatter), LOW_ENERGY, PID_NONE, -1, -1)

    sizes = [len(p) for p in pts]
    coord = np.clip(np.rint(np.concatenate(pts)), 0, VOLUME_SIZE - 1)  # (N, 3)
    energy = np.concatenate(energies)
    lab = np.repeat(np.asarray(labels, dtype=np.int64), sizes, axis=0)  # (N, 4)
    # merge points on the same voxel: first occurrence keeps its labels, energies add up
    _, first, inverse = np.unique(coord, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    summed = np.bincount(inverse, weights=energy, minlength=len(first))
    order = np.sort(first)  # keep generation order
    remap = np.empty(len(first), np.int64)
    remap[np.argsort(first)] = np.arange(len(first))
    keep_energy = np.empty(len(first))
    keep_energy[remap] = summed
    lab = lab[order]

    ids, pdgs, moms, starts, prim, inters, parents = zip(*part_rows, strict=False)
    particles = Particles(
        id=np.asarray(ids, np.int64),
        pdg=np.asarray(pdgs, np.int64),
        momentum=np.asarray(moms, np.float32).reshape(-1, 3),
        start=np.asarray(starts, np.float32).reshape(-1, 3),
        is_primary=np.asarray(prim, bool),
        interaction=np.asarray(inters, np.int64),
        parent=np.asarray(parents, np.int64),
    )
    return Event(
        coord=coord[order].astype(np.float32),
        energy=keep_energy.astype(np.float32),
        segment=lab[:, 0].copy(),
        pid=lab[:, 1].copy(),
        instance=lab[:, 2].copy(),
        interaction=lab[:, 3].copy(),
        particles=particles,
        vertices=vertices.astype(np.float32),
        event_id=seed,
        source="synthetic",
        meta={"n_interactions": n_interactions},
    )


def synthetic_events(n: int, seed: int = 0, **kwargs: object) -> list[Event]:
    """``n`` events with seeds ``seed, seed+1, ...``; ``kwargs`` go to :func:`synthetic_event`."""
    return [synthetic_event(seed + i, **kwargs) for i in range(n)]  # type: ignore[arg-type]
