"""Configs saved before an option was removed (``REMOVED_OPTIONS`` of a config class) still load
when the option carries today's behaviour, at any nesting depth; other values are refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from nufm.config import config_to_dict, objective_config_from_dict
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.mae import MAEConfig
from nufm.tasks.event_task import EventTaskConfig


def _with_removed(cfg: Any, data: dict) -> tuple[dict, int]:
    """``data`` (``config_to_dict(cfg)``) plus every removed option of every nested config at
    its kept value (any value, 7, where any is accepted); returns it and how many were added."""
    out, n = dict(data), 0
    for k, v in getattr(type(cfg), "REMOVED_OPTIONS", {}).items():
        out[k], n = (7 if v is None else v), n + 1
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name], m = _with_removed(value, data[f.name])
            n += m
    return out, n


@pytest.mark.parametrize(
    ("cfg", "n_removed"),
    [(MAEConfig(), 5 + 3), (ForecastConfig(), 1), (DistillConfig(), 1), (EventTaskConfig(), 2)],
)
def test_saved_config_with_removed_options_loads(cfg: Any, n_removed: int) -> None:
    old, n = _with_removed(cfg, config_to_dict(cfg))
    assert n == n_removed
    assert objective_config_from_dict(old) == cfg


def test_removed_option_with_another_value_is_refused() -> None:
    old, _ = _with_removed(MAEConfig(), config_to_dict(MAEConfig()))
    old["encoder"]["tokenizer"]["reduction"] = "nearest"
    with pytest.raises(ValueError, match=r"tokenizer\.reduction='nearest' was removed"):
        objective_config_from_dict(old)


def test_forecast_config_saved_before_its_options_moved_into_encoder_loads() -> None:
    """A forecasting config.yaml of before 2372e93 had the encoder's options at the top level."""
    cfg = ForecastConfig()
    new = config_to_dict(ForecastConfig(encoder=dataclasses.replace(cfg.encoder, depth=3)))
    flat = {"name": "forecast", "squared_chamfer": True, **new["encoder"]}
    assert objective_config_from_dict(flat) == objective_config_from_dict(new)
    assert objective_config_from_dict(flat).encoder.depth == 3  # type: ignore[union-attr]
    both = {**flat, "encoder": {"depth": 5}}
    with pytest.raises(ValueError, match=r"depth is given both"):
        objective_config_from_dict(both)
