"""CPU inference speed of the field's released models at full size, as nufm runs them
(Panda-Base: pimm PT-v3m2, arXiv:2512.01324; PoLAr-MAE-Pretrain's encoder, arXiv:2502.02558).

Owns :func:`bench_released`. Weights are random (no released file is needed to time the
architecture); inputs are :func:`nufm.benchmarks.models.benchmark_points` events, one per
forward, preprocessed as each model expects (grid cells of 0.001 for Panda, padded points for
PoLAr-MAE). Medians of ``repeats`` runs after a warm-up, peak memory as in
:mod:`nufm.benchmarks.models`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from nufm.benchmarks.models import _autocast, _batch, _time
from nufm.models.released.encoders import pimm_grid_coord
from nufm.models.released.panda import PandaConfig, PTv3Released
from nufm.models.released.polarmae import PolarMAEConfig, PolarMAEEncoder
from nufm.train.precision import default_dtypes

log = logging.getLogger(__name__)


def bench_released(
    sizes: Sequence[int] = (4000, 20000),
    repeats: int = 3,
    dtypes: Sequence[str] | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Time full-size Panda-Base and PoLAr-MAE encoder inference, one event per forward.

    Args:
        sizes: points per event.
        repeats: timed runs per measurement (median reported).
        dtypes: "fp32" and/or "bf16" (CPU autocast); None: fp32, plus bf16 where this CPU
            multiplies bf16 natively (:func:`nufm.train.precision.default_dtypes`).
        threads: torch intra-op threads (None = keep the current setting).

    Returns:
        One dict per measurement: ``bench``, ``n_points``, ``dtype``, ``threads``,
        ``median_s``, ``min_s``, ``cpu_s``, ``events_per_s``, ``peak_mem_mb``, ``mem_method``
        (+ ``n_tokens`` for PoLAr-MAE, ``params_m``).
    """
    dtypes = dtypes or default_dtypes()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        panda = PTv3Released(PandaConfig()).eval()
        polarmae = PolarMAEEncoder(PolarMAEConfig()).eval()
        rows: list[dict] = []
        for n in sizes:
            batch = _batch(n, 4, seed=n)
            grid = pimm_grid_coord(batch.coord, batch.offset, 0.001)
            points = batch.feat[None]  # (1, N, 4)
            lengths = torch.tensor([n])
            with torch.no_grad():
                n_tokens = int(polarmae.tokenize(points, lengths).token_valid.sum())
            for dtype in dtypes:

                def run_panda(dtype: str = dtype, batch=batch, grid: torch.Tensor = grid) -> None:
                    with torch.no_grad(), _autocast(dtype):
                        panda(batch.coord, batch.feat, grid, batch.offset)

                def run_polarmae(
                    dtype: str = dtype, points: torch.Tensor = points, lengths=lengths
                ) -> None:
                    with torch.no_grad(), _autocast(dtype):
                        polarmae.encode(points, lengths)

                for name, fn, model, extra in (
                    ("panda_base_encoder", run_panda, panda, {}),
                    ("polarmae_pretrain_encoder", run_polarmae, polarmae, {"n_tokens": n_tokens}),
                ):
                    med, mem = _time(fn, repeats)
                    rows.append(
                        dict(
                            bench=name,
                            n_points=n,
                            dtype=dtype,
                            threads=torch.get_num_threads(),
                            params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                            median_s=med,
                            events_per_s=1 / med,
                            **extra,
                            **mem,
                        )
                    )
                    log.info("%s", rows[-1])
        return rows
    finally:
        torch.set_num_threads(previous)
