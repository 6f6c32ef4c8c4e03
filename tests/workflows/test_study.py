"""The study's baselines run through the same plumbing: random encoder and local-shape
descriptors, no pretrained weights used, one metrics file per run."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from helpers.configs import one_step_mae_run
from nufm.batch import PointBatch
from nufm.config import ConfigError
from nufm.data.pilarnet import write_events
from nufm.eval.bootstrap import load_event_confusion
from nufm.presets import STUDY_PRESETS
from nufm.sim import generate_events
from nufm.train.run import run_pretrain
from nufm.workflows.study import MODE_LABELS, run_study


def _one_step_mae_and_events(tmp_path: Path) -> tuple[Path, Path]:
    """A one-step MAE run and 60 simulated labelled events (>= 4 test events)."""
    run_dir = tmp_path / "pretrain"
    run_pretrain(one_step_mae_run(), run_dir)
    data = tmp_path / "events.h5"
    write_events(data, list(generate_events(60, 7)))
    return run_dir, data


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


def test_step_budgets_seeds_per_kind_and_the_per_class_table(tmp_path: Path) -> None:
    """StudyConfig.steps sets each size's budget; network_seeds limits the training-loop
    modes while frozen-feature modes run every seed; results.md has the per-class table."""
    import pytest

    from nufm.config import ConfigError
    from nufm.workflows.study import study_run

    run_dir = tmp_path / "pretrain"
    run_pretrain(one_step_mae_run(), run_dir)
    data = tmp_path / "events.h5"
    write_events(data, list(generate_events(60, 7)))
    cfg = dataclasses.replace(
        STUDY_PRESETS["smoke"],
        sizes=(4, 8),
        steps=(2, 5),
        modes=("probe-geometry", "scratch"),
        seeds=(0, 1),
        network_seeds=(0,),
    )
    assert study_run(cfg, "scratch", 8, 0).train.max_steps == 5
    assert study_run(cfg, "scratch", 4, 0).optim.warmup_steps == 1
    rows = run_study(cfg, run_dir, (data,), tmp_path / "study")
    got = [(r.mode, r.n_train, r.seed) for r in rows]
    assert got == [
        ("probe-geometry", 4, 0),
        ("probe-geometry", 4, 1),
        ("scratch", 4, 0),
        ("probe-geometry", 8, 0),
        ("probe-geometry", 8, 1),
        ("scratch", 8, 0),
    ]
    steps = {
        r.n_train: json.loads((Path(r.run_dir) / "metrics.json").read_text())["model"]["steps"]
        for r in rows
        if r.mode == "scratch"
    }
    assert steps == {4: 2, 8: 5}
    md = (tmp_path / "study" / "results.md").read_text()
    assert "| F1 michel |" in md
    at_4, at_8 = md.index("At 4 labelled events, mean"), md.index("At 8 labelled events, mean")
    assert at_4 < at_8  # per class at every size, the smallest first
    per_class_4 = md[at_4:at_8]
    assert "| probe-geometry |" not in per_class_4  # the mode's label, not its name
    table_4 = [line for line in per_class_4.splitlines() if line.startswith("|")]
    assert len(table_4) == 2 + 2  # header, rule and one row per mode
    assert "steps per run {4: 2, 8: 5}" in md
    # every row, network or probe, wrote its per-event counts on the same test events: they
    # add up to its confusion matrix, and results.md has the bootstrap of every cell
    for r in rows:
        metrics = json.loads((Path(r.run_dir) / "metrics.json").read_text())["metrics"]
        counts = load_event_confusion(r.run_dir)
        assert counts is not None and counts.shape == (metrics["num_events"], 5, 5)
        assert counts.sum(0).tolist() == metrics["semantic"]["confusion_matrix"]
    boot = md[md.index("Test-event bootstrap (2000 draws of the") : at_4]
    assert len([line for line in boot.splitlines() if line.startswith("| ")]) == 1 + 2
    assert boot.count("(1 seed)") == 2  # scratch, one network seed at each size
    with pytest.raises(ConfigError, match="steps"):
        dataclasses.replace(cfg, steps=(2,))


def test_water_cherenkov_pid_study_without_a_pretrained_model(tmp_path: Path) -> None:
    """wc-pid: scratch networks and the boosted-trees row on the same events; the trees' row
    equals hit_pattern_event_block run directly on those events."""
    import pytest

    from nufm.config import ConfigError
    from nufm.data.detectors import DETECTORS
    from nufm.data.watchmal import write_watchmal
    from nufm.eval.wc_pid import hit_pattern_event_block
    from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
    from nufm.workflows.finetune import finetune_split

    wc = WaterCherenkovConfig()
    data = tmp_path / "wc.h5"
    guns = generate_wc_events(60, 5, ("e-", "mu-", "pi0"), (200.0, 500.0), wc, one_of=True)
    write_watchmal(data, guns, pmt_positions(wc).position)
    base = STUDY_PRESETS["wc-pid"]
    assert base.run.finetune is not None
    cfg = dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run,
            finetune=dataclasses.replace(base.run.finetune, n_test=6),
            logging=dataclasses.replace(base.run.logging, tensorboard=False),
        ),
        sizes=(8, 16),
        steps=(2, 2),
        seeds=(0, 1),
    )
    rows = run_study(cfg, None, (data,), tmp_path / "study")
    assert [(r.mode, r.n_train, r.seed) for r in rows] == [
        ("gbt-hitpattern", 8, 0),
        ("gbt-hitpattern", 8, 1),
        ("scratch", 8, 0),
        ("gbt-hitpattern", 16, 0),
        ("gbt-hitpattern", 16, 1),
        ("scratch", 16, 0),
    ]
    ft = cfg.run.finetune
    assert ft is not None
    ft = dataclasses.replace(ft, data=(data,))
    pre = DETECTORS["water-cherenkov"].preprocess
    train = finetune_split(ft, pre, "train", 16)
    test = finetune_split(ft, pre, "test", 6)
    direct = hit_pattern_event_block(
        train, test, "wc_label", ("gamma", "e", "mu", "pi0", "pi+"), 0, (), 0
    )
    assert rows[3].score == pytest.approx(direct["macro_f1"])
    saved = json.loads((Path(rows[3].run_dir) / "metrics.json").read_text())
    auc = {
        k: (math.nan if v is None else v)
        for k, v in saved["metrics"]["event_class"]["roc_auc"].items()
    }
    assert auc == pytest.approx(direct["roc_auc"], nan_ok=True)  # undefined AUCs saved as null
    assert rows[3].extras["accuracy"] == pytest.approx(direct["accuracy"])
    md = (tmp_path / "study" / "results.md").read_text()
    assert "pretrained encoder: none" in md and "event classes" in md
    # the bootstrap of the network rows, each event one item (the trees write no counts)
    counts = load_event_confusion(rows[2].run_dir)
    assert counts is not None and counts.shape == (6, 5, 5) and (counts.sum((1, 2)) == 1).all()
    assert load_event_confusion(rows[0].run_dir) is None
    boot = md[md.index("Test-event bootstrap (2000 draws of the 6 test events") :]
    table = [line for line in boot.split("\n\n")[1].splitlines() if line.startswith("| ")]
    assert len(table) == 2 and "(1 seed)" in table[1]  # header and the scratch row
    # the classical rows need an event classification task
    semseg = dataclasses.replace(STUDY_PRESETS["smoke"], modes=("gbt-hitpattern",))
    with pytest.raises(ConfigError, match="event classification"):
        run_study(semseg, None, (data,), tmp_path / "bad")


def test_collider_tpc_pid_study_has_the_dedx_row(tmp_path: Path) -> None:
    """tpc-pid: the classical dE/dx row equals dedx_pid_block run directly on the study's
    events; it is refused on another detector's file."""
    import pytest

    from nufm.config import ConfigError
    from nufm.data.detectors import DETECTORS
    from nufm.data.tpcpp import write_tpcpp
    from nufm.eval.tpc_pid import dedx_pid_block
    from nufm.sim.collider_tpc import generate_collider_events
    from nufm.workflows.finetune import finetune_split

    data = tmp_path / "tpc.npz"
    write_tpcpp(data, generate_collider_events(50, seed=3))
    base = STUDY_PRESETS["tpc-pid"]
    assert base.run.finetune is not None
    cfg = dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run,
            finetune=dataclasses.replace(base.run.finetune, n_test=4),
            logging=dataclasses.replace(base.run.logging, tensorboard=False),
        ),
        sizes=(12,),
        steps=(2,),
    )
    rows = run_study(cfg, None, (data,), tmp_path / "study")
    assert [(r.mode, r.n_train) for r in rows] == [("dedx-hough", 12), ("scratch", 12)]
    ft = dataclasses.replace(cfg.run.finetune, data=(data,))  # type: ignore[arg-type]
    pre = DETECTORS["collider-tpc"].preprocess
    direct = dedx_pid_block(
        finetune_split(ft, pre, "train", 12), finetune_split(ft, pre, "test", 4)
    )
    assert rows[0].score == pytest.approx(direct["macro_f1"])
    assert rows[0].extras["accuracy"] == pytest.approx(direct["accuracy"])
    assert "dE/dx on Hough tracks" in (tmp_path / "study" / "results.md").read_text()
    noise = STUDY_PRESETS["smoke"].run.objective  # a semseg task, made a noise tagger
    noise = dataclasses.replace(noise, labels="noise", num_classes=2, class_names=())  # type: ignore[type-var]
    with pytest.raises(ConfigError, match="dedx-hough"):
        run_study(
            dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, objective=noise)),
            None,
            (data,),
            tmp_path / "bad",
        )
    assert not (tmp_path / "bad" / "runs").exists()


