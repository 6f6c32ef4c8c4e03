"""The released models' pretraining losses against a brute-force computation of the
reference's definitions (pytorch3d ``chamfer_distance`` with per-cloud lengths, mean
reductions; MSE over real points)."""

from __future__ import annotations

import numpy as np
import torch

from nufm.models.released.polarmae_pretrain import PolarMAEReconstruction
from nufm.ssl.released import polarmae_pretrain_losses


def _brute(rec: PolarMAEReconstruction) -> tuple[float, float]:
    chamfers, sq, n_e = [], 0.0, 0
    C = rec.points.shape[-1]
    for m in range(rec.points.shape[0]):
        n = int(rec.point_valid[m].sum())  # the reference passes n for both sets
        x = rec.points[m, :n].double().numpy()
        y = rec.target[m, :, :C][rec.point_valid[m]].double().numpy()
        d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        chamfers.append(d.min(1).mean() + d.min(0).mean())
        e = rec.energy[m][rec.point_valid[m]].double().numpy()
        t = rec.target[m, :, -1][rec.point_valid[m]].double().numpy()
        sq += float(((e - t) ** 2).sum())
        n_e += n
    return float(np.mean(chamfers)), sq / n_e


def test_polarmae_pretrain_losses_equal_the_reference_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    M, K = 5, 8
    valid = torch.zeros(M, K, dtype=torch.bool)
    for m, n in enumerate((8, 3, 1, 6, 5)):
        valid[m, :n] = True
    target = torch.randn(M, K, 4, generator=g)
    target[~valid] = target[:, :1].expand(-1, K, -1)[~valid]  # padded slots repeat the first
    for C in (4, 3):
        rec = PolarMAEReconstruction(
            points=torch.randn(M, K, C, generator=g),
            energy=torch.randn(M, K, generator=g),
            target=target,
            point_valid=valid,
        )
        losses = polarmae_pretrain_losses(rec)
        chamfer, energy = _brute(rec)
        assert abs(float(losses["chamfer"]) - chamfer) < 1e-5
        assert abs(float(losses["energy"]) - energy) < 1e-5
    # a perfect reconstruction costs nothing
    exact = PolarMAEReconstruction(target.clone(), target[..., -1].clone(), target, valid)
    assert float(polarmae_pretrain_losses(exact)["chamfer"]) < 1e-12
    assert float(polarmae_pretrain_losses(exact)["energy"]) == 0.0
