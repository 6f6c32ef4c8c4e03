"""The joint FASERCal multi-task heads (flavour, charm, momenta, vertex), their report, and
starting a pretraining phase from an earlier run (``train.init_from``)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers.configs import small_fusion_encoder
from nufm.data.collate import collate
from nufm.data.detectors import get_detector
from nufm.eval.metrics import multitask_report
from nufm.eval.tasks import evaluate_task
from nufm.models.stream_fusion import StreamFusionConfig
from nufm.models.vit import ViTConfig
from nufm.sim.fasercal import generate_fasercal_events
from nufm.tasks.build import build_task
from nufm.tasks.multitask import MultiTask, MultiTaskConfig

D = 32


def _encoder() -> StreamFusionConfig:
    return small_fusion_encoder(D)


@pytest.fixture(scope="module")
def events():
    transform = get_detector("fasercal").preprocess.transforms()
    rng = np.random.default_rng(0)
    return [transform(e, rng) for e in generate_fasercal_events(6, seed=21)]


def _task(mode: str = "scratch") -> MultiTask:
    torch.manual_seed(0)
    task = build_task(MultiTaskConfig(encoder=_encoder(), mode=mode))  # type: ignore[arg-type]
    assert isinstance(task, MultiTask)
    return task


def test_loss_trains_every_head_and_the_encoder(events):
    task = _task()
    out = task(collate(events))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in task.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_lepton_terms_count_only_for_cc_events(events):
    task = _task().eval()
    batch = collate(events)
    nc = batch.targets["is_cc"] < 0.5
    assert nc.any() and (~nc).any()
    with torch.no_grad():
        base = float(task(batch).loss)
        moved = dict(batch.targets)
        for a in "xyz":  # change the lepton momentum of the NC events only
            moved[f"lepton_p{a}"] = torch.where(nc, 123.0, batch.targets[f"lepton_p{a}"])
        assert float(task(dataclasses.replace(batch, targets=moved)).loss) == pytest.approx(base)
        moved = dict(batch.targets)
        moved["lepton_px"] = torch.where(~nc, 77.0, batch.targets["lepton_px"])
        assert float(task(dataclasses.replace(batch, targets=moved)).loss) != pytest.approx(base)


def test_predict_decodes_momentum_and_vertex_units(events):
    task = _task().eval()
    cfg = task.cfg
    with torch.no_grad():  # heads output constants: log|p| term z, direction (0, 0, 1)
        last = task.momentum_head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, 0.0, 0.0, 2.0, -1.0, 0.0, 0.0, 3.0]))
        task.vertex_head[-1].weight.zero_()
        task.vertex_head[-1].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    pred = task.predict(collate(events))
    mag = math.exp(0.5 * cfg.log_p_scale + cfg.log_p_shift)
    np.testing.assert_allclose(pred["lepton_p"][0].numpy(), [0, 0, mag], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        pred["jet_p"][0].numpy(), [0, 0, math.exp(-cfg.log_p_scale + cfg.log_p_shift)], rtol=1e-5
    )
    np.testing.assert_allclose(pred["vertex"][0].numpy(), [10.0, -20.0, 30.0], rtol=1e-5)
    assert pred["target_vertex"].shape == (len(events), 3)


def test_report_by_hand():
    rng = np.random.default_rng(3)
    n = 40
    flavour_t = np.arange(n) % 3
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[flavour_t] * rng.random((n, 1))
    charm_t = (np.arange(n) % 4 == 0).astype(int)
    true_v = rng.normal(size=(n, 3)) * 30
    shift = np.zeros((n, 3))
    shift[:, 0] = np.arange(n) * 0.1  # error of event i: 0.1 i cm = i mm
    p_true = np.c_[np.zeros((n, 2)), np.full(n, 100.0)]
    p_pred = p_true * (1 + np.linspace(-0.2, 0.2, n))[:, None]
    pred = {
        "flavour_logits": torch.tensor(logits),
        "target_flavour": torch.tensor(flavour_t),
        "charm_logits": torch.tensor(rng.normal(size=(n, 4))),
        "target_charm": torch.tensor(charm_t),
        "vertex": torch.tensor(true_v + shift),
        "target_vertex": torch.tensor(true_v),
        "target_is_cc": torch.tensor(np.arange(n) % 2 == 0),
        "lepton_p": torch.tensor(p_pred),
        "target_lepton_p": torch.tensor(p_true),
        "jet_p": torch.tensor(p_pred),
        "target_jet_p": torch.tensor(p_true),
    }
    r = multitask_report(pred, ("a", "b", "c"), ("none", "c1", "c2", "c3"))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for c, name in enumerate("abc"):
        assert r["flavour"]["roc_auc"][name] == pytest.approx(
            roc_auc_score(flavour_t == c, prob[:, c])
        )
    assert r["vertex"]["error_mm_median"] == pytest.approx(np.median(np.arange(n)))
    assert r["vertex"]["error_mm_iqr"] == pytest.approx(
        np.percentile(np.arange(n), 75) - np.percentile(np.arange(n), 25)
    )
    rel = np.linspace(-0.2, 0.2, n)
    lo, hi = np.percentile(rel[::2], [15.865525393145708, 84.1344746068543])
    assert r["lepton_p"]["n"] == n // 2  # CC events only
    assert r["lepton_p"]["relative_resolution"] == pytest.approx(0.5 * (hi - lo))
    assert r["jet_p"]["n"] == n and r["jet_p"]["angle_mrad_median"] == pytest.approx(0, abs=1e-3)


def test_evaluate_task_gives_every_block(events):
    metrics = evaluate_task(_task().eval(), events)
    assert metrics["num_events"] == len(events)
    for block in ("flavour", "charm", "vertex", "lepton_p", "jet_p"):
        assert block in metrics
    assert len(metrics["flavour"]["confusion_matrix"]) == 6


def test_init_from_loads_the_encoder_and_keeps_new_heads(tmp_path):
    from nufm.ssl.fusion_mae import FusionMAE, FusionMAEConfig
    from nufm.train.checkpoint import (
        CheckpointError,
        DataCursor,
        capture_rng_state,
        init_from_run,
        save_checkpoint,
    )

    torch.manual_seed(0)
    phase1 = FusionMAE(FusionMAEConfig(encoder=_encoder()))
    save_checkpoint(
        tmp_path / "run" / "checkpoints",
        step=7,
        model=phase1,
        optimizer=None,
        cursor=DataCursor(),
        config={},
        rng=[capture_rng_state()],
    )
    torch.manual_seed(1)
    phase2 = FusionMAE(FusionMAEConfig(encoder=_encoder(), relational_weight=1.0))
    fresh = {k: v.clone() for k, v in phase2.state_dict().items()}
    n = init_from_run(phase2, tmp_path / "run")
    own = phase2.state_dict()
    old = phase1.state_dict()
    for k in own:
        if k in old:
            assert torch.equal(own[k], old[k]), k
        else:
            assert torch.equal(own[k], fresh[k]), k  # the relational heads start fresh
    assert n == len(old)
    wider = dataclasses.replace(
        _encoder(), vit=ViTConfig(embed_dim=D, depth=2, num_heads=2, drop_path=0.0)
    )
    with pytest.raises(CheckpointError, match="encoder does not match"):
        init_from_run(FusionMAE(FusionMAEConfig(encoder=wider)), tmp_path / "run")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        init_from_run(phase2, tmp_path)
