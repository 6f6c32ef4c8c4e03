"""Row buckets (nufm.models.layers): padded row counts for oneDNN's kernel cache, results
unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nufm.models.layers import (
    Mlp,
    RowSequential,
    bucket_rows,
    row_bucket,
    set_row_buckets,
    wants_buckets,
)


def test_row_bucket_sizes() -> None:
    """Hand-computed buckets; every n in 1..5000 maps to a bucket >= n with fewer than
    max(8, n / 8) extra rows, and there are 8 buckets per octave."""
    assert [row_bucket(n) for n in (0, 1, 8, 9, 100, 128, 129, 1000, 1024, 1025)] == [
        0, 8, 8, 16, 104, 128, 144, 1024, 1024, 1152,
    ]  # fmt: skip
    for n in range(1, 5001):
        b = row_bucket(n)
        assert n <= b and b - n < max(8, n / 8)
    assert len({row_bucket(n) for n in range(1025, 2049)}) == 8


def test_wants_buckets_cpu_reduced_precision_only() -> None:
    x = torch.zeros(3, 2)
    assert not wants_buckets(x)
    assert wants_buckets(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert wants_buckets(x)


def test_bucket_rows_pads_and_cuts() -> None:
    """Under autocast the row-wise function sees 1,024 rows for 1,000, the caller gets its
    1,000 rows back, equal to the unpadded call (output and gradients, bf16 rounding); in
    fp32 nothing is padded."""
    torch.manual_seed(0)
    seen: list[int] = []
    lin = nn.Sequential(nn.Linear(12, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 5))

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.shape[0])
        return lin(t)

    x = torch.randn(1000, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = bucket_rows(fn, x)
        want = lin(x)
    assert seen == [1024] and got.shape == (1000, 5)
    torch.testing.assert_close(got, want, atol=0, rtol=0)  # forward rows do not mix
    g_got = torch.autograd.grad(got.float().square().sum(), [x, *lin.parameters()])
    g_want = torch.autograd.grad(want.float().square().sum(), [x, *lin.parameters()])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=2e-2)
    seen.clear()
    assert torch.equal(bucket_rows(fn, x), lin(x)) and seen == [1000]
    previous = set_row_buckets(False)  # switched off (nufm bench): no padding
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bucket_rows(fn, x)
    finally:
        set_row_buckets(previous)
    assert seen == [1000, 1000]


@pytest.mark.parametrize("cls", ["mlp", "sequential"])
def test_bucketed_modules_keep_state_dict(cls: str) -> None:
    """RowSequential and Mlp keep nn.Sequential's / their own keys, so saved weights load."""
    if cls == "sequential":
        layers = [nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)]
        plain, bucketed = nn.Sequential(*layers), RowSequential(*layers)
        assert plain.state_dict().keys() == bucketed.state_dict().keys()
        x = torch.randn(37, 4).bfloat16()
        assert torch.equal(bucketed.bfloat16()(x), plain.bfloat16()(x))
    else:
        m = Mlp(8, 16)
        assert list(m.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
