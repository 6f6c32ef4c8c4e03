"""Fine-tuning and evaluation take the new detectors' files directly: the split, the point
cuts and the detector's own preprocessing (collider TPC TPCpp .npz, water Cherenkov WatChMaL
.h5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nufm.cli import main
from nufm.data.detectors import DETECTORS
from nufm.data.tpcpp import write_tpcpp
from nufm.data.transforms import Preprocess
from nufm.data.watchmal import write_watchmal
from nufm.sim.collider_tpc import generate_collider_events
from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
from nufm.workflows.finetune import load_split_events


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detectors")
    write_tpcpp(root / "tpc.npz", generate_collider_events(20, seed=1))
    cfg = WaterCherenkovConfig()
    gun = generate_wc_events(10, seed=1, particle=("mu-",), energy=(200.0, 400.0), cfg=cfg)
    write_watchmal(root / "wc.h5", gun, pmt_positions(cfg).position)
    mixed = generate_wc_events(10, 2, ("e-", "mu-", "pi0"), (200.0, 400.0), cfg, one_of=True)
    write_watchmal(root / "wc_mixed.h5", mixed, pmt_positions(cfg).position)
    return {
        "collider-tpc": root / "tpc.npz",
        "water-cherenkov": root / "wc.h5",
        "wc-mixed": root / "wc_mixed.h5",
    }


def test_splits_cover_the_events_once(files: dict[str, Path]) -> None:
    parts = [
        load_split_events((files["collider-tpc"],), Preprocess(energy_threshold=0.0), s, None)
        for s in ("train", "val", "test")
    ]
    assert [len(p) for p in parts] == [16, 2, 2]
    ids = sorted(ev.event_id for p in parts for ev in p)
    assert ids == list(range(20))


@pytest.mark.parametrize("detector", ["collider-tpc", "water-cherenkov"])
def test_finetune_and_evaluate_use_the_detector_preprocessing(
    files: dict[str, Path], tmp_path: Path, detector: str
) -> None:
    run = tmp_path / "run"
    _finetune("semseg-scratch", files[detector], run, *SMALL[:3], "1")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["preprocess"] == DETECTORS[detector].preprocess.to_dict()
    # the preset's fresh encoder takes the detector's channels (WC: the hit time is a fifth)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    width = len(DETECTORS[detector].preprocess.feature_names)
    assert (
        saved["objective"]["encoder"]["in_channels"]
        == width
        == (5 if detector == "water-cherenkov" else 4)
    )
    out = tmp_path / "eval.json"
    main(["evaluate", str(run), "--data", str(files[detector]), "--out", str(out)])
    assert json.loads(out.read_text())["metrics"]["semantic"]["confusion_matrix"]


def test_water_cherenkov_particle_id_from_the_cli(files: dict[str, Path], tmp_path: Path) -> None:
    """The wc-pid task trains on the file's event truth and reports the field's scores."""
    split = ("--finetune.split-fractions", "0.6", "0.0", "0.4")
    metrics = _finetune(
        "wc-pid-scratch", files["wc-mixed"], tmp_path / "pid", "--finetune.n-train", "6", *split
    )
    block = metrics["event_class"]
    assert block["target"] == "wc_label"
    assert block["class_names"] == ["gamma", "e", "mu", "pi0", "pi+"]
    assert set(block["roc_auc"]) == set(block["class_names"])
    assert block["roc_auc"]["gamma"] is None  # no gamma event: undefined, not 0
    assert set(block["efficiency"]) == {"e_vs_mu_at_0.999", "e_vs_pi0_at_0.95"}
    assert sum(map(sum, block["confusion_matrix"])) == block["num_points"] == 4


def test_an_encoder_of_another_detector_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LArTPC-pretrained model would normalise PMT hits with LArTPC constants: refused."""
    from helpers.configs import tiny_mae_run
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events
    from nufm.train.run import run_pretrain

    write_events(tmp_path / "lar.h5", synthetic_events(8, seed=1))
    run_pretrain(tiny_mae_run(tmp_path / "lar.h5"), tmp_path / "mae")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "finetune",
                "--preset",
                "semseg-full",
                "--run-dir",
                str(tmp_path / "ft"),
                "--finetune.pretrained",
                str(tmp_path / "mae"),
                "--finetune.data",
                str(files["water-cherenkov"]),
                "--train.max-steps",
                "2",
                "--optim.warmup-steps",
                "1",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "water-cherenkov events" in err and "wc.h5" in err and "across detectors" in err


