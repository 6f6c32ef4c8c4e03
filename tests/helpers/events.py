"""Small synthetic events and packed batches for the tests.

* :func:`preprocessed_events` / :func:`preprocessed_batch`: ``nufm.data.synthetic`` events
  through :class:`~nufm.data.transforms.Preprocess` (tasks, objectives).
* :func:`make_batch`: track-like clusters on the voxel lattice as a packed batch (models).
* :func:`clustered_events`, :func:`line`: packed coordinates and hand-made point sets
  (geometry).
* :func:`event_of`: one event of a packed batch as a batch of one (batch-independence tests).
* :func:`descriptor_case`: a small event and its local-shape descriptors (descriptor terms).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Generator, Tensor

from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import Preprocess
from nufm.models.geometric import point_shape_descriptors
from nufm.tasks.event_task import AddEventTargets


def preprocessed_events(n: int, seed: int = 0, **kw: object) -> list[Event]:
    """Preprocessed synthetic events (threshold 0, feat (N, 4)) with event targets added."""
    pre = Preprocess(energy_threshold=0.0).transforms(augment=[AddEventTargets()])
    raw = [synthetic_event(seed + i, **kw) for i in range(n)]  # type: ignore[arg-type]
    return [pre(e, np.random.default_rng(seed + i)) for i, e in enumerate(raw)]


def preprocessed_batch(n_events: int = 2, seed: int = 0) -> PointBatch:
    """``n_events`` synthetic events through :class:`Preprocess` (feat = [xyz, log E])."""
    pipeline = Preprocess().transforms()
    events = [
        pipeline(synthetic_event(seed + i), np.random.default_rng(seed + i))
        for i in range(n_events)
    ]
    return collate(events)


def event_of(batch: PointBatch, i: int) -> PointBatch:
    """Event i of a batch as a batch of one (coord and feat only)."""
    start = 0 if i == 0 else int(batch.offset[i - 1])
    end = int(batch.offset[i])
    return PointBatch(
        coord=batch.coord[start:end],
        feat=batch.feat[start:end],
        offset=batch.offset.new_tensor([end - start]),
    )


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


def clustered_events(
    counts: list[int], seed: int = 0, spread: float = 20.0
) -> tuple[Tensor, Tensor]:
    """Packed (N, 3) float32 events of points scattered around a few random segments.

    Args:
        counts: points per event (0 allowed).
        seed: RNG seed.
        spread: length scale of the segments (coordinate units).

    Returns:
        coord (N, 3) float32 and offset (B,) int64.
    """
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for n in counts:
        n_lines = 3
        a = torch.rand(n_lines, 3, generator=gen) * spread
        b = a + torch.randn(n_lines, 3, generator=gen) * spread / 2
        which = torch.randint(0, n_lines, (n,), generator=gen)
        t = torch.rand(n, 1, generator=gen)
        pts = a[which] + t * (b[which] - a[which]) + torch.randn(n, 3, generator=gen) * 0.5
        parts.append(pts)
    coord = torch.cat(parts) if parts else torch.zeros(0, 3)
    offset = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return coord.float(), offset


def line(xs: list[float]) -> Tensor:
    """(len(xs), 3) float32 points on the x axis at the given x values."""
    coord = torch.zeros(len(xs), 3)
    coord[:, 0] = torch.tensor(xs)
    return coord


def descriptor_case(ks: tuple[int, ...]) -> tuple[PointBatch, Tensor, Generator]:
    """A 30-point event with (x, y, z, energy) features, its float64 local-shape descriptors
    of sizes ``ks`` (N, 6 * len(ks)) and the generator that made it (for more draws): the
    hand-made case of the objectives' descriptor terms."""
    gen = torch.Generator().manual_seed(2)
    coord = torch.rand(30, 3, generator=gen)
    feat = torch.cat([coord, torch.rand(30, 1, generator=gen)], dim=1)
    batch = PointBatch(coord=coord, feat=feat, offset=torch.tensor([30]))
    return batch, point_shape_descriptors(batch, ks).double(), gen
