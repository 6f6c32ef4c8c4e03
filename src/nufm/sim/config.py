"""Configuration of the built-in LArTPC event simulator.

The event mix imitates PILArNet (Adams et al., arXiv:2006.01993; used by PoLAr-MAE,
arXiv:2502.02558): multi-particle vertices (MPV), isolated particles (MPR) and cosmic-like muons
in a 768^3 cube of 3 mm voxels. This file owns only the defaults; the physics lives in
``physics.py`` / ``transport.py`` and the event assembly in ``generator.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """All knobs of :func:`nufm.sim.simulate_event`. Energies are kinetic energies in MeV."""

    # --- event composition -------------------------------------------------------------------
    mpv_mean: float = 2.0
    """Mean number of multi-particle vertices per image (Poisson)."""
    mpv_particles: tuple[int, int] = (1, 5)
    """Inclusive range of primaries per MPV vertex (uniform)."""
    mpr_mean: float = 1.5
    """Mean number of isolated single particles (MPR) per image (Poisson); each is its own
    interaction."""
    busyness_shape: float = 2.0
    """Shape k of a Gamma(k, 1/k) multiplier (mean 1) applied to ``mpv_mean`` and ``mpr_mean``
    per image, so that busy and quiet images both occur (negative-binomial multiplicities, as
    PILArNet's 4 +- 3 interactions per image). 0 disables it (pure Poisson)."""
    cosmic_fraction: float = 0.5
    """Probability that an image contains one cosmic-like muon crossing the volume."""
    particle_weights: tuple[float, float, float, float, float] = (0.2, 0.2, 0.2, 0.15, 0.25)
    """Relative abundance of primaries (photon, electron, muon, charged pion, proton)."""
    vertex_margin_cm: float = 25.0
    """MPV vertices are drawn uniformly at least this far from every face of the cube."""
    # --- kinetic-energy ranges of primaries (uniform), MeV -----------------------------------
    photon_energy: tuple[float, float] = (30.0, 600.0)
    """Photon energy range."""
    electron_energy: tuple[float, float] = (30.0, 600.0)
    """Electron kinetic-energy range."""
    muon_energy: tuple[float, float] = (50.0, 800.0)
    """Muon kinetic-energy range (MPV/MPR muons)."""
    pion_energy: tuple[float, float] = (30.0, 500.0)
    """Charged-pion kinetic-energy range."""
    proton_energy: tuple[float, float] = (20.0, 300.0)
    """Proton kinetic-energy range."""
    cosmic_energy: tuple[float, float] = (1000.0, 10000.0)
    """Cosmic muon kinetic-energy range (log-uniform)."""
    # --- transport ---------------------------------------------------------------------------
    step_cm: float = 0.1
    """Step length for charged particles (1 mm, a third of a voxel)."""
    delta_cut_mev: float = 3.0
    """Delta rays above this kinetic energy are produced explicitly (1/T^2 spectrum, segment 3);
    the rest of the ionisation is continuous (restricted Bethe-Bloch)."""
    landau_width: float = 0.2
    """Largest width w of the per-step Landau-like (Moyal) fluctuation:
    deposit = mean * (1 + w * (M - <M>)), M ~ Moyal clipped at ``moyal_clip``. The width used
    is min(w, Bohr relative sigma / std(M)), so dense slow particles fluctuate less."""
    moyal_clip: float = 8.0
    """Upper clip of the Moyal variate (keeps single-step deposits bounded)."""
    pion_interaction_length_cm: float = 110.0
    """Mean free path for an inelastic interaction of a charged pion in LAr."""
    proton_interaction_length_cm: float = 90.0
    """Mean free path for an inelastic interaction of a proton in LAr."""
    mu_minus_capture_prob: float = 0.75
    """Probability that a stopped mu- is captured by an argon nucleus instead of decaying."""
    brem_cut_mev: float = 1.0
    """Bremsstrahlung photons above this energy are emitted explicitly; softer ones are added to
    the local ionisation."""
    electron_cut_mev: float = 0.2
    """Electrons below this kinetic energy deposit the rest locally (range < 1 mm)."""
    photon_cut_mev: float = 0.1
    """Photons below this energy are absorbed locally (photo-effect)."""
    led_max_mev: float = 2.5
    """Electrons set free by shower photons (Compton, pair, photo-effect) below this kinetic
    energy are labelled low-energy deposits (segment 4, pid 'none', instance -1)."""
    nuclear_gamma_mean: float = 2.0
    """Mean number of nuclear de-excitation photons per MPV vertex, hadronic interaction and
    nuclear capture (their deposits are low-energy deposits)."""
    nuclear_gamma_energy_mev: float = 2.0
    """Mean energy of a de-excitation photon (exponential, capped at 10 MeV)."""
    # --- voxelization ------------------------------------------------------------------------
    voxel_threshold_mev: float = 0.0
    """Voxels with summed energy at or below this value are dropped (0 keeps all)."""

    def __post_init__(self) -> None:
        ranges = {
            "photon_energy": self.photon_energy,
            "electron_energy": self.electron_energy,
            "muon_energy": self.muon_energy,
            "pion_energy": self.pion_energy,
            "proton_energy": self.proton_energy,
            "cosmic_energy": self.cosmic_energy,
        }
        for name, (lo, hi) in ranges.items():
            if not 0.0 < lo <= hi:
                raise ValueError(f"SimConfig.{name}: need 0 < low <= high, got {(lo, hi)}")
        lo, hi = self.mpv_particles
        if not 1 <= lo <= hi:
            raise ValueError(f"SimConfig.mpv_particles: need 1 <= low <= high, got {(lo, hi)}")
        if (
            len(self.particle_weights) != 5
            or min(self.particle_weights) < 0
            or sum(self.particle_weights) <= 0
        ):
            raise ValueError(
                "SimConfig.particle_weights: need 5 non-negative weights, "
                f"not all zero, got {self.particle_weights}"
            )
        if not 0.0 <= self.cosmic_fraction <= 1.0:
            raise ValueError(
                f"SimConfig.cosmic_fraction must be in [0, 1], got {self.cosmic_fraction}"
            )
        if self.busyness_shape < 0:
            raise ValueError(f"SimConfig.busyness_shape must be >= 0, got {self.busyness_shape}")
        if self.mpv_mean < 0 or self.mpr_mean < 0:
            raise ValueError("SimConfig.mpv_mean and mpr_mean must be >= 0")
        if not 0.0 < self.step_cm <= 1.0:
            raise ValueError(f"SimConfig.step_cm must be in (0, 1] cm, got {self.step_cm}")
        if self.delta_cut_mev <= 0 or self.brem_cut_mev <= 0:
            raise ValueError("SimConfig.delta_cut_mev and brem_cut_mev must be > 0")
        if not 0.0 <= self.vertex_margin_cm < 115.0:
            raise ValueError(
                f"SimConfig.vertex_margin_cm must be in [0, 115), got {self.vertex_margin_cm}"
            )
