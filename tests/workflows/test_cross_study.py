"""``nufm cross-study``: per detector, scratch vs pretrained on each detector vs pretrained on
the mixture, each run starting from the weights its row names."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from nufm.workflows.cross_study import CROSS_STUDY_PRESETS, CrossStudyConfig, run_cross_study
from nufm.workflows.load import load_encoder, load_task


def test_cross_study_rows_start_from_the_weights_they_name(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        CROSS_STUDY_PRESETS["smoke"], detectors=("collider-tpc", "water-cherenkov")
    )
    out = tmp_path / "xs"
    rows = run_cross_study(cfg, out)
    inits = ("scratch", "collider-tpc", "water-cherenkov", "mixture")
    assert cfg.inits == inits
    assert [(r["detector"], r["init"]) for r in rows] == [
        (d, i) for d in cfg.detectors for i in inits
    ]
    assert all(0.0 <= r["macro_f1"] <= 1.0 for r in rows)
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    md = (out / "results.md").read_text()
    assert md.count("| from scratch |") == 2 and "pretrained on the mixture" in md
    assert (out / "cross_experiment.png").stat().st_size > 10_000

    mixture = load_encoder(out / "pretrain-mixture")
    assert mixture.encoder_config.detectors == ("collider-tpc", "water-cherenkov")  # type: ignore[union-attr]
    for det in cfg.detectors:
        own = load_encoder(out / f"pretrain-{det}")
        for init in inits:
            run = out / "runs" / det / f"{init}-n8-s0"
            meta = json.loads((run / "metrics.json").read_text())["model"]
            if init == "scratch":
                assert meta["pretrained"] is None
                continue
            assert meta["transfer"] == ("core" if init not in (det, "mixture") else "whole")
            assert str(out / f"pretrain-{init}") in meta["pretrained"]
        # the same-detector and mixture rows' tokenizers started from the pretrained ones: a
        # 2-step fine-tune at a tenth of lr 2e-3 leaves them within 0.01 of it, far from a
        # fresh initialisation
        for init, source in (
            (det, own),
            ("mixture", mixture),
        ):
            task = load_task(out / "runs" / det / f"{init}-n8-s0")
            tuned = task.task.backbone.encoder.tokenizer.pointnet.state_dict()  # type: ignore[union-attr]
            prefix = (
                "tokenizer.pointnet."
                if init == det or source.encoder_config.detector == det  # type: ignore[union-attr]
                else f"other_tokenizers.{det}.pointnet."
            )
            start = {
                k[len(prefix) :]: v
                for k, v in source.encoder.state_dict().items()
                if k.startswith(prefix)
            }
            assert start.keys() == tuned.keys()
            for k, v in start.items():
                assert torch.allclose(tuned[k], v, atol=0.01), (det, init, k)


def test_a_second_seed_keeps_the_first_and_reuses_the_pretraining(tmp_path: Path) -> None:
    cfg = dataclasses.replace(CROSS_STUDY_PRESETS["smoke"], detectors=("collider-tpc",))
    out = tmp_path / "xs"
    first = run_cross_study(cfg, out)
    ckpt = out / "pretrain-mixture" / "checkpoints" / "step_00000002.pt"
    stamp = ckpt.stat().st_mtime_ns
    rows = run_cross_study(dataclasses.replace(cfg, seeds=(1,)), out)
    assert ckpt.stat().st_mtime_ns == stamp  # not pretrained again
    assert [r["seed"] for r in rows] == [0] * len(first) + [1] * len(first)
    assert [r["macro_f1"] for r in rows[: len(first)]] == pytest.approx(
        [r["macro_f1"] for r in first]
    )
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * len(first)


def test_cross_study_config_is_checked() -> None:
    with pytest.raises(Exception, match="fasercal"):
        CrossStudyConfig(detectors=("fasercal",))
    with pytest.raises(Exception, match="steps"):
        CrossStudyConfig(sizes=(10, 20), steps=(5,))
