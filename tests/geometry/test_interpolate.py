from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events
from nufm.geometry.interpolate import interpolate


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_hand_computed(backend: str) -> None:
    support = torch.tensor([[0.0, 0, 0], [2, 0, 0], [5, 5, 5]])
    feat = torch.tensor([[0.0], [1.0], [7.0]])
    query = torch.tensor([[0.5, 0, 0], [2, 0, 0], [1, 1, 1]])
    out = interpolate(
        query, torch.tensor([2, 3]), support, torch.tensor([2, 3]), feat, k=3, backend=backend
    )
    # weights 1/0.25 and 1/2.25 -> (0*4 + 1*4/9) / (4 + 4/9) = 0.1; exact hit -> its feature;
    # the second event has one support point: its feature everywhere
    torch.testing.assert_close(out, torch.tensor([[0.1], [1.0], [7.0]]), atol=1e-6, rtol=1e-5)


def test_empty_support_event_gives_zeros() -> None:
    support = torch.tensor([[0.0, 0, 0]])
    out = interpolate(
        torch.ones(2, 3),
        torch.tensor([1, 2]),
        support,
        torch.tensor([1, 1]),
        torch.tensor([[3.0, 4.0]]),
    )
    assert out.tolist() == [[3.0, 4.0], [0.0, 0.0]]


def test_backends_agree_and_gradient_flows() -> None:
    coord, offset = clustered_events([100, 80], seed=15)
    sup, sup_off = coord[::4].contiguous(), torch.tensor([25, 45])
    feat = torch.randn(45, 6, requires_grad=True)
    a = interpolate(coord, offset, sup, sup_off, feat, backend="torch")
    b = interpolate(coord, offset, sup, sup_off, feat, backend="scipy")
    torch.testing.assert_close(a, b)
    b.sum().backward()
    assert feat.grad is not None and torch.isfinite(feat.grad).all()
    torch.testing.assert_close(feat.grad.sum(), torch.tensor(180.0 * 6))  # weights sum to 1
