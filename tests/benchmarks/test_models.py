"""Benchmark helpers: the synthetic event generator, and a slow smoke run of bench_models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nufm.benchmarks.models import bench_models, benchmark_points


def test_synthetic_event_has_requested_unique_voxels() -> None:
    coord, energy = benchmark_points(3000, seed=1)
    assert coord.shape == (3000, 3) and energy.shape == (3000,)
    vox = np.round(coord * 665.1 + 384.0)
    assert len(np.unique(vox, axis=0)) == 3000
    assert vox.min() >= 0 and vox.max() < 768
    again, _ = benchmark_points(3000, seed=1)
    assert np.array_equal(coord, again)


@pytest.mark.slow
def test_bench_models_smoke() -> None:
    rows = bench_models(
        sizes=(500,), ptv3_sizes=(500, 1000), repeats=1, vit="vit-tiny", dtypes=("fp32",)
    )
    names = {r["bench"] for r in rows}
    assert {
        "tokenize",
        "vit-tiny_forward",
        "vit-tiny_fwd_bwd",
        "ptv3_tiny_forward",
        "ptv3_tiny_scaling",
    } <= names
    assert all(r["median_s"] > 0 for r in rows if not math.isnan(r["median_s"]))


def test_synthetic_event_of_zero_points_is_empty() -> None:
    coord, energy = benchmark_points(0, seed=1)  # was an UnboundLocalError
    assert coord.shape == (0, 3) and coord.dtype == np.float32
    assert energy.shape == (0,) and energy.dtype == np.float32


def test_varying_rows_rows_measure_both_settings_and_restore_buckets() -> None:
    from nufm.benchmarks.models import _varying_rows
    from nufm.models import layers

    rows = _varying_rows(repeats=1, steps=2)
    assert [(r["bench"], r["row_buckets"]) for r in rows] == [
        ("vit_varying_rows", False),
        ("vit_varying_rows", True),
    ]
    assert all(r["median_s"] > 0 for r in rows)
    assert layers.set_row_buckets(True) is True  # left on
