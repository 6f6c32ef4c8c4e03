"""SelfDistillation: gradients (student yes, teacher no), teacher stays in eval, schedules,
EMA update, prototype head normalisation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from helpers.events import descriptor_case, preprocessed_batch
from nufm.models.encoders import TokenViTConfig
from nufm.models.geometric import descriptor_key
from nufm.presets import PRESETS
from nufm.ssl.distill import DistillConfig, PrototypeHead, SelfDistillation


def _tiny(**kw: object) -> DistillConfig:
    cfg = PRESETS["distill-tiny"].objective
    assert isinstance(cfg, DistillConfig)
    return dataclasses.replace(cfg, **kw)


def test_distill_forward_backward_student_only() -> None:
    torch.manual_seed(0)
    model = SelfDistillation(_tiny()).train()
    assert not model.teacher_encoder.training and not model.teacher_mask_head.training
    out = model(preprocessed_batch(2))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    for key in (
        "mask",
        "roll_mask",
        "unmask",
        "teacher_entropy",
        "proto_entropy",
        "kl",
        "feat_std",
    ):
        assert key in out.metrics and torch.isfinite(out.metrics[key]), key
    P = model.cfg.num_prototypes
    assert 0.0 <= float(out.metrics["teacher_entropy"]) <= math.log(P) + 1e-4
    assert float(out.metrics["proto_entropy"]) <= math.log(P) + 1e-4
    assert float(out.metrics["kl"]) >= -1e-4
    out.loss.backward()
    teacher_names = ("teacher_encoder.", "teacher_mask_head.", "teacher_unmask_head.")
    for name, p in model.named_parameters():
        if name.startswith(teacher_names):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert float(p.grad.abs().sum()) > 0, name


def test_token_vit_distillation_trains_encoder_and_mask_token() -> None:
    """The token-ViT student (preset distill-vit-cpu, shrunk) learns through interpolated
    per-point features: every student parameter, the mask token included, gets a gradient."""
    torch.manual_seed(0)
    cfg = PRESETS["distill-vit-cpu"].objective
    assert isinstance(cfg, DistillConfig) and isinstance(cfg.encoder, TokenViTConfig)
    model = SelfDistillation(cfg).train()
    out = model(preprocessed_batch(2))
    assert torch.isfinite(out.loss) and float(out.metrics["mask_fraction"]) > 0
    out.loss.backward()
    assert model.encoder.mask_token.grad is not None
    assert float(model.encoder.mask_token.grad.abs().sum()) > 0
    for name, p in model.named_parameters():
        if not name.startswith("teacher_"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_update_teacher_moves_teacher_towards_student() -> None:
    torch.manual_seed(0)
    model = SelfDistillation(_tiny())
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    name, t0 = next(iter(model.teacher_encoder.named_parameters()))
    t0 = t0.clone()
    s = dict(model.encoder.named_parameters())[name].detach()
    model.update_teacher(0.5)
    torch.testing.assert_close(dict(model.teacher_encoder.named_parameters())[name], 0.5 * (t0 + s))


def test_schedules() -> None:
    model = SelfDistillation(_tiny(teacher_temp=(0.04, 0.07), schedule_warmup=0.1))
    assert model.teacher_temp == pytest.approx(0.04)
    assert model.mask_size == pytest.approx(model.cfg.mask_size[0])
    model.set_schedule(0.05)
    assert model.teacher_temp == pytest.approx(0.055)
    assert model.mask_ratio == pytest.approx(sum(model.cfg.mask_ratio) / 2)
    model.set_schedule(0.5)
    assert model.teacher_temp == pytest.approx(0.07)
    assert model.mask_size == pytest.approx(model.cfg.mask_size[1])
    with pytest.raises(ValueError, match="progress"):
        model.set_schedule(1.5)


def test_prototype_head_gives_cosine_logits() -> None:
    torch.manual_seed(0)
    head = PrototypeHead(8, 16, 4, 10)
    with torch.no_grad():
        head.prototypes.mul_(7.0)  # prototype norm must not matter
    x = torch.randn(5, 8)
    logits = head(x)
    expected = head.embed(x) @ torch.nn.functional.normalize(head.prototypes, dim=1).t()
    torch.testing.assert_close(logits, expected)
    assert float(logits.detach().abs().max()) <= 1.0 + 1e-6


def test_distill_config_validation() -> None:
    vit = PRESETS["distill-vit-cpu"].objective.encoder
    with pytest.raises(ValueError, match="token-ViT encoder needs mask_token"):
        _tiny(encoder=dataclasses.replace(vit, mask_token=False))
    with pytest.raises(ValueError, match="enc_mode"):
        _tiny(encoder=dataclasses.replace(_tiny().encoder, mask_token=False))


def test_distill_descriptor_loss_is_the_mse_of_standardised_point_descriptors() -> None:
    """Hand-made case: the targets are the descriptors of the given source rows, standardised
    per channel over those rows (batch statistics); the loss is the MSE of the read-out
    against them and trains the features it is given. Pipeline descriptors give the same."""
    torch.manual_seed(0)
    ks = (4, 8)
    model = SelfDistillation(_tiny(descriptor_weight=1.0, descriptor_ks=ks)).train()
    assert model.descriptor_head is not None and model.descriptor_norm is not None
    assert model.descriptor_ks == ks
    batch, desc, gen = descriptor_case(ks)  # (30, 12) descriptors
    rows = torch.tensor([3, 3, 7, 12, 29, 0])  # a point may sit in two views
    D = model.encoder.out_dim
    x = torch.randn(len(rows), D, generator=gen, requires_grad=True)
    loss = model.descriptor_loss(batch, x, rows)
    picked = desc[rows]
    std = picked.std(0, correction=0)
    target = (picked - picked.mean(0)) / torch.sqrt(std**2 + model.descriptor_norm.eps)
    pred = model.descriptor_head(x).double()
    expected = float(((pred - target) ** 2).mean().detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    piped = dataclasses.replace(batch, descriptors=desc.float(), descriptor_key=descriptor_key(ks))
    model.descriptor_norm.reset_running_stats()
    again = model.descriptor_loss(piped, x.detach(), rows)
    assert float(again.detach()) == pytest.approx(float(loss.detach()), rel=1e-5)


def test_distill_descriptor_term_in_the_step() -> None:
    torch.manual_seed(0)
    model = SelfDistillation(_tiny(descriptor_weight=0.5)).train()
    out = model(preprocessed_batch(2))
    assert float(out.metrics["descriptor"]) > 0
    out.loss.backward()
    assert model.descriptor_head is not None
    for p in model.descriptor_head.parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    for name, p in model.encoder.named_parameters():  # the term reaches the student encoder
        if name.rsplit(".", 1)[-1] != "mask_token":
            assert p.grad is not None, name
    off = SelfDistillation(_tiny())  # off by default: older checkpoints keep loading
    assert off.descriptor_ks == ()
    assert not any(k.startswith("descriptor_") for k in off.state_dict())
    with pytest.raises(ValueError, match="descriptor_ks"):
        _tiny(descriptor_weight=1.0, descriptor_ks=(1, 8))
    with pytest.raises(ValueError, match="descriptor_weight"):
        _tiny(descriptor_weight=-1.0)
