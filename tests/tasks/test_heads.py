"""Task-head pieces on packed events: event pooling by consecutive segments and the head with
event context, against the plain gather-and-concatenate forms."""

from __future__ import annotations

import pytest
import torch

from nufm.tasks.heads import event_mean_max, mlp, mlp_with_event_context, segment_mean_max


def _packed(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, 6) of 4 events of 5, 0 (empty), 9 and 1 rows, their offsets and batch index."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor([5, 0, 9, 1])
    x = torch.randn(int(counts.sum()), 6, generator=g, requires_grad=True)
    index = torch.repeat_interleave(torch.arange(4), counts)
    return x, torch.cumsum(counts, 0), index


def test_event_mean_max_equals_segment_mean_max() -> None:
    """Values (an empty event gives zeros) and gradients equal the scatter form."""
    x, offset, index = _packed()
    got, want = event_mean_max(x, offset), segment_mean_max(x, index, 4)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert torch.all(got[1] == 0)
    w = torch.randn_like(got)
    (g_got,) = torch.autograd.grad((got * w).sum(), x)
    (g_want,) = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("bf16", [False, True])
def test_mlp_with_event_context_equals_concatenated_input(bf16: bool) -> None:
    """head(cat([x, event[index]])) with the split first layer: equal outputs and parameter
    gradients (fp32 to 1e-5; under CPU bf16 autocast to bf16 rounding)."""
    torch.manual_seed(0)
    x, offset, index = _packed(1)
    event = torch.randn(4, 12, requires_grad=True)
    head = mlp(18, (16,), 5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        got = mlp_with_event_context(head, x, event, offset).float()
        want = head(torch.cat([x, event[index]], dim=1)).float()
    tol = dict(atol=5e-2, rtol=5e-2) if bf16 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, want, **tol)
    params = [x, event, *head.parameters()]
    g_got = torch.autograd.grad(got.square().sum(), params)
    g_want = torch.autograd.grad(want.square().sum(), params)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.float(), b.float(), **tol)


def test_mlp_with_event_context_refuses_a_mismatched_head() -> None:
    x, offset, _ = _packed()
    with pytest.raises(ValueError, match="first layer"):
        mlp_with_event_context(mlp(10, (8,), 3), x, torch.zeros(4, 3), offset)
