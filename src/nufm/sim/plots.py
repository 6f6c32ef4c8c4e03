"""Validation figures of the simulator: pure functions returning matplotlib Figures.

Owns the measurements behind ``docs/simulator.md`` (dE/dx vs residual range, range vs energy,
shower longitudinal profile, Michel spectrum, class fractions, points per event, event
displays) and :func:`make_simulator_figures`, which writes them as PNG files. Reference values:
PDG ch. 34 and the PDG liquid-argon muon table; class fractions of PILArNet-M
(PoLAr-MAE, arXiv:2502.02558).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nufm.data.event import Event
from nufm.data.lartpc import SEGMENT_NAMES
from nufm.sim.config import SimConfig
from nufm.sim.physics import (
    MICHEL_ENDPOINT_MEV,
    MMU,
    MP,
    X0_CM,
    csda_range_cm,
    dedx_bethe,
    longo_profile,
    michel_pdf,
    shower_tmax,
)
from nufm.sim.single import single_particle_deposits, track_profile

log = logging.getLogger(__name__)

PILARNET_CLASS_FRACTIONS = (0.368, 0.389, 0.0065, 0.0176, 0.219)
"""Point shares of shower, track, Michel, delta, low-energy in PILArNet-M v1 (PoLAr-MAE class
weights, arXiv:2502.02558; docs/references.md)."""
PDG_MUON_CSDA = (
    np.array([10, 14, 20, 30, 40, 80, 100, 140, 200, 300, 400, 800, 1000, 1400, 2000.0]),
    np.array(
        [
            0.9833,
            1.786,
            3.321,
            6.598,
            10.58,
            30.84,
            42.50,
            67.32,
            106.3,
            172.5,
            238.5,
            493.4,
            616.3,
            855.2,
            1202.0,
        ]
    ),
)
"""PDG muon table for liquid argon (Groom, Mokhov, Striganov; muonloss_289): kinetic energy MeV,
CSDA range g/cm^2. Divide by the density 1.396 for cm."""
SEGMENT_COLORS = ("tab:orange", "tab:blue", "tab:green", "tab:red", "0.6")

_NO_HADRONIC = {"proton_interaction_length_cm": 1e9, "pion_interaction_length_cm": 1e9}


def _savefig(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _axes(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    """A pyplot-free figure (no global state, works headless) and its Axes (array if ncols>1)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def dedx_vs_residual_range(
    pdg: int, ke_mev: float, seeds: range, cfg: SimConfig, bin_cm: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean own-deposit dE/dx (MeV/cm) in residual-range bins of stopping particles.

    Returns:
        (bin centres (K,) cm, dE/dx (K,) MeV/cm) averaged over ``seeds``.
    """
    cfg = replace(cfg, **_NO_HADRONIC)
    range_cm = float(csda_range_cm(ke_mev, MMU if abs(pdg) == 13 else MP))
    edges = np.arange(0.0, range_cm + bin_cm, bin_cm)
    total = np.zeros(len(edges) - 1)
    for s in seeds:
        dep = single_particle_deposits(pdg, ke_mev, s, cfg, world_cm=3000.0)
        rr, e, _ = track_profile(dep)
        total += np.histogram(rr, edges, weights=e)[0]
    return 0.5 * (edges[1:] + edges[:-1]), total / (len(seeds) * bin_cm)


def plot_dedx_residual_range(cfg: SimConfig = SimConfig()) -> Figure:
    """dE/dx vs residual range for stopping muons (300 MeV) and protons (200 MeV) vs Bethe."""
    fig, ax = _axes((6, 4))
    for pdg, ke, mass, color, name in (
        (13, 300.0, MMU, "tab:blue", "muon"),
        (2212, 200.0, MP, "tab:red", "proton"),
    ):
        r, dedx = dedx_vs_residual_range(pdg, ke, range(10), cfg, bin_cm=0.5)
        ax.plot(r, dedx, "o", ms=2.5, color=color, label=f"sim {name} {ke:.0f} MeV")
        # Bethe-Bloch prediction: kinetic energy at residual range r from the CSDA table
        grid = np.geomspace(0.5, ke, 400)
        rg = csda_range_cm(grid, mass)
        ax.plot(
            rg,
            [dedx_bethe(float(t), mass, 0.0) for t in grid],
            "-",
            color=color,
            lw=1,
            label=f"Bethe-Bloch {name}",
        )
    ax.axhline(2.1, color="k", ls=":", lw=1, label="MIP 2.1 MeV/cm")
    ax.set(
        xlim=(0, 40),
        ylim=(0, 25),
        xlabel="residual range [cm]",
        ylabel="dE/dx [MeV/cm]",
        title="Energy loss vs residual range (LAr)",
    )
    ax.legend(fontsize=7)
    return fig


def measured_ranges(pdg: int, kes: np.ndarray, n_seeds: int, cfg: SimConfig) -> np.ndarray:
    """Mean path length (cm) of stopping particles at each kinetic energy (no hadronic ends)."""
    cfg = replace(cfg, **_NO_HADRONIC)
    return np.array(
        [
            np.mean(
                [
                    track_profile(single_particle_deposits(pdg, float(k), s, cfg, world_cm=4000.0))[
                        2
                    ]
                    for s in range(n_seeds)
                ]
            )
            for k in kes
        ]
    )


def plot_range_energy(cfg: SimConfig = SimConfig()) -> Figure:
    """Simulated path length vs kinetic energy against the PDG muon CSDA table and the
    integrated Bethe-Bloch range for protons."""
    fig, ax = _axes((6, 4))
    ke_t, r_t = PDG_MUON_CSDA
    ax.loglog(ke_t, r_t / 1.396, "ks", ms=4, mfc="none", label="PDG muon CSDA table")
    kes = np.array([20.0, 50.0, 100.0, 300.0, 1000.0])
    ax.loglog(kes, measured_ranges(13, kes, 4, cfg), "o", color="tab:blue", label="sim muon")
    kp = np.array([20.0, 50.0, 100.0, 200.0, 400.0])
    ax.loglog(kp, measured_ranges(2212, kp, 4, cfg), "o", color="tab:red", label="sim proton")
    grid = np.geomspace(5, 2000, 100)
    ax.loglog(
        grid, csda_range_cm(grid, MP), "-", color="tab:red", lw=1, label="Bethe-Bloch CSDA proton"
    )
    ax.loglog([100.0], [7.7], "k^", ms=6, mfc="none", label="proton 100 MeV: 7.7 cm (PSTAR)")
    ax.set(xlabel="kinetic energy [MeV]", ylabel="range [cm]", title="Range in LAr")
    ax.legend(fontsize=7)
    return fig


def shower_profile(
    pdg: int, e_mev: float, seeds: range, cfg: SimConfig, bin_x0: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Mean longitudinal profile (1/E) dE/dt, t in X0 along the initial direction (+x)."""
    edges = np.arange(0.0, 20.0 + bin_x0, bin_x0)
    total = np.zeros(len(edges) - 1)
    for s in seeds:
        dep = single_particle_deposits(pdg, e_mev, s, cfg, world_cm=4000.0)
        t = (dep.position[:, 0] - 2000.0) / X0_CM
        total += np.histogram(t, edges, weights=dep.energy)[0]
    return 0.5 * (edges[1:] + edges[:-1]), total / (len(seeds) * e_mev * bin_x0)


def plot_shower_profile(cfg: SimConfig = SimConfig()) -> Figure:
    """Longitudinal profile of 1 GeV electron and photon showers vs the Longo Gamma function."""
    fig, ax = _axes((6, 4))
    for pdg, color, name in ((11, "tab:blue", "electron"), (22, "tab:red", "photon")):
        t, prof = shower_profile(pdg, 1000.0, range(20), cfg)
        ax.step(t, prof, where="mid", color=color, label=f"sim {name} 1 GeV (20 showers)")
        ax.plot(
            t,
            longo_profile(t, 1000.0, pdg == 22),
            "--",
            color=color,
            label=f"Gamma fn, t_max={shower_tmax(1000.0, pdg == 22):.2f} X0",
        )
    ax.set(xlabel="depth t [X0 = 14 cm]", ylabel="(1/E) dE/dt", title="Shower longitudinal profile")
    ax.legend(fontsize=7)
    return fig


def michel_energies(n_muons: int, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Stop ``n_muons`` 60 MeV mu+ and return (Michel total energies from the truth table MeV,
    visible energy deposited by the Michel electron itself MeV)."""
    true_e, vis = [], []
    for s in range(n_muons):
        dep = single_particle_deposits(-13, 60.0, s, cfg, world_cm=3000.0)
        michel = np.flatnonzero(dep.segment == 2)
        if len(michel) == 0:
            continue
        inst = int(dep.instance[michel[0]])
        p = float(np.linalg.norm(dep.particles.momentum[inst])) * 1e3
        true_e.append(np.hypot(p, 0.51099895))
        vis.append(float(dep.energy[dep.instance == inst].sum()))
    return np.array(true_e), np.array(vis)


def plot_michel(cfg: SimConfig = SimConfig()) -> Figure:
    """Michel electron energy (truth and visible) vs the Michel spectrum."""
    true_e, vis = michel_energies(400, cfg)
    fig, ax = _axes((6, 4))
    bins = np.linspace(0, 60, 31)
    ax.hist(true_e, bins, density=True, histtype="step", color="tab:blue", label="sim: truth E")
    ax.hist(
        vis,
        bins,
        density=True,
        histtype="step",
        color="tab:green",
        label="sim: visible (Michel label)",
    )
    x = np.linspace(0, 1, 200)
    ax.plot(
        x * MICHEL_ENDPOINT_MEV, michel_pdf(x) / MICHEL_ENDPOINT_MEV, "k--", label="x^2 (3 - 2x)"
    )
    ax.axvline(MICHEL_ENDPOINT_MEV, color="0.5", ls=":", lw=1)
    ax.set(xlabel="energy [MeV]", ylabel="density", title="Michel electrons from stopped mu+")
    ax.legend(fontsize=7)
    return fig


@dataclass
class EventStats:
    """Per-event statistics of a simulated sample (E events)."""

    n_points: np.ndarray
    """(E,) voxels per event."""
    class_counts: np.ndarray
    """(E, 5) voxels per segment class."""
    n_interactions: np.ndarray
    """(E,) interactions per event."""
    n_particles: np.ndarray
    """(E,) particles per event (truth table rows)."""


def event_stats(events: list[Event]) -> EventStats:
    """Collect :class:`EventStats` from events (which must have segment labels)."""
    segments = [e.segment for e in events if e.segment is not None]
    if len(segments) != len(events):
        raise ValueError(
            f"event_stats: {len(events) - len(segments)} of {len(events)} events have no "
            "segment labels"
        )
    return EventStats(
        n_points=np.array([len(e) for e in events]),
        class_counts=np.stack([np.bincount(s, minlength=5)[:5] for s in segments]),
        n_interactions=np.array([e.meta["n_interactions"] for e in events]),
        n_particles=np.array([e.meta["n_particles"] for e in events]),
    )


def plot_class_fractions(stats: EventStats) -> Figure:
    """Voxel share per class, simulation vs PILArNet-M."""
    sim = stats.class_counts.sum(0) / stats.class_counts.sum()
    fig, ax = _axes((6, 3.5))
    xs = np.arange(5)
    ax.bar(xs - 0.2, sim, 0.4, label="sim", color="tab:blue")
    ax.bar(xs + 0.2, PILARNET_CLASS_FRACTIONS, 0.4, label="PILArNet-M v1", color="0.6")
    for x, v in zip(xs, sim, strict=False):
        ax.text(x - 0.2, v, f"{100 * v:.1f}%", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, SEGMENT_NAMES)
    ax.set(ylabel="voxel fraction", title=f"Class fractions ({len(stats.n_points)} events)")
    ax.legend(fontsize=8)
    return fig


def plot_points_per_event(stats: EventStats) -> Figure:
    """Histogram of voxels per event with the PILArNet 1k-30k range marked."""
    fig, ax = _axes((6, 3.5))
    ax.hist(stats.n_points, bins=np.geomspace(50, 50000, 40), color="tab:blue")
    ax.set_xscale("log")
    for v in (1000, 30000):
        ax.axvline(v, color="k", ls=":", lw=1)
    ax.set(
        xlabel="voxels per event",
        ylabel="events",
        title=f"mean {stats.n_points.mean():.0f}, median {np.median(stats.n_points):.0f}",
    )
    return fig


def plot_event(event: Event, title: str = "") -> Figure:
    """Three 2D projections of one event, voxels coloured by semantic class."""
    fig, axes = _axes((15, 5), 3)
    for ax, (i, j), name in zip(
        axes, ((0, 1), (0, 2), (2, 1)), ("x-y", "x-z", "z-y"), strict=False
    ):
        for c in range(5):
            sel = event.segment == c
            ax.scatter(
                event.coord[sel, i],
                event.coord[sel, j],
                s=0.3,
                c=SEGMENT_COLORS[c],
                label=SEGMENT_NAMES[c],
                rasterized=True,
            )
        ax.set(xlim=(0, 768), ylim=(0, 768), aspect="equal", title=name)
    axes[0].legend(markerscale=15, fontsize=7, loc="upper right")
    fig.suptitle(title or f"sim event {event.event_id}: {len(event)} voxels")
    return fig


def make_simulator_figures(
    outdir: str | Path, n_events: int = 300, seed: int = 0, cfg: SimConfig = SimConfig()
) -> list[Path]:
    """Write every validation figure as ``sim_*.png`` into ``outdir``; returns the paths."""
    from nufm.sim.generator import generate_events

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    events = list(generate_events(n_events, seed, cfg))
    stats = event_stats(events)
    figs = {
        "sim_dedx_residual_range.png": plot_dedx_residual_range(cfg),
        "sim_range_energy.png": plot_range_energy(cfg),
        "sim_shower_profile.png": plot_shower_profile(cfg),
        "sim_michel_spectrum.png": plot_michel(cfg),
        "sim_class_fractions.png": plot_class_fractions(stats),
        "sim_points_per_event.png": plot_points_per_event(stats),
        "sim_event_0.png": plot_event(events[0]),
        "sim_event_1.png": plot_event(events[1]),
    }
    paths = []
    for name, fig in figs.items():
        _savefig(fig, out / name)
        paths.append(out / name)
        log.info("wrote %s", out / name)
    return paths
