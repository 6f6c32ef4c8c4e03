"""Every task in every mode: shapes, gradients, frozen encoders, lr scales, init, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers.configs import ENCODERS, tiny_ptv3, tiny_vit
from nufm.batch import PointBatch
from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.models.geometric import descriptor_key, point_shape_descriptors
from nufm.models.numeric import quantile_edges
from nufm.presets import PRESETS
from nufm.tasks import (
    MODES,
    ClusterConfig,
    EventTaskConfig,
    PIDConfig,
    SemsegConfig,
    TaskModule,
    build_task,
)
from nufm.tasks.backbone import fit_descriptor_encoding
from nufm.tasks.build import TaskConfig
from nufm.train.loop import train
from nufm.train.optim import build_optimizer, set_step_hyperparams

TASK_CONFIGS = {
    "semseg": SemsegConfig,
    "pid": PIDConfig,
    "cluster": ClusterConfig,
    "event": EventTaskConfig,
}


def _cfg(task: str, mode: str, encoder: str = "vit", **kw: object) -> TaskConfig:
    return TASK_CONFIGS[task](
        encoder=ENCODERS[encoder](),
        mode=mode,
        encoder_lr_scale=0.25,
        neck_hidden=(16,),
        head_hidden=(16,),
        **kw,
    )  # type: ignore[arg-type]


def _is_encoder(name: str) -> bool:
    return name.startswith("backbone.encoder.")


def _check_predict_shapes(task: TaskModule, batch: PointBatch) -> None:
    pred = task.predict(batch)
    N, B = batch.num_points, batch.num_events
    match task.cfg:
        case SemsegConfig():
            assert pred["logits"].shape == (N, 5) and pred["pred"].shape == (N,)
            assert torch.equal(pred["target"], batch.segment)
        case PIDConfig():
            assert batch.instance is not None
            n_inst = len(
                {
                    (int(e), int(i))
                    for e, i in zip(batch.batch_index, batch.instance, strict=False)
                    if i >= 0
                }
            )
            assert pred["logits"].shape == (n_inst, 5)
            assert pred["instance_event"].shape == pred["target"].shape == (n_inst,)
            assert pred["point_pred"].shape == (N,)
            assert bool((pred["point_pred"][batch.instance < 0] == -1).all())
        case ClusterConfig():
            assert pred["embedding"].shape == (N, 8) and pred["pred"].shape == (N,)
            assert int(pred["pred"].min()) >= 0  # greedy, min_cluster_points 1: all assigned
        case EventTaskConfig():
            assert pred["logits"].shape == (B, 4) and pred["pred"].shape == (B,)
        case _:
            raise AssertionError(type(task.cfg))


@pytest.mark.parametrize("encoder", ["vit", "ptv3"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task_name", list(TASK_CONFIGS))
def test_task_mode_shapes_gradients_and_lr_scale(
    task_name: str, mode: str, encoder: str, task_batch: PointBatch
) -> None:
    torch.manual_seed(0)
    task = build_task(_cfg(task_name, mode, encoder))
    task.train()
    is_frozen = mode in ("linear", "head")
    # a frozen encoder stays in eval mode (and the rest trains)
    assert task.backbone.encoder.training is not is_frozen
    assert task.training and task.backbone.training
    out = task(task_batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in task.named_parameters():
        if is_frozen and _is_encoder(name):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
        expected = 0.25 if (_is_encoder(name) and not is_frozen) else 1.0
        assert task.param_lr_scale(name) == expected, name
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    if mode == "linear":  # a true linear probe: one Linear layer is all that trains
        assert isinstance(task.head, nn.Linear) and trainable == ["head.weight", "head.bias"]
        assert sum(p.numel() for p in task.backbone.parameters() if p.requires_grad) == 0
    _check_predict_shapes(task, task_batch)
    assert task.training  # predict() alone does not change the train/eval mode


@pytest.mark.parametrize("task_name", list(TASK_CONFIGS))
def test_scratch_and_full_differ_only_in_encoder_init(task_name: str) -> None:
    torch.manual_seed(123)
    pretrained = build_task(_cfg(task_name, "scratch")).backbone.encoder.state_dict()
    objective_state = {f"encoder.{k}": v for k, v in pretrained.items()}  # as an objective
    torch.manual_seed(0)
    full = build_task(_cfg(task_name, "full"), objective_state)
    torch.manual_seed(0)
    scratch = build_task(_cfg(task_name, "scratch"))
    assert dataclasses.replace(full.cfg, mode="scratch") == scratch.cfg
    full_state, scratch_state = full.state_dict(), scratch.state_dict()
    assert full_state.keys() == scratch_state.keys()
    n_encoder_diff = 0
    for k, v in full_state.items():
        if _is_encoder(k):
            torch.testing.assert_close(v, pretrained[k.removeprefix("backbone.encoder.")])
            n_encoder_diff += int(not torch.equal(v, scratch_state[k]))
        else:
            assert torch.equal(v, scratch_state[k]), k  # same neck / head init
    assert n_encoder_diff > 0
    assert full.encoder_load_report is not None and full.encoder_load_report.is_exact
    assert scratch.encoder_load_report is None
    for name, _ in full.named_parameters():
        assert full.param_lr_scale(name) == scratch.param_lr_scale(name)


def test_frozen_encoder_is_unchanged_by_training_steps(task_batch: PointBatch) -> None:
    torch.manual_seed(0)
    task = build_task(_cfg("semseg", "head"))
    before = {k: v.clone() for k, v in task.backbone.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        task(task_batch).loss.backward()
        opt.step()
    for k, v in task.backbone.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("task_name", ["semseg", "pid", "event"])
def test_predictions_are_batch_independent(task_name: str, task_events: list[Event]) -> None:
    torch.manual_seed(0)
    task = build_task(_cfg(task_name, "head")).eval()
    key = {"semseg": "logits", "pid": "logits", "event": "logits"}[task_name]
    alone = task.predict(collate(task_events[1:2]))[key]
    together = task.predict(collate(task_events))
    match task_name:
        case "semseg":
            n0, n1 = len(task_events[0]), len(task_events[1])
            torch.testing.assert_close(alone, together[key][n0 : n0 + n1], atol=1e-5, rtol=1e-4)
        case "pid":
            rows = together["instance_event"] == 1
            torch.testing.assert_close(alone, together[key][rows], atol=1e-5, rtol=1e-4)
        case "event":
            torch.testing.assert_close(alone[0], together[key][1], atol=1e-5, rtol=1e-4)


def test_presets_cover_every_task_and_mode() -> None:
    for prefix in (
        "semseg",
        "semseg-polarmae",
        "pid",
        "cluster-particle",
        "cluster-interaction",
        "event-ninteractions",
        "event-energy",
        "event-vertex",
    ):
        for mode in MODES:
            assert PRESETS[f"{prefix}-{mode}"].objective.mode == mode
    assert PRESETS["semseg-polarmae-full"].objective.encoder.tokenizer.in_channels == 4
    torch.manual_seed(0)
    task = build_task(PRESETS["event-vertex-linear"].objective)
    assert isinstance(task.head, nn.Linear) and task.head.out_features == 3


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode='bogus'"):
        SemsegConfig(encoder=tiny_vit(), mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="class_weights needs 5"):
        SemsegConfig(encoder=tiny_vit(), class_weighting="custom", class_weights=(1.0,))
    with pytest.raises(ValueError, match="classification needs one target"):
        EventTaskConfig(encoder=tiny_vit(), targets=("a", "b"))
    with pytest.raises(ValueError, match="delta_v < 2 delta_d"):
        ClusterConfig(encoder=tiny_vit(), delta_v=4.0, delta_d=1.0)
    with pytest.raises(TypeError, match="no task for config"):
        build_task(tiny_vit())  # type: ignore[arg-type]


def test_task_trains_in_the_training_loop(tmp_path: Path, task_events: list[Event]) -> None:
    cfg = RunConfig(
        objective=_cfg("pid", "head"),
        optim=OptimConfig(lr=1e-2, warmup_steps=1),
        train=TrainConfig(max_steps=5, device="cpu", checkpoint_every=5),
        logging=LoggingConfig(log_every=1, progress=False, tensorboard=False),
        data=DataConfig(max_points=10_000, max_events=2),
    )
    torch.manual_seed(0)
    task = build_task(_cfg("pid", "head"))
    encoder_before = {k: v.clone() for k, v in task.backbone.encoder.state_dict().items()}
    head_before = task.head[0].weight.detach().clone()
    result = train(cfg, task, lambda _: task_events, tmp_path / "run")
    assert result.step == 5 and result.last_checkpoint is not None
    assert not task.backbone.encoder.training  # the loop's objective.train() keeps it frozen
    for k, v in task.backbone.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    assert not torch.equal(task.head[0].weight, head_before)


def test_full_mode_encoder_frozen_for_the_first_steps(
    tmp_path: Path, task_events: list[Event]
) -> None:
    """frozen_encoder_fraction 0.5 over 5 steps (progress 0, 0.25, 0.5, 0.75, 1): the loop's
    first two forwards run the encoder without gradients in eval mode, the last three train
    it; the head trains from the first step."""
    task_cfg = _cfg("semseg", "full", frozen_encoder_fraction=0.5)
    cfg = RunConfig(
        objective=task_cfg,
        optim=OptimConfig(lr=1e-2, warmup_steps=1),
        train=TrainConfig(max_steps=5, device="cpu", checkpoint_every=5),
        logging=LoggingConfig(log_every=1, progress=False, tensorboard=False),
        data=DataConfig(max_points=10_000, max_events=2),
    )
    torch.manual_seed(0)
    task = build_task(task_cfg)
    encoder_before = {k: v.clone() for k, v in task.backbone.encoder.state_dict().items()}
    calls: list[tuple[bool, bool]] = []
    task.backbone.encoder.register_forward_pre_hook(
        lambda module, args: calls.append((torch.is_grad_enabled(), module.training))
    )
    train(cfg, task, lambda _: task_events, tmp_path / "run")
    assert calls == [(False, False)] * 2 + [(True, True)] * 3
    assert not task.backbone.warming and task.backbone.encoder.training
    changed = [
        k
        for k, v in task.backbone.encoder.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, encoder_before[k])
    ]
    assert changed  # it trained after its frozen phase
    # the option is for the pretrained encoder: scratch trains its encoder from the start
    assert (
        build_task(_cfg("semseg", "scratch", frozen_encoder_fraction=0.5)).backbone.frozen_until
        == 0
    )
    with pytest.raises(ValueError, match="frozen_encoder_fraction"):
        _cfg("semseg", "full", frozen_encoder_fraction=1.0)


def test_pretraining_mask_token_is_frozen_in_full_mode(task_batch: PointBatch) -> None:
    torch.manual_seed(0)
    encoder = dataclasses.replace(tiny_ptv3(), mask_token=True)
    task = build_task(SemsegConfig(encoder=encoder, mode="full", head_hidden=(16,)))
    task(task_batch).loss.backward()
    for name, p in task.named_parameters():
        if name.endswith("mask_token"):
            assert not p.requires_grad and p.grad is None
        else:
            assert p.grad is not None, name


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_optimizer_groups_use_the_task_lr_scales(mode: str) -> None:
    torch.manual_seed(0)
    task = build_task(_cfg("semseg", mode))
    opt = build_optimizer(task, lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    set_step_hyperparams(opt, lr=1e-3, weight_decay=0.05)
    in_groups = {n for g in opt.param_groups for n in g["names"]}
    assert in_groups == {n for n, p in task.named_parameters() if p.requires_grad}
    for g in opt.param_groups:
        for name in g["names"]:
            assert g["lr"] == pytest.approx(1e-3 * task.param_lr_scale(name))
    if mode == "full":
        assert any(g["lr"] == pytest.approx(2.5e-4) for g in opt.param_groups)
    else:
        assert not any(_is_encoder(n) for n in in_groups)


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_point_descriptors_are_appended_to_the_head_input(
    mode: str, task_batch: PointBatch
) -> None:
    ks = (4, 8)
    torch.manual_seed(0)
    plain = build_task(_cfg("semseg", mode)).eval()
    torch.manual_seed(0)
    task = build_task(_cfg("semseg", mode, point_descriptors=ks)).eval()
    assert task.backbone.out_dim == plain.backbone.out_dim + 6 * len(ks)
    feat = task.backbone(task_batch)  # (N, D + 12)
    D = plain.backbone.out_dim
    # the encoder part is untouched; the descriptors pass a fresh BatchNorm (eval: x / sqrt(1+eps))
    torch.testing.assert_close(feat[:, :D], plain.backbone(task_batch))
    shape = point_shape_descriptors(task_batch, ks)  # (N, 12)
    assert shape.shape == (task_batch.num_points, 12) and torch.isfinite(shape).all()
    torch.testing.assert_close(feat[:, D:], shape / (1 + 1e-5) ** 0.5)
    # descriptors the data pipeline computed are read, when they are the ones asked for
    given = torch.arange(shape.numel(), dtype=torch.float32).reshape(shape.shape) / shape.numel()
    read = task_batch.with_fields(descriptors=given, descriptor_key=descriptor_key(ks))
    torch.testing.assert_close(task.backbone(read)[:, D:], given / (1 + 1e-5) ** 0.5)
    other = task_batch.with_fields(descriptors=given, descriptor_key=descriptor_key((4, 16)))
    torch.testing.assert_close(task.backbone(other)[:, D:], shape / (1 + 1e-5) ** 0.5)
    # training: the norm's statistics move, gradients reach every trainable parameter
    task.train()
    task(task_batch).loss.backward()
    norm = task.backbone.descriptor_norm
    assert norm is not None and norm.weight.grad is not None
    assert not torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
    with pytest.raises(ValueError, match="point_descriptors needs sizes >= 2"):
        _cfg("semseg", mode, point_descriptors=(1, 8))


def test_binned_point_descriptors_are_fitted_on_the_training_events(
    task_events: list[Event], task_batch: PointBatch
) -> None:
    ks, bins = (4, 8), 5
    torch.manual_seed(0)
    plain = build_task(_cfg("semseg", "full")).eval()
    torch.manual_seed(0)
    task = build_task(_cfg("semseg", "full", point_descriptors=ks, descriptor_bins=bins)).eval()
    D = plain.backbone.out_dim
    assert task.backbone.descriptor_norm is None
    assert task.backbone.out_dim == D + 6 * len(ks) * bins
    with pytest.raises(RuntimeError, match="never fitted"):
        task.backbone(task_batch)
    # fitted on the descriptors of the training events, as the pipeline gives them
    n = fit_descriptor_encoding(task, task_events, lambda ev, rng: ev, seed=0)
    shape = point_shape_descriptors(task_batch, ks)  # (N, 12)
    assert n == task_batch.num_points
    encoding = task.backbone.descriptor_encoding
    assert encoding is not None
    np.testing.assert_allclose(encoding.edges.numpy(), quantile_edges(shape.numpy(), bins))
    feat = task.backbone(task_batch)
    torch.testing.assert_close(feat[:, :D], plain.backbone(task_batch))
    torch.testing.assert_close(feat[:, D:], encoding(shape))
    # at most max_rows points and max_events events (seeded draws) give the quantiles
    assert fit_descriptor_encoding(task, task_events, lambda ev, rng: ev, max_rows=50) == 50
    sizes = {len(ev.coord) for ev in task_events}
    assert fit_descriptor_encoding(task, task_events, lambda ev, rng: ev, max_events=1) in sizes
    # the head learns from the bins; a task without bins has nothing to fit
    task.train()
    task(task_batch).loss.backward()
    head = [p for n_, p in task.named_parameters() if n_.startswith("head.")]
    assert head and all(p.grad is not None for p in head)
    assert fit_descriptor_encoding(plain, task_events, lambda ev, rng: ev) == 0
    with pytest.raises(ValueError, match="descriptor_bins must be >= 0"):
        _cfg("semseg", "full", point_descriptors=ks, descriptor_bins=-1)


def test_token_groups_come_from_the_data_pipeline(
    task_events: list[Event], task_batch: PointBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token ViT task's pipeline groups each event once (as pretraining does); the task
    reads those groups instead of grouping in the step, with the same logits as when it
    groups itself (eval mode: deterministic C-NMS)."""
    from nufm.data.transforms import Preprocess
    from nufm.models.geometric import EventDescriptors
    from nufm.models.tokenizers import EventGrouper, PointMAETokenizer
    from nufm.tasks.backbone import task_pipeline_steps

    pre = Preprocess()
    assert task_pipeline_steps(_cfg("semseg", "full", "ptv3"), pre) == []
    steps = task_pipeline_steps(_cfg("semseg", "full", point_descriptors=(4,)), pre)
    assert [type(s) for s in steps] == [EventDescriptors, EventGrouper]
    torch.manual_seed(0)
    task = build_task(_cfg("semseg", "full")).eval()
    (grouper,) = task_pipeline_steps(task.cfg, pre)
    grouped = collate([grouper(ev, None) for ev in task_events])
    assert task_batch.groups is None and grouped.groups is not None
    with torch.no_grad():
        torch.testing.assert_close(task.logits(grouped), task.logits(task_batch))

    def no_grouping(*args: object, **kwargs: object) -> None:
        raise AssertionError("grouped in the step")

    monkeypatch.setattr(PointMAETokenizer, "group", no_grouping)
    task.train()
    task(grouped).loss.backward()  # a training step on pipeline groups: no grouping
    with pytest.raises(AssertionError, match="grouped in the step"):
        task(task_batch)
