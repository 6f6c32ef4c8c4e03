"""CPU throughput benchmarks of the nufm encoders (PoLAr-MAE tokenizer + ViT, arXiv:2502.02558;
PTv3, arXiv:2312.10035).

Owns :func:`bench_models` and :func:`benchmark_points`. Timings are medians over ``repeats`` runs
after one warm-up run, for one event per forward. Peak memory is measured on the warm-up run:
freed heap memory is first returned to the OS (glibc ``malloc_trim``), the kernel's peak-RSS
counter is reset (``5`` written to ``/proc/self/clear_refs``), and the number is the peak
resident set (``VmHWM``) minus the resident set before the run, in MiB. If the reset is not
permitted it falls back to the ``resource.getrusage`` max-RSS delta, which only shows growth
beyond the earlier process peak (``mem_method`` says which). Run with
``python -m nufm.benchmarks.models``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from nufm.batch import PointBatch
from nufm.models.encoders import TokenViTConfig, TokenViTEncoder
from nufm.models.layers import set_row_buckets
from nufm.models.presets import PTV3_PRESETS
from nufm.models.ptv3 import PTv3
from nufm.models.tokenizers import PointMAETokenizer, PointMAETokenizerConfig
from nufm.models.vit import VIT_PRESETS, ViT, ViTConfig
from nufm.train.precision import default_dtypes

log = logging.getLogger(__name__)


def benchmark_points(n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Track- and shower-like clustered points on the 768^3 voxel lattice.

    Returns:
        coord (n_points, 3) float32 normalised ((xyz - 384) / 665.1), unique voxels;
        energy (n_points,) float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    allpts, first = np.empty((0, 3)), np.empty(0, np.int64)
    total = 0
    while total < n_points:
        n_tr = max(4, (n_points - total) // 250 + 1)
        start = rng.uniform(100, 668, size=(n_tr, 1, 3))
        direction = rng.normal(size=(n_tr, 1, 3))
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        t = np.arange(300)[None, :, None]
        tracks = start + t * direction + rng.normal(scale=0.7, size=(n_tr, 300, 3))
        blobs = start + rng.normal(scale=4.0, size=(n_tr, 100, 3))  # shower-like blob at start
        pts = np.concatenate([tracks, blobs], axis=1).reshape(-1, 3)  # grouped by track
        pts = np.round(pts)
        chunks.append(pts[((pts >= 0) & (pts < 768)).all(1)])
        allpts = np.concatenate(chunks)
        _, first = np.unique(allpts, axis=0, return_index=True)
        total = len(first)
    vox = allpts[np.sort(first)[:n_points]]  # whole tracks in generation order, then cut
    vox = rng.permutation(vox)
    energy = rng.uniform(-1, 1, size=n_points).astype(np.float32)
    return ((vox - 384.0) / 665.1).astype(np.float32), energy


def _batch(n_points: int, channels: int, seed: int = 0) -> PointBatch:
    coord_np, energy_np = benchmark_points(n_points, seed)
    coord = torch.from_numpy(coord_np)
    energy = torch.from_numpy(energy_np)[:, None]
    feat = energy if channels == 1 else torch.cat([coord, energy], 1)
    return PointBatch(coord=coord, feat=feat, offset=torch.tensor([n_points]))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@contextlib.contextmanager
def _peak_memory() -> Iterator[dict[str, float | str]]:
    """Yields a dict that receives ``peak_mem_mb`` and ``mem_method`` on exit."""
    out: dict[str, float | str] = {}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_kib("VmRSS")
        yield out
        out["peak_mem_mb"] = (_rss_kib("VmHWM") - base) / 1024
        out["mem_method"] = "VmHWM-reset"
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield out
        out["peak_mem_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        out["mem_method"] = "maxrss-delta"


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, dict[str, float | str]]:
    """Median seconds of ``repeats`` runs after a warm-up; the dict gets memory and min_s."""
    _malloc_trim()
    with _peak_memory() as mem:
        fn()  # warm-up, memory measured here
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    mem["min_s"] = float(np.min(times))  # less sensitive than the median to a busy machine
    mem["cpu_s"] = float(np.median(cpu))  # process CPU seconds (all threads): robust to load
    return float(np.median(times)), mem


def _autocast(dtype: str) -> contextlib.AbstractContextManager:
    match dtype:
        case "fp32":
            return contextlib.nullcontext()
        case "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        case _:
            raise ValueError(f"bench_models: unknown dtype {dtype!r}")


def bench_models(
    sizes: Sequence[int] = (4000, 20000),
    ptv3_sizes: Sequence[int] = (4000, 16000, 64000, 128000),
    repeats: int = 3,
    vit: str = "vit-small",
    dtypes: Sequence[str] | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Measure tokenizer, ViT encoder and PTv3-tiny speed on CPU, one event per forward.

    Args:
        sizes: points per event for the tokenizer and ViT benchmarks.
        ptv3_sizes: points per event for the PTv3-tiny forward scaling benchmark.
        repeats: timed runs per measurement (median reported).
        vit: key of :data:`nufm.models.vit.VIT_PRESETS` for the encoder.
        dtypes: "fp32" and/or "bf16" (CPU autocast); None: fp32, plus bf16 where this CPU
            multiplies bf16 natively (:func:`nufm.train.precision.default_dtypes`).
        threads: torch intra-op threads during the run (None = keep the current setting); 1
            gives the most stable numbers on a machine shared with other jobs.

    Returns:
        One dict per measurement: ``bench``, ``n_points``, ``dtype``, ``median_s``,
        ``min_s``, ``cpu_s`` (median process CPU seconds), ``events_per_s`` (from the median),
        ``peak_mem_mb``, ``mem_method``
        (+ ``n_tokens``); with bf16, two ``vit_varying_rows`` rows (training steps whose
        token count changes every step, row buckets off and on: :func:`_varying_rows`). The
        last row (``bench == "ptv3_tiny_scaling"``) holds the fitted
        log-log exponent of PTv3-tiny forward time vs points, from the median wall times
        (``exponent``), the fastest runs (``exponent_min``) and the median process CPU times
        (``exponent_cpu``, the least sensitive to other processes on a shared machine).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench(sizes, ptv3_sizes, repeats, vit, dtypes or default_dtypes())
    finally:
        torch.set_num_threads(previous)


def _bench(
    sizes: Sequence[int], ptv3_sizes: Sequence[int], repeats: int, vit: str, dtypes: Sequence[str]
) -> list[dict]:
    torch.manual_seed(0)
    rows: list[dict] = []
    tok_cfg = PointMAETokenizerConfig(in_channels=1, embed_dim=VIT_PRESETS[vit].embed_dim)
    tokenizer = PointMAETokenizer(tok_cfg).eval()
    encoder = TokenViTEncoder(TokenViTConfig(tokenizer=tok_cfg, vit=VIT_PRESETS[vit]))
    for n in sizes:
        batch = _batch(n, 1, seed=n)
        with torch.no_grad():
            n_tokens = int(tokenizer(batch.coord, batch.feat, batch.offset).valid.sum())

        def tokenize(batch: PointBatch = batch) -> None:
            with torch.no_grad():
                tokenizer(batch.coord, batch.feat, batch.offset)

        med, mem = _time(tokenize, repeats)
        rows.append(
            dict(
                bench="tokenize",
                n_points=n,
                dtype="fp32",
                median_s=med,
                events_per_s=1 / med,
                n_tokens=n_tokens,
                **mem,
            )
        )
        for dtype in dtypes:

            def forward(batch: PointBatch = batch, dtype: str = dtype) -> None:
                encoder.eval()
                with torch.no_grad(), _autocast(dtype):
                    encoder(batch)

            def train_step(batch: PointBatch = batch, dtype: str = dtype) -> None:
                encoder.train()
                encoder.zero_grad(set_to_none=True)
                with _autocast(dtype):
                    out = encoder(batch)
                    loss = out.feat[out.valid].float().square().mean()
                loss.backward()

            for name, fn in ((f"{vit}_forward", forward), (f"{vit}_fwd_bwd", train_step)):
                med, mem = _time(fn, repeats)
                rows.append(
                    dict(
                        bench=name,
                        n_points=n,
                        dtype=dtype,
                        median_s=med,
                        events_per_s=1 / med,
                        n_tokens=n_tokens,
                        **mem,
                    )
                )
                log.info("%s", rows[-1])
    if "bf16" in dtypes:
        rows += _varying_rows(repeats)
    model = PTv3(PTV3_PRESETS["tiny"]).eval()
    times, fastest, cpu = [], [], []
    for n in ptv3_sizes:
        batch = _batch(n, 4, seed=n)

        def ptv3_forward(batch: PointBatch = batch) -> None:
            with torch.no_grad():
                model(batch.coord, batch.feat, batch.offset)

        med, mem = _time(ptv3_forward, repeats)
        times.append(med)
        fastest.append(float(mem["min_s"]))
        cpu.append(float(mem["cpu_s"]))
        rows.append(
            dict(
                bench="ptv3_tiny_forward",
                n_points=n,
                dtype="fp32",
                median_s=med,
                events_per_s=1 / med,
                **mem,
            )
        )
        log.info("%s", rows[-1])
    if len(ptv3_sizes) >= 2:
        log_n = np.log(np.asarray(ptv3_sizes, float))
        rows.append(
            dict(
                bench="ptv3_tiny_scaling",
                n_points=max(ptv3_sizes),
                dtype="fp32",
                exponent=float(np.polyfit(log_n, np.log(times), 1)[0]),
                exponent_min=float(np.polyfit(log_n, np.log(fastest), 1)[0]),
                exponent_cpu=float(np.polyfit(log_n, np.log(cpu), 1)[0]),
                median_s=math.nan,
                events_per_s=math.nan,
            )
        )
    return rows


def _varying_rows(repeats: int, steps: int = 20) -> list[dict]:
    """bf16 training steps of the shipped encoder's ViT (width 192, depth 6, heads of 32) on
    packed tokens whose count changes every step, as in training (2 events of 150-512
    tokens each), with row buckets (:mod:`nufm.models.layers`) and without. Each repeat runs
    ``steps`` batches of new token counts; one warm-up sequence of other counts first.

    Returns one row per setting: ``median_s`` the median over repeats of the mean step time.
    """
    torch.manual_seed(0)
    vit = ViT(ViTConfig(embed_dim=192, depth=6, num_heads=6, drop_path=0.0, attn_drop=0.0))

    def sequence(seed: int) -> float:
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        for _ in range(steps):
            counts = rng.integers(150, 513, size=2)  # tokens of each event
            valid = torch.arange(512)[None, :] < torch.from_numpy(counts)[:, None]  # (2, 512)
            x = torch.randn(2, 512, 192)  # (B, G, D)
            vit.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = vit(x, None, valid).feat[valid].float().square().mean()
            out.backward()
        return (time.perf_counter() - t0) / steps

    rows = []
    for buckets in (False, True):
        previous = set_row_buckets(buckets)
        try:
            sequence(10_000 + int(buckets))  # warm-up: other counts
            times = [sequence(seed) for seed in range(repeats)]
        finally:
            set_row_buckets(previous)
        rows.append(
            dict(
                bench="vit_varying_rows",
                dtype="bf16",
                row_buckets=buckets,
                median_s=float(np.median(times)),
                min_s=float(np.min(times)),
                events_per_s=2 / float(np.median(times)),
            )
        )
        log.info("%s", rows[-1])
    return rows


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info(
        "torch %s, %d threads, load average %s",
        torch.__version__,
        torch.get_num_threads(),
        os.getloadavg(),
    )
    for row in bench_models():
        log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    log.info("load average after: %s", os.getloadavg())


if __name__ == "__main__":
    main()
