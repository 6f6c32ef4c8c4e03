"""The study's headline per task: every study preset has one, it is read from the metrics
blocks the task writes (hand-made here), lower-is-better for resolutions, and a task without a
single headline is refused by name."""

from __future__ import annotations

import math

import pytest

from nufm.config import ConfigError
from nufm.presets import STUDY_PRESETS, get_preset
from nufm.workflows.study_score import row_values, study_score


def test_every_study_preset_has_a_headline() -> None:
    got = {name: study_score(cfg.run.objective).column for name, cfg in STUDY_PRESETS.items()}
    assert got["wc-vertex"] == "vertex_q68" and got["wc-direction"] == "angle_q68"
    assert got["wc-energy"] == "relative_resolution" and got["tpc-tracks"] == "ari"
    assert {got[k] for k in ("quick", "wc-pid", "wc-rings", "wc-hits", "tpc-noise")} == {"macro_f1"}


def test_headlines_are_read_from_the_task_blocks() -> None:
    vertex = study_score(get_preset("wc-vertex-scratch").objective)
    metrics = {"vertex_distance": {"median": 2.0, "q68": 3.5, "n": 10}, "regression": {}}
    assert row_values(metrics, vertex) == (3.5, {"vertex_median": 2.0}, {})
    assert not vertex.higher_is_better
    energy = study_score(get_preset("wc-energy-scratch").objective)
    metrics = {
        "regression": {"primary_energy": {"relative_resolution": 0.4, "relative_bias": None}}
    }
    score, extras, _ = row_values(metrics, energy)
    assert score == 0.4 and math.isnan(extras["relative_bias"])  # null in metrics.json
    pid = study_score(get_preset("wc-pid-scratch").objective)
    block = {
        "macro_f1": 0.5,
        "miou": 0.3,
        "accuracy": 0.6,
        "per_class": {"e": {"f1": 0.7}, "mu": {"f1": None}},
    }
    score, extras, per_class = row_values({"event_class": block}, pid)
    assert (score, extras) == (0.5, {"miou": 0.3, "accuracy": 0.6})
    assert per_class["e"] == 0.7 and math.isnan(per_class["mu"])
    tracks = study_score(get_preset("tpc-tracks-scratch").objective)
    with pytest.raises(KeyError, match="metrics have no instance"):
        row_values({"semantic": block}, tracks)


def test_a_task_without_one_headline_is_refused() -> None:
    with pytest.raises(ConfigError, match="no headline score for the task MultiTaskConfig"):
        study_score(get_preset("fasercal-scratch").objective)