def _finetune(preset: str, data: Path, run: Path, *extra: str) -> dict:
    """``nufm finetune`` for 2 steps (1 warm-up), no progress bar; the run's metrics."""
    main(
        [
            "finetune",
            "--preset",
            preset,
            "--run-dir",
            str(run),
            "--finetune.data",
            str(data),
            "--train.max-steps",
            "2",
            "--optim.warmup-steps",
            "1",
            "--logging.no-progress",
            *extra,
        ]
    )
    return json.loads((run / "metrics.json").read_text())["metrics"]


SMALL = ("--finetune.n-train", "4", "--finetune.n-test", "2")


def test_collider_tpc_hit_tasks_from_the_cli(files: dict[str, Path], tmp_path: Path) -> None:
    """Per-hit particle ID and noise tagging report the detector's classes; noise targets are
    the hits whose interaction id is -1; track finding reports tracking's scores."""
    from nufm.workflows.finetune import load_split_events

    data = files["collider-tpc"]
    test = load_split_events((data,), DETECTORS["collider-tpc"].preprocess, "test", 2)
    n_noise = sum(int((e.interaction == -1).sum()) for e in test)
    n_hits = sum(len(e) for e in test)
    pid = _finetune("tpc-pid-scratch", data, tmp_path / "pid", *SMALL)["semantic"]
    assert pid["class_names"] == ["other", "pion", "kaon", "proton", "electron"]
    noise = _finetune("tpc-noise-scratch", data, tmp_path / "noise", *SMALL)["semantic"]
    assert noise["class_names"] == ["signal", "noise"]
    cm = noise["confusion_matrix"]
    assert sum(cm[1]) == n_noise and sum(map(sum, cm)) == n_hits
    inst = _finetune("tpc-tracks-scratch", data, tmp_path / "tracks", *SMALL)["instance"]
    assert 0.0 <= inst["efficiency_mean"] <= 1.0 and 0.0 <= inst["fake_rate_mean"] <= 1.0


