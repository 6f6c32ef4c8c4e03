"""Forecaster: patches cover each event along the curve, causality, batch independence, grads."""

from __future__ import annotations

import dataclasses

import torch

from helpers.events import event_of, preprocessed_batch
from nufm.geometry.grid import voxelize
from nufm.geometry.serialize import serialization_order
from nufm.presets import PRESETS
from nufm.ssl.forecast import ForecastConfig, Forecaster, SerializedPatchEncoder


def _tiny(**kw: object) -> ForecastConfig:
    cfg = PRESETS["forecast-tiny"].objective
    assert isinstance(cfg, ForecastConfig)
    return dataclasses.replace(cfg, **kw)


def test_patchify_covers_every_point_once_in_curve_order() -> None:
    batch = preprocessed_batch(3)
    cfg = _tiny()
    enc = SerializedPatchEncoder(cfg)
    patches = enc.patchify(batch)
    B, _T, P = patches.idx.shape
    assert cfg.patch_points == P
    rows = patches.idx[patches.idx >= 0]
    assert torch.equal(rows.sort().values, torch.arange(batch.num_points))
    n = batch.counts
    assert torch.equal(patches.valid.sum(1), (n + P - 1) // P)
    grid = voxelize(batch.coord, batch.offset, cfg.grid_size)
    order, _ = serialization_order(grid, batch.offset, cfg.serialization_depth, (cfg.order,))
    start = 0
    for b in range(B):
        flat = patches.idx[b].reshape(-1)
        assert torch.equal(flat[flat >= 0], order[0, start : start + int(n[b])])
        start += int(n[b])
    b, t = 0, 1
    pts = batch.coord[patches.idx[b, t][patches.idx[b, t] >= 0]]
    torch.testing.assert_close(patches.center[b, t], pts.mean(0))


def test_forecast_encoder_is_causal_and_batch_independent() -> None:
    torch.manual_seed(0)
    cfg = _tiny()
    enc = SerializedPatchEncoder(cfg).eval()
    batch = preprocessed_batch(3)
    with torch.no_grad():
        patches = enc.patchify(batch)
        h = enc.encode(batch, patches)
        t_cut = 3
        later = patches.idx[0, t_cut:]
        rows = later[later >= 0]
        moved = dataclasses.replace(batch, feat=batch.feat.clone())
        moved.feat[rows] += 3.0  # change only the points of patches >= t_cut of event 0
        h2 = enc.encode(moved, patches)
        alone = enc(event_of(batch, 2)).feat
    torch.testing.assert_close(h[0, :t_cut], h2[0, :t_cut])
    assert float((h[0, t_cut:] - h2[0, t_cut:]).abs().max()) > 1e-3
    T2 = int(patches.valid[2].sum())
    torch.testing.assert_close(alone[0, :T2], h[2, :T2], atol=1e-5, rtol=1e-4)


def test_forecast_forward_backward() -> None:
    torch.manual_seed(0)
    model = Forecaster(_tiny()).train()
    batch = preprocessed_batch(2)
    out = model(batch)
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    patches = model.encoder.patchify(batch)
    assert int(out.metrics["n_pairs"]) == int((patches.valid.sum(1) - 1).sum())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name
