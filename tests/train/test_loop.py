from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.configs import tiny_run_config, toy_factory
from nufm.batch import PointBatch
from nufm.config import RunConfig, load_config
from nufm.data.event import Event
from nufm.data.transforms import RandomRotation
from nufm.ssl.toy import ToyObjective, toy_events
from nufm.step import StepOutput
from nufm.train import precision
from nufm.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from nufm.train.components import build_objective
from nufm.train.data import EventStreamError
from nufm.train.loop import DivergenceError, seed_everything, train

ROTATE = RandomRotation(center=(384.0, 384.0, 384.0))  # a seeded augmentation of raw events


def _objective(cfg: RunConfig) -> ToyObjective:
    seed_everything(cfg.train.seed)
    return build_objective(cfg.objective)  # type: ignore[return-value]


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


class _StopAt:
    """Monitor that kills the run (KeyboardInterrupt) right after step ``k``."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        if step == self.k:
            raise KeyboardInterrupt
        return {}


@pytest.mark.parametrize("num_workers, grad_accum, augment", [(0, 1, False), (2, 2, True)])
def test_resume_is_bit_identical(
    tmp_path: Path, num_workers: int, grad_accum: int, augment: bool
) -> None:
    cfg = tiny_run_config(
        train={"grad_accum": grad_accum, "monitor_every": 1}, data={"num_workers": num_workers}
    )
    transform = ROTATE if augment else None
    full = _objective(cfg)
    res = train(cfg, full, toy_factory, tmp_path / "full", transform=transform)
    assert res.step == 8

    part = _objective(cfg)
    with pytest.raises(KeyboardInterrupt):  # stopped after step 5, between checkpoints 3 and 6
        train(cfg, part, toy_factory, tmp_path / "part", transform=transform, monitor=_StopAt(5))
    assert latest_checkpoint(tmp_path / "part" / "checkpoints").name == "step_00000005.pt"
    resumed = _objective(cfg)  # fresh weights: everything must come from the checkpoint
    res2 = train(cfg, resumed, toy_factory, tmp_path / "part", resume=True, transform=transform)
    assert res2.step == 8
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=False):
        assert torch.equal(a, b), k
    final_a = load_checkpoint(tmp_path / "full/checkpoints/step_00000008.pt")["optimizer"]
    final_b = load_checkpoint(tmp_path / "part/checkpoints/step_00000008.pt")["optimizer"]
    for sa, sb in zip(final_a["state"].values(), final_b["state"].values(), strict=False):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the logged losses after the resume agree too, and each step is logged once
    assert _losses(tmp_path / "full") == _losses(tmp_path / "part")


def test_fresh_run_refuses_existing_checkpoints_and_changed_objective(tmp_path: Path) -> None:
    cfg = tiny_run_config(train={"max_steps": 3})
    train(cfg, _objective(cfg), toy_factory, tmp_path)
    assert load_config(tmp_path / "config.yaml") == cfg
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, _objective(cfg), toy_factory, tmp_path)
    other = tiny_run_config(train={"max_steps": 3}, objective={"hidden": 4})
    with pytest.raises(CheckpointError, match=re.escape("objective.hidden: 8 -> 4")):
        train(other, _objective(other), toy_factory, tmp_path, resume=True)


class _NaNAt(ToyObjective):
    def __init__(self, cfg, bad_call: int) -> None:
        super().__init__(cfg)
        self.calls = 0
        self.bad_call = bad_call

    def forward(self, batch: PointBatch) -> StepOutput:
        out = super().forward(batch)
        self.calls += 1
        if self.calls == self.bad_call:
            return StepOutput(loss=out.loss * float("nan"), metrics=out.metrics)
        return out


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_run_config(train={"checkpoint_every": 2})
    seed_everything(0)
    obj = _NaNAt(cfg.objective, bad_call=5)  # step index 4 diverges
    with pytest.raises(DivergenceError, match="at step 4"):
        train(cfg, obj, toy_factory, tmp_path)
    latest = latest_checkpoint(tmp_path / "checkpoints")
    assert latest is not None and latest.name == "step_00000004.pt"
    state = load_checkpoint(latest)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # the diverged step updated nothing: the live weights equal the step-4 checkpoint
    for k, v in obj.state_dict().items():
        assert torch.equal(v, state["model"][k]), k


class _BadFile:
    """Dataset whose event 3 cannot be read."""

    def __init__(self) -> None:
        self.events = toy_events(12, source="bad.h5")

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i: int) -> Event:
        if i == 3:
            raise OSError("truncated chunk")
        return self.events[i]

    def where(self, i: int) -> str:
        return f"bad.h5 event {i}"

    def points_per_event(self) -> np.ndarray:
        return np.array([len(e) for e in self.events])


def _explode_on_3(event: Event, rng: np.random.Generator) -> Event:
    if event.event_id == 3:
        raise ValueError("negative energy")
    return event


@pytest.mark.parametrize("num_workers", [0, 2])
def test_data_errors_name_file_and_event(tmp_path: Path, num_workers: int) -> None:
    cfg = tiny_run_config(data={"num_workers": num_workers, "shuffle": False, "num_events": 12})
    with pytest.raises(
        EventStreamError, match=re.escape("reading bad.h5 event 3 failed: OSError: truncated")
    ):
        train(cfg, _objective(cfg), lambda c: _BadFile(), tmp_path / "a")
    with pytest.raises(EventStreamError, match=r"transform of bad.h5 event 3 .*negative energy"):
        train(
            cfg,
            _objective(cfg),
            lambda c: toy_events(12, source="bad.h5"),
            tmp_path / "b",
            transform=_explode_on_3,
        )


def test_logging_jsonl_tensorboard_and_monitor(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_run_config(
        train={"max_steps": 4, "monitor_every": 2}, logging={"log_every": 2, "tensorboard": True}
    )
    calls: list[int] = []

    def monitor(model: torch.nn.Module, step: int) -> dict[str, float]:
        calls.append(step)
        torch.rand(100)  # must not shift the training RNG
        return {"probe_acc": step / 10}

    res = train(cfg, _objective(cfg), toy_factory, tmp_path, monitor=monitor)
    assert calls == [0, 2, 4]  # step 0: the randomly initialised baseline
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    loss_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in loss_rows] == [2, 4]
    assert [r["monitor/probe_acc"] for r in rows if "monitor/probe_acc" in r] == [0.0, 0.2, 0.4]
    assert res.metrics["monitor/probe_acc"] == 0.4
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tb = acc.Scalars("train/loss")
    assert [e.step for e in tb] == [2, 4]
    np.testing.assert_allclose([e.value for e in tb], [r["loss"] for r in loss_rows], rtol=1e-6)
    assert [e.value for e in acc.Scalars("monitor/probe_acc")] == pytest.approx([0.0, 0.2, 0.4])
    # the monitor did not change training: same losses as a run without it
    cfg2 = tiny_run_config(train={"max_steps": 4}, logging={"log_every": 2})
    train(cfg2, _objective(cfg2), toy_factory, tmp_path / "plain")
    assert _losses(tmp_path / "plain") == {r["step"]: r["loss"] for r in loss_rows}


def test_bf16_autocast_runs_and_learns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as on a CPU with native bf16, whatever this one has
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: True)
    cfg = tiny_run_config(train={"bf16": True, "max_steps": 6}, optim={"lr": 3e-2})
    obj = _objective(cfg)
    res = train(cfg, obj, toy_factory, tmp_path / "bf16")
    losses = _losses(tmp_path / "bf16")
    assert res.step == 6 and all(math.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in obj.parameters())  # master weights stay fp32
    fp32 = tiny_run_config(train={"bf16": False, "max_steps": 6}, optim={"lr": 3e-2})
    train(fp32, _objective(fp32), toy_factory, tmp_path / "fp32")
    assert _losses(tmp_path / "fp32") != losses  # autocast was on: bf16 rounding moved them


def test_bf16_without_native_support_runs_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU without native bf16 (AVX2 only) trains in fp32, exactly, and says so."""
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: False)
    runs = {}
    for bf16 in (True, False):
        cfg = tiny_run_config(train={"bf16": bf16, "max_steps": 4}, optim={"lr": 3e-2})
        with caplog.at_level(logging.INFO, logger="nufm.train.precision"):
            train(cfg, _objective(cfg), toy_factory, tmp_path / str(bf16))
        runs[bf16] = _losses(tmp_path / str(bf16))
    assert runs[True] == runs[False]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "no native bf16" in warned[0].getMessage()


