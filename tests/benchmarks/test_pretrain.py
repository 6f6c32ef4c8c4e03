"""Tests of :mod:`nufm.benchmarks.pretrain`: FLOP counting vs a hand count, row contents."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nufm.benchmarks.pretrain import bench_pretrain, count_step_flops, simulated_batch
from nufm.train.precision import native_bf16

STEP_KEYS = {
    "bench",
    "preset",
    "dtype",
    "threads",
    "n_events",
    "median_s",
    "events_per_s",
    "flops_per_event",
    "achieved_tflops",
    "mfu_bf16",
    "mfu",
    "peak_mem_mb",
    "mem_method",
}


def test_flop_counter_matches_hand_count_for_linear() -> None:
    batch, n_in, n_out = 5, 7, 3
    layer = nn.Linear(n_in, n_out)
    x = torch.randn(batch, n_in)  # (B, in), needs no grad

    flops = count_step_flops(lambda: layer(x).sum())
    forward = 2 * batch * n_in * n_out
    # Backward of y = x W^T + b: grad_W = g^T x (2*B*in*out); no grad_x (x needs no grad);
    # the bias grad (a sum) is not a matmul and is not counted.
    assert flops == forward + forward

    x_grad = torch.randn(batch, n_in, requires_grad=True)
    flops_with_input_grad = count_step_flops(lambda: layer(x_grad).sum())
    assert flops_with_input_grad == forward + 2 * forward  # + grad_x = g W


def test_simulated_batch_has_requested_events() -> None:
    batch = simulated_batch(2, seed=0)
    assert batch.offset.shape == (2,)
    assert int(batch.offset[-1]) == batch.coord.shape[0]
    assert batch.feat.shape[0] == batch.coord.shape[0]


def test_bench_pretrain_rows() -> None:
    threads = torch.get_num_threads()
    # both dtypes named: on a CPU without native bf16 the default would be fp32 alone
    rows = bench_pretrain(
        quick=True,
        presets=("mae-tiny",),
        repeats=1,
        ddp=False,
        threads=1,
        dtypes=("fp32", "bf16"),
    )
    assert torch.get_num_threads() == threads  # restored
    benches = [r["bench"] for r in rows]
    assert benches.count("matmul_peak") == 2
    assert benches.count("pretrain_step") == 2  # fp32 and bf16
    assert benches.count("vit_reference") == 1
    assert "ddp_scaling" not in benches
    peaks = {r["dtype"]: r["tflops"] for r in rows if r["bench"] == "matmul_peak"}
    assert set(peaks) == {"bf16", "fp32"} and all(v > 0 for v in peaks.values())
    steps = [r for r in rows if r["bench"] == "pretrain_step"]
    for row in steps:
        assert set(row) >= STEP_KEYS
        assert row["threads"] == 1 and row["preset"] == "mae-tiny"
        assert row["flops_per_event"] > 0
        assert math.isclose(row["events_per_s"], row["n_events"] / row["median_s"])
        achieved = row["flops_per_event"] * row["n_events"] / row["median_s"]
        assert math.isclose(row["achieved_tflops"], achieved / 1e12)
        if native_bf16(torch.device("cpu")):
            assert math.isclose(row["mfu_bf16"], achieved / (peaks["bf16"] * 1e12))
        else:  # the scalar fallback is no peak to compare with
            assert math.isnan(row["mfu_bf16"])
        assert math.isclose(row["mfu"], achieved / (peaks[row["dtype"]] * 1e12))
    assert steps[0]["flops_per_event"] == steps[1]["flops_per_event"]  # counted once


def test_bench_pretrain_rejects_unknown_preset() -> None:
    with pytest.raises(ValueError, match="no-such-preset"):
        bench_pretrain(quick=True, presets=("no-such-preset",))


def test_simulated_batch_carries_the_pipelines_token_groups() -> None:
    """A preset that groups in the data pipeline is benchmarked on grouped batches."""
    from nufm.presets import PRESETS
    from nufm.train.components import build_objective

    assert PRESETS["mae-fast-cpu"].data.cache_groups
    assert not PRESETS["mae-ctx-cpu"].data.cache_groups  # the in-step reference
    mae = build_objective(PRESETS["mae-tiny"].objective)
    grouped = simulated_batch(2, seed=0, grouper=mae.event_grouper())  # type: ignore[operator]
    plain = simulated_batch(2, seed=0)
    assert plain.groups is None and grouped.groups is not None
    assert torch.equal(grouped.coord, plain.coord)


def test_flop_counter_counts_cpu_attention_by_hand() -> None:
    B, H, L, S, Dh = 2, 3, 5, 7, 4
    q = torch.randn(B, H, L, Dh, requires_grad=True)
    k = torch.randn(B, H, S, Dh, requires_grad=True)
    v = torch.randn(B, H, S, Dh, requires_grad=True)
    flops = count_step_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum())
    product = 2 * B * H * L * S * Dh  # one (L, Dh) x (Dh, S) product per head
    # forward: scores and weights @ v; backward: dq, dk, dv and d(weights)
    assert flops == 2 * product + 4 * product
