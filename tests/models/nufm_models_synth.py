"""Synthetic packed batches for model tests: track-like clusters on the voxel lattice."""

from __future__ import annotations

import numpy as np
import torch

from nufm.batch import PointBatch


def synthetic_points(n: int, seed: int) -> np.ndarray:
    """(n, 3) float32 unique voxel-centre coordinates along a few random tracks, normalised
    like PILArNet ((xyz - 384) / 665.1)."""
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    total = 0
    while total < n:
        start = rng.uniform(200, 560, size=3)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        length = rng.integers(40, 200)
        t = np.arange(length)[:, None]
        line = start + t * direction + rng.normal(scale=1.5, size=(length, 3))
        pts.append(np.round(line))
        vox = np.unique(np.concatenate(pts), axis=0)
        total = len(vox)
    vox = rng.permutation(vox)[:n]
    return ((vox - 384.0) / 665.1).astype(np.float32)


def make_batch(sizes: list[int], seed: int = 0, channels: int = 1) -> PointBatch:
    """Packed batch of len(sizes) events; feat = energy (1 channel) or xyz + energy (4)."""
    coords = [synthetic_points(n, seed + i) for i, n in enumerate(sizes)]
    coord = torch.from_numpy(np.concatenate(coords))
    energy = torch.from_numpy(
        np.random.default_rng(seed + 100).uniform(-1, 1, size=(len(coord), 1)).astype(np.float32)
    )
    match channels:
        case 1:
            feat = energy
        case 4:
            feat = torch.cat([coord, energy], dim=1)
        case _:
            raise ValueError(f"make_batch: channels must be 1 or 4, got {channels}")
    offset = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
    return PointBatch(coord=coord, feat=feat, offset=offset)


def select_event(batch: PointBatch, i: int) -> PointBatch:
    """Event i of a batch as a batch of one."""
    start = 0 if i == 0 else int(batch.offset[i - 1])
    end = int(batch.offset[i])
    return PointBatch(
        coord=batch.coord[start:end], feat=batch.feat[start:end], offset=torch.tensor([end - start])
    )
