"""The training loop: one explicit function, in the style of nanoGPT and the MAE engine
(He et al., arXiv:2111.06377), with DINO-style precomputed schedules (arXiv:2104.14294).

Owns :func:`train`. Per optimizer step: set lr / weight decay from the schedule arrays, run
``grad_accum`` micro-batches (bf16 autocast optional, DDP gradient sync only on the last),
clip the gradient norm, stop on a non-finite loss or gradient (nothing is updated and no
checkpoint is written), ``optimizer.step()``, then ``objective.update_teacher(momentum[step])``
when the objective has an EMA teacher. Objectives with other schedules (teacher temperature,
mask size) get ``objective.set_schedule(step / (max_steps - 1))`` before the step's forward.
Logging, monitoring and checkpointing happen at step boundaries; a fresh run also calls the
monitor once at step 0, so its curve starts from the randomly initialised model. SIGINT (Ctrl-C)
is turned into a checkpoint at the next step boundary followed by
``KeyboardInterrupt``. Resuming restores model, optimizer, step, RNG states and the data cursor,
so on CPU a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nufm.config import DataConfig, RunConfig, config_to_dict, save_config
from nufm.data.transforms import Transform
from nufm.step import HasSchedule, HasTeacher, StepOutput
from nufm.train.checkpoint import (
    CheckpointError,
    DataCursor,
    capture_rng_state,
    check_model_compatible,
    config_differences,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from nufm.train.components import warm_pipeline_caches
from nufm.train.data import EventDataset, EventStream
from nufm.train.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    gather_objects,
    init_distributed,
)
from nufm.train.logging import RunLogger
from nufm.train.optim import build_optimizer, set_step_hyperparams
from nufm.train.precision import resolve_autocast
from nufm.train.schedules import Schedules, build_schedules

log = logging.getLogger(__name__)

Monitor = Callable[[nn.Module, int], dict[str, float]]
"""``monitor(objective, step) -> {name: value}``, called on rank 0 every
``train.monitor_every`` steps; results are logged as ``monitor/<name>``. It must leave the
module as it found it (the loop calls ``objective.train()`` afterwards)."""

DatasetFactory = Callable[[DataConfig], EventDataset]
"""Builds the map-style event dataset from the data config."""


class DivergenceError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the run stopped before updating."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    step: int
    """Optimizer steps completed (== train.max_steps when it ran to the end)."""
    last_checkpoint: Path | None
    """The newest complete checkpoint written or resumed from."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The last logged metrics."""


def _resolve_device(kind: str, info: DistInfo) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device='cuda' but CUDA is not available")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def schedules_for(cfg: RunConfig) -> Schedules:
    o = cfg.optim
    return build_schedules(
        max_steps=cfg.train.max_steps,
        lr=o.lr,
        min_lr=o.min_lr,
        warmup_steps=o.warmup_steps,
        warmup_start_lr=o.warmup_start_lr,
        weight_decay=o.weight_decay,
        weight_decay_end=o.weight_decay_end,
        momentum_start=o.momentum_start,
        momentum_end=o.momentum_end,
    )


