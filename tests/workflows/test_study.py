"""The study's baselines run through the same plumbing: random encoder and local-shape
descriptors, no pretrained weights used, one metrics file per run."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from helpers.configs import one_step_mae_run
from nufm.data.pilarnet import write_events
from nufm.presets import STUDY_PRESETS
from nufm.sim import generate_events
from nufm.train.run import run_pretrain
from nufm.workflows.study import run_study


def test_baseline_modes_use_their_own_encoders(tmp_path: Path) -> None:
    run_dir = tmp_path / "pretrain"
    run_pretrain(
        one_step_mae_run(),
        run_dir,
    )
    data = tmp_path / "events.h5"
    write_events(data, list(generate_events(60, 7)))  # >= 4 test events
    cfg = dataclasses.replace(
        STUDY_PRESETS["smoke"], sizes=(4,), modes=("linear-geometry", "linear-random", "linear")
    )
    rows = run_study(cfg, run_dir, (data,), tmp_path / "study")
    assert [r.mode for r in rows] == ["linear-geometry", "linear-random", "linear"]
    models = {
        r.mode: json.loads((Path(r.run_dir) / "metrics.json").read_text())["model"] for r in rows
    }
    assert models["linear-geometry"]["encoder"] == "LocalGeometryConfig"
    assert models["linear-random"]["encoder"] == "TokenViTConfig"
    assert models["linear-geometry"]["pretrained"] is None
    assert models["linear-random"]["pretrained"] is None
    assert models["linear"]["pretrained"] is not None
    table = list(csv.DictReader((tmp_path / "study" / "results.csv").open()))
    assert [t["mode"] for t in table] == ["linear-geometry", "linear-random", "linear"]
    assert "local-shape descriptors" in (tmp_path / "study" / "results.md").read_text()
