from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nufm.ssl.toy import ToyObjective, ToyObjectiveConfig
from nufm.train.checkpoint import (
    SLOW_WRITE_ENV,
    CheckpointError,
    DataCursor,
    capture_rng_state,
    check_model_compatible,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    marker_path,
    restore_rng_state,
    save_checkpoint,
)


def _save(directory: Path, step: int, model: torch.nn.Module, keep: int = 5) -> Path:
    return save_checkpoint(
        directory,
        step=step,
        model=model,
        optimizer=None,
        cursor=DataCursor(1, step),
        config={"objective": {"hidden": 8}},
        rng=[capture_rng_state()],
        keep=keep,
    )


def test_round_trip_and_latest(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ToyObjective(ToyObjectiveConfig(hidden=8))
    for step in (2, 4, 6):
        _save(tmp_path, step, model, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000006.pt"]
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 6 and state["cursor"] == {"epoch": 1, "batch": 6}
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_checkpoint_without_marker_is_ignored(tmp_path: Path) -> None:
    model = ToyObjective(ToyObjectiveConfig(hidden=8))
    first = _save(tmp_path, 1, model)
    second = _save(tmp_path, 2, model)
    marker_path(second).unlink()  # killed between rename and marker
    assert latest_checkpoint(tmp_path) == first
    with pytest.raises(CheckpointError, match="no completeness marker"):
        load_checkpoint(second)


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, 1, ToyObjective(ToyObjectiveConfig(hidden=8)))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(CheckpointError, match="size"):
        load_checkpoint(path)


def test_incompatible_model_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, 1, ToyObjective(ToyObjectiveConfig(hidden=8)))
    other = ToyObjective(ToyObjectiveConfig(hidden=4))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*student\.net\.0\.weight"):
        check_model_compatible(other, load_checkpoint(path)["model"], str(path))


_KILL_SCRIPT = """
import os, sys, torch
from nufm.train.checkpoint import DataCursor, capture_rng_state, save_checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(64, 64)
def save(step):
    save_checkpoint(sys.argv[1], step=step, model=model, optimizer=None, cursor=DataCursor(),
                    config={{}}, rng=[capture_rng_state()])
save(1)
with torch.no_grad():
    model.weight.add_(1.0)
os.environ["{env}"] = "60"
print("writing", flush=True)
save(2)
print("finished", flush=True)
"""


def test_sigkill_mid_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_KILL_SCRIPT.format(env=SLOW_WRITE_ENV)))
    ckpt_dir = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ckpt_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in ckpt_dir.glob(".step_00000002.pt.tmp-*")):
            assert time.monotonic() < deadline, "the slow writer never started writing"
            assert proc.poll() is None, "writer exited early"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (ckpt_dir / "step_00000002.pt").exists()
    latest = latest_checkpoint(ckpt_dir)
    assert latest is not None and latest.name == "step_00000001.pt"
    state = load_checkpoint(latest)
    assert state["step"] == 1
    # the partial temp file of the dead writer is removed by the next save
    _save(ckpt_dir, 3, torch.nn.Linear(2, 2))
    assert not list(ckpt_dir.glob(".step_*"))


def test_init_from_an_exported_model_or_a_shipped_name(tmp_path: Path) -> None:
    """An export (here fp16) starts every tensor of matching name and shape, a new loss
    term's head starts fresh, a shipped model loads by name, another encoder is refused."""
    import dataclasses

    from nufm.hub import save_pretrained
    from nufm.presets import PRESETS
    from nufm.ssl.mae import MAEConfig, MaskedAutoencoder
    from nufm.train.checkpoint import CheckpointError, init_from_run

    tiny = PRESETS["mae-tiny"].objective
    assert isinstance(tiny, MAEConfig)
    torch.manual_seed(0)
    first = MaskedAutoencoder(tiny)
    save_pretrained(first, tmp_path / "export", config={}, preprocess={}, dtype=torch.float16)
    torch.manual_seed(1)
    second = MaskedAutoencoder(dataclasses.replace(tiny, descriptor_weight=1.0))
    fresh = {k: v.clone() for k, v in second.state_dict().items()}
    n = init_from_run(second, tmp_path / "export")
    old = first.state_dict()
    assert n == len(old)
    for k, v in second.state_dict().items():
        if k in old:
            assert torch.equal(v, old[k].half().to(v.dtype)), k
        else:
            assert k.startswith("descriptor_") and torch.equal(v, fresh[k]), k
    shipped = PRESETS["mae-m-cpu"].objective
    assert isinstance(shipped, MAEConfig)
    assert init_from_run(MaskedAutoencoder(shipped), "lartpc-mae-m") > 100
    with pytest.raises(CheckpointError, match="encoder does not match"):
        init_from_run(MaskedAutoencoder(tiny), "lartpc-mae-m")


def test_init_from_an_encoder_only_export_starts_the_teacher_as_the_student(
    tmp_path: Path,
) -> None:
    """A self-distillation run started from an encoder-only export (``lartpc-ptv3-distill``
    ships so) loads the student encoder and copies it into the EMA teacher, which the export
    does not hold; a new descriptor head starts fresh."""
    import dataclasses

    from nufm.hub import save_pretrained
    from nufm.presets import PRESETS
    from nufm.ssl.distill import DistillConfig, SelfDistillation
    from nufm.train.checkpoint import init_from_run

    tiny = PRESETS["distill-tiny"].objective
    assert isinstance(tiny, DistillConfig)
    torch.manual_seed(0)
    first = SelfDistillation(tiny)
    enc = {k: v for k, v in first.state_dict().items() if k.startswith("encoder.")}
    save_pretrained(enc, tmp_path / "export", config={}, preprocess={}, contents="encoder")
    torch.manual_seed(1)
    second = SelfDistillation(dataclasses.replace(tiny, descriptor_weight=1.0))
    fresh_head = second.descriptor_head.weight.detach().clone()  # type: ignore[union-attr]
    assert init_from_run(second, tmp_path / "export") == len(enc)
    own = second.state_dict()
    for k, v in enc.items():
        assert torch.equal(own[k], v), k
        assert torch.equal(own["teacher_" + k], v), k  # the teacher is the loaded student
    assert torch.equal(second.descriptor_head.weight, fresh_head)  # type: ignore[union-attr]
