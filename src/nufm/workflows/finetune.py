"""Fine-tune a task on labelled events and evaluate it on held-out events (``nufm finetune``).

One run = one task config (task x mode), one labelled subset, one seed:

1. events come from PILArNet-M layout files, split into train / val / test **by whole event**
   (:class:`nufm.data.dataset.PILArNetDataset`, seeded); the labelled subset is the first
   ``n_train`` events of a seeded permutation of the train split, so subsets of increasing
   size are nested;
2. the task starts from the pretrained encoder (modes linear / head / full) or from random
   weights (scratch), always with the pretrained model's preprocessing contract, so only the
   encoder's starting weights differ between modes;
3. the same training loop as pretraining (:func:`nufm.train.loop.train`) trains it;
4. :func:`nufm.tasks.evaluate.evaluate_task` scores it on the test events at data-set level, and
   a versioned ``metrics.json`` records model, data, preprocessing and seed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nufm.config import DataConfig, LoggingConfig, OptimConfig, RunConfig, TrainConfig
from nufm.data.dataset import PILArNetDataset
from nufm.data.event import Event
from nufm.data.transforms import Preprocess, RandomRotation
from nufm.errors import ConfigError, InputError, NotFoundError
from nufm.eval.report import write_metrics_json
from nufm.tasks.build import TASK_PRESETS, build_task
from nufm.tasks.evaluate import evaluate_task
from nufm.train.loop import seed_everything, train
from nufm.workflows.pretrained import Pretrained, load_pretrained

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """One fine-tuning run."""

    task: str = "semseg-full"
    """Task preset ``<task>-<mode>`` (see nufm.tasks.build.TASK_PRESETS), e.g. semseg-linear,
    semseg-head, semseg-full, semseg-scratch, pid-full, cluster-particle-full."""
    pretrained: Path | None = None
    """Pretraining run directory or exported model; its encoder config replaces the preset's.
    Required except for scratch mode with an explicit encoder."""
    data: tuple[Path, ...] = ()
    """PILArNet-M layout HDF5 file(s); split by event into train/val/test."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train / val / test fractions of the events."""
    split_seed: int = 0
    """Seed of the event split and of the labelled-subset permutation."""
    n_train: int | None = None
    """Labelled training events used (first n of the permuted train split); None = all."""
    n_test: int | None = None
    """Test events evaluated (first n of the permuted test split); None = all."""
    steps: int = 200
    """Optimizer steps."""
    lr: float = 1e-3
    """Peak learning rate of the head (the encoder gets lr * task.encoder_lr_scale in full
    and scratch modes)."""
    warmup_steps: int = 20
    """Linear warmup steps."""
    weight_decay: float = 0.01
    """AdamW weight decay of weight matrices."""
    max_points: int = 40_000
    """Point budget of one batch."""
    max_events: int = 8
    """Event cap of one batch."""
    augment: bool = True
    """Random rotations of training events."""
    bf16: bool = True
    """bfloat16 autocast (about 2x faster on CPUs with AMX / bf16 support)."""
    seed: int = 0
    """Seed of initialisation, batch order and augmentation."""
    progress: bool = True
    """Show a progress bar."""
    eval_batch_points: int = 100_000
    """Point budget of evaluation batches."""

    def __post_init__(self) -> None:
        if self.task not in TASK_PRESETS:
            raise ValueError(
                f"finetune: unknown task preset {self.task!r}; known: {sorted(TASK_PRESETS)}"
            )
        for n, name in ((self.n_train, "n_train"), (self.n_test, "n_test")):
            if n is not None and n <= 0:
                raise ValueError(f"finetune: {name} must be positive, got {n}")
        if self.steps <= 0 or self.warmup_steps > self.steps:
            raise ValueError(
                f"finetune: need steps > 0 and warmup_steps <= steps, got "
                f"{self.steps}, {self.warmup_steps}"
            )


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    metrics: dict[str, Any]
    """Output of :func:`nufm.tasks.evaluate.evaluate_task` on the test events."""
    run_dir: Path
    n_train: int
    n_test: int
    train_losses: list[float] = field(default_factory=list)


