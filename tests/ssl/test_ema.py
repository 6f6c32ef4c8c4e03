"""EMA teacher: momentum 0.5 gives the mean, 1 keeps, 0 copies; the teacher is frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nufm.ssl.ema import ema_update, make_teacher


def test_ema_update_hand_check() -> None:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(2.0)
        student[1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.5)
    for name, value in teacher.state_dict().items():
        s = student.state_dict()[name]
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.5 * (before[name] + s))
        else:
            assert torch.equal(value, s)
    snapshot = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 1.0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, snapshot[k])
    ema_update(teacher, student, 0.0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, student.state_dict()[k].to(v.dtype))


def test_ema_update_rejects_bad_input() -> None:
    a = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(a, a, 1.5)
    c = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="parameters differ"):
        ema_update(c, a, 0.5)