def test_transfer_study_gives_scratch_the_transferred_architecture(tmp_path: Path) -> None:
    """finetune.transfer core in a study: full runs load the LArTPC core under a fresh water
    Cherenkov tokenizer, scratch runs train the same architecture from random weights, both on
    the water Cherenkov preprocessing; the probe modes are refused."""
    import pytest
    import yaml

    from helpers.configs import tiny_mae_run
    from nufm.config import ConfigError
    from nufm.data.detectors import DETECTORS
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events
    from nufm.data.watchmal import write_watchmal
    from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
    from nufm.train.run import run_pretrain

    wc = WaterCherenkovConfig()
    data = tmp_path / "wc.h5"
    guns = generate_wc_events(30, 5, ("e-", "mu-"), (200.0, 500.0), wc, one_of=True)
    write_watchmal(data, guns, pmt_positions(wc).position)
    write_events(tmp_path / "lar.h5", synthetic_events(8, seed=1))
    run_pretrain(tiny_mae_run(tmp_path / "lar.h5"), tmp_path / "mae")
    base = STUDY_PRESETS["wc-pid"]
    assert base.run.finetune is not None
    cfg = dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run,
            finetune=dataclasses.replace(base.run.finetune, n_test=3, transfer="core"),
            logging=dataclasses.replace(base.run.logging, tensorboard=False),
        ),
        sizes=(8,),
        steps=(2,),
        modes=("full", "scratch"),
        seeds=(0,),
    )
    rows = run_study(cfg, tmp_path / "mae", (data,), tmp_path / "study")
    encoders = []
    for r in rows:
        run_dir = Path(r.run_dir)
        saved = json.loads((run_dir / "metrics.json").read_text())
        assert saved["preprocess"] == DETECTORS["water-cherenkov"].preprocess.to_dict()
        encoders.append(
            yaml.safe_load((run_dir / "config.yaml").read_text())["objective"]["encoder"]
        )
    assert encoders[0] == encoders[1]  # one architecture for both rows
    assert encoders[0]["tokenizer"]["in_channels"] == 5
    assert "core carried over" in (tmp_path / "study" / "results.md").read_text()
    probe = dataclasses.replace(cfg, modes=("probe",))
    with pytest.raises(ConfigError, match="transfer core"):
        run_study(probe, tmp_path / "mae", (data,), tmp_path / "bad")


