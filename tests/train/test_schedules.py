from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nufm.ssl.toy import ToyObjective, ToyObjectiveConfig
from nufm.train.optim import build_optimizer, is_decayed, param_groups, set_step_hyperparams
from nufm.train.schedules import build_schedules, cosine_schedule


def test_cosine_schedule_hand_computed() -> None:
    v = cosine_schedule(1.0, 0.0, total_steps=6, warmup_steps=2, warmup_start_value=0.5)
    # warmup: 0.5, 0.75; cosine over 4 steps with T = 3: (1 + cos(pi t / 3)) / 2
    expected = [0.5, 0.75, 1.0, 0.75, 0.25, 0.0]
    np.testing.assert_allclose(v, expected, atol=1e-12)
    assert v.shape == (6,)


def test_cosine_schedule_no_warmup_and_errors() -> None:
    v = cosine_schedule(0.996, 1.0, total_steps=3)
    np.testing.assert_allclose(v, [0.996, 0.998, 1.0])
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(1.0, 0.0, total_steps=3, warmup_steps=4)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(1.0, 0.0, total_steps=0)


def test_build_schedules_lengths_and_endpoints() -> None:
    s = build_schedules(
        max_steps=10,
        lr=1e-3,
        min_lr=1e-5,
        warmup_steps=3,
        warmup_start_lr=0.0,
        weight_decay=0.04,
        weight_decay_end=0.4,
        momentum_start=0.99,
        momentum_end=1.0,
    )
    assert s.lr[0] == 0.0 and s.lr[3] == pytest.approx(1e-3) and s.lr[-1] == pytest.approx(1e-5)
    assert s.weight_decay[0] == pytest.approx(0.04) and s.weight_decay[-1] == pytest.approx(0.4)
    assert s.momentum[-1] == pytest.approx(1.0)
    assert all(len(a) == 10 for a in (s.lr, s.weight_decay, s.momentum))


def test_weight_decay_excludes_biases_norms_tokens_and_frozen() -> None:
    model = ToyObjective(ToyObjectiveConfig(hidden=8))
    decay, no_decay = param_groups(model)
    assert set(decay["names"]) == {"student.net.0.weight", "student.net.3.weight", "head.weight"}
    assert "mask_token" in no_decay["names"] and "student.net.2.weight" in no_decay["names"]
    assert not any(n.startswith("teacher") for n in decay["names"] + no_decay["names"])
    assert not is_decayed("pos_embed", nn.Parameter(torch.zeros(4, 4)))


def test_decay_applied_only_to_decayed_group() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    opt = build_optimizer(model, lr=0.1, betas=(0.9, 0.95), eps=1e-8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    set_step_hyperparams(opt, lr=0.1, weight_decay=0.5)
    for p in model.parameters():  # zero gradient: AdamW changes only decayed weights
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name])
    assert math.isclose(opt.param_groups[1]["weight_decay"], 0.0)


class _ScaledModel(nn.Module):
    """Encoder parameters at a tenth of the learning rate, as a fine-tuning task declares."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)

    def param_lr_scale(self, name: str) -> float:
        return 0.1 if name.startswith("encoder.") else 1.0


def test_param_lr_scale_splits_groups_and_scales_the_learning_rate() -> None:
    model = _ScaledModel()
    groups = param_groups(model)
    by_key = {(g["is_decayed"], g["lr_scale"]): set(g["names"]) for g in groups}
    assert by_key == {
        (True, 1.0): {"head.weight"},
        (True, 0.1): {"encoder.weight"},
        (False, 1.0): {"head.bias"},
        (False, 0.1): {"encoder.bias"},
    }
    opt = build_optimizer(model, lr=1.0, betas=(0.9, 0.95), eps=1e-8)
    set_step_hyperparams(opt, lr=2e-3, weight_decay=0.05)
    lrs = {frozenset(g["names"]): g["lr"] for g in opt.param_groups}
    assert lrs[frozenset({"encoder.weight"})] == pytest.approx(2e-4)
    assert lrs[frozenset({"head.bias"})] == pytest.approx(2e-3)
