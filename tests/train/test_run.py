from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.configs import tiny_run_config, toy_factory
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.memo import EventMemo
from nufm.data.transforms import Compose, RandomRotation
from nufm.ssl.toy import ToyObjective, ToyObjectiveConfig, toy_events
from nufm.train.checkpoint import DataCursor
from nufm.train.components import warm_pipeline_caches
from nufm.train.data import EventStream
from nufm.train.loop import schedules_for, seed_everything, train
from nufm.train.run import pretrain_cli

ROTATE = RandomRotation(center=(384.0, 384.0, 384.0))  # a seeded augmentation of raw events


def test_cli_smoke_and_resume_extends(tmp_path: Path) -> None:
    args = ["--preset", "toy", "--run-dir", str(tmp_path), "--logging.no-tensorboard"]
    res = pretrain_cli([*args, "--train.max-steps", "5"])
    assert res.step == 5 and res.last_checkpoint.name == "step_00000005.pt"
    assert np.isfinite(res.metrics["loss"])
    res2 = pretrain_cli([*args, "--train.max-steps", "5", "--resume"])  # nothing left to do
    assert res2.step == 5


def test_stream_from_cursor_continues_exactly() -> None:
    events = toy_events(10)
    kwargs = dict(
        max_points=100,
        max_events=3,
        shuffle=True,
        seed=3,
        num_workers=0,
        transform=ROTATE,
    )
    full = EventStream(events, start=DataCursor(), **kwargs)
    seq = [next(full) for _ in range(3 * full.batches_per_epoch + 1)]  # crosses 3 epochs
    assert seq[full.batches_per_epoch - 1][1] == DataCursor(1, 0)
    k = full.batches_per_epoch + 1
    resumed = EventStream(events, start=seq[k - 1][1], **kwargs)
    for batch, cursor in seq[k:]:
        b, c = next(resumed)
        assert c == cursor
        assert torch.equal(b.coord, batch.coord) and torch.equal(b.event_id, batch.event_id)
    # the seeded augmentation was applied (coords differ from the raw events)
    first = {int(e): i for i, e in enumerate(seq[0][0].event_id)}
    assert not torch.equal(seq[0][0].coord, collate([events[i] for i in first]).coord)


