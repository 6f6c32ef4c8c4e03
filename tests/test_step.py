"""The objective contract of nufm.step: optional parts are found by isinstance, not by name."""

from __future__ import annotations

import pytest
from torch import nn

from nufm.ssl.distill import SelfDistillation
from nufm.ssl.forecast import Forecaster
from nufm.step import HasParamLRScale, HasSchedule, HasTeacher, online_encoder
from nufm.tasks.backbone import TaskModule
from nufm.train.optim import param_groups


def test_objectives_declare_their_optional_parts() -> None:
    assert issubclass(SelfDistillation, HasTeacher) and issubclass(SelfDistillation, HasSchedule)
    assert not issubclass(Forecaster, HasTeacher) and not issubclass(Forecaster, HasSchedule)
    assert issubclass(TaskModule, HasParamLRScale) and not issubclass(TaskModule, HasTeacher)
    assert not isinstance(nn.Linear(2, 2), HasTeacher | HasSchedule | HasParamLRScale)


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)

    def param_lr_scale(self, name: str) -> float:
        return 0.5 if name.startswith("a.") else 1.0


def test_param_lr_scale_is_used_when_declared_and_defaults_to_one() -> None:
    scaled = param_groups(_Scaled())
    assert [(g["is_decayed"], g["lr_scale"], g["names"]) for g in scaled] == [
        (True, 1.0, ["b.weight"]),
        (True, 0.5, ["a.weight"]),
        (False, 1.0, ["b.bias"]),
        (False, 0.5, ["a.bias"]),
    ]
    plain = nn.Sequential(nn.Linear(2, 2))
    assert [g["lr_scale"] for g in param_groups(plain)] == [1.0, 1.0]


def test_online_encoder_is_the_encoder_submodule() -> None:
    objective = nn.Module()
    objective.encoder = nn.Linear(2, 2)
    assert online_encoder(objective) is objective.encoder
    with pytest.raises(AttributeError, match="Linear has no online encoder"):
        online_encoder(nn.Linear(2, 2))
