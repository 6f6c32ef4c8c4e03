"""Masked Chamfer vs a brute-force double loop; masked MSE; Sinkhorn-Knopp marginals."""

from __future__ import annotations

import math

import torch

from nufm.ssl.losses import entropy, masked_chamfer, masked_mse, sinkhorn_knopp, soft_cross_entropy


def _brute_chamfer(x: list[list[float]], y: list[list[float]]) -> float:
    if not x or not y:
        return 0.0

    def d(a: list[float], b: list[float]) -> float:
        return sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=False))

    fwd = sum(min(d(a, b) for b in y) for a in x) / len(x)
    bwd = sum(min(d(a, b) for a in x) for b in y) / len(y)
    return fwd + bwd


def test_masked_chamfer_matches_brute_force() -> None:
    torch.manual_seed(0)
    Q, K1, K2 = 6, 9, 7
    pred = torch.randn(Q, K1, 3, dtype=torch.float64)
    target = torch.randn(Q, K2, 3, dtype=torch.float64)
    pred_valid = torch.rand(Q, K1) < 0.7
    target_valid = torch.rand(Q, K2) < 0.6
    pred_valid[0] = False  # empty prediction -> 0
    target_valid[1] = False  # empty target -> 0
    pred_valid[2], target_valid[2] = True, True
    got = masked_chamfer(pred, pred_valid, target, target_valid)
    for q in range(Q):
        x = [pred[q, i].tolist() for i in range(K1) if pred_valid[q, i]]
        y = [target[q, j].tolist() for j in range(K2) if target_valid[q, j]]
        assert abs(float(got[q]) - _brute_chamfer(x, y)) < 1e-9


def _dense_chamfer(pred, pv, target, tv):
    """The min over a dense (Q, K1, K2) distance tensor, gradient through torch's min."""
    d = (pred[:, :, None] - target[:, None]).square().sum(-1)
    d = d.masked_fill(~(pv[:, :, None] & tv[:, None]), float("inf"))
    ok = pv.any(1) & tv.any(1)
    p2t = d.min(2).values.masked_fill(~(pv & ok[:, None]), 0.0).sum(1) / pv.sum(1).clamp(min=1)
    t2p = d.min(1).values.masked_fill(~(tv & ok[:, None]), 0.0).sum(1) / tv.sum(1).clamp(min=1)
    return torch.where(ok, p2t + t2p, torch.zeros_like(p2t))


def test_masked_chamfer_gradient_is_that_of_the_min() -> None:
    """Nearest points chosen without autograd, distances recomputed on them: the same values
    and gradients (to both sets) as autograd through a dense min, on 200 pairs of 4-D sets."""
    torch.manual_seed(2)
    pred = torch.randn(200, 16, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(200, 24, 4, dtype=torch.float64, requires_grad=True)
    pv, tv = torch.rand(200, 16) < 0.8, torch.rand(200, 24) < 0.7
    pv[0], tv[1] = False, False
    got = masked_chamfer(pred, pv, target, tv)
    want = _dense_chamfer(pred, pv, target, tv)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(got.square().sum(), (pred, target))
    g_want = torch.autograd.grad(want.square().sum(), (pred, target))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert float(g_got[0].abs().sum()) > 0 and float(g_got[1].abs().sum()) > 0


def test_masked_chamfer_ignores_padding_values_and_has_finite_grad() -> None:
    torch.manual_seed(1)
    pred = torch.randn(4, 5, 3, requires_grad=True)
    target = torch.randn(4, 6, 3)
    pv = torch.rand(4, 5) < 0.6
    tv = torch.rand(4, 6) < 0.6
    tv[0] = False
    a = masked_chamfer(pred, pv, target, tv)
    target2 = torch.where(tv[..., None], target, torch.full_like(target, 1e6))
    b = masked_chamfer(pred, pv, target2, tv)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    assert torch.isfinite(pred.grad).all()
    assert float(pred.grad[~pv].abs().sum()) == 0.0


def test_masked_mse_hand_case() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 10.0])
    target = torch.tensor([0.0, 2.0, 5.0, 0.0])
    valid = torch.tensor([True, True, True, False])
    assert abs(float(masked_mse(pred, target, valid)) - (1.0 + 0.0 + 4.0) / 3) < 1e-6


def test_soft_cross_entropy_and_entropy_hand_case() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax at T=1: (1/4, 3/4)
    target = torch.tensor([[0.5, 0.5]])
    ce = soft_cross_entropy(logits, target, 1.0)
    assert abs(float(ce) - (-0.5 * math.log(0.25) - 0.5 * math.log(0.75))) < 1e-6
    assert abs(float(entropy(target)) - math.log(2.0)) < 1e-6


def test_sinkhorn_marginals() -> None:
    torch.manual_seed(0)
    M, P = 512, 16
    F = torch.nn.functional
    logits = F.normalize(torch.randn(M, 8), dim=1) @ F.normalize(torch.randn(P, 8), dim=1).t()
    q = sinkhorn_knopp(logits, 0.07, n_iters=3)
    assert q.shape == (M, P) and bool((q >= 0).all())
    torch.testing.assert_close(q.sum(1), torch.ones(M), atol=1e-5, rtol=0)  # rows: distributions

    def worst(x: torch.Tensor) -> float:  # largest relative deviation from uniform usage
        return float((x.sum(0) / M * P - 1).abs().max())

    raw = torch.softmax(logits / 0.07, dim=1)
    assert worst(q) < 0.6 * worst(raw)  # 3 rounds already balance the prototypes
    assert worst(sinkhorn_knopp(logits, 0.07, n_iters=10)) < 0.06
    q_many = sinkhorn_knopp(logits, 0.07, n_iters=200)
    torch.testing.assert_close(q_many.sum(0) / M, torch.full((P,), 1.0 / P), atol=1e-4, rtol=0)


def test_sinkhorn_removes_a_prototype_bias() -> None:
    torch.manual_seed(1)
    logits = torch.randn(64, 8) * 0.3
    biased = logits.clone()
    biased[:, 2] += 0.5  # a prototype every sample prefers: no centering needed
    torch.testing.assert_close(
        sinkhorn_knopp(biased, 0.05), sinkhorn_knopp(logits, 0.05), atol=1e-5, rtol=1e-4
    )