class _CountingMemo:
    """A per-event cached step (as token groups and descriptors are) that leaves one file per
    computation in ``folder``, so computations in loader workers can be counted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.memo: EventMemo[int] = EventMemo(lambda v: 8)

    def _compute(self, event: Event) -> int:
        (self.folder / f"{event.event_id}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return event.event_id

    def __call__(self, event: Event, rng: np.random.Generator | None = None) -> Event:
        assert self.memo.get(event, self._compute) == event.event_id
        return event


_STREAM = dict(max_points=100, max_events=3, shuffle=True, seed=3)


def _toy_rows(n: int) -> list[Event]:
    """``n`` toy events with rows, so per-event steps cache them."""
    return [dataclasses.replace(e, source="toy", event_id=i) for i, e in enumerate(toy_events(n))]


def _rows_and_plain_batches(n: int, epochs: int) -> tuple[list[Event], list]:
    """``n`` toy events with rows and the (batch, cursor) pairs of ``epochs`` epochs of the
    in-process stream with the seeded rotation."""
    events = _toy_rows(n)
    plain = EventStream(events, start=DataCursor(), num_workers=0, transform=ROTATE, **_STREAM)
    return events, [next(plain) for _ in range(epochs * plain.batches_per_epoch)]


def _assert_stream_gives(events: list[Event], transform: Compose, workers: int, want: list) -> None:
    """A stream of ``events`` through ``transform`` with ``workers`` loader workers yields the
    batches and cursors of ``want``."""
    stream = EventStream(
        events, start=DataCursor(), num_workers=workers, transform=transform, **_STREAM
    )
    for batch, cursor in want:
        b, c = next(stream)
        assert c == cursor and torch.equal(b.coord, batch.coord)
    stream.close()


def test_loader_workers_and_their_caches_outlive_the_epoch(tmp_path: Path) -> None:
    """With a worker, batches are those of the in-process stream (3 epochs and a resume),
    and a cached per-event step runs once per event, not once per epoch."""
    events, want = _rows_and_plain_batches(8, epochs=3)
    counted = Compose([_CountingMemo(tmp_path), ROTATE])
    _assert_stream_gives(events, counted, 1, want)
    made = [p.name.split("-")[0] for p in tmp_path.iterdir()]
    assert sorted(made) == sorted(str(i) for i in range(len(events)))  # once each


def test_warmed_caches_are_computed_ahead_and_never_in_the_loader(tmp_path: Path) -> None:
    """data.warm_workers: every event's cached value is computed once, ahead (the first in
    this process, the others in the warming processes, none in a loader worker), and the
    batches are those of a plain stream."""
    events, want = _rows_and_plain_batches(9, epochs=2)
    counting = _CountingMemo(tmp_path)
    counted = Compose([counting, ROTATE])
    assert warm_pipeline_caches(events, counted, workers=2) == len(events)
    assert len(counting.memo) == len(events)
    made = [p.name.split("-") for p in tmp_path.iterdir()]
    assert sorted(int(m[0]) for m in made) == list(range(len(events)))
    here = [int(m[0]) for m in made if m[1] == str(os.getpid())]
    assert here == [0]  # the first here (numba compiles before the fork), the rest in workers
    _assert_stream_gives(events, counted, 2, want)
    assert len(list(tmp_path.iterdir())) == len(events)  # the loader computed none


def test_warming_within_the_caps_keeps_what_fits_and_recomputes_the_rest(tmp_path: Path) -> None:
    """keep_all=False (the study): values beyond a cache's size cap are not kept, here or in
    a process forked later, and are computed again when their event is read."""
    events = _toy_rows(7)
    counting = _CountingMemo(tmp_path)
    counting.memo.max_bytes = 3 * 8  # room for three values of 8 bytes
    assert warm_pipeline_caches(events, Compose([counting]), workers=2, keep_all=False) == 3
    assert counting.memo.cached_bytes == 24 and counting.memo.max_bytes == 24
    assert len(list(tmp_path.iterdir())) == len(events)  # each computed once, ahead
    rng = np.random.default_rng(0)
    for event in events:
        counting(event, rng)
    assert len(list(tmp_path.iterdir())) == 2 * len(events) - 3  # the four not kept, again


def test_warmed_descriptors_and_groups_equal_those_computed_when_read() -> None:
    """The real per-event steps (descriptors, token groups of an MAE with the descriptor
    term): the values computed ahead in 2 processes are those computed when an event is read."""
    from nufm.config import DataConfig
    from nufm.presets import PRESETS
    from nufm.sim import generate_events
    from nufm.train.components import build_objective, build_transform

    objective = build_objective(
        dataclasses.replace(
            PRESETS["mae-tiny"].objective, descriptor_weight=1.0, descriptor_ks=(4, 16)
        )
    )
    cfg = DataConfig(source="sim", num_events=5, sim_seed=3, augment=False)
    events = list(generate_events(5, 3))
    warmed = build_transform(cfg, objective=objective)
    lazy = build_transform(cfg, objective=objective)
    assert warm_pipeline_caches(events, warmed, workers=2) == 2 * len(events)
    rng = np.random.default_rng(0)
    for event in events:
        a, b = warmed(event, rng), lazy(event, rng)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        assert a.groups is not None and b.groups is not None
        np.testing.assert_array_equal(a.groups.center, b.groups.center)
        np.testing.assert_array_equal(a.groups.group, b.groups.group)
        np.testing.assert_array_equal(a.groups.context, b.groups.context)
    assert warm_pipeline_caches(events, None, workers=2) == 0


def test_warm_workers_is_refused_where_nothing_is_cached() -> None:
    from nufm.config import DataConfig
    from nufm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.warm_workers must be >= 0"):
        DataConfig(warm_workers=-1)
    with pytest.raises(ConfigError, match=r"data\.stream and data\.crop"):
        DataConfig(source="sim", stream=True, max_events=4, warm_workers=2)
    with pytest.raises(ConfigError, match=r"data\.stream and data\.crop"):
        DataConfig(crop=(0.5, 1.0), warm_workers=2)


class _Recorder(ToyObjective):
    def __init__(self, cfg: ToyObjectiveConfig) -> None:
        super().__init__(cfg)
        self.momenta: list[float] = []

    def update_teacher(self, momentum: float) -> None:
        self.momenta.append(momentum)
        super().update_teacher(momentum)


def test_update_teacher_gets_the_momentum_schedule(tmp_path: Path) -> None:
    cfg = tiny_run_config(train={"max_steps": 5}, optim={"momentum_start": 0.9})
    seed_everything(0)
    obj = _Recorder(cfg.objective)
    teacher_before = [p.clone() for p in obj.teacher.parameters()]
    train(cfg, obj, toy_factory, tmp_path)
    np.testing.assert_array_equal(obj.momenta, schedules_for(cfg).momentum)
    assert obj.momenta[0] == 0.9 and obj.momenta[-1] == 1.0
    assert any(
        not torch.equal(a, b)
        for a, b in zip(teacher_before, obj.teacher.parameters(), strict=False)
    )


def test_toy_objective_backward_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    obj = ToyObjective(ToyObjectiveConfig(hidden=8))
    out = obj(collate(toy_events(3)))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in obj.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None and name.startswith("teacher."), name
