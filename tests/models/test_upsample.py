"""Token-to-point feature propagation vs a brute-force per-event reference."""

from __future__ import annotations

import torch

from nufm.models.upsample import FeaturePropagation


def _tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    center = torch.randn(2, 5, 3)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    center[~valid] = 0.0  # padding sits at the origin: must never be used
    feat = torch.randn(2, 5, 6)
    return feat, center, valid


def _brute_idw(
    feat: torch.Tensor,
    center: torch.Tensor,
    valid: torch.Tensor,
    coord: torch.Tensor,
    offset: torch.Tensor,
    k: int,
) -> torch.Tensor:
    out = []
    start = 0
    for b, end in enumerate(offset.tolist()):
        c, f = center[b][valid[b]], feat[b][valid[b]]
        d = torch.cdist(coord[start:end], c)  # (n, G_b)
        dk, ik = d.topk(k, largest=False)
        w = 1.0 / dk.clamp(min=1e-8).square()
        w = w / w.sum(1, keepdim=True)
        out.append((w[..., None] * f[ik]).sum(1))
        start = end
    return torch.cat(out)


def test_feature_propagation_matches_brute_force() -> None:
    feat, center, valid = _tokens()
    coord = torch.randn(12, 3) * 0.5
    offset = torch.tensor([5, 12])
    point_feat = torch.randn(12, 2)
    for k in (1, 3):
        fp = FeaturePropagation(6, 2, hidden=(8, 4), k=k).eval()
        out = fp(feat, center, valid, coord, offset, point_feat)
        assert out.shape == (12, 4)
        ref = fp.mlp(torch.cat([_brute_idw(feat, center, valid, coord, offset, k), point_feat], 1))
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_feature_propagation_gradients() -> None:
    feat, center, valid = _tokens()
    feat.requires_grad_(True)
    fp = FeaturePropagation(6, 0, hidden=(8,), k=3)
    out = fp(feat, center, valid, torch.randn(9, 3), torch.tensor([4, 9]))
    out.square().mean().backward()
    assert feat.grad is not None and bool((feat.grad[~valid] == 0).all())
    for name, p in fp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