def test_fasercal_core_transfers_to_lartpc_particle_id(tmp_path: Path) -> None:
    """The pid-transfer study: a FASERCal fusion pretraining's core (ViT and Perceiver) under
    a fresh LArTPC point-group tokenizer, against the same architecture from scratch; rows are
    particle-ID macro F1 on true instances."""
    import pytest
    import torch
    import yaml

    from nufm.config import ConfigError
    from nufm.data.fasercal_h5 import write_fasercal
    from nufm.sim.fasercal import generate_fasercal_events
    from nufm.workflows.fasercal_study import _pretrain
    from nufm.workflows.finetune import transfer_core
    from nufm.workflows.load import load_encoder

    write_fasercal(tmp_path / "fc.h5", generate_fasercal_events(6, seed=3))
    faser = _pretrain("fusion-mae-cpu", tmp_path / "fc.h5", 2, tmp_path / "mae", None)
    write_events(tmp_path / "lar.h5", generate_events(20, seed=9))
    base = STUDY_PRESETS["pid-transfer"]
    assert base.run.finetune is not None and base.run.finetune.transfer == "core"
    cfg = dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run,
            finetune=dataclasses.replace(
                base.run.finetune, n_test=3, split_fractions=(0.6, 0.0, 0.4)
            ),
            logging=dataclasses.replace(base.run.logging, tensorboard=False),
        ),
        sizes=(6,),
        steps=(2,),
        seeds=(0,),
    )
    rows = run_study(cfg, faser, (tmp_path / "lar.h5",), tmp_path / "study")
    assert [r.mode for r in rows] == ["full", "scratch"]
    assert all(0.0 <= r.score <= 1.0 for r in rows)
    assert set(rows[0].per_class_f1) == {"photon", "electron", "muon", "pion", "proton"}
    encoders = []
    for r in rows:
        saved = json.loads((Path(r.run_dir) / "metrics.json").read_text())
        assert "pid" in saved["metrics"]
        encoders.append(
            yaml.safe_load((Path(r.run_dir) / "config.yaml").read_text())["objective"]["encoder"]
        )
    assert encoders[0] == encoders[1] and encoders[0]["point_stream"] == 0
    assert len(encoders[0]["streams"]) == 1  # one LArTPC stream, not FASERCal's four
    source = load_encoder(faser).encoder_config
    assert encoders[0]["vit"]["depth"] == source.vit.depth  # type: ignore[union-attr]
    text = (tmp_path / "study" / "results.md").read_text()
    assert "core carried over" in text and "particle (true instances) classes" in text
    # after 2 small steps the full run's core is still the FASERCal one, scratch's is not
    pretrained = load_encoder(faser)
    core = transfer_core(pretrained, cfg.run.objective, pretrained.preprocess)[1]  # type: ignore[arg-type]
    key = "vit.blocks.0.attn.qkv.weight"
    tuned = [
        torch.load(Path(r.run_dir) / "checkpoints" / "step_00000002.pt", weights_only=False)[
            "model"
        ]["backbone.encoder." + key]
        for r in rows
    ]
    assert (tuned[0] - core[key]).abs().max() < 1e-2 < (tuned[1] - core[key]).abs().max()
    # a multi-task objective (no one headline score) is refused before any run
    from nufm.presets import get_preset

    joint = get_preset("fasercal-scratch").objective
    reg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, objective=joint))
    with pytest.raises(ConfigError, match="no headline score for the task MultiTaskConfig"):
        run_study(reg, faser, (tmp_path / "lar.h5",), tmp_path / "bad")
    assert not (tmp_path / "bad" / "runs").exists()


