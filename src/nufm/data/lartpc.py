"""LArTPC (PILArNet-M) constants: the detector volume and the label codes.

Everything LArTPC-specific lives here and in ``nufm.sim``; models and the packed batch never
import it. Codes follow PILArNet-M (arXiv:2502.02558; docs/references.md).
"""

from __future__ import annotations

import math

VOLUME_SIZE = 768
"""Edge of the cubic volume in voxels."""
VOXEL_SIZE_CM = 0.3
"""Voxel pitch: 3 mm."""
CENTER = 384.0
"""Centre of the volume in voxel units (normalisation centre)."""
NORM_SCALE = VOLUME_SIZE * math.sqrt(3.0) / 2.0
"""665.1 voxels: maps the cube into the unit ball."""
ENERGY_THRESHOLD_MEV = 0.13
"""Default per-voxel energy threshold (PoLAr-MAE / Panda)."""

SEGMENT_NAMES = ("shower", "track", "michel", "delta", "low_energy")
"""Semantic codes: 0 shower, 1 track, 2 Michel, 3 delta, 4 low-energy deposit (LED)."""
SHOWER, TRACK, MICHEL, DELTA, LOW_ENERGY = range(5)

PID_NAMES = ("photon", "electron", "muon", "pion", "proton", "none")
"""Particle-type codes: 0 photon, 1 electron, 2 muon, 3 pion, 4 proton, 5 none."""
PHOTON, ELECTRON, MUON, PION, PROTON, PID_NONE = range(6)

PDG_TO_PID = {
    22: PHOTON,
    11: ELECTRON,
    -11: ELECTRON,
    13: MUON,
    -13: MUON,
    211: PION,
    -211: PION,
    2212: PROTON,
}
"""PDG code -> PID code; anything else maps to ``PID_NONE``."""
