"""`nufm finetune` takes a preset and the dotted overrides of `nufm pretrain`; `nufm study`,
`nufm demo` and `nufm anomaly` parse their dataclasses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nufm.cli import main
from nufm.config import load_config, save_config
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.presets import PRESETS, STUDY_PRESETS
from nufm.train.run import parse_run_args
from nufm.workflows.anomaly import AnomalyStudyConfig, CorruptionConfig
from nufm.workflows.demo import DemoConfig
from nufm.workflows.study import parse_study_args, study_run


def test_finetune_cli_runs_a_semseg_preset_with_overrides(tmp_path: Path) -> None:
    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(12, seed=5))
    run = tmp_path / "run"
    args = [
        "--preset",
        "semseg-scratch",
        "--run-dir",
        str(run),
        "--train.device",
        "cpu",
        "--optim.lr",
        "1e-3",
        "--train.max-steps",
        "3",
        "--optim.warmup-steps",
        "1",
        "--train.no-bf16",
        "--logging.no-progress",
        "--data.max-events",
        "2",
        "--finetune.data",
        str(data),
        "--finetune.n-train",
        "4",
        "--finetune.n-test",
        "2",
        "--finetune.split-fractions",
        "0.6",
        "0.2",
        "0.2",
    ]
    main(["finetune", *args])
    saved = load_config(run / "config.yaml")
    assert (saved.optim.lr, saved.train.device, saved.train.max_steps) == (1e-3, "cpu", 3)
    assert saved.optim.min_lr == PRESETS["semseg-scratch"].optim.min_lr  # only what was given
    assert (saved.data.source, saved.data.path, saved.data.max_events) == ("file", data, 2)
    assert saved.finetune is not None and saved.finetune.n_train == 4
    assert saved.objective.mode == "scratch"  # type: ignore[union-attr]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["n_train"] == 4 and metrics["data"]["n_test"] == 2
    assert metrics["model"]["steps"] == 3 and "semantic" in metrics["metrics"]
    assert (run / "checkpoints" / "step_00000003.pt").is_file()
    # the saved file is a base for the next run, overrides still apply
    again, run_dir, _ = parse_run_args(
        ["--config-file", str(run / "config.yaml"), "--run-dir", str(tmp_path / "b")],
        finetune=True,
    )
    assert again == saved and run_dir == tmp_path / "b"


def test_pretrain_and_finetune_refuse_each_others_presets(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="fine-tuning run; use nufm finetune"):
        parse_run_args(["--preset", "semseg-full", "--run-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="pretraining run; use nufm pretrain"):
        parse_run_args(["--preset", "mae-tiny", "--run-dir", str(tmp_path)], finetune=True)
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        parse_run_args(["--preset", "nope", "--run-dir", str(tmp_path)], finetune=True)
    cfg, _, _ = parse_run_args(
        ["--run-dir", str(tmp_path), "--objective.mode", "linear", "--finetune.n-train", "7"],
        finetune=True,
    )
    assert cfg.objective == dataclasses.replace(PRESETS["semseg-full"].objective, mode="linear")
    assert cfg.finetune is not None and cfg.finetune.n_train == 7


def test_study_args_and_runs(tmp_path: Path) -> None:
    cfg, out = parse_study_args(
        [
            "--preset",
            "smoke",
            "--pretrained",
            "runs/mae",
            "--data",
            "a.h5",
            "b.h5",
            "--out",
            str(tmp_path),
            "--sizes",
            "4",
            "--run.train.max-steps",
            "2",
        ]
    )
    smoke = STUDY_PRESETS["smoke"]
    assert out == tmp_path and cfg.sizes == (4,) and cfg.modes == smoke.modes
    assert cfg.run.train.max_steps == 2 and cfg.run.optim == smoke.run.optim
    assert cfg.run.finetune is not None
    assert cfg.run.finetune.pretrained == Path("runs/mae")
    assert cfg.run.finetune.data == (Path("a.h5"), Path("b.h5"))
    linear = study_run(cfg, "linear-random", 4, seed=2)
    assert linear.name == "semseg-linear" and linear.objective.mode == "linear"  # type: ignore[union-attr]
    assert (linear.optim.lr, linear.optim.min_lr) == (3e-2, 3e-2 * 0.01)
    assert linear.train.seed == 2 and linear.finetune is not None
    assert (linear.finetune.n_train, linear.finetune.pretrained) == (4, None)
    full = study_run(cfg, "full", 8, seed=0)
    assert full.optim == cfg.run.optim and full.objective == cfg.run.objective


class _Stop(Exception):
    pass


def test_demo_and_anomaly_take_their_dataclasses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def capture(*args: object) -> None:
        seen.append(args[-1])
        raise _Stop

    monkeypatch.setattr("nufm.workflows.demo.run_demo", capture)
    with pytest.raises(_Stop):
        main(["demo", "--events", "10", "--pretrain-steps", "3", "--study-preset", "smoke"])
    assert seen[-1] == DemoConfig(events=10, pretrain_steps=3, study_preset="smoke")
    monkeypatch.setattr("nufm.workflows.load.load_encoder", lambda path: path)
    monkeypatch.setattr("nufm.workflows.anomaly.run_anomaly_study", capture)
    with pytest.raises(_Stop):
        main(["anomaly", "model_dir", "--kind", "dead_region", "--noise-points", "5", "--k", "3"])
    assert seen[-1] == AnomalyStudyConfig(
        kind="dead_region", k=3, corruption=CorruptionConfig(noise_points=5)
    )


def test_a_fine_tuning_config_without_the_section_gets_the_defaults(tmp_path: Path) -> None:
    old = dataclasses.replace(PRESETS["pid-head"], finetune=None)  # as runs saved it before
    save_config(old, tmp_path / "config.yaml")
    cfg, _, _ = parse_run_args(
        ["--config-file", str(tmp_path / "config.yaml"), "--run-dir", str(tmp_path / "r")],
        finetune=True,
    )
    assert cfg == PRESETS["pid-head"] and cfg.is_finetune and not PRESETS["toy"].is_finetune


@pytest.mark.parametrize(
    ("preset", "block"),
    [("event-vertex-scratch", "vertex_x"), ("event-energy-scratch", "visible_energy")],
)
def test_event_presets_derive_their_targets(tmp_path: Path, preset: str, block: str) -> None:
    """The vertex and visible-energy presets read targets the files do not hold:
    AddEventTargets derives them in training, testing and ``nufm evaluate`` alike."""
    from nufm.data.event import Event
    from nufm.data.pilarnet import read_events
    from nufm.data.transforms import Preprocess
    from nufm.tasks.event_task import AddEventTargets

    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(12, seed=5))
    run = tmp_path / "run"
    common = ["--train.max-steps", "2", "--optim.warmup-steps", "1", "--logging.no-progress"]
    split = ["--finetune.split-fractions", "0.6", "0.2", "0.2", "--finetune.n-test", "2"]
    args = ["--preset", preset, "--run-dir", str(run), "--finetune.data", str(data)]
    main(["finetune", *args, *common, *split])
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    key = f"log_{block}" if block == "visible_energy" else block
    assert metrics["regression"][key]["n"] == 2
    out = tmp_path / "eval.json"
    main(["evaluate", str(run), "--data", str(data), "--out", str(out)])
    again = json.loads(out.read_text())["metrics"]["regression"][key]
    assert again["n"] == 2
    # the targets are the events' own: vertex in normalised coordinates, energy in MeV
    ev: Event = read_events(data, [0])[0]
    pre = Preprocess()
    derived = pre.transforms(augment=[AddEventTargets()])(ev, None)  # type: ignore[arg-type]
    if block == "vertex_x":
        assert ev.vertices is not None
        assert derived.meta["vertex_x"] == pytest.approx(
            (ev.vertices[0, 0] - pre.center) / pre.scale
        )