_SIGINT_SCRIPT = """
import logging, sys, time
sys.path.insert(0, {helpers!r})
logging.basicConfig(level=logging.INFO)
from helpers.configs import tiny_run_config, toy_factory
from nufm.train.components import build_objective
from nufm.train.loop import seed_everything, train
from nufm.ssl.toy import ToyObjective

class Slow(ToyObjective):
    def forward(self, batch):
        time.sleep(0.05)
        return super().forward(batch)

cfg = tiny_run_config(train={{"max_steps": 100000, "checkpoint_every": 100000}},
               optim={{"warmup_steps": 2}}, data={{"num_workers": 2}})
seed_everything(0)
train(cfg, Slow(cfg.objective), toy_factory, sys.argv[1])
"""


def test_sigint_writes_checkpoint_then_exits(tmp_path: Path) -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group (main + 2 workers)."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(_SIGINT_SCRIPT.format(helpers=str(Path(__file__).parents[1])))
    )
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training never logged 3 steps"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert err.count("interrupt received") == 1 and "KeyboardInterrupt" in err
    latest = latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None, err[-3000:]
    state = load_checkpoint(latest)
    assert state["step"] >= 3
    logged = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert state["step"] == max(logged)  # the checkpoint holds the last finished step


def test_wandb_requested_but_missing_is_a_clear_error(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    cfg = tiny_run_config(logging={"wandb": True})
    with pytest.raises(RuntimeError, match="wandb package is not installed"):
        train(cfg, _objective(cfg), toy_factory, tmp_path)


@pytest.mark.slow
def test_torch_compile_matches_eager_loss_at_step_one(tmp_path: Path) -> None:
    # mask_ratio 0: no randomness in the loss (compiled code draws different random numbers)
    cfg = tiny_run_config(train={"max_steps": 2}, objective={"mask_ratio": 0.0})
    train(cfg, _objective(cfg), toy_factory, tmp_path / "eager")
    cfgc = tiny_run_config(train={"max_steps": 2, "compile": True}, objective={"mask_ratio": 0.0})
    train(cfgc, _objective(cfgc), toy_factory, tmp_path / "compiled")
    a, b = _losses(tmp_path / "eager"), _losses(tmp_path / "compiled")
    assert a.keys() == b.keys() and a[1] == pytest.approx(b[1], rel=1e-5)
