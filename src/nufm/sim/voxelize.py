"""Deposits -> voxels: sum energy per 3 mm voxel and label each voxel by its dominant contributor.

PILArNet (arXiv:2006.01993) stores one row per voxel of the 768^3 cube with the energy summed
over all particles and the labels of the particle that deposited the most energy there. This file
owns exactly that reduction (numba, one sort of the deposits).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def voxelize_deposits(dep: np.ndarray, n_dep: int, n_labels: int, voxel_cm: float,
                      n_vox: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sum deposits per voxel and pick the label row with the largest energy in each voxel.

    Args:
        dep: (M, 5) float64 deposits (x, y, z in cm, energy MeV, label row); rows [0, n_dep).
        n_dep: number of valid deposit rows.
        n_labels: number of label rows (label ids are in [0, n_labels)).
        voxel_cm: voxel pitch, cm.
        n_vox: voxels per axis.

    Returns:
        (index (V, 3) int64 voxel indices sorted by linear index, energy (V,) float64 MeV,
        label (V,) int64 dominant label row, n_outside) where n_outside counts deposits that lie
        outside the cube (particles leaving the volume) and were not voxelized.
    """
    keys = np.empty(n_dep, np.int64)
    n_outside = 0
    for i in range(n_dep):
        ix = int(np.floor(dep[i, 0] / voxel_cm))
        iy = int(np.floor(dep[i, 1] / voxel_cm))
        iz = int(np.floor(dep[i, 2] / voxel_cm))
        if ix < 0 or iy < 0 or iz < 0 or ix >= n_vox or iy >= n_vox or iz >= n_vox:
            keys[i] = -1
            n_outside += 1
        else:
            vox = (ix * n_vox + iy) * n_vox + iz
            keys[i] = vox * n_labels + int(dep[i, 4])
    order = np.argsort(keys)
    index = np.empty((n_dep, 3), np.int64)
    energy = np.zeros(n_dep, np.float64)
    label = np.empty(n_dep, np.int64)
    n_out = 0
    cur_vox = -1
    best_e = 0.0
    j = 0
    while j < n_dep:
        key = keys[order[j]]
        if key < 0:
            j += 1
            continue
        # sum all deposits with this (voxel, label) key
        e = 0.0
        k = j
        while k < n_dep and keys[order[k]] == key:
            e += dep[order[k], 3]
            k += 1
        vox = key // n_labels
        lab = key - vox * n_labels
        if vox != cur_vox:
            cur_vox = vox
            index[n_out, 0] = vox // (n_vox * n_vox)
            index[n_out, 1] = (vox // n_vox) % n_vox
            index[n_out, 2] = vox % n_vox
            label[n_out] = lab
            best_e = e
            n_out += 1
        elif e > best_e:
            label[n_out - 1] = lab
            best_e = e
        energy[n_out - 1] += e
        j = k
    return index[:n_out], energy[:n_out], label[:n_out], n_outside
