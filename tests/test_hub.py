from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from nufm.config import config_to_dict
from nufm.hub import from_pretrained, read_pretrained, save_pretrained
from nufm.ssl.toy import ToyObjective, ToyObjectiveConfig
from nufm.workflows.load import export_run


def _build(cfg: dict) -> ToyObjective:
    return ToyObjective(ToyObjectiveConfig(**cfg))


def test_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ToyObjectiveConfig(hidden=8)
    model = ToyObjective(cfg)
    preprocess = {"center": 384.0, "scale": 665.1, "energy": {"log_min": 0.01, "max": 20.0}}
    save_pretrained(model, tmp_path, config=config_to_dict(cfg), preprocess=preprocess)
    torch.manual_seed(1)  # the rebuilt model starts from different weights
    loaded, report = from_pretrained(tmp_path, _build)
    assert report.is_exact and len(report.loaded) == len(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["preprocess"] == preprocess == report.config["preprocess"]
    assert meta["model"]["hidden"] == 8 and "nufm_version" in meta
    # the files get the mode a plain open gives (safetensors alone writes 0600), no temp left
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_partial_load_reports_mismatch_and_strict_refuses(tmp_path: Path) -> None:
    save_pretrained(
        ToyObjective(ToyObjectiveConfig(hidden=8)),
        tmp_path,
        config=config_to_dict(ToyObjectiveConfig(hidden=8)),
        preprocess={},
    )
    narrower = lambda cfg: _build({**cfg, "hidden": 4, "use_teacher": False})  # noqa: E731
    _model, report = from_pretrained(tmp_path, narrower)
    mismatched = {k for k, _, _ in report.mismatched}
    assert ("student.net.0.weight", (8, 4), (4, 4)) in report.mismatched
    assert "mask_token" in report.loaded and "head.bias" in report.loaded
    assert "mask_token" not in mismatched and not report.missing
    assert all(k.startswith("teacher.") for k in report.unexpected) and report.unexpected
    assert "shape mismatch student.net.0.weight" in str(report)
    with pytest.raises(ValueError, match="not exact"):
        from_pretrained(tmp_path, narrower, strict=True)


def test_nothing_loads_is_an_error(tmp_path: Path) -> None:
    save_pretrained(torch.nn.Linear(3, 3), tmp_path, config={}, preprocess={})
    with pytest.raises(ValueError, match="none of the 2 saved tensors"):
        from_pretrained(tmp_path, lambda cfg: torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        from_pretrained(tmp_path / "nowhere", lambda cfg: torch.nn.Linear(3, 3))


def test_export_latest_checkpoint(tmp_path: Path) -> None:
    from helpers.configs import tiny_run_config, toy_factory
    from nufm.train.checkpoint import latest_checkpoint, load_checkpoint
    from nufm.train.loop import seed_everything, train

    cfg = tiny_run_config(train={"max_steps": 4, "checkpoint_every": 2})
    seed_everything(0)
    train(cfg, ToyObjective(cfg.objective), toy_factory, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        export_run(tmp_path / "empty", tmp_path / "x")
    out = export_run(tmp_path / "run", tmp_path / "export")
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    model, report = from_pretrained(out, _build)
    assert report.is_exact and report.config["model"] == config_to_dict(cfg.objective)
    assert report.config["preprocess"]["source"] == "toy"
    for k, v in state["model"].items():
        assert torch.equal(model.state_dict()[k], v), k


def test_read_pretrained_returns_weights_and_config_and_refuses_other_formats(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    linear = torch.nn.Linear(3, 2)
    save_pretrained(linear, tmp_path, config={"name": "lin"}, preprocess={"scale": 2.0})
    state, meta = read_pretrained(tmp_path)
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], linear.weight)
    assert meta["model"] == {"name": "lin"} and meta["preprocess"] == {"scale": 2.0}
    meta["nufm_version"] = "0.0.0"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="nufm.hub"):
        read_pretrained(tmp_path)
    assert "saved by nufm 0.0.0" in caplog.text
    meta["format"] = "other"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format 'other', expected 'nufm-pretrained-v1'"):
        read_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        read_pretrained(tmp_path)
