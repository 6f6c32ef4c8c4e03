from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nufm.config import (
    DataConfig,
    OptimConfig,
    ProbeStudyConfig,
    RunConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from nufm.presets import PRESETS, get_preset
from nufm.ssl.toy import ToyObjectiveConfig
from nufm.train.run import parse_pretrain_args


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = dataclasses.replace(PRESETS["toy"], data=DataConfig(source="file", path=Path("/x.h5")))
    save_config(cfg, tmp_path / "config.yaml")
    back = load_config(tmp_path / "config.yaml")
    assert back == cfg
    assert isinstance(back.data.path, Path) and isinstance(back.optim.betas, tuple)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: OptimConfig(lr=-1.0), "learning rates"),
        (lambda: TrainConfig(grad_accum=0), "train.grad_accum"),
        (lambda: DataConfig(source="file"), "data.path"),
        (
            lambda: RunConfig(
                objective=ToyObjectiveConfig(),
                train=TrainConfig(max_steps=5),
                optim=OptimConfig(warmup_steps=9),
            ),
            "warmup_steps",
        ),
        (lambda: ProbeStudyConfig(fused_pca_dims=-1), "probe.fused_pca_dims"),
    ],
)
def test_validation_names_the_option(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_unknown_key_is_refused() -> None:
    data = config_to_dict(RunConfig(objective=ToyObjectiveConfig()))
    data["train"]["max_stepz"] = 3
    with pytest.raises(ValueError, match="max_stepz"):
        config_from_dict(data)


def test_presets_are_valid_and_lookup_errors() -> None:
    for name, cfg in PRESETS.items():
        assert config_from_dict(config_to_dict(cfg)) == cfg, name
    with pytest.raises(KeyError, match="known presets"):
        get_preset("nope")


def test_cli_overrides_on_preset_and_config_file(tmp_path: Path) -> None:
    cfg, run_dir, resume = parse_pretrain_args(
        [
            "--preset",
            "toy",
            "--run-dir",
            str(tmp_path),
            "--train.max-steps",
            "7",
            "--optim.lr",
            "0.5",
            "--resume",
        ]
    )
    assert (cfg.train.max_steps, cfg.optim.lr, run_dir, resume) == (7, 0.5, tmp_path, True)
    assert cfg.objective == PRESETS["toy"].objective
    save_config(cfg, tmp_path / "c.yaml")
    cfg2, _, resume2 = parse_pretrain_args(
        [
            "--config-file",
            str(tmp_path / "c.yaml"),
            "--run-dir",
            str(tmp_path),
            "--objective.hidden",
            "4",
        ]
    )
    assert cfg2.train.max_steps == 7 and cfg2.objective.hidden == 4 and not resume2
    with pytest.raises(SystemExit):
        parse_pretrain_args(["--preset", "toy", "--run-dir", str(tmp_path), "--optim.lr", "-3"])


def test_tuples_of_paths_and_fixed_tuples_read_back(tmp_path: Path) -> None:
    from nufm.config import FinetuneConfig

    cfg = dataclasses.replace(
        PRESETS["semseg-full"],
        finetune=FinetuneConfig(
            data=(Path("/a.h5"), Path("/b.h5")), split_fractions=(0.5, 0.25, 0.25)
        ),
        data=DataConfig(augment=True, scale=(0.9, 1.1)),
    )
    save_config(cfg, tmp_path / "config.yaml")
    back = load_config(tmp_path / "config.yaml")
    assert back == cfg and isinstance(back.finetune.data[0], Path)  # type: ignore[union-attr]
    data = config_to_dict(cfg)
    data["finetune"]["split_fractions"] = [0.5, 0.5]
    with pytest.raises(ValueError, match=r"finetune.split_fractions needs 3 values"):
        config_from_dict(data)


def test_finetune_section_needs_a_task() -> None:
    from nufm.config import FinetuneConfig

    with pytest.raises(ValueError, match="needs a task objective"):
        dataclasses.replace(PRESETS["toy"], finetune=FinetuneConfig())


def test_data_stream_needs_simulation_and_an_event_cap() -> None:
    from nufm.config import ConfigError, DataConfig

    with pytest.raises(ConfigError, match=r"data\.stream needs data\.source='sim'"):
        DataConfig(source="file", path=Path("x.h5"), stream=True)
    with pytest.raises(ConfigError, match="max_events"):
        DataConfig(stream=True, max_events=None)
