"""FASERCal-like detector facts shared by its simulator, file layout, displays and presets
(the FASERCal foundation-model study, arXiv:2604.07037; docs/detectors.md).

Owns the geometry constants, the sub-detector stream ids, the per-voxel label names and the
per-event truth vocabularies. Coordinates are in cm, detector frame: the beam runs along +z,
the scintillator block is centred on the z axis and spans z in [-100, 100).

Streams (``Event.stream``):

======  ==================  ================================================================
id      sub-detector         points
======  ==================  ================================================================
0       scintillator        reconstructed 3D voxels (1 cm cubes, real and ghost), energy MeV
1       ECAL                the 25 cells of the 5 x 5 matrix (every cell, zeros included), MeV
2       HCAL                occupied cells of the coarse 3D hadronic calorimeter, MeV
3       muon spectrometer   hits on up to 10 planes (one per muon-like track and plane), MeV
======  ==================  ================================================================
"""

from __future__ import annotations

import numpy as np

# --- scintillator: 10 modules of 48 x 48 x 20 cubes of 1 cm ------------------------------
VOXEL_CM = 1.0
N_XY = 48
"""Cubes per transverse side."""
MODULE_DEPTH = 20
"""Cubes per module along z."""
N_MODULES = 10
N_Z = MODULE_DEPTH * N_MODULES
"""Cubes along z (200)."""
SCINT_MIN = np.array([-24.0, -24.0, -100.0], np.float32)
"""Lower corner of the scintillator block, cm."""
SCINT_MAX = np.array([24.0, 24.0, 100.0], np.float32)
"""Upper corner of the scintillator block, cm."""
RADIATION_LENGTHS = 8.7
"""Radiation lengths of the whole block along z (scintillator and tungsten)."""
INTERACTION_LENGTHS = 2.9
"""Nuclear interaction lengths of the whole block along z."""
X0_CM = float(SCINT_MAX[2] - SCINT_MIN[2]) / RADIATION_LENGTHS
"""Effective radiation length of the block (23 cm)."""
LAMBDA_CM = float(SCINT_MAX[2] - SCINT_MIN[2]) / INTERACTION_LENGTHS
"""Effective interaction length of the block (69 cm)."""

# --- electromagnetic calorimeter: 5 x 5 cells ---------------------------------------------
ECAL_CELL_CM = 12.1
ECAL_N = 5
ECAL_Z = (104.0, 144.0)
"""z extent of the ECAL, cm (about 25 radiation lengths: it contains what reaches it)."""

# --- hadronic calorimeter: a sparse volume of 10 cm cells ---------------------------------
HCAL_CELL_CM = 10.0
HCAL_N_XY = 10
HCAL_N_Z = 10
HCAL_MIN = np.array([-50.0, -50.0, 150.0], np.float32)
HCAL_LAMBDA_CM = 17.0
"""Interaction length of the iron-scintillator HCAL (about 6 lambda deep)."""

# --- muon spectrometer: planes behind the HCAL in a dipole field --------------------------
MUON_PLANES_Z = tuple(270.0 + 15.0 * k for k in range(10))
"""z of the 10 tracking planes, cm."""
MUON_HALF_WIDTH = 60.0
"""Half side of a plane, cm (hits outside are lost)."""
MUON_BEND_CM_GEV = 30.0
"""Sideways (x) displacement per 100 cm past the first plane times GeV/c: dx = k * L / p."""

# --- streams and labels -------------------------------------------------------------------
STREAM_NAMES = ("scintillator", "ecal", "hcal", "muon")
SCINT, ECAL, HCAL, MUON = 0, 1, 2, 3

LABEL_NAMES = (
    "ghost",
    "hierarchy",
    "category",
    "em_fraction",
    "muonic_fraction",
    "hadronic_fraction",
)
"""Columns of ``Event.labels`` (float32; -1 where a label does not apply, e.g. off the
scintillator). ``ghost`` 1 = a voxel the three views make but no particle crossed;
``hierarchy`` :data:`HIERARCHY_NAMES`; ``category`` :data:`CATEGORY_NAMES` (the largest
fraction); the fractions are the share of the voxel's true energy per category (soft labels)."""
HIERARCHY_NAMES = ("background", "primary", "secondary")
"""Per-voxel hierarchy: background (ghosts), a primary particle of the interaction, a
particle made downstream (shower, decay or re-interaction products)."""
CATEGORY_NAMES = ("electromagnetic", "muonic", "hadronic")
"""Per-voxel particle category (``Event.segment``; ghosts -1)."""

FLAVOUR_NAMES = ("nue_cc", "numu_cc", "nutau_cc_e", "nutau_cc_mu", "nutau_cc_had", "nc")
"""Per-event flavour classes (``meta['flavour']``)."""
CHARM_NAMES = ("none", "charm_e", "charm_mu", "charm_had")
"""Per-event charm classes (``meta['charm']``): no charm, or the charm hadron's decay."""