def test_fused_training_modes_give_the_head_the_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """full-fused / scratch-fused are full / scratch with the study's descriptor scales at the
    head's input; only full-fused starts from the pretrained weights. The descriptors come
    from the data pipeline (computed once per event), never from the forward pass."""
    from nufm.workflows.study import study_run

    run_dir, data = _one_step_mae_and_events(tmp_path)
    smoke = STUDY_PRESETS["smoke"]
    cfg = dataclasses.replace(
        smoke,
        sizes=(4,),
        modes=("full-fused", "scratch-fused", "full"),
        probe=dataclasses.replace(smoke.probe, geometry_ks=(4, 8)),
    )
    for mode, task_mode, ks in [
        ("full-fused", "full", (4, 8)),
        ("head-fused", "head", (4, 8)),
        ("scratch-fused", "scratch", (4, 8)),
        ("full", "full", ()),
    ]:
        objective = study_run(cfg, mode, 4, 0).objective
        assert (objective.mode, objective.point_descriptors) == (task_mode, ks)  # type: ignore[union-attr]
    import nufm.tasks.backbone
    from nufm.models.geometric import pipeline_descriptors

    def pipeline_only(batch: PointBatch, ks: tuple[int, ...]) -> torch.Tensor:
        shape = pipeline_descriptors(batch, ks)
        if shape is None:
            raise AssertionError("descriptors computed in a forward pass")
        return shape

    with monkeypatch.context() as m:
        m.setattr(nufm.tasks.backbone, "batch_descriptors", pipeline_only)
        rows = run_study(cfg, run_dir, (data,), tmp_path / "study")
    assert [r.mode for r in rows] == ["full-fused", "scratch-fused", "full"]
    assert all(math.isfinite(r.score) for r in rows)
    models = {
        r.mode: json.loads((Path(r.run_dir) / "metrics.json").read_text())["model"] for r in rows
    }
    assert models["full-fused"]["pretrained"] is not None
    assert models["scratch-fused"]["pretrained"] is None
    md = (tmp_path / "study" / "results.md").read_text()
    assert "descriptors beside the features at the head (pretrained)" in md
    # the fine-tuned fused model reloads with its descriptor norm (config and weights agree)
    from nufm.workflows.load import load_task

    fused = load_task(rows[0].run_dir).task
    assert fused.backbone.descriptor_ks == (4, 8)
    norm = fused.backbone.descriptor_norm
    assert norm is not None and int(norm.num_batches_tracked) > 0
    # with descriptor_bins the head reads quantile bins fitted on the labelled events (from
    # the pipeline's cache: the forward-pass computation above still raises), kept in the run
    binned = dataclasses.replace(
        cfg,
        modes=("full-fused",),
        run=dataclasses.replace(
            cfg.run, objective=dataclasses.replace(cfg.run.objective, descriptor_bins=3)
        ),
    )
    with monkeypatch.context() as m:
        m.setattr(nufm.tasks.backbone, "batch_descriptors", pipeline_only)
        (row,) = run_study(binned, run_dir, (data,), tmp_path / "binned")
    assert math.isfinite(row.score)
    reloaded = load_task(row.run_dir).task
    bins = reloaded.backbone.descriptor_encoding
    assert bins is not None and bool(bins.fitted) and reloaded.backbone.descriptor_norm is None
    assert bins.edges.shape == (12, 4) and bool((bins.edges.diff(dim=1) >= 0).all())
    assert bool((bins.edges[:, -1] > bins.edges[:, 0]).any())


