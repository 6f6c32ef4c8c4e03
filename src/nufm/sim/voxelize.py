"""Deposits -> voxels: sum energy per 3 mm voxel and label each voxel by its dominant contributor.

PILArNet (arXiv:2006.01993) stores one row per voxel of the 768^3 cube with the energy summed
over all particles and the labels of the particle that deposited the most energy there. This file
owns exactly that reduction (numba). A step's energy is shared among the voxels its straight
segment crosses in proportion to the chord length in each voxel, so tracks are voxelized as
continuous lines (voxels clipped at a corner receive their small share) rather than as a
sampling of step midpoints.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _split_step(
    x: float, y: float, z: float, hx: float, hy: float, hz: float, voxel_cm: float, ts: np.ndarray
) -> int:
    """Fill ``ts`` with the sorted segment parameters in [0, 1] where the step from
    (x, y, z) - h to (x, y, z) + h crosses voxel planes, with 0 and 1 at the ends.

    Returns:
        The number of filled entries (>= 2).
    """
    n = 0
    ts[n] = 0.0
    n += 1
    for axis in range(3):
        c = x if axis == 0 else (y if axis == 1 else z)
        h = hx if axis == 0 else (hy if axis == 1 else hz)
        if h == 0.0:
            continue
        a, b = c - h, c + h
        lo = math.floor(min(a, b) / voxel_cm) + 1
        hi = math.floor(max(a, b) / voxel_cm)
        for k in range(lo, hi + 1):
            ts[n] = (k * voxel_cm - a) / (2.0 * h)
            n += 1
    ts[n] = 1.0
    n += 1
    for i in range(1, n - 1):  # insertion sort of the (few) crossings
        v = ts[i]
        j = i - 1
        while j >= 1 and ts[j] > v:
            ts[j + 1] = ts[j]
            j -= 1
        ts[j + 1] = v
    return n


def voxelize_deposits(
    dep: np.ndarray, n_dep: int, n_labels: int, voxel_cm: float, n_vox: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sum deposits per voxel and pick the label row with the largest energy in each voxel.

    Args:
        dep: (M, 8) float64 deposits (x, y, z step midpoint in cm, energy MeV, label row,
            hx, hy, hz half-step vector in cm, zero for point deposits); rows [0, n_dep).
        n_dep: number of valid deposit rows.
        n_labels: number of label rows (label ids are in [0, n_labels)).
        voxel_cm: voxel pitch, cm.
        n_vox: voxels per axis.

    Returns:
        (index (V, 3) int64 voxel indices sorted by linear index, energy (V,) float64 MeV,
        label (V,) int64 dominant label row, n_outside) where n_outside counts deposit pieces
        outside the cube (particles leaving the volume), which are not voxelized.
    """
    keys, piece_e, n_outside = _pieces(dep, n_dep, n_labels, voxel_cm, n_vox)
    order = np.argsort(keys, kind="quicksort")  # numpy's C sort beats numba's here
    index, energy, label = _reduce(keys, piece_e, order, n_labels, n_vox)
    return index, energy, label, n_outside


@numba.njit(cache=True)
def _pieces(
    dep: np.ndarray, n_dep: int, n_labels: int, voxel_cm: float, n_vox: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Split steps at voxel planes: (key (K,) int64 = voxel * n_labels + label, energy (K,),
    n_outside). Consecutive pieces with the same key are merged."""
    # upper bound of pieces per step: one plus the plane crossings on each axis
    hmax = 0.0
    for i in range(n_dep):
        hmax = max(hmax, abs(dep[i, 5]), abs(dep[i, 6]), abs(dep[i, 7]))
    per_axis = math.ceil(2.0 * hmax / voxel_cm) + 1
    per_step = 3 * per_axis + 2
    cap = n_dep * (3 * per_axis + 1)
    keys = np.empty(cap, np.int64)
    piece_e = np.empty(cap, np.float64)
    ts = np.empty(per_step, np.float64)
    n_piece = 0
    n_outside = 0
    for i in range(n_dep):
        x, y, z, e = dep[i, 0], dep[i, 1], dep[i, 2], dep[i, 3]
        hx, hy, hz = dep[i, 5], dep[i, 6], dep[i, 7]
        lab = int(dep[i, 4])
        nt = _split_step(x, y, z, hx, hy, hz, voxel_cm, ts)
        for j in range(nt - 1):
            frac = ts[j + 1] - ts[j]
            if frac <= 0.0:
                continue
            tm = 0.5 * (ts[j] + ts[j + 1]) * 2.0 - 1.0  # piece midpoint in [-1, 1] units of h
            ix = math.floor((x + tm * hx) / voxel_cm)
            iy = math.floor((y + tm * hy) / voxel_cm)
            iz = math.floor((z + tm * hz) / voxel_cm)
            if ix < 0 or iy < 0 or iz < 0 or ix >= n_vox or iy >= n_vox or iz >= n_vox:
                n_outside += 1
                continue
            key = ((ix * n_vox + iy) * n_vox + iz) * n_labels + lab
            if n_piece > 0 and keys[n_piece - 1] == key:
                piece_e[n_piece - 1] += e * frac  # consecutive steps in the same voxel
            else:
                keys[n_piece] = key
                piece_e[n_piece] = e * frac
                n_piece += 1
    return keys[:n_piece], piece_e[:n_piece], n_outside


@numba.njit(cache=True)
def _reduce(
    keys: np.ndarray, piece_e: np.ndarray, order: np.ndarray, n_labels: int, n_vox: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum pieces per voxel in key order and keep the label with the largest energy sum."""
    n_piece = len(keys)
    index = np.empty((n_piece, 3), np.int64)
    energy = np.zeros(n_piece, np.float64)
    label = np.empty(n_piece, np.int64)
    n_out = 0
    cur_vox = -1
    best_e = 0.0
    j = 0
    while j < n_piece:
        key = keys[order[j]]
        # sum all pieces with this (voxel, label) key
        esum = 0.0
        k = j
        while k < n_piece and keys[order[k]] == key:
            esum += piece_e[order[k]]
            k += 1
        vox = key // n_labels
        lab = key - vox * n_labels
        if vox != cur_vox:
            cur_vox = vox
            index[n_out, 0] = vox // (n_vox * n_vox)
            index[n_out, 1] = (vox // n_vox) % n_vox
            index[n_out, 2] = vox % n_vox
            label[n_out] = lab
            best_e = esum
            n_out += 1
        elif esum > best_e:
            label[n_out - 1] = lab
            best_e = esum
        energy[n_out - 1] += esum
        j = k
    return index[:n_out], energy[:n_out], label[:n_out]
