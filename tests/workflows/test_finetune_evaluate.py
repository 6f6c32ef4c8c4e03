"""`nufm finetune` + `nufm evaluate` on a non-semseg task (the task name is no preset prefix)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.configs import tiny_finetune_run, tiny_task_vit
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.workflows.finetune import evaluate_run, run_finetune


def test_cluster_scratch_run_is_evaluated_again_from_its_run_dir(tmp_path: Path) -> None:
    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    encoder = tiny_task_vit()
    cfg = tiny_finetune_run("cluster-particle-scratch", data, steps=2)
    result = run_finetune(cfg, tmp_path / "run", encoder_config=encoder)
    again = evaluate_run(
        tmp_path / "run", (data,), "test", n_events=2, split_fractions=(0.6, 0.2, 0.2)
    )
    # same events, same weights: identical scores (NaN where a score is undefined)
    assert again["instance"] == pytest.approx(result.metrics["instance"], nan_ok=True)
    saved = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert saved["data"]["n_events"] == 2
    # without a split given, the run's own split (0.6 / 0.2 / 0.2, seed 0) is evaluated
    own = evaluate_run(tmp_path / "run", (data,), "test", n_events=2, out=tmp_path / "own.json")
    assert own["instance"] == pytest.approx(result.metrics["instance"], nan_ok=True)
    recorded = json.loads((tmp_path / "own.json").read_text())["data"]
    assert recorded["split_fractions"] == [0.6, 0.2, 0.2] and recorded["split_seed"] == 0
