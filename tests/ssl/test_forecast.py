"""Forecaster: patches cover each event along the curve, causality, batch independence, grads;
a forecasting run loads as a task encoder (the radial-cell order and the encoder's token output:
tests/models/test_serialized_patches.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from helpers.events import event_of, preprocessed_batch
from nufm.config import load_config
from nufm.data.detectors import DETECTORS
from nufm.data.tpcpp import write_tpcpp
from nufm.geometry.grid import voxelize
from nufm.geometry.serialize import serialization_order
from nufm.models.serialized_patches import SerializedPatchConfig, SerializedPatchEncoder
from nufm.presets import PRESETS
from nufm.sim.collider_tpc import generate_collider_events
from nufm.ssl.forecast import ForecastConfig, Forecaster
from nufm.tasks.build import build_task
from nufm.tasks.semseg import SemsegConfig
from nufm.train.run import run_pretrain
from nufm.workflows.load import load_encoder


def _tiny() -> ForecastConfig:
    cfg = PRESETS["forecast-tiny"].objective
    assert isinstance(cfg, ForecastConfig)
    return cfg


def _tiny_encoder() -> SerializedPatchConfig:
    return _tiny().encoder


def test_patchify_covers_every_point_once_in_curve_order() -> None:
    batch = preprocessed_batch(3)
    cfg = _tiny_encoder()
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
    cfg = _tiny_encoder()
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


def test_forecasting_run_loads_as_a_task_encoder(tmp_path: Path) -> None:
    """A collider-TPC forecasting run (``forecast-tpc-cpu``, narrowed, 2 steps on a TPCpp
    file) loads as an encoder whose config is its SerializedPatchConfig, with the detector's
    preprocessing; its config.yaml reads back; a task built from it loads every encoder
    tensor."""
    write_tpcpp(tmp_path / "tpc.npz", generate_collider_events(6, seed=1))
    base = PRESETS["forecast-tpc-cpu"]
    assert isinstance(base.objective, ForecastConfig)
    encoder = dataclasses.replace(
        base.objective.encoder, embed_dim=16, depth=1, num_heads=2, pointnet_dims=(16, 16, 16)
    )
    cfg = dataclasses.replace(
        base,
        objective=ForecastConfig(encoder=encoder),
        train=dataclasses.replace(base.train, max_steps=2, checkpoint_every=2, bf16=False),
        optim=dataclasses.replace(base.optim, warmup_steps=1),
        logging=dataclasses.replace(base.logging, progress=False, tensorboard=False),
        data=dataclasses.replace(base.data, source="file", path=tmp_path / "tpc.npz"),
    )
    run_pretrain(cfg, tmp_path / "run")
    assert load_config(tmp_path / "run" / "config.yaml").objective == cfg.objective
    pre = load_encoder(tmp_path / "run")
    assert pre.encoder_config == encoder and isinstance(pre.encoder, SerializedPatchEncoder)
    assert pre.preprocess == DETECTORS["collider-tpc"].preprocess
    task = build_task(SemsegConfig(encoder=pre.encoder_config, mode="full"), pre.state)
    report = task.encoder_load_report
    assert report is not None and report.is_exact
    own = task.backbone.encoder.state_dict()
    assert len(report.loaded) == len(own)
    for k, v in pre.encoder.state_dict().items():
        assert torch.equal(own[k], v), k
