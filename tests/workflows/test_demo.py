"""End-to-end pipeline check of the demo at toy sizes: every stage runs on a fresh directory,
writes its outputs, and the report quotes the numbers those outputs hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from nufm.presets import STUDY_PRESETS
from nufm.train.precision import native_bf16
from nufm.workflows.demo import DemoConfig, run_demo


@pytest.mark.parametrize("given", [False, True], ids=["live-encoder", "given-encoder"])
@pytest.mark.slow
def test_demo_pipeline_at_toy_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    """Without ``pretrained`` the study uses the live run; with one (as the shipped model by
    default) the study uses it and, with ``live_probe``, the live encoder gets its own probe
    section."""
    pretrained = None
    if given:
        from helpers.configs import one_step_mae_run
        from nufm.train.run import run_pretrain
        from nufm.workflows.load import export_run

        run_pretrain(one_step_mae_run(), tmp_path / "given")
        pretrained = str(export_run(tmp_path / "given", tmp_path / "given-export"))
    cfg = DemoConfig(
        out=tmp_path / "demo",
        events=60,
        workers=1,
        pretrained=pretrained,
        live_probe=given,
        pretrain_preset="mae-tiny",
        pretrain_steps=4,
        probe_every=0,
        pretrain_events=16,
        study_preset="smoke",
        embed_events=12,
        anomaly_events=(8, 4),
        # the given encoder's study: two network seeds, its training rows side by side
        study_workers=2 if given else 1,
        network_seeds=(0, 1) if given else None,
    )
    report = run_demo(cfg)
    assert report.is_file() and "<table>" in report.read_text()
    rows = list(csv.DictReader((cfg.out / "study" / "results.csv").open()))
    assert {r["mode"] for r in rows} == set(STUDY_PRESETS["smoke"].modes)
    assert {int(r["n_train"]) for r in rows} == {4, 8}
    assert {int(r["seed"]) for r in rows} == ({0, 1} if given else {0})
    md = (cfg.out / "report" / "index.md").read_text()
    for r in rows:  # every fine-tune run has its own metrics file with the reported score
        metrics = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert abs(metrics["metrics"]["semantic"]["macro_f1"] - float(r["macro_f1"])) < 1e-4
    assert "label_efficiency.png" in md and "ROC AUC" in md
    native = native_bf16(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert ("training ran under bf16 autocast" in md) == native
    assert ("training ran in fp32" in md) == (not native)
    assert ("The study's probe protocol on the live encoder" in md) == given
    if given:
        live = list(csv.DictReader((cfg.out / "study_live" / "results.csv").open()))
        assert {r["mode"] for r in live} == {"probe"}
        assert f"`{pretrained}`" in md
    for png in ("label_efficiency.png", "embedding_events.png", "search.png"):
        assert (cfg.out / "report" / "figures" / png).stat().st_size > 1000


def test_demo_study_options_are_checked() -> None:
    from nufm.errors import ConfigError

    with pytest.raises(ConfigError, match="study_workers must be positive"):
        DemoConfig(study_workers=0)
    with pytest.raises(ConfigError, match="network_seeds"):
        DemoConfig(network_seeds=())
