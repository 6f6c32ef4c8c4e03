"""nufm.workflows.load: the same encoder or task from a run directory, a checkpoint file and an
export; raw tensors for build_task; clear errors for the wrong kind of source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers.configs import tiny_task_vit
from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.data.synthetic import synthetic_events
from nufm.data.transforms import Preprocess
from nufm.errors import InputError, NotFoundError
from nufm.presets import PRESETS
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig
from nufm.train.checkpoint import CheckpointError, latest_checkpoint
from nufm.train.loop import seed_everything, train
from nufm.train.run import run_pretrain
from nufm.workflows.load import export_run, load_encoder, load_task, read_state_dict

_RUN = {
    "train": TrainConfig(max_steps=2, checkpoint_every=2, device="cpu"),
    "logging": LoggingConfig(progress=False, tensorboard=False),
    "optim": OptimConfig(warmup_steps=1),
}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step mae-tiny pretraining run on 8 simulated events."""
    run_dir = tmp_path_factory.mktemp("mae_run")
    cfg = RunConfig(
        objective=PRESETS["mae-tiny"].objective,
        data=DataConfig(source="sim", num_events=8, max_points=20000, max_events=4),
        **_RUN,
    )
    run_pretrain(cfg, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def task_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A 2-step semseg run (tiny token ViT, scratch) and its final weights; its metrics.json
    records the preprocessing as ``nufm finetune`` does."""
    run_dir = tmp_path_factory.mktemp("task_run")
    encoder = tiny_task_vit()
    task_cfg = SemsegConfig(encoder=encoder, mode="scratch")
    cfg = RunConfig(
        objective=task_cfg,
        data=DataConfig(source="sim", num_events=4, max_points=20000, max_events=2),
        **_RUN,
    )
    preprocess = Preprocess(energy_threshold=0.1)
    seed_everything(0)
    task = SemanticSegmentation(task_cfg)
    events = synthetic_events(4, seed=3)
    train(cfg, task, lambda _: events, run_dir, transform=preprocess.transforms())
    (run_dir / "metrics.json").write_text(json.dumps({"preprocess": preprocess.to_dict()}))
    return run_dir, {k: v.clone() for k, v in task.state_dict().items()}


def test_encoder_is_the_same_from_run_checkpoint_and_export(mae_run: Path, tmp_path: Path) -> None:
    from_run = load_encoder(mae_run)
    ckpt = latest_checkpoint(mae_run / "checkpoints")
    assert ckpt is not None and from_run.source == str(ckpt) and from_run.step == 2
    from_ckpt = load_encoder(ckpt)
    from_export = load_encoder(export_run(mae_run, tmp_path / "export"))
    assert from_ckpt.step == 2 and from_export.step == -1
    assert from_export.source == str(tmp_path / "export")
    for other in (from_ckpt, from_export):
        assert _equal(other.encoder.state_dict(), from_run.encoder.state_dict())
        assert _equal(other.state, from_run.state)
        assert other.preprocess == from_run.preprocess == Preprocess()
        assert (
            other.encoder_config == from_run.encoder_config == PRESETS["mae-tiny"].objective.encoder
        )
    assert not from_run.encoder.training
    # the raw tensors, for build_task, from every kind of source
    for source in (mae_run, ckpt, tmp_path / "export", tmp_path / "export" / "model.safetensors"):
        assert _equal(read_state_dict(source), from_run.state), source


def test_encoder_only_export_holds_the_encoder_and_loads_it(mae_run: Path, tmp_path: Path) -> None:
    """``export_run(encoder_only=True)``: only the online encoder's tensors are written, the
    encoder loads equal to the run's (the decoder is rebuilt fresh), a fine-tuning task finds
    every encoder tensor, and an export missing an encoder tensor is refused by name."""
    from safetensors.torch import load_file, save_file

    from nufm.tasks.build import build_task

    from_run = load_encoder(mae_run)
    out = export_run(mae_run, tmp_path / "enc", encoder_only=True)
    saved = load_file(str(out / "model.safetensors"))
    want = {k: v for k, v in from_run.state.items() if k.startswith("encoder.")}
    assert _equal(saved, want) and len(want) < len(from_run.state)  # decoder and heads left out
    assert json.loads((out / "config.json").read_text())["contents"] == "encoder"
    pre = load_encoder(out)
    assert _equal(pre.encoder.state_dict(), from_run.encoder.state_dict())
    assert pre.encoder_config == from_run.encoder_config and pre.preprocess == from_run.preprocess
    task = build_task(SemsegConfig(encoder=pre.encoder_config, mode="full"), pre.state)
    report = task.encoder_load_report
    assert report is not None and len(report.loaded) == len(want) and not report.missing
    # an export that lost an encoder tensor does not load
    broken = tmp_path / "broken"
    export_run(mae_run, broken, encoder_only=True)
    save_file(dict(list(saved.items())[1:]), str(broken / "model.safetensors"))
    with pytest.raises(InputError, match="encoder-only export"):
        load_encoder(broken)


def test_task_is_the_same_from_run_checkpoint_and_export(
    task_run: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    run_dir, trained = task_run
    from_run = load_task(run_dir)
    assert isinstance(from_run.task, SemanticSegmentation) and not from_run.task.training
    assert _equal(from_run.task.state_dict(), trained)
    assert from_run.preprocess == Preprocess(energy_threshold=0.1) and from_run.step == 2
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None and load_task(ckpt).preprocess == from_run.preprocess
    assert _equal(load_task(ckpt).task.state_dict(), trained)
    out = export_run(run_dir, tmp_path / "export", preprocess=from_run.preprocess.to_dict())
    from_export = load_task(out)
    assert _equal(from_export.task.state_dict(), trained)
    assert from_export.config == from_run.config and from_export.step == -1
    assert from_export.preprocess == from_run.preprocess


def test_wrong_kind_of_source_is_refused(
    mae_run: Path, task_run: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    run_dir, _ = task_run
    with pytest.raises(ValueError, match=r"not a fine-tuned task \(load it with load_encoder\)"):
        load_task(mae_run)
    with pytest.raises(ValueError, match="fine-tuned semseg task, not a pretraining run"):
        load_encoder(run_dir)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"directory without model\.safetensors"):
        read_state_dict(tmp_path)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="no completeness marker"):
        load_encoder(tmp_path / "notes.txt")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="records the preprocessing contract"):
        load_task(copy)
    shutil.rmtree(copy / "checkpoints")
    (copy / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint under checkpoints/"):
        load_task(copy)


def test_a_shipped_model_loads_by_name_and_a_path_wins(
    mae_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name in SHIPPED_MODELS resolves to the package's weights directory, unless a file or
    directory of that name exists; a half-precision export loads within float16 rounding."""
    import nufm.hub as hub

    shipped = tmp_path / "weights" / "tiny-shipped"
    export_run(mae_run, shipped, dtype=torch.float16, provenance={"command": "test"})
    saved = json.loads((shipped / "config.json").read_text())
    assert saved["provenance"] == {"command": "test"}
    monkeypatch.setattr(hub, "SHIPPED_MODELS", {"tiny-shipped": "test model"})
    monkeypatch.setattr(
        hub, "shipped_model_dir", lambda name: shipped if name == "tiny-shipped" else None
    )
    monkeypatch.chdir(tmp_path)
    by_name = load_encoder("tiny-shipped")
    full = load_encoder(mae_run)
    assert by_name.source == str(shipped)
    for k, v in full.encoder.state_dict().items():
        got = by_name.encoder.state_dict()[k]
        assert got.dtype == v.dtype, k
        torch.testing.assert_close(got, v.to(torch.float16).to(v.dtype), rtol=0, atol=0)
    assert _equal(read_state_dict("tiny-shipped"), {k: v for k, v in by_name.state.items()})
    # a directory of that name in the working directory wins over the shipped model
    shutil.copytree(mae_run, tmp_path / "tiny-shipped")
    assert load_encoder("tiny-shipped").step == 2
    with pytest.raises(NotFoundError, match="no shipped model of that name"):
        load_encoder("no-such-model")


def test_every_shipped_model_is_in_the_package_and_loads() -> None:
    from nufm.hub import SHIPPED_MODELS, shipped_model_dir

    assert SHIPPED_MODELS
    for name in SHIPPED_MODELS:
        where = shipped_model_dir(name)
        assert where is not None and (where / "model.safetensors").is_file(), name
        assert (where / "README.md").is_file(), name
        pre = load_encoder(name)
        assert pre.source == str(where) and pre.encoder_config is not None
        provenance = json.loads((where / "config.json").read_text())["provenance"]
        assert {"command", "data", "compute", "step"} <= set(provenance), name
