"""Hash-based submanifold sparse conv vs a dense Conv3d with the same weights."""

from __future__ import annotations

import torch
import torch.nn as nn

from nufm.models.sparse_conv import KERNEL_OFFSETS, SubMConv3d, neighbour_map


def _dense_reference(
    grid: torch.Tensor, feat: torch.Tensor, conv: SubMConv3d, size: int
) -> torch.Tensor:
    C, Cout = conv.weight.shape[1:]
    dense = nn.Conv3d(C, Cout, 3, padding=1)
    with torch.no_grad():
        for k, (dx, dy, dz) in enumerate(KERNEL_OFFSETS.tolist()):
            dense.weight[:, :, dx + 1, dy + 1, dz + 1] = conv.weight[k].T
        dense.bias.copy_(conv.bias)
    vol = torch.zeros(1, C, size, size, size)
    vol[0, :, grid[:, 0], grid[:, 1], grid[:, 2]] = feat.T
    out = dense(vol)[0]  # (Cout, S, S, S)
    return out[:, grid[:, 0], grid[:, 1], grid[:, 2]].T


def test_sparse_conv_matches_dense_conv3d_on_full_and_sparse_grids() -> None:
    torch.manual_seed(0)
    size = 5
    all_vox = torch.stack(torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij"), -1)
    all_vox = all_vox.reshape(-1, 3)
    conv = SubMConv3d(3, 4)
    for occupied in (torch.ones(len(all_vox), dtype=torch.bool), torch.rand(len(all_vox)) < 0.4):
        grid = all_vox[occupied]
        perm = torch.randperm(len(grid))  # row order must not matter
        grid = grid[perm]
        feat = torch.randn(len(grid), 3)
        nbr = neighbour_map(grid, torch.tensor([len(grid)]))
        out = conv(feat, nbr)
        ref = _dense_reference(grid, feat, conv, size)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_sparse_conv_gradients_match_the_dense_conv3d() -> None:
    torch.manual_seed(1)
    grid = torch.unique(torch.randint(0, 4, (30, 3)), dim=0)
    feat = torch.randn(len(grid), 3, requires_grad=True)
    conv = SubMConv3d(3, 2)
    out = conv(feat, neighbour_map(grid, torch.tensor([len(grid)])))
    (g_feat, g_w) = torch.autograd.grad(out.square().sum(), [feat, conv.weight])
    feat2 = feat.detach().clone().requires_grad_(True)
    ref = _dense_reference(grid, feat2, conv, 4)
    (r_feat,) = torch.autograd.grad(ref.square().sum(), [feat2])
    torch.testing.assert_close(g_feat, r_feat, atol=1e-5, rtol=1e-5)
    assert g_w.shape == conv.weight.shape and bool(g_w.abs().sum() > 0)


def test_neighbour_map_does_not_cross_events() -> None:
    grid = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]])
    nbr = neighbour_map(grid, torch.tensor([2, 4]))
    # Event 0: rows 0 and 1 are x-neighbours; event 1: rows 2 and 3 are z-neighbours.
    assert nbr[0, 22] == 1 and nbr[1, 4] == 0  # +x is tap 22, -x is tap 4
    assert nbr[2, 14] == 3 and nbr[3, 12] == 2  # +z is tap 14, -z is tap 12
    assert (nbr[:2] >= 2).sum() == 0 and ((nbr[2:] >= 0) & (nbr[2:] < 2)).sum() == 0
    assert (nbr[:, 13] == torch.arange(4)).all()