class _StopFlag:
    """SIGINT handler: the first Ctrl-C asks for a checkpoint at the next step boundary, a
    second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._pid = os.getpid()

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker: the main process decides and shuts it down
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning(
            "interrupt received: writing a checkpoint after this step (Ctrl-C again "
            "to abort without one)"
        )

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    cfg: RunConfig,
    objective: nn.Module,
    dataset_factory: DatasetFactory,
    run_dir: str | Path,
    resume: bool = False,
    *,
    transform: Transform | None = None,
    monitor: Monitor | None = None,
) -> TrainResult:
    """Train ``objective`` on the events of ``dataset_factory(cfg.data)``.

    Args:
        cfg: The run configuration.
        objective: ``forward(PointBatch) -> StepOutput`` (:class:`nufm.step.Objective`);
            optionally :class:`nufm.step.HasTeacher` / :class:`nufm.step.HasSchedule`. Built
            (and seeded) by the caller.
        dataset_factory: Returns the map-style dataset of events.
        run_dir: Run directory: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``,
            ``tensorboard/``.
        resume: Continue from the latest complete checkpoint in ``run_dir`` (start fresh when
            there is none). Without it, a run_dir that already has checkpoints is refused.
        transform: Seeded augmentation ``(Event, np.random.Generator) -> Event``.
        monitor: Called every ``train.monitor_every`` steps (rank 0); results are logged.

    Returns:
        Steps done, last checkpoint and last logged metrics.

    Raises:
        DivergenceError: Loss or gradient norm is NaN/inf (the last checkpoint is untouched).
        CheckpointError: The checkpoint to resume from is corrupt or incompatible.
        nufm.train.data.EventStreamError: Reading/augmenting/collating an event failed (names it).
        KeyboardInterrupt: After SIGINT, once the checkpoint of the last step is written.
    """
    tc = cfg.train
    device_kind = (
        "cuda"
        if tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    info = init_distributed(device_kind)
    device = _resolve_device(tc.device, info)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    config_dict = config_to_dict(cfg)
    existing = latest_checkpoint(ckpt_dir)
    if existing is not None and not resume:
        raise FileExistsError(
            f"{run_dir} already has checkpoints (latest {existing.name}); "
            "pass resume=True (--resume) to continue it, or use a new run_dir"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    seed_everything(tc.seed + info.rank)
    objective.to(device)
    objective.train()
    optimizer = build_optimizer(
        objective, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )
    sched = schedules_for(cfg)
    step, cursor, last_ckpt = 0, DataCursor(), existing

    if resume and existing is not None:
        state = load_checkpoint(existing)
        diffs = config_differences(
            state["config"].get("objective"), config_dict["objective"], "objective."
        )
        if diffs:
            raise CheckpointError(
                f"{existing}: written for a different objective config "
                f"({'; '.join(diffs)}); refusing to resume"
            )
        other = config_differences(state["config"], config_dict)
        if other:
            log.warning("resuming %s with a changed config: %s", existing, "; ".join(other))
        check_model_compatible(objective, state["model"], str(existing))
        objective.load_state_dict(state["model"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        cursor = DataCursor(**state["cursor"])
        if len(state["rng"]) == info.world_size:
            restore_rng_state(state["rng"][info.rank])
        else:
            log.warning(
                "checkpoint from %d ranks, now %d: RNG states not restored; the run "
                "continues but is not bit-identical",
                len(state["rng"]),
                info.world_size,
            )
        log.info("resumed from %s at step %d, data cursor %s", existing, step, cursor)
        del state
    elif resume:
        log.info("resume requested but %s has no complete checkpoint: starting fresh", ckpt_dir)

    result = TrainResult(step=step, last_checkpoint=last_ckpt)
    if step >= tc.max_steps:
        log.info("nothing to do: step %d >= train.max_steps %d", step, tc.max_steps)
        return result

    model: nn.Module = objective
    if info.enabled:
        model = DistributedDataParallel(
            objective, device_ids=[info.local_rank] if device.type == "cuda" else None
        )
    forward: Callable[[Any], StepOutput] = torch.compile(model) if tc.compile else model
    teacher = objective if isinstance(objective, HasTeacher) else None  # EMA teacher
    scheduled = objective if isinstance(objective, HasSchedule) else None  # e.g. temperature
    params = [p for p in objective.parameters() if p.requires_grad]
    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf

    dataset = dataset_factory(cfg.data)
    if cfg.data.warm_workers:  # before the loader's workers are forked: they inherit it
        warm_pipeline_caches(dataset, transform, cfg.data.warm_workers)
    stream = EventStream(
        dataset,
        max_points=cfg.data.max_points,
        max_events=cfg.data.max_events,
        shuffle=cfg.data.shuffle,
        seed=tc.seed,
        num_workers=cfg.data.num_workers,
        transform=transform,
        start=cursor,
        rank=info.rank,
        world_size=info.world_size,
        pin_memory=device.type == "cuda",
    )
    logger = (
        RunLogger(
            run_dir,
            cfg.logging,
            max_steps=tc.max_steps,
            start_step=step,
            run_name=cfg.name,
            config=config_dict,
        )
        if info.is_main
        else None
    )

    saved_step = step if existing is not None and resume else -1

    def checkpoint(rng: list[dict[str, Any]] | None = None) -> None:
        nonlocal last_ckpt, saved_step
        rng = rng if rng is not None else gather_objects(capture_rng_state(), info)
        if info.is_main:
            last_ckpt = save_checkpoint(
                ckpt_dir,
                step=step,
                model=objective,
                optimizer=optimizer,
                cursor=cursor,
                config=config_dict,
                rng=rng,
                keep=tc.keep_checkpoints,
            )
        saved_step = step
        barrier(info)

    window: dict[str, float] = {}
    window_steps, window_events, window_time = 0, 0, 0.0
    autocast = resolve_autocast(tc.bf16, device)
    in_update = False
    boundary_rng = capture_rng_state()
    if monitor is not None and tc.monitor_every and step == 0:  # baseline: random init
        if info.is_main:
            found = {f"monitor/{k}": float(v) for k, v in monitor(objective, 0).items()}
            restore_rng_state(boundary_rng)
            if logger is not None:
                logger.log(0, found)
        objective.train()
        barrier(info)
    stop = _StopFlag()
    try:
        with stop:
            while step < tc.max_steps:
                t0 = time.perf_counter()
                set_step_hyperparams(
                    optimizer, float(sched.lr[step]), float(sched.weight_decay[step])
                )
                if scheduled is not None:
                    scheduled.set_schedule(step / max(tc.max_steps - 1, 1))
                optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), device=device)
                metric_sums: dict[str, torch.Tensor] = {}
                n_events = 0
                next_cursor = cursor
                for micro in range(tc.grad_accum):
                    batch, next_cursor = next(stream)
                    batch = batch.to(device, non_blocking=True)
                    n_events += batch.num_events
                    is_last = micro == tc.grad_accum - 1
                    # DDP all-reduces gradients only on the last micro-batch of the step
                    sync = (
                        model.no_sync()  # type: ignore[operator]
                        if info.enabled and not is_last
                        else nullcontext()
                    )
                    with sync:
                        with autocast:
                            out = forward(batch)
                        (out.loss.float() / tc.grad_accum).backward()
                    loss_sum += out.loss.detach().float() / tc.grad_accum
                    for k, v in out.metrics.items():
                        metric_sums[k] = (
                            metric_sums.get(k, 0.0) + v.detach().float() / tc.grad_accum
                        )
                grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
                flags = torch.stack(
                    [
                        (~torch.isfinite(loss_sum) | ~torch.isfinite(grad_norm)).float(),
                        torch.tensor(float(stop.requested), device=device),
                    ]
                )
                flags = all_reduce_max(flags, info)
                if flags[0] > 0:
                    raise DivergenceError(
                        f"non-finite loss ({loss_sum.item()}) or gradient norm "
                        f"({grad_norm.item()}) at step {step} (some rank); weights were not "
                        f"updated and no checkpoint was written; last good checkpoint: "
                        f"{last_ckpt}. Lower optim.lr, raise optim.warmup_steps or check the "
                        "data"
                    )
                in_update = True
                optimizer.step()
                if teacher is not None:
                    teacher.update_teacher(float(sched.momentum[step]))
                step += 1
                cursor = next_cursor
                in_update = False
                if not info.enabled:  # RNG at this boundary, for a save after an exception
                    boundary_rng = capture_rng_state()

                step_values = {"loss": loss_sum, "grad_norm": grad_norm, **metric_sums}
                host = torch.stack([v.float() for v in step_values.values()]).tolist()  # 1 sync
                loss_value = host[0]
                window_steps += 1
                window_events += n_events
                window_time += time.perf_counter() - t0
                for k, v in zip(step_values, host, strict=False):
                    window[k] = window.get(k, 0.0) + v
                events_per_s = window_events * info.world_size / max(window_time, 1e-9)
                if logger is not None:
                    logger.progress(step, loss_value, events_per_s)
                if step % cfg.logging.log_every == 0 or step == tc.max_steps:
                    names = sorted(window)
                    means = torch.tensor(
                        [window[k] / window_steps for k in names],
                        dtype=torch.float64,
                        device=device,
                    )
                    means = all_reduce_mean(means, info)
                    metrics = {k: float(v) for k, v in zip(names, means.tolist(), strict=False)}
                    metrics.update(
                        lr=float(sched.lr[step - 1]),
                        events_per_s=events_per_s,
                        weight_decay=float(sched.weight_decay[step - 1]),
                    )
                    if teacher is not None:
                        metrics["momentum"] = float(sched.momentum[step - 1])
                    if logger is not None:
                        logger.log(step, metrics)
                    result.metrics = metrics
                    window, window_steps, window_events, window_time = {}, 0, 0, 0.0
                if monitor is not None and tc.monitor_every and step % tc.monitor_every == 0:
                    if info.is_main:
                        rng_before = capture_rng_state()  # the monitor never shifts training RNG
                        found = {
                            f"monitor/{k}": float(v) for k, v in monitor(objective, step).items()
                        }
                        restore_rng_state(rng_before)
                        if logger is not None:
                            logger.log(step, found)
                        result.metrics.update(found)
                    objective.train()
                    barrier(info)
                if flags[1] > 0:
                    checkpoint()
                    raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint written")
                if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                    checkpoint()
    except KeyboardInterrupt:
        # Interrupted inside a step (second Ctrl-C, or workers killed by the terminal's SIGINT):
        # model and optimizer still hold the state of the last step boundary unless the update
        # itself was interrupted. Only safe without collectives, i.e. on a single process.
        if not in_update and not info.enabled and step > 0 and saved_step != step:
            checkpoint(rng=[boundary_rng])
        raise
    except RuntimeError as e:
        if isinstance(e, (DivergenceError, CheckpointError)):
            raise
        # A DataLoader whose workers died of the terminal's SIGINT raises RuntimeError.
        if stop.requested and not in_update and not info.enabled:
            if step > 0 and saved_step != step:
                checkpoint(rng=[boundary_rng])
            raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint written") from e
        raise
    finally:
        stream.close()
        if logger is not None:
            logger.close()
    result.step = step
    result.last_checkpoint = last_ckpt
    return result