def test_rows_side_by_side_equal_the_rows_run_one_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StudyConfig.workers: the training-loop rows and the frozen-feature rows run in forked
    processes of 1 thread each and give the scores, per-class F1 and row order of the same
    study run in this process with 1 thread. Every event's descriptors are computed once,
    ahead (in this process with workers=1; in this one and the warming processes with 2), and
    neither they nor the token groups are ever computed in a worker; the probes' features are
    encoded in this process only, each event once per source, from the token groups computed
    ahead."""
    import os

    import nufm.models.geometric
    import nufm.models.tokenizers
    import nufm.workflows.probe_study
    import nufm.workflows.study

    run_dir, data = _one_step_mae_and_events(tmp_path)
    smoke = STUDY_PRESETS["smoke"]
    cfg = dataclasses.replace(
        smoke,
        sizes=(4, 8),
        modes=("probe-geometry", "probe", "full-fused"),
        probe=dataclasses.replace(
            smoke.probe, geometry_ks=(4, 8), learning_rates=(0.1,), epochs=1, min_steps=10
        ),
    )
    log = tmp_path / "pids.txt"  # who ran a row, who computed descriptors and features
    real_finetune = nufm.workflows.study.run_finetune
    real_probe = nufm.workflows.study.run_probe_mode
    real_values = nufm.models.geometric.EventDescriptors.values
    real_groups = nufm.models.tokenizers.EventGrouper.groups
    real_encode = nufm.workflows.probe_study.FeatureCache._encode
    real_tokenize = nufm.models.tokenizers.PointMAETokenizer.group

    def note(line: str) -> None:
        with log.open("a") as f:
            f.write(line + "\n")

    def finetune(*args, **kwargs):  # type: ignore[no-untyped-def]
        note(f"run {os.getpid()} {torch.get_num_threads()}")
        return real_finetune(*args, **kwargs)

    def probe(*args, **kwargs):  # type: ignore[no-untyped-def]
        note(f"probe {os.getpid()} {torch.get_num_threads()}")
        return real_probe(*args, **kwargs)

    def values(self, event):  # type: ignore[no-untyped-def]
        note(f"descriptors {os.getpid()}")
        return real_values(self, event)

    def groups(self, coord):  # type: ignore[no-untyped-def]
        note(f"groups {os.getpid()}")
        return real_groups(self, coord)

    def encode(self, backbone, split, start, stop, feats, labels):  # type: ignore[no-untyped-def]
        note(f"features {os.getpid()} {stop - start}")
        return real_encode(self, backbone, split, start, stop, feats, labels)

    def tokenize(self, coord, offset):  # type: ignore[no-untyped-def]
        note(f"tokenize {os.getpid()}")  # groups made in a forward pass, not read
        return real_tokenize(self, coord, offset)

    monkeypatch.setattr(nufm.workflows.study, "run_finetune", finetune)
    monkeypatch.setattr(nufm.models.tokenizers.PointMAETokenizer, "group", tokenize)
    monkeypatch.setattr(nufm.workflows.study, "run_probe_mode", probe)
    monkeypatch.setattr(nufm.models.geometric.EventDescriptors, "values", values)
    monkeypatch.setattr(nufm.models.tokenizers.EventGrouper, "groups", groups)
    monkeypatch.setattr(nufm.workflows.probe_study.FeatureCache, "_encode", encode)
    before = torch.get_num_threads()

    def lines() -> list[list[str]]:
        return [line.split() for line in log.read_text().splitlines()]

    def pids(kind: str) -> list[int]:
        return [int(pid) for k, pid, *_ in lines() if k == kind]

    def encoded() -> int:
        return sum(int(n[0]) for k, _, *n in lines() if k == "features")

    try:
        torch.set_num_threads(1)
        serial = run_study(cfg, run_dir, (data,), tmp_path / "serial")
        assert set(pids("descriptors")) == {os.getpid()}
        n_events = len(pids("descriptors"))  # each event of the train, val and test sets once
        n_encoded = encoded()  # each event once per feature source
        log.unlink()
        torch.set_num_threads(2)
        forked = run_study(
            dataclasses.replace(cfg, workers=2), run_dir, (data,), tmp_path / "forked"
        )
    finally:
        torch.set_num_threads(before)
    key = [(r.mode, r.n_train, r.seed) for r in serial]
    assert key == [(r.mode, r.n_train, r.seed) for r in forked]
    assert key == [(m, n, 0) for n in (4, 8) for m in cfg.modes]
    assert [r.score for r in serial] == [r.score for r in forked]
    assert [r.per_class_f1 for r in serial] == [r.per_class_f1 for r in forked]
    rows = [(int(pid), int(t[0])) for k, pid, *t in lines() if k in ("run", "probe")]
    assert len(rows) == len(key) and all(pid != os.getpid() and t == 1 for pid, t in rows)
    workers = {pid for pid, _ in rows}
    computed = pids("descriptors")
    assert len(computed) == n_events  # once per event, though forked processes computed them
    assert os.getpid() in computed and len(set(computed)) > 1
    assert not set(computed) & workers  # never in a worker
    grouped = set(pids("groups"))
    assert grouped and not grouped & workers  # nor the token groups
    assert set(pids("features")) == {os.getpid()} and encoded() == n_encoded  # nor features
    assert not pids("tokenize")  # the probe encoders read the token groups computed ahead
    table = list(csv.DictReader((tmp_path / "forked" / "results.csv").open()))
    assert [(t["mode"], int(t["n_train"])) for t in table] == [k[:2] for k in key]
    # the bootstrap (per-event counts written in the workers) and its paired comparison
    md = {run: (tmp_path / run / "results.md").read_text() for run in ("serial", "forked")}
    assert md["serial"] == md["forked"]
    probe, geometry = MODE_LABELS["probe"], MODE_LABELS["probe-geometry"]
    for n in (4, 8):
        assert md["forked"].count(f"| {probe} | {n} | {geometry} | {n} |") == 1


def test_side_by_side_rows_start_longest_first() -> None:
    """The demo's rows in the order the workers take them: training rows by steps less half
    of those with the encoder frozen (LP-FT: half of them), scratch 600 = 600 > fine-tune
    600 * 0.75 = 450 > scratch 400 > fine-tune 400 * 0.75 = 300; then the frozen-feature rows
    by size, largest first; ties in the jobs' order."""
    from nufm.workflows.study import side_by_side_order

    cfg = STUDY_PRESETS["demo"]
    jobs = [(n, m, s) for n in cfg.sizes for m in cfg.modes for s in cfg.seeds_for(m)]
    order = side_by_side_order(cfg, jobs)
    assert sorted(order) == sorted(jobs)
    training = [(n, m) for n, m, _ in order[:6]]
    assert training == [
        (100, "scratch-fused"),
        (1000, "scratch-fused"),
        (100, "full-fused"),
        (1000, "full-fused"),
        (10, "scratch-fused"),
        (10, "full-fused"),
    ]
    rest = order[6:]
    assert [n for n, _, _ in rest] == sorted((n for n, _, _ in rest), reverse=True)
    assert rest == sorted((j for j in jobs if j not in order[:6]), key=lambda j: -j[0])
    with pytest.raises(ConfigError, match="workers"):
        dataclasses.replace(cfg, workers=0)


def test_rows_run_in_this_process_where_the_runs_use_cuda(caplog: pytest.LogCaptureFixture) -> None:
    """A forked process cannot use CUDA once the study's process has: with the runs on CUDA
    the rows run one after another (with a warning), on the CPU side by side."""
    from nufm.workflows.study import row_workers

    demo = STUDY_PRESETS["demo"]
    on = {
        device: dataclasses.replace(
            demo,
            workers=2,
            run=dataclasses.replace(
                demo.run, train=dataclasses.replace(demo.run.train, device=device)
            ),
        )
        for device in ("cpu", "cuda")
    }
    assert row_workers(on["cpu"]) == 2
    with caplog.at_level("WARNING", logger="nufm.workflows.study"):
        assert row_workers(on["cuda"]) == 1  # no GPU needed: the device is only read
    assert "workers=2" in caplog.text and "CUDA" in caplog.text
