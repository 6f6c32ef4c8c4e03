"""The one preset table: every preset's YAML reads back to an equal config, `nufm presets`
lists and prints them, and the fine-tuning presets reproduce the settings the former
``FinetuneConfig`` hard-coded."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nufm.cli import main
from nufm.config import (
    DataConfig,
    FinetuneConfig,
    LoggingConfig,
    OptimConfig,
    RunConfig,
    StudyConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
)
from nufm.presets import DESCRIPTIONS, PRESETS, STUDY_PRESETS, get_preset, get_study_preset
from nufm.ssl.mae import MAEConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_printed_preset_reads_back_equal(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["presets", name])
    printed = capsys.readouterr().out
    assert printed == config_to_yaml(PRESETS[name])  # the text a run saves as config.yaml
    (tmp_path / "config.yaml").write_text(printed)
    assert load_config(tmp_path / "config.yaml") == PRESETS[name]


def test_listing_names_every_preset_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert set(DESCRIPTIONS) == set(PRESETS)
    main(["presets"])
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in lines if line[:2] == "  "}
    assert {k: v for k, v in listed.items() if k in PRESETS} == DESCRIPTIONS
    assert set(listed) == set(PRESETS) | set(STUDY_PRESETS)
    assert listed["quick"] == "3 sizes x 6 modes x 3 seeds, 160 steps per trained run"
    assert listed["demo"] == (
        "3 sizes x 6 modes x 3 seeds, 400/600/600 steps per trained run "
        "(1 seeds for the costly modes)"
    )
    assert listed["probe"] == "3 sizes x 4 modes x 3 seeds, no training"


def test_unknown_preset_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["presets", "nope"])
    assert exc.value.code == 2
    assert re.search(r"unknown preset 'nope'.*semseg-full", capsys.readouterr().err)
    with pytest.raises(KeyError, match="known presets"):
        get_preset("nope")
    with pytest.raises(KeyError, match="smoke"):
        get_study_preset("nope")


def test_study_presets_runs_round_trip() -> None:
    for name, cfg in STUDY_PRESETS.items():
        assert config_from_dict(config_to_dict(cfg.run)) == cfg.run, name
    with pytest.raises(ValueError, match="finetune section"):
        StudyConfig(run=PRESETS["mae-tiny"])


def test_finetune_presets_reproduce_the_former_finetune_defaults() -> None:
    # what run_finetune built from FinetuneConfig() (lr 1e-3, warmup 20, wd 0.01, 200 steps,
    # bf16, 40,000 points, 8 events, rotations) plus its hard-coded grad clip 1, min lr 1% of
    # lr, log every steps // 20, one checkpoint at the end
    expected = RunConfig(
        name="semseg-full",
        objective=PRESETS["semseg-full"].objective,
        optim=OptimConfig(
            lr=1e-3,
            min_lr=1e-3 * 0.01,
            warmup_steps=20,
            weight_decay=0.01,
            weight_decay_end=0.01,
            grad_clip=1.0,
        ),
        train=TrainConfig(
            max_steps=200, seed=0, bf16=True, checkpoint_every=200, keep_checkpoints=1
        ),
        logging=LoggingConfig(log_every=10, progress=True, tensorboard=True),
        data=DataConfig(max_points=40_000, max_events=8, augment=True),
        finetune=FinetuneConfig(),
    )
    assert PRESETS["semseg-full"] == expected
    assert expected.finetune == FinetuneConfig(
        pretrained=None,
        data=(),
        split_fractions=(0.8, 0.1, 0.1),
        split_seed=0,
        n_train=None,
        n_test=None,
        eval_batch_points=100_000,
    )
    assert expected.objective.mode == "full"  # type: ignore[union-attr]
    fine = [n for n, c in PRESETS.items() if c.finetune is not None]
    assert len(fine) == 20 * 4  # every task in every mode
    for n in fine:
        c = PRESETS[n]
        assert (c.optim, c.train, c.logging, c.data) == (
            expected.optim,
            expected.train,
            expected.logging,
            expected.data,
        ), n
        assert n.endswith(c.objective.mode)  # type: ignore[union-attr]


def test_study_presets_reproduce_the_former_study_table() -> None:
    quick = STUDY_PRESETS["quick"]
    assert (quick.sizes, quick.seeds, quick.linear_lr) == ((10, 100, 1000), (0, 1, 2), 3e-2)
    assert quick.run.objective == PRESETS["semseg-ce-full"].objective
    assert (quick.run.train.max_steps, quick.run.optim.warmup_steps) == (160, 16)
    assert (quick.run.optim.lr, quick.run.optim.min_lr) == (2e-3, 2e-3 * 0.01)
    assert (quick.run.data.max_events, quick.run.logging.progress) == (8, False)
    assert quick.run.finetune is not None and quick.run.finetune.n_test == 100
    smoke, full = STUDY_PRESETS["smoke"], STUDY_PRESETS["full"]
    assert (smoke.sizes, smoke.run.train.max_steps, smoke.run.data.max_events) == ((4, 8), 3, 4)
    assert smoke.run.finetune is not None and smoke.run.finetune.n_test == 4
    assert (full.seeds, full.run.train.max_steps, full.run.optim.warmup_steps) == (
        (0, 1, 2),
        5000,
        250,
    )
    assert full.run.finetune is not None and full.run.finetune.n_test == 1000
    # the demo's study: the quick run with per-size budgets of 2-event steps and early
    # stopping on 50 val events, its fused rows reading the descriptors as 16 quantile bins,
    # its fine-tune an LP-FT (the encoder frozen for the first half of the steps)
    demo = STUDY_PRESETS["demo"]
    assert demo.run.objective == dataclasses.replace(
        quick.run.objective, descriptor_bins=16, frozen_encoder_fraction=0.5
    )
    assert demo.run.optim == quick.run.optim
    assert demo.run.finetune == dataclasses.replace(quick.run.finetune, n_val=50)
    assert demo.run.data == dataclasses.replace(quick.run.data, max_events=2)
    assert demo.run.train.monitor_every == 200
    assert (demo.steps, demo.seeds, demo.network_seeds) == ((400, 600, 600), (0, 1, 2), (0,))
    assert demo.modes[-2:] == ("full-fused", "scratch-fused")
    assert demo.probe.random_encoder_seed == 0


def test_pretraining_presets_have_no_finetune_section_and_mae_vit_s_is_the_default() -> None:
    pretrain = [n for n, c in PRESETS.items() if c.finetune is None]
    assert set(pretrain) >= {"toy", "toy-sim", "mae-tiny", "mae-ctx-cpu", "sonata-panda-base"}
    assert "mae-vit-s" not in PRESETS  # it was MAEConfig() itself
    assert PRESETS["mae-vit-s-4d"].objective == MAEConfig(chamfer_with_energy=True)
    assert PRESETS["mae-ctx-cpu"].optim.lr == 1e-3 and PRESETS["mae-ctx-cpu"].data.augment


def test_forecast_presets() -> None:
    """The forecasting presets keep their sizes with the encoder nested; the collider-TPC one
    orders hits in FM4NPP's radial cells over the TPC's radii and reads its files."""
    from nufm.models.serialized_patches import TPC_RADIUS_RANGE, SerializedPatchConfig
    from nufm.ssl.forecast import ForecastConfig

    assert PRESETS["forecast-small"].objective == ForecastConfig()
    base = PRESETS["forecast-base"].objective
    assert base == ForecastConfig(
        encoder=SerializedPatchConfig(embed_dim=512, depth=16, num_heads=8)
    )
    tiny = PRESETS["forecast-tiny"].objective.encoder  # type: ignore[union-attr]
    assert (tiny.patch_points, tiny.embed_dim, tiny.depth, tiny.order) == (16, 64, 2, "hilbert")
    tpc = PRESETS["forecast-tpc-cpu"]
    enc = tpc.objective.encoder  # type: ignore[union-attr]
    assert isinstance(enc, SerializedPatchConfig) and enc.order == "radial-cells"
    assert enc.radius_range == TPC_RADIUS_RANGE == (30.0 / 130.0, 78.0 / 130.0)
    assert enc.in_channels == 4 and enc.patch_points == 16 and enc.depth == 4
    assert tpc.data.detector == "collider-tpc" and tpc.train.monitor_every == 0
    assert tpc.finetune is None


def test_other_detector_tasks_use_their_pretraining_encoder() -> None:
    """A wc-* task trained from scratch has the architecture mae-wc-cpu pretrains, so scratch
    and pretrained rows of a study differ only in the weights."""
    from nufm.config import DataConfig

    wc = PRESETS["mae-wc-cpu"]
    for mode in ("scratch", "full"):
        assert PRESETS[f"wc-pid-{mode}"].objective.encoder == wc.objective.encoder  # type: ignore[union-attr]
    assert wc.objective.encoder.tokenizer.in_channels == 5  # type: ignore[union-attr]
    tpc = PRESETS["mae-tpc-cpu"].objective.encoder  # type: ignore[union-attr]
    for task in ("tpc-pid", "tpc-noise", "tpc-tracks"):
        assert PRESETS[f"{task}-scratch"].objective.encoder == tpc  # type: ignore[union-attr]
    assert wc.data.detector == "water-cherenkov" and PRESETS["mae-tpc-cpu"].data.detector == (
        "collider-tpc"
    )
    assert DataConfig().detector is None


def test_gpu_preset_is_the_cpu_recipe_at_vit_s_scale() -> None:
    """mae-s-desc-gpu: mae-m-desc-cpu's terms, PoLAr-MAE's ViT-S encoder (width 384, depth
    12, 6 heads), 21.8 M encoder parameters (docs/training.md), groups computed ahead."""
    from nufm.train.components import build_objective

    gpu, cpu = PRESETS["mae-s-desc-gpu"], PRESETS["mae-m-desc-cpu"]
    assert isinstance(gpu.objective, MAEConfig) and isinstance(cpu.objective, MAEConfig)
    vit = gpu.objective.encoder.vit
    assert (vit.embed_dim, vit.depth, vit.num_heads) == (384, 12, 6)
    for term in ("context_weight", "descriptor_weight", "descriptor_ks", "mask_ratio"):
        assert getattr(gpu.objective, term) == getattr(cpu.objective, term), term
    assert gpu.train.init_from is None and gpu.data.warm_workers > 0
    assert not gpu.data.cache_descriptors  # a GPU's kNN in the step, not 0.24 s a CPU event
    encoder = build_objective(gpu.objective).encoder  # type: ignore[attr-defined]
    assert sum(p.numel() for p in encoder.parameters()) == 21_801_472