def load_split_events(
    data: tuple[Path, ...],
    preprocess: Preprocess,
    split: Split,
    n: int | None,
    *,
    split_seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> list[Event]:
    """The first ``n`` events (raw, untransformed) of a seeded permutation of ``split``.

    Raises:
        ValueError: no data file, or the split has fewer than ``n`` events (nothing is
            silently shortened).
    """
    if not data:
        raise ConfigError("finetune: give at least one data file (--data FILE.h5)")
    ds = PILArNetDataset(
        list(data),
        split=split,
        split_fractions=split_fractions,
        seed=split_seed,
        min_points=preprocess.min_points,
        energy_threshold=preprocess.energy_threshold,
    )
    if len(ds) == 0:
        raise InputError(
            f"finetune: the {split} split of {[str(p) for p in data]} holds no event "
            "(empty file, or too few events for the split fractions)"
        )
    order = np.random.default_rng((split_seed, 7)).permutation(len(ds))
    if n is not None:
        if n > len(ds):
            raise ConfigError(
                f"finetune: asked for {n} {split} events but {list(data)} "
                f"has only {len(ds)} in the {split} split"
            )
        order = order[:n]
    return [ds[int(i)] for i in order]


def run_finetune(
    cfg: FinetuneConfig,
    run_dir: str | Path,
    pretrained: Pretrained | None = None,
    *,
    random_encoder: bool = False,
    encoder_config: object | None = None,
    preprocess: Preprocess | None = None,
    train_events: list[Event] | None = None,
    test_events: list[Event] | None = None,
) -> FinetuneResult:
    """Train and evaluate one task (see the module docstring).

    Args:
        cfg: the run settings.
        run_dir: where checkpoints, logs and ``metrics.json`` go.
        pretrained: the loaded pretrained model (default: loaded from ``cfg.pretrained``);
            its encoder config, weights and preprocessing are used.
        random_encoder: keep the encoder randomly initialised even in linear / head / full
            mode (the random-representation baseline of the study).
        encoder_config: the encoder architecture when no ``pretrained`` is given (scratch
            runs of a study use the pretrained model's architecture).
        preprocess: the preprocessing contract when no ``pretrained`` is given.
        train_events, test_events: raw events to use instead of loading ``cfg.data`` (a study
            shares them between runs).
    """
    run_dir = Path(run_dir)
    if pretrained is None and cfg.pretrained is not None:
        pretrained = load_pretrained(cfg.pretrained)
    task_cfg = TASK_PRESETS[cfg.task]
    if pretrained is not None:
        encoder_config = pretrained.encoder_config
        preprocess = pretrained.preprocess
        if encoder_config is None:
            raise ConfigError(
                f"{pretrained.source}: a "
                f"{type(pretrained.objective_config).__name__} encoder cannot be "
                "fine-tuned by the tasks (use an MAE or distillation model)"
            )
    if encoder_config is not None:
        task_cfg = dataclasses.replace(task_cfg, encoder=encoder_config)
    preprocess = preprocess or Preprocess()
    use_weights = pretrained is not None and task_cfg.mode != "scratch" and not random_encoder
    if task_cfg.mode != "scratch" and not use_weights and not random_encoder:
        raise ConfigError(f"finetune: mode {task_cfg.mode!r} needs --pretrained")
    if train_events is None:
        train_events = load_split_events(
            cfg.data,
            preprocess,
            "train",
            cfg.n_train,
            split_seed=cfg.split_seed,
            split_fractions=cfg.split_fractions,
        )
    if test_events is None:
        test_events = load_split_events(
            cfg.data,
            preprocess,
            "test",
            cfg.n_test,
            split_seed=cfg.split_seed,
            split_fractions=cfg.split_fractions,
        )
    run_cfg = RunConfig(
        name=f"{cfg.task}-n{len(train_events)}-s{cfg.seed}",
        objective=task_cfg,
        optim=OptimConfig(
            lr=cfg.lr,
            min_lr=cfg.lr * 0.01,
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            weight_decay_end=cfg.weight_decay,
            grad_clip=1.0,
        ),
        train=TrainConfig(
            max_steps=cfg.steps,
            seed=cfg.seed,
            bf16=cfg.bf16,
            checkpoint_every=cfg.steps,
            keep_checkpoints=1,
        ),
        logging=LoggingConfig(
            log_every=max(cfg.steps // 20, 1), progress=cfg.progress, tensorboard=True
        ),
        data=DataConfig(
            source="file",
            path=cfg.data[0],
            max_points=cfg.max_points,
            max_events=cfg.max_events,
            augment=cfg.augment,
        ),
    )
    seed_everything(cfg.seed)
    task = build_task(task_cfg, pretrained.state if use_weights else None)
    transform = preprocess.transforms(augment=[RandomRotation()] if cfg.augment else [])
    result = train(run_cfg, task, lambda _: train_events, run_dir, transform=transform)
    task.eval()
    with torch.no_grad():
        metrics = evaluate_task(
            task,
            test_events,
            cfg.eval_batch_points,
            transform=preprocess.transforms(),
            seed=cfg.seed,
        )
    write_metrics_json(
        run_dir / "metrics.json",
        metrics,
        model={
            "task": cfg.task,
            "mode": task_cfg.mode,
            "random_encoder": random_encoder,
            "encoder": type(task_cfg.encoder).__name__,
            "pretrained": pretrained.source if use_weights else None,
            "pretrained_step": pretrained.step if use_weights else None,
            "steps": cfg.steps,
            "final_train_metrics": result.metrics,
        },
        data={
            "files": [str(p) for p in cfg.data],
            "split_fractions": cfg.split_fractions,
            "split_seed": cfg.split_seed,
            "n_train": len(train_events),
            "n_test": len(test_events),
        },
        preprocess=preprocess.to_dict(),
        seed=cfg.seed,
    )
    log.info("%s: test %s", run_cfg.name, _headline(metrics))
    return FinetuneResult(
        metrics=metrics, run_dir=run_dir, n_train=len(train_events), n_test=len(test_events)
    )


def evaluate_run(
    run_dir: str | Path,
    data: tuple[Path, ...],
    split: Split = "test",
    n_events: int | None = None,
    split_seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    out: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the latest checkpoint of a fine-tuning run on a split of ``data``.

    The task is rebuilt from the run's saved config and loaded strictly; the preprocessing is
    the one recorded in the run's ``metrics.json`` (written by :func:`run_finetune`).
    Writes a versioned metrics JSON to ``out`` (default ``run_dir/eval_<split>.json``).
    """
    import json

    from nufm.config import load_config
    from nufm.train.checkpoint import latest_checkpoint, load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise NotFoundError(
            f"{run_dir}: not a fine-tuning run directory (no config.yaml); give a directory "
            "written by `nufm finetune`"
        )
    cfg = load_config(run_dir / "config.yaml")
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise NotFoundError(f"{run_dir}: no complete checkpoint under checkpoints/")
    recorded = run_dir / "metrics.json"
    if not recorded.is_file():
        raise NotFoundError(
            f"{recorded}: missing; it records the preprocessing contract (is {run_dir} a "
            "run directory written by `nufm finetune`?)"
        )
    preprocess = Preprocess.from_dict(json.loads(recorded.read_text())["preprocess"])
    task = build_task(cfg.objective)
    task.load_state_dict(load_checkpoint(ckpt)["model"], strict=True)
    task.eval()
    events = load_split_events(
        tuple(data),
        preprocess,
        split,
        n_events,
        split_seed=split_seed,
        split_fractions=split_fractions,
    )
    with torch.no_grad():
        metrics = evaluate_task(task, events, transform=preprocess.transforms())
    write_metrics_json(
        out or run_dir / f"eval_{split}.json",
        metrics,
        model={"run_dir": str(run_dir), "checkpoint": str(ckpt)},
        data={
            "files": [str(p) for p in data],
            "split": split,
            "split_seed": split_seed,
            "n_events": len(events),
        },
        preprocess=preprocess.to_dict(),
        seed=split_seed,
    )
    log.info("%s on %d %s events: %s", run_dir, len(events), split, _headline(metrics))
    return metrics


def _headline(metrics: dict[str, Any]) -> str:
    for block in ("semantic", "pid", "event_class"):
        if block in metrics:
            m = metrics[block]
            return f"{block} macro F1 {m.get('macro_f1', float('nan')):.3f}"
    if "instance" in metrics:
        return f"ARI {metrics['instance'].get('ari_mean', float('nan')):.3f}"
    return str({k: v for k, v in metrics.items() if not isinstance(v, dict)})
