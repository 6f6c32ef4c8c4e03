"""Benchmark of the geometry kernels: reference PyTorch path vs fast CPU path.

Times (median of ``repeats``) the PoLAr-MAE tokenization pipeline (arXiv:2502.02558,
5-voxel preset, coordinates in voxels) on one event of n points:

* "pipeline_fps": FPS seeds (2048) -> C-NMS (radius 2 * 5 * 0.72 = 7.2, K 256, at most 512
  centers) -> ball query around the centers (radius 5, K 256, mode "first"); the paper-era and
  pimm variant;
* "pipeline_all": C-NMS on all points (PoLAr-MAE main since PR #3) -> ball query;
* "knn": 16 nearest neighbours of every point;
* "descriptors": the study's four-scale local-shape descriptors (``DESCRIPTOR_KS``) of every
  point, :class:`nufm.models.geometric.LocalGeometryEncoder`'s work; the reference is the
  per-scale PyTorch gather after a one-thread scipy query, the fast path the one-pass numba
  kernel after a query on all of torch's threads (scipy is both paths' kNN: the PyTorch
  kNN's tie order on the voxel lattice differs from scipy's).

Events come from ``nufm.sim.simulate_event`` (several overlaid and subsampled to n points) when
the simulator is importable, otherwise from synthetic clustered lines. Run with
``python -m nufm.benchmarks.geometry``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from nufm.geometry.ball_query import ball_query
from nufm.geometry.cnms import centrality_nms
from nufm.geometry.fps import farthest_point_sampling
from nufm.geometry.knn import knn
from nufm.models.geometric import multiscale_shape_features

log = logging.getLogger(__name__)

GROUP_RADIUS = 5.0
"""Token radius in voxels (PoLAr-MAE 5-voxel preset)."""
OVERLAP = 0.72
"""C-NMS overlap factor: suppression radius 2 * GROUP_RADIUS * OVERLAP."""
N_SEEDS = 2048
"""FPS seeds before C-NMS (paper-era default)."""
K_NMS = 256
"""Neighbour cap of the C-NMS ball query."""
CONTEXT = 512
"""Maximum tokens per event."""
K_GROUP = 256
"""Points per group of the token ball query (before reduction)."""
K_KNN = 16
"""Neighbours of the kNN benchmark."""
DESCRIPTOR_KS = (8, 32, 128, 512)
"""Neighbourhood sizes of the descriptor benchmark (the study's ``probe.geometry_ks``)."""


def _synthetic_event(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) float32 points along a few tracks and blob-like showers, voxel units."""
    n_track = n // 2
    starts = rng.uniform(100, 668, (6, 3))
    ends = starts + rng.normal(0, 120, (6, 3))
    which = rng.integers(0, 6, n_track)
    t = rng.uniform(0, 1, (n_track, 1))
    tracks = starts[which] + t * (ends[which] - starts[which]) + rng.normal(0, 0.7, (n_track, 3))
    centres = rng.uniform(100, 668, (4, 3))
    which = rng.integers(0, 4, n - n_track)
    showers = centres[which] + rng.standard_t(3, (n - n_track, 3)) * 12.0
    return np.floor(np.concatenate([tracks, showers])).astype(np.float32)


def make_event(n: int, seed: int = 0) -> Tensor:
    """(n, 3) float32 voxel coordinates of one simulated-like event.

    Overlays ``nufm.sim.simulate_event`` events until n voxels exist and subsamples n of them;
    falls back to ``_synthetic_event`` when the simulator is unavailable or fails.
    """
    rng = np.random.default_rng(seed)
    try:
        from nufm.sim import simulate_event

        parts, total, s = [], 0, seed * 1000
        while total < n and s < seed * 1000 + 200:
            pts = simulate_event(s).coord
            parts.append(pts)
            total += len(pts)
            s += 1
        pts = np.unique(np.concatenate(parts), axis=0)
        if len(pts) < n:
            raise RuntimeError(f"only {len(pts)} voxels")
        coord = pts[rng.choice(len(pts), n, replace=False)]
        log.info("bench_geometry: event of %d points from nufm.sim (%d overlaid)", n, len(parts))
    except Exception as err:  # noqa: BLE001 (any simulator problem -> synthetic fallback)
        log.info("bench_geometry: simulator unavailable (%s); synthetic event", err)
        coord = _synthetic_event(n, rng)
    return torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))


def _pipeline(coord: Tensor, backend: str, seeds: bool) -> int:
    """Run the tokenization pipeline; returns the number of filled group slots."""
    offset = torch.tensor([coord.shape[0]])
    if seeds:
        idx, cand_off = farthest_point_sampling(coord, offset, N_SEEDS, backend=backend)
        cand = coord[idx]
    else:
        cand, cand_off = coord, offset
    keep, center_off, _ = centrality_nms(
        cand, cand_off, 2 * GROUP_RADIUS * OVERLAP, K_NMS, CONTEXT, backend=backend
    )
    _, count = ball_query(
        cand[keep], center_off, coord, offset, GROUP_RADIUS, K_GROUP, "first", backend=backend
    )
    return int(count.sum())


def _descriptors(coord: Tensor, backend: str) -> Tensor:
    """(n, 6 * len(DESCRIPTOR_KS)) descriptors of one event; ``backend`` of the moments."""
    offset = torch.tensor([coord.shape[0]])
    workers = 1 if backend == "torch" else torch.get_num_threads()
    idx, dist = knn(coord, offset, coord, offset, max(DESCRIPTOR_KS), workers=workers)
    feat = torch.zeros(coord.shape[0], 1)  # (n, 1) log energy stand-in
    return multiscale_shape_features(coord, feat, idx, dist, DESCRIPTOR_KS, backend=backend)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_geometry(n_points: tuple[int, ...] = (4000, 20000), repeats: int = 5) -> list[dict]:
    """Median wall time of the reference ("torch") and fast CPU paths.

    Args:
        n_points: event sizes to time.
        repeats: timed repetitions per case (after one warm-up that also compiles numba).

    Returns:
        One dict per (case, n_points): case, n_points, reference_s, fast_s, speedup, and
        agree (True when both paths gave identical results).
    """
    rows = []
    for n in n_points:
        coord = make_event(n, seed=n)
        offset = torch.tensor([n])
        cases: dict[str, tuple[Callable[[str], object], str]] = {
            "pipeline_fps": (lambda b, c=coord: _pipeline(c, b, seeds=True), "numba"),
            "pipeline_all": (lambda b, c=coord: _pipeline(c, b, seeds=False), "numba"),
            "fps": (
                lambda b, c=coord, o=offset: farthest_point_sampling(c, o, N_SEEDS, backend=b)[0],
                "numba",
            ),
            "knn": (
                lambda b, c=coord, o=offset: knn(c, o, c, o, K_KNN, backend=b)[1],
                "scipy",
            ),
            "descriptors": (lambda b, c=coord: _descriptors(c, b), "numba"),
        }
        for name, (fn, fast) in cases.items():
            out_ref, out_fast = fn("torch"), fn(fast)  # warm-up (numba compile)
            if isinstance(out_ref, Tensor) and isinstance(out_fast, Tensor):
                agree = bool(torch.allclose(out_ref, out_fast.to(out_ref.dtype)))
            else:
                agree = out_ref == out_fast
            t_ref = _median_time(lambda fn=fn: fn("torch"), repeats)
            t_fast = _median_time(lambda fn=fn, fast=fast: fn(fast), repeats)
            rows.append(
                {
                    "case": name,
                    "n_points": n,
                    "reference_s": t_ref,
                    "fast_s": t_fast,
                    "speedup": t_ref / t_fast,
                    "agree": agree,
                }
            )
            log.info(
                "%s n=%d: reference %.4f s, fast %.4f s, x%.1f, agree=%s",
                name,
                n,
                t_ref,
                t_fast,
                t_ref / t_fast,
                agree,
            )
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`bench_geometry` as a fixed-width text table."""
    lines = [f"{'case':<14}{'n':>8}{'reference s':>14}{'fast s':>10}{'speed-up':>10}  agree"]
    lines += [
        f"{r['case']:<14}{r['n_points']:>8}{r['reference_s']:>14.4f}{r['fast_s']:>10.4f}"
        f"{r['speedup']:>10.1f}  {r['agree']}"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    """Log the benchmark table."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%s", format_table(bench_geometry()))


if __name__ == "__main__":
    main()