def test_hough_baseline_on_the_networks_test_split(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from nufm.eval.track_finding import evaluate_track_finding
    from nufm.workflows.finetune import load_split_events

    data = files["collider-tpc"]
    main(["tracks", str(data), "--split", "test"])
    printed = json.loads(capsys.readouterr().out)
    test = load_split_events((data,), DETECTORS["collider-tpc"].preprocess, "test", None)
    assert printed == evaluate_track_finding(test, min_hits=8)
    assert printed["n_events"] == len(test) == 2


def test_pretrain_on_water_cherenkov_then_finetune_the_encoder(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nufm pretrain reads a WatChMaL file: the run records the detector, the encoder takes its
    five channels, the model loads with the WC preprocessing and fine-tunes on WC events."""
    import dataclasses

    from helpers.configs import tiny_mae_run
    from nufm.config import DataConfig
    from nufm.errors import ConfigError
    from nufm.train.components import resolve_detector
    from nufm.train.run import run_pretrain
    from nufm.workflows.load import load_encoder

    data = files["wc-mixed"]
    assert resolve_detector(DataConfig(source="file", path=data)).detector == "water-cherenkov"
    assert resolve_detector(DataConfig(source="sim")).detector == "lartpc"
    with pytest.raises(ConfigError, match="gives water-cherenkov events"):
        resolve_detector(DataConfig(source="file", path=data, detector="lartpc"))
    cfg = tiny_mae_run(data)
    run_pretrain(cfg, tmp_path / "mae")
    saved = yaml.safe_load((tmp_path / "mae" / "config.yaml").read_text())
    assert saved["data"]["detector"] == "water-cherenkov"
    assert saved["objective"]["encoder"]["tokenizer"]["in_channels"] == 5
    assert saved["objective"]["energy_channel"] == 3  # log energy, not the time channel
    pre = load_encoder(tmp_path / "mae").preprocess
    assert pre == DETECTORS["water-cherenkov"].preprocess
    split = ("--finetune.split-fractions", "0.6", "0.0", "0.4")
    metrics = _finetune(
        "wc-pid-linear",
        data,
        tmp_path / "ft",
        "--finetune.pretrained",
        str(tmp_path / "mae"),
        "--finetune.n-train",
        "4",
        *split,
    )
    assert metrics["event_class"]["target"] == "wc_label"
    # and the WC encoder is refused on LArTPC voxels (which have no hit-time channel)
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events

    write_events(tmp_path / "lar.h5", synthetic_events(8, seed=1))
    with pytest.raises(SystemExit) as exit_info:
        _finetune(
            "semseg-full",
            tmp_path / "lar.h5",
            tmp_path / "ft-lar",
            "--finetune.pretrained",
            str(tmp_path / "mae"),
        )
    assert exit_info.value.code == 2
    assert "made for water-cherenkov events" in capsys.readouterr().err
    # the LArTPC-only simulator cannot stand in for a WC preset's data
    wc_preset = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="sim"))
    with pytest.raises(ConfigError, match="built-in simulator"):
        resolve_detector(dataclasses.replace(wc_preset.data, detector="water-cherenkov"))


def test_core_transfer_carries_the_vit_to_another_detector(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A LArTPC-pretrained token ViT fine-tuned on water Cherenkov events: the transformer
    core loads, the tokenizer is the wc-pid preset's (5 channels, 1.6 m groups) and fresh, the
    preprocessing is the water Cherenkov one."""
    import dataclasses

    import torch

    from helpers.configs import tiny_mae_run
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events
    from nufm.presets import get_preset
    from nufm.tasks.build import build_task
    from nufm.train.run import run_pretrain
    from nufm.workflows.finetune import transfer_core
    from nufm.workflows.load import load_encoder

    write_events(tmp_path / "lar.h5", synthetic_events(8, seed=1))
    run_pretrain(tiny_mae_run(tmp_path / "lar.h5"), tmp_path / "mae")
    pretrained = load_encoder(tmp_path / "mae")
    task_cfg = get_preset("wc-pid-full").objective
    wc = DETECTORS["water-cherenkov"].preprocess
    config, core = transfer_core(pretrained, task_cfg, wc)  # type: ignore[arg-type]
    assert core and all(k.startswith("vit.") for k in core)
    source = pretrained.encoder_config
    assert config.vit == source.vit  # type: ignore[union-attr]
    assert config.tokenizer.in_channels == 5 and config.tokenizer.group_radius == 0.08  # type: ignore[union-attr]
    assert config.tokenizer.embed_dim == source.vit.embed_dim  # type: ignore[union-attr]
    torch.manual_seed(0)
    task = build_task(dataclasses.replace(task_cfg, encoder=config), core, encoder_prefix="")  # type: ignore[arg-type]
    own = task.backbone.encoder.state_dict()
    for k, v in core.items():
        assert torch.equal(own[k], v), k
    assert task.encoder_load_report is not None and len(task.encoder_load_report.loaded) == len(
        core
    )
    assert all(k.startswith("tokenizer.") for k in task.encoder_load_report.missing)
    # from the CLI: the run records the transfer and the water Cherenkov preprocessing
    split = ("--finetune.split-fractions", "0.6", "0.0", "0.4")
    run = tmp_path / "ft"
    main(
        [
            "finetune",
            "--preset",
            "wc-pid-full",
            "--run-dir",
            str(run),
            "--finetune.pretrained",
            str(tmp_path / "mae"),
            "--finetune.transfer",
            "core",
            "--finetune.data",
            str(files["wc-mixed"]),
            "--finetune.n-train",
            "6",
            *split,
            "--train.max-steps",
            "2",
            "--optim.warmup-steps",
            "1",
            "--logging.no-progress",
        ]
    )
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["model"]["transfer"] == "core"
    assert saved["preprocess"] == wc.to_dict()
    # a core of another kind (PTv3 semseg preset with a token-ViT core) is refused by name
    with pytest.raises(Exception, match="cannot take the inputs"):
        transfer_core(pretrained, get_preset("semseg-full").objective, wc)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("preset", "block"),
    [("wc-vertex-scratch", "vertex_distance"), ("wc-direction-scratch", "direction_angle_deg")],
)
def test_water_cherenkov_vertex_and_direction(
    files: dict[str, Path], tmp_path: Path, preset: str, block: str
) -> None:
    """Vertex (in m) and direction (in degrees) resolutions from the CLI, their targets derived
    after the z rotation of the augmentation."""
    split = ("--finetune.split-fractions", "0.6", "0.0", "0.4")
    metrics = _finetune(
        preset, files["wc-mixed"], tmp_path / "run", "--finetune.n-train", "6", *split
    )
    summary = metrics[block]
    assert summary["n"] == 4 and 0 <= summary["median"] <= summary["q68"] + 1e-9
    if block == "direction_angle_deg":
        assert summary["q68"] <= 180.0
