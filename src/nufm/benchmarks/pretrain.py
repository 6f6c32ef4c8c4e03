"""CPU pretraining-step benchmarks: throughput, model FLOPs, matmul peak and DDP scaling.

Owns :func:`bench_pretrain`, :func:`count_step_flops` and :func:`matmul_peak`. Objectives are
the CPU presets of :data:`nufm.presets.PRESETS` (PoLAr-MAE, arXiv:2502.02558; Sonata
self-distillation, arXiv:2503.16429; FM4NPP forecasting, arXiv:2508.14087). One training step is
a full AdamW step (forward, backward, ``optimizer.step``, plus the EMA teacher update for
self-distillation) on one collated batch of simulated events, with the token groups attached
when the preset computes them in the data pipeline (``data.cache_groups``; ``mae-cpu`` and
``mae-ctx-cpu`` group inside the step, as before); timings are medians over ``repeats`` steps
after one warm-up step (peak memory is the warm-up's, measured as in
:mod:`nufm.benchmarks.models`). FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv/attention ops only, forward+backward,
optimizer excluded; counted in fp32, so the padding of the bf16 row buckets is not counted;
attention on the CPU counted since 2026-12-04: the counter had no formula for PyTorch's CPU
flash kernel). ``mfu`` = achieved FLOP/s / this machine's measured ``torch.mm`` peak in
the row's precision; ``mfu_bf16`` = achieved FLOP/s / this machine's measured bf16 ``torch.mm``
peak (NaN on a CPU without native bf16, :mod:`nufm.train.precision`). DDP scaling runs
``torchrun -m nufm.cli pretrain`` for 1 and 2 processes and reads the ``events_per_s`` column
(already summed over ranks) of the last ``metrics.jsonl`` row. Run with ``python -m
nufm.benchmarks.pretrain``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from nufm.batch import PointBatch
from nufm.benchmarks.models import _autocast, _time
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.transforms import Preprocess, Transform
from nufm.models.vit import VIT_PRESETS, ViT
from nufm.presets import PRESETS
from nufm.sim import generate_events
from nufm.ssl.distill import SelfDistillation
from nufm.step import HasEventGrouper
from nufm.train.components import build_objective
from nufm.train.precision import default_dtypes, native_bf16

log = logging.getLogger(__name__)

TINY_PRESETS: tuple[str, ...] = (
    "mae-tiny",
    "mae-cpu",
    "mae-ctx-cpu",
    "mae-fast-cpu",
    "mae-m-cpu",
    "mae-5m-cpu",
    "mae-wide-cpu",
    "distill-tiny",
    "forecast-tiny",
)
"""Objective presets measured by default."""


def simulated_events(n_events: int, seed: int = 0) -> list[Event]:
    """``n_events`` simulated events, preprocessed (``Preprocess().transforms()``)."""
    transform = Preprocess().transforms()
    rng = np.random.default_rng(seed)
    return [transform(ev, rng) for ev in generate_events(n_events, seed)]


def simulated_batch(
    n_events: int,
    seed: int = 0,
    grouper: Transform | None = None,
    events: list[Event] | None = None,
) -> PointBatch:
    """``events`` (default: :func:`simulated_events` ``(n_events, seed)``) collated; with
    ``grouper`` (an objective's event grouper) their token groups are attached, as the
    training pipeline of a run with ``data.cache_groups`` does."""
    if events is None:
        events = simulated_events(n_events, seed)
    if grouper is not None:
        rng = np.random.default_rng(seed)  # unused: grouping is deterministic
        events = [grouper(ev, rng) for ev in events]
    return collate(events)


def _register_cpu_attention_flops() -> None:
    """PyTorch's FLOP counter has formulas for its CUDA attention kernels but none for the CPU
    flash kernel, so attention on the CPU counted 0. Count its products: two forward
    (``flop_counter.sdpa_flop_count``) and four backward (the gradients of both products; the
    kernel's recomputation of the scores is not useful work and not counted, as for the
    explicit form of :func:`nufm.models.layers.explicit_attention`)."""
    aten = torch.ops.aten
    forward = aten._scaled_dot_product_flash_attention_for_cpu
    if forward in flop_counter.flop_registry or forward.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(forward)
    def _forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    backward = aten._scaled_dot_product_flash_attention_for_cpu_backward

    @flop_counter.register_flop_formula(backward)
    def _backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * flop_counter.sdpa_flop_count(query, key, value)


def count_step_flops(step: Callable[[], torch.Tensor]) -> int:
    """FLOPs of ``step()`` (returns a scalar loss) plus ``loss.backward()``, counted by
    ``FlopCounterMode`` (a multiply-add counts 2), CPU attention included."""
    _register_cpu_attention_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = step()
        loss.backward()
    return int(counter.get_total_flops())


def matmul_peak(n: int, dtype: torch.dtype, repeats: int) -> float:
    """Measured ``torch.mm`` throughput of an (n, n) @ (n, n) product, FLOP/s (median)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    med, _ = _time(lambda: torch.mm(a, b), repeats)
    return 2.0 * n**3 / med


def _train_rows(
    name: str,
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    n_events: int,
    repeats: int,
    dtypes: Sequence[str],
    peaks: dict[str, float],
    threads: int,
    native: bool,
) -> list[dict]:
    """Time full AdamW steps of ``loss_fn`` in each dtype; one row per dtype. ``native``: this
    CPU has native bf16 (else ``mfu_bf16`` is NaN: the scalar fallback's "peak" is no ceiling)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    flops = count_step_flops(loss_fn)
    model.zero_grad(set_to_none=True)
    rows: list[dict] = []
    for dtype in dtypes:

        def step(dtype: str = dtype) -> None:
            opt.zero_grad(set_to_none=True)
            with _autocast(dtype):
                loss = loss_fn()
            loss.backward()
            opt.step()
            if isinstance(model, SelfDistillation):
                model.update_teacher(0.996)  # the EMA teacher step is part of a distill step

        torch.manual_seed(0)
        med, mem = _time(step, repeats)
        achieved = flops / med
        rows.append(
            dict(
                bench="pretrain_step",
                preset=name,
                dtype=dtype,
                threads=threads,
                n_events=n_events,
                median_s=med,
                events_per_s=n_events / med,
                flops_per_event=flops / n_events,
                achieved_tflops=achieved / 1e12,
                mfu_bf16=achieved / peaks["bf16"] if native else math.nan,
                mfu=achieved / peaks[dtype],
                **mem,
            )
        )
        log.debug("%s", rows[-1])
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun() -> str | None:
    """The ``torchrun`` next to this interpreter (an unactivated venv), else the one on PATH."""
    local = Path(sys.executable).parent / "torchrun"
    return str(local) if local.is_file() else shutil.which("torchrun")


def _ddp_run(torchrun: str, nproc: int, steps: int, threads: int, root: Path) -> float:
    """Total events/s of the last logged window (``steps // 2`` steps) of a ``torchrun``
    mae-tiny run with ``threads`` OMP threads per process."""
    run_dir = root / f"nproc{nproc}"
    cmd = [
        torchrun,
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "nufm.cli",
        "pretrain",
        "--preset",
        "mae-tiny",
        "--run-dir",
        str(run_dir),
        "--train.max-steps",
        str(steps),
        "--logging.no-progress",
        "--logging.log-every",
        str(max(1, steps // 2)),
        "--data.num-events",
        "64",
        "--train.monitor-every",
        "0",
        "--optim.warmup-steps",
        str(min(steps, 2)),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench_pretrain: {' '.join(cmd)} failed "
            f"(exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    metrics = run_dir / "metrics.jsonl"
    rates = [
        row["events_per_s"]
        for row in map(json.loads, metrics.read_text().splitlines())
        if "events_per_s" in row
    ]
    if not rates:
        raise RuntimeError(f"bench_pretrain: no events_per_s column in {metrics}")
    return float(rates[-1])  # last window: excludes the warm-up steps


def _ddp_rows(steps: int, threads: int) -> list[dict]:
    """Both runs get ``threads // 2`` (>= 1) threads per process, so 2 processes use the same
    cores as the thread budget and the 1-process run is the per-core baseline."""
    per_proc = max(1, threads // 2)
    torchrun = _torchrun()
    if torchrun is None:
        return [
            dict(
                bench="ddp_scaling",
                preset="mae-tiny",
                threads=threads,
                skipped="torchrun not found next to the interpreter or on PATH",
            )
        ]
    with tempfile.TemporaryDirectory(prefix="nufm_ddp_bench_") as tmp:
        rate = {n: _ddp_run(torchrun, n, steps, per_proc, Path(tmp)) for n in (1, 2)}
    return [
        dict(
            bench="ddp_scaling",
            preset="mae-tiny",
            threads=per_proc,
            max_steps=steps,
            events_per_s_1proc=rate[1],
            events_per_s_2proc=rate[2],
            scaling_efficiency=rate[2] / (2 * rate[1]),
        )
    ]


def bench_pretrain(
    quick: bool = False,
    *,
    presets: Sequence[str] = TINY_PRESETS,
    repeats: int | None = None,
    batch_events: int = 8,
    dtypes: Sequence[str] | None = None,
    ddp: bool = True,
    ddp_steps: int = 20,
    threads: int | None = None,
) -> list[dict]:
    """Measure pretraining-step speed, FLOPs and hardware utilisation on this CPU.

    Args:
        quick: smoke run: 1 repeat, 2-event batches, small matmul and ViT reference, no DDP.
        presets: keys of :data:`nufm.presets.PRESETS`.
        repeats: timed steps per measurement (median); None = 1 if quick else 5.
        batch_events: simulated events per step (ignored when quick: 2).
        dtypes: "fp32" and/or "bf16" (CPU autocast); None: fp32, plus bf16 where this CPU
            multiplies bf16 natively (:func:`nufm.train.precision.default_dtypes`).
        ddp: run the torchrun 1 -> 2 process scaling test (never when quick).
        ddp_steps: optimizer steps per torchrun run.
        threads: torch intra-op threads (None = ``torch.get_num_threads()``); set explicitly
            and recorded in every row.

    Returns:
        Rows: ``matmul_peak`` (``dtype``, ``tflops``, ``n``); per preset and dtype
        ``pretrain_step`` (``median_s``, ``events_per_s``, ``flops_per_event``,
        ``achieved_tflops``, ``mfu``, ``mfu_bf16``, ``peak_mem_mb`` ...); ``vit_reference``
        (ViT-S fwd+bwd+AdamW on (8, 512) tokens under bf16 where native, else fp32, same keys,
        ``n_events`` = sequences);
        ``ddp_scaling`` (``events_per_s_1proc``, ``events_per_s_2proc``,
        ``scaling_efficiency`` = 2-proc / (2 x 1-proc), ``threads`` per process; or ``skipped``).
    """
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(
            f"bench_pretrain: unknown presets {unknown}; choose from {sorted(PRESETS)}"
        )
    previous = torch.get_num_threads()
    n_threads = previous if threads is None else threads
    torch.set_num_threads(n_threads)
    try:
        return _bench(
            quick,
            presets,
            repeats if repeats is not None else (1 if quick else 5),
            2 if quick else batch_events,
            dtypes or default_dtypes(),
            ddp and not quick,
            ddp_steps,
            n_threads,
        )
    finally:
        torch.set_num_threads(previous)


def _bench(
    quick: bool,
    presets: Sequence[str],
    repeats: int,
    n_events: int,
    dtypes: Sequence[str],
    ddp: bool,
    ddp_steps: int,
    threads: int,
) -> list[dict]:
    rows: list[dict] = []
    mm_n = 2048  # smaller products under-state the peak (AMX/AVX-512 need large tiles)
    native = native_bf16(torch.device("cpu"))
    if "bf16" in dtypes and not native:
        log.warning(
            "this CPU has no native bf16 matrix products: bf16 rows measure PyTorch's scalar "
            "fallback (training runs fp32 here, nufm.train.precision)"
        )
    peaks: dict[str, float] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        # the scalar bf16 fallback needs 30 s for one 2048^3 product: a smaller one there
        n = mm_n if native or name == "fp32" else 512
        peaks[name] = matmul_peak(n, dtype, max(repeats, 3 if quick else 10))
        rows.append(
            dict(bench="matmul_peak", dtype=name, threads=threads, n=n, tflops=peaks[name] / 1e12)
        )
        log.debug("%s", rows[-1])
    events = simulated_events(n_events, seed=0)  # simulated once, for every preset
    batch = simulated_batch(n_events, events=events)
    for name in presets:
        torch.manual_seed(0)
        run = PRESETS[name]
        objective = build_objective(run.objective)
        if run.data.cache_groups and isinstance(objective, HasEventGrouper):
            # groups come from the data pipeline: the step runs only the network
            grouped = simulated_batch(n_events, grouper=objective.event_grouper(), events=events)
        else:
            grouped = batch
        rows += _train_rows(
            name,
            objective,
            lambda o=objective, b=grouped: o(b).loss,
            n_events,
            repeats,
            dtypes,
            peaks,
            threads,
            native,
        )
    # Compute-bound reference: the ViT-S transformer alone on (8, 512, 384) tokens.
    torch.manual_seed(0)
    vit_cfg = VIT_PRESETS["vit-small"]
    vit = ViT(vit_cfg)
    n_tok, n_seq = (64, 2) if quick else (512, 8)
    tokens = torch.randn(n_seq, n_tok, vit_cfg.embed_dim)  # (B, G, D)

    def vit_loss() -> torch.Tensor:
        return vit(tokens, None, None).feat.float().square().mean()

    for row in _train_rows(
        "vit-small",
        vit,
        vit_loss,
        n_seq,
        repeats,
        ("bf16" if native else "fp32",),
        peaks,
        threads,
        native,
    ):
        rows.append(dict(row, bench="vit_reference", n_tokens=n_tok))
    if ddp:
        rows += _ddp_rows(ddp_steps, threads)
    return rows


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quick = "--quick" in sys.argv[1:]
    log.info("torch %s, load average %s", torch.__version__, os.getloadavg())
    t0 = time.perf_counter()
    for row in bench_pretrain(quick=quick):
        log.info(
            "%s",
            {
                k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in row.items()
            },
        )
    log.info("%.0f s, load average after: %s", time.perf_counter() - t0, os.getloadavg())


if __name__ == "__main__":
    main()
