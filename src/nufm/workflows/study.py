"""The label-efficiency study (``nufm study``): does pretraining save labels?

Pretrain once (elsewhere), then for each labelled-set size, mode and seed fine-tune the task on
that many labelled events (nested subsets of the train split) and evaluate on the same held-out
test events. Modes: ``linear`` (frozen pretrained encoder + linear head), ``head`` (frozen
encoder + trainable neck/head), ``full`` (everything trains, encoder at a lower learning rate),
``scratch`` (same architecture and head, random encoder), ``linear-random`` (the linear
probe on a randomly initialised frozen encoder, the baseline a pretrained representation must
beat) and ``linear-geometry`` (the same linear probe on classical local-shape descriptors,
:mod:`nufm.models.geometric`: what a representation must beat to be worth a network). Every
run uses the same step budget, preprocessing and test events, so only the encoder's
starting weights and what trains differ.

The frozen-feature modes ``probe``, ``probe-random``, ``probe-geometry``, ``gbt-geometry``,
``probe-fused`` and ``gbt-fused`` follow the probe protocol of the references instead
(features computed once, heads or trees selected on val events, no training loop):
:mod:`nufm.workflows.probe_study`.

Other tasks work the same way, each scored by the number its field quotes
(:mod:`nufm.workflows.study_score`): macro F1 of a classification (per point, particle or
event), the adjusted Rand index of a clustering, the 68 % resolution of a vertex, direction or
energy regression (lower is better). The classical rows, without a network, are in
:mod:`nufm.workflows.study_classical`: ``gbt-hitpattern`` (water Cherenkov event classes),
``gbt-hitfit`` (water Cherenkov hit categories), ``wc-fit`` (water Cherenkov vertex,
direction, energy), ``dedx-hough`` (collider-TPC hit species) and ``hough`` (collider-TPC
tracks and noise). A study of only ``scratch`` and the classical rows needs no pretrained
model.

Writes ``results.csv``, ``results.md`` and
``label_efficiency.png`` (the score vs labelled events, log x) plus one run directory with a
``metrics.json`` per run. The claim under test is that of PoLAr-MAE (arXiv:2502.02558) and
Panda (arXiv:2512.01324): a pretrained encoder reaches with 10x fewer labels what scratch needs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from nufm.config import (
    CLASSICAL_MODES,
    NO_PRETRAINED_MODES,
    PROBE_MODES,
    RunConfig,
    StudyConfig,
)
from nufm.data.memo import EventMemo
from nufm.data.transforms import Transform
from nufm.errors import ConfigError
from nufm.eval.plots import plot_label_efficiency
from nufm.eval.report import write_metrics_json
from nufm.models.geometric import EventDescriptors, LocalGeometryConfig
from nufm.presets import STUDY_PRESETS, get_study_preset
from nufm.tasks.backbone import Mode, encoder_pipeline_steps
from nufm.tasks.build import TaskConfig
from nufm.tasks.semseg import SemsegConfig
from nufm.train.components import warm_pipeline_caches
from nufm.train.forked import forked_map, worker_threads
from nufm.viz.display import save_figure
from nufm.workflows.finetune import (
    data_detector,
    data_preprocess,
    finetune_split,
    run_finetune,
    transfer_core,
)
from nufm.workflows.load import for_detector, load_encoder
from nufm.workflows.probe_study import (
    FeatureCache,
    encode_ahead,
    feature_device,
    feature_dtype,
    run_probe_mode,
)
from nufm.workflows.study_bootstrap import bootstrap_markdown, study_bootstrap
from nufm.workflows.study_classical import (
    CLASSICAL_FEATURES,
    check_classical,
    classical_metrics,
    uses_labels,
)
from nufm.workflows.study_score import StudyScore, row_values, study_score

log = logging.getLogger(__name__)

MODE_LABELS: dict[str, str] = {
    "linear": "linear probe (pretrained, frozen)",
    "head": "head only (pretrained, frozen)",
    "full": "full fine-tune (pretrained)",
    "scratch": "from scratch (random init)",
    "linear-random": "linear probe (random encoder, frozen)",
    "linear-geometry": "linear probe (local-shape descriptors, no network)",
    "probe": "linear-probe bag, val-selected (pretrained, frozen)",
    "probe-random": "linear-probe bag, val-selected (random encoder, frozen)",
    "probe-geometry": "linear-probe bag, val-selected (local-shape descriptors)",
    "gbt-geometry": "boosted trees, val-selected (local-shape descriptors)",
    "probe-fused": "linear-probe bag, val-selected (pretrained features + descriptors)",
    "gbt-fused": "boosted trees, val-selected (pretrained features + descriptors)",
    "full-fused": "full fine-tune, descriptors beside the features at the head (pretrained)",
    "head-fused": "neck and head on the frozen encoder, descriptors beside its features",
    "scratch-fused": "from scratch, descriptors beside the features at the head (random init)",
    "gbt-hitpattern": "boosted trees (water Cherenkov hit-pattern features)",
    "dedx-hough": "dE/dx on Hough tracks (classical, collider TPC)",
    "wc-fit": "point fit: time-residual vertex, ring direction, charge energy (classical)",
    "hough": "Hough track finding (classical, collider TPC)",
    "gbt-hitfit": "boosted trees on hits placed by the point fit (classical, water Cherenkov)",
}


@dataclass
class StudyRow:
    """One run's result."""

    mode: str
    n_train: int
    seed: int
    score: float
    """The study's headline (:func:`nufm.workflows.study_score.study_score`): macro F1 of a
    classification, ARI of a clustering, the resolution of a regression."""
    extras: dict[str, float]
    """Secondary scalars by results.csv column (accuracy and mIoU of a classification, ...)."""
    per_class_f1: dict[str, float]
    """F1 per class of a classification (empty otherwise)."""
    seconds: float
    run_dir: str


LINEAR_MODES: tuple[str, ...] = ("linear", "linear-random", "linear-geometry")
"""Study modes that train one linear layer (on frozen features)."""
_TASK_MODE: dict[str, Mode] = {
    "linear": "linear",
    "head": "head",
    "full": "full",
    "scratch": "scratch",
    "linear-random": "linear",
    "linear-geometry": "linear",
    "full-fused": "full",
    "head-fused": "head",
    "scratch-fused": "scratch",
}
"""Study mode -> the task mode its runs train in."""
TRAINING_MODES: tuple[str, ...] = tuple(_TASK_MODE)
"""Study modes that run a training loop (the rows ``StudyConfig.workers`` runs side by side)."""
FUSED_TASK_MODES: tuple[str, ...] = ("full-fused", "head-fused", "scratch-fused")
"""Training-loop modes whose head reads the descriptors (``probe.geometry_ks``) beside the
encoder's per-point features (``TaskBaseConfig.point_descriptors``)."""
DESCRIPTOR_MODES: tuple[str, ...] = (
    *FUSED_TASK_MODES,
    "probe-geometry",
    "gbt-geometry",
    "probe-fused",
    "gbt-fused",
)
"""Modes that read the descriptors of ``probe.geometry_ks``: the study computes them once per
event in the data pipeline (:class:`~nufm.models.geometric.EventDescriptors`) for all."""


def study_run(cfg: StudyConfig, mode: str, n_train: int, seed: int) -> RunConfig:
    """The fine-tuning run of one (mode, size, seed) of a study: ``cfg.run`` with the task
    mode, ``finetune.n_train``, ``train.seed`` and, for linear modes, ``cfg.linear_lr`` (min
    lr 1% of it), for the fused modes the descriptors ``cfg.probe.geometry_ks`` at the head,
    and, with ``cfg.steps``, the step budget of size ``n_train``. Its name is
    ``<run.name>-<task mode>``."""
    run = cfg.run
    task = run.objective
    if run.finetune is None or not isinstance(task, TaskConfig):
        raise ValueError(f"study: run {run.name!r} is no fine-tuning run (needs a task)")
    task_mode = _TASK_MODE[mode]
    optim = run.optim
    if mode in LINEAR_MODES and cfg.linear_lr is not None:
        optim = dataclasses.replace(optim, lr=cfg.linear_lr, min_lr=cfg.linear_lr * 0.01)
    train = dataclasses.replace(run.train, seed=seed)
    if cfg.steps:
        steps = dict(zip(cfg.sizes, cfg.steps, strict=True))[n_train]
        optim = dataclasses.replace(optim, warmup_steps=max(steps // 10, 1))
        train = dataclasses.replace(
            train,
            max_steps=steps,
            checkpoint_every=steps,
            monitor_every=min(train.monitor_every, steps) if train.monitor_every else 0,
        )
    descriptors = cfg.probe.geometry_ks if mode in FUSED_TASK_MODES else task.point_descriptors
    return dataclasses.replace(
        run,
        name=f"{run.name}-{task_mode}",
        objective=dataclasses.replace(task, mode=task_mode, point_descriptors=descriptors),
        optim=optim,
        train=train,
        finetune=dataclasses.replace(run.finetune, n_train=n_train, pretrained=None),
    )


STUDY_BLOCKS: tuple[str, ...] = ("semantic", "pid", "event_class")
"""Metrics blocks a study row can come from (per-point, per-particle, per-event classes)."""


def class_block(metrics: dict[str, Any]) -> dict[str, Any]:
    """The classification block of a task's metrics (:data:`STUDY_BLOCKS`).

    Raises:
        ConfigError: the task reports no classification (a regression or clustering task).
    """
    for name in STUDY_BLOCKS:
        if name in metrics:
            return metrics[name]
    raise ConfigError(
        f"nufm study: the task {metrics.get('task')!r} reports none of {STUDY_BLOCKS}; the "
        "study compares classification tasks only"
    )


def _row(
    mode: str,
    n: int,
    seed: int,
    metrics: dict[str, Any],
    score: StudyScore,
    seconds: float,
    run_dir: Path | str,
) -> StudyRow:
    """A table row from a run's metrics."""
    value, extras, per_class = row_values(metrics, score)
    return StudyRow(mode, n, seed, value, extras, per_class, seconds, str(run_dir))


def _write_classical(
    run_dir: Path, metrics: dict[str, Any], cfg: StudyConfig, n: int, seed: int
) -> Path:
    """Write a classical row's ``metrics.json`` (no network, so no checkpoint) in ``run_dir``."""
    ft = cfg.run.finetune
    assert ft is not None
    mode = metrics["mode"]
    write_metrics_json(
        run_dir / "metrics.json",
        metrics,
        model={"task": cfg.run.name, "mode": mode, "features": CLASSICAL_FEATURES[mode]},
        data={"files": [str(p) for p in ft.data], "n_train": n},
        preprocess=data_preprocess(ft.data).to_dict(),
        seed=seed,
    )
    return run_dir


def run_study(
    cfg: StudyConfig,
    pretrained_path: str | Path | None,
    data: tuple[Path, ...] | None,
    out_dir: str | Path,
) -> list[StudyRow]:
    """Run every (size, mode, seed) of ``cfg`` and write the table and plot into ``out_dir``.

    ``pretrained_path`` and ``data`` replace ``cfg.run.finetune.pretrained`` / ``.data`` unless
    None.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ft = cfg.run.finetune
    assert ft is not None  # StudyConfig checks it
    ft = dataclasses.replace(
        ft,
        pretrained=Path(pretrained_path) if pretrained_path is not None else ft.pretrained,
        data=tuple(data) if data is not None else ft.data,
    )
    if ft.pretrained is None and not set(cfg.modes) <= set(NO_PRETRAINED_MODES):
        raise ValueError("study: give the pretrained model (--pretrained RUN_OR_MODEL_DIR)")
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, finetune=ft))
    task = cfg.run.objective
    score = study_score(task)
    check_classical(cfg.modes, task, data_detector(ft.data).name)
    probes = any(m in PROBE_MODES for m in cfg.modes)
    if probes and ft.pretrained is not None and ft.transfer == "core":
        raise ConfigError(
            f"study: the probe modes {PROBE_MODES} read the pretrained encoder as it is; with "
            "finetune.transfer core use the fine-tuning modes (full, linear, head, scratch)"
        )
    if probes and not isinstance(task, SemsegConfig):
        raise ConfigError(
            f"study: the probe modes {PROBE_MODES} classify points; the run's task is "
            f"{type(task).__name__}"
        )
    pretrained = load_encoder(ft.pretrained) if ft.pretrained is not None else None
    transfer = pretrained is not None and ft.transfer == "core"
    if pretrained is not None and not transfer:  # a cross-experiment model: the data's part
        pretrained = for_detector(pretrained, data_detector(ft.data).name)
    pre = pretrained.preprocess if pretrained and not transfer else data_preprocess(ft.data)
    source = pretrained.source if pretrained is not None else "none"
    network_config = pretrained.encoder_config if pretrained else None
    if transfer:  # scratch and random rows get the transferred architecture
        assert pretrained is not None and isinstance(task, TaskConfig)
        network_config = transfer_core(pretrained, task, pre)[0]
        source += " (core carried over from another detector, input embedding fresh)"
    pool = finetune_split(ft, pre, "train", max(cfg.sizes))
    test = finetune_split(ft, pre, "test", ft.n_test)
    select: list | None = None  # val events of early stopping
    if ft.n_val:
        select = finetune_split(ft, pre, "val", ft.n_val)
    # the descriptors of every event computed once for the whole study: the fused runs' head
    # inputs and the descriptor probes' features read the same cache
    descriptors: list[Transform] = []
    if set(cfg.modes) & set(DESCRIPTOR_MODES):
        descriptors = [EventDescriptors(cfg.probe.geometry_ks, pre)]
    # ... and the fused runs' token groups (one architecture for fine-tune and scratch)
    fused_encoder = network_config or (task.encoder if isinstance(task, TaskConfig) else None)
    fused_steps = [*descriptors, *encoder_pipeline_steps(fused_encoder)]
    # every event's descriptors (probe and fused rows) and token groups (fused training rows)
    # are computed ahead, in cfg.workers forked processes, into the caches of these very
    # steps: the probe rows and the training runs, forked afterwards, read them
    warm_steps = fused_steps if any(m in FUSED_TASK_MODES for m in cfg.modes) else descriptors
    cache: FeatureCache | None = None
    if any(m in PROBE_MODES for m in cfg.modes):
        if pretrained is None:
            raise ValueError("study: the probe modes need a pretrained model (--pretrained)")
        n_val = cfg.probe.n_val if cfg.probe.n_val is not None else ft.n_test
        val = finetune_split(ft, pre, "val", n_val)
        cache = FeatureCache(
            {"train": pool, "val": val, "test": test},
            # the probe encoders (the pretrained one, its random twin) are the fused runs'
            # architecture: they read the token groups computed ahead too, where there are some
            pre.transforms(augment=warm_steps),
            batch_points=ft.eval_batch_points,
            train_points_per_event=cfg.probe.train_points_per_event,
            device=feature_device(cfg),
            autocast_dtype=feature_dtype(cfg, feature_device(cfg)),
        )
    if warm_steps:
        warm = [*pool, *test, *(select or []), *(cache.events["val"] if cache else [])]
        # an event of two lists once; events without a row are never cached
        known = {key: e for e in warm if (key := EventMemo.key(e)) is not None}
        warm_pipeline_caches(
            list(known.values()), pre.transforms(augment=warm_steps), cfg.workers, keep_all=False
        )
    label_free: dict[str, dict[str, Any]] = {}  # classical rows that use no labels, by mode

    def one_row(job: tuple[int, str, int], progress: bool = True) -> StudyRow:
        """Run (size, mode, seed) and make its table row (``progress``: False hides a training
        run's progress bar, as for runs side by side)."""
        n, mode, seed = job
        name = f"{mode}-n{n}-s{seed}"
        t0 = time.perf_counter()
        if mode in PROBE_MODES:
            assert cache is not None and pretrained is not None
            _, sem = run_probe_mode(cfg, mode, n, seed, cache, pretrained, out_dir / "runs" / name)
            metrics, run_dir = {"semantic": sem}, out_dir / "runs" / name
        elif mode in CLASSICAL_MODES:
            if uses_labels(mode, task):
                metrics = classical_metrics(mode, task, pool[:n], test, seed)
            else:  # the same at every size: computed once
                if mode not in label_free:
                    label_free[mode] = classical_metrics(mode, task, [], test, seed)
                metrics = label_free[mode]
            run_dir = _write_classical(out_dir / "runs" / name, metrics, cfg, n, seed)
        else:
            encoder_config = network_config
            if mode == "linear-geometry":
                encoder_config = LocalGeometryConfig()  # feat = (xyz, log E), C = 4
            run = study_run(cfg, mode, n, seed)
            if not progress:
                run = dataclasses.replace(
                    run, logging=dataclasses.replace(run.logging, progress=False)
                )
            result = run_finetune(
                run,
                out_dir / "runs" / name,
                pretrained=None
                if mode in (*NO_PRETRAINED_MODES, "linear-geometry")
                else pretrained,
                random_encoder=mode in ("linear-random", "linear-geometry"),
                encoder_config=encoder_config,
                preprocess=pre,
                train_events=pool[:n],
                test_events=test,
                val_events=select,
                pipeline_steps=fused_steps if mode in FUSED_TASK_MODES else None,
            )
            metrics, run_dir = result.metrics, result.run_dir
        row = _row(mode, n, seed, metrics, score, time.perf_counter() - t0, run_dir)
        log.info("study %s: %s %.3f (%.0f s)", name, score.name, row.score, row.seconds)
        return row

    jobs = [(n, m, s) for n in sorted(cfg.sizes) for m in cfg.modes for s in cfg.seeds_for(m)]
    workers = row_workers(cfg)
    side_by_side = [j for j in jobs if workers > 1 and j[1] in (*TRAINING_MODES, *PROBE_MODES)]
    done: dict[tuple[int, str, int], StudyRow] = {}

    def record(job: tuple[int, str, int], row: StudyRow) -> None:
        done[job] = row  # the outputs list the rows in job order, however they ran
        write_study_outputs([done[j] for j in jobs if j in done], cfg, out_dir, source, score)

    for job in jobs:  # all rows, or the classical ones (seconds each)
        if job not in side_by_side:
            record(job, one_row(job))
    if side_by_side:
        if cache is not None:  # the workers inherit every feature their rows read
            assert pretrained is not None
            encode_ahead(cfg, side_by_side, cache, pretrained)
        order = side_by_side_order(cfg, side_by_side)
        log.info(
            "study: %d rows (%d training runs) in %d processes of %d torch threads",
            len(order),
            sum(j[1] in TRAINING_MODES for j in order),
            workers,
            worker_threads(workers),
        )
        for job, row in zip(
            order,
            forked_map(lambda job: one_row(job, progress=False), order, workers),
            strict=True,
        ):
            record(job, row)
    return [done[j] for j in jobs]


def row_workers(cfg: StudyConfig) -> int:
    """Processes that run the rows: ``cfg.workers``, or 1 where the runs use CUDA. A forked
    process cannot use CUDA once its parent has (the study's process encodes the probes'
    features there), and one GPU takes the rows one after another anyway. The per-event
    values are still computed ahead in ``cfg.workers`` processes, before CUDA is used."""
    if cfg.workers > 1 and feature_device(cfg).type == "cuda":
        log.warning(
            "study: workers=%d: the runs use CUDA, so the rows run one after another in this "
            "process (forked processes cannot use CUDA once it has)",
            cfg.workers,
        )
        return 1
    return cfg.workers


def side_by_side_order(
    cfg: StudyConfig, jobs: list[tuple[int, str, int]]
) -> list[tuple[int, str, int]]:
    """The order in which the forked workers take the (size, mode, seed) ``jobs``: the longest
    first, so that the last ones to start are short and the workers finish together (the
    longest-processing-time-first rule). Training rows (minutes each) come before the
    frozen-feature rows (seconds to a minute), ranked by their steps less half of those with
    the encoder frozen (no backward through it: the LP-FT's first part, the linear and head
    modes); the frozen-feature rows by labelled-set size. Ties keep the jobs' order."""

    def rank(job: tuple[int, str, int]) -> tuple[int, float]:
        n, mode, seed = job
        if mode not in TRAINING_MODES:
            return (1, -n)
        run = study_run(cfg, mode, n, seed)  # the row's own steps and task mode
        task = run.objective
        assert isinstance(task, TaskConfig)  # study_run checks it
        frozen = {"linear": 1.0, "head": 1.0, "scratch": 0.0}.get(
            task.mode, task.frozen_encoder_fraction
        )
        return (0, -run.train.max_steps * (1.0 - frozen / 2))

    return sorted(jobs, key=rank)


def parse_study_args(argv: list[str]) -> tuple[StudyConfig, Path]:
    """Parse ``nufm study`` arguments into (config, output directory).

    Launcher flags ``--preset NAME`` (default quick), ``--pretrained PATH``, ``--data FILE ...``
    and ``--out DIR`` (default ``study``), then tyro's overrides of the preset's
    :class:`~nufm.config.StudyConfig` (``--sizes 10 100``, ``--run.train.max-steps 50``).

    Raises:
        SystemExit: an unknown preset or a bad override.
    """
    parser = argparse.ArgumentParser(prog="nufm study", add_help=False, allow_abbrev=False)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--pretrained", type=Path, default=None)
    parser.add_argument("--data", type=Path, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("study"))
    known, rest = parser.parse_known_args(argv)
    try:
        base = get_study_preset(known.preset)
    except KeyError as e:
        raise SystemExit(f"nufm study: {e.args[0]}") from e
    ft = base.run.finetune
    assert ft is not None  # StudyConfig checks it
    if known.pretrained is not None:
        ft = dataclasses.replace(ft, pretrained=known.pretrained)
    if known.data is not None:
        ft = dataclasses.replace(ft, data=tuple(known.data))
    base = dataclasses.replace(base, run=dataclasses.replace(base.run, finetune=ft))
    description = (
        "Label-efficiency study of a pretrained encoder.\n\n"
        "Launcher options (before the overrides):\n"
        f"  --preset NAME        one of {', '.join(sorted(STUDY_PRESETS))} (default quick)\n"
        "  --pretrained PATH    pretraining run, export or shipped model (lartpc-mae-m)\n"
        "  --data FILE ...      labelled PILArNet-M layout HDF5 file(s) (required)\n"
        "  --out DIR            output directory (default study)"
    )
    cfg = tyro.cli(
        StudyConfig,
        default=base,
        args=rest,
        prog="nufm study",
        config=(tyro.conf.AvoidSubcommands,),
        description=description,
    )
    return cfg, known.out


def study_cli(argv: list[str]) -> Path:
    """``nufm study``: parse the arguments, run the study; returns the output directory."""
    cfg, out = parse_study_args(argv)
    run_study(cfg, None, None, out)
    return out


def summarize(rows: list[StudyRow]) -> dict[str, dict[int, list[float]]]:
    """mode -> {n_train: [score of each seed]}."""
    out: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        out.setdefault(r.mode, {}).setdefault(r.n_train, []).append(r.score)
    return out


def mean_std_cell(values: list[float] | None) -> str:
    """A table cell: empty, the one value, or mean +- sample std (3 decimals)."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


def markdown_table(rows: list[StudyRow]) -> str:
    """Mean (and std over seeds) score per mode and size, as Markdown."""
    table = summarize(rows)
    sizes = sorted({r.n_train for r in rows})
    lines = [
        "| mode | " + " | ".join(f"{n} events" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for mode, by_size in table.items():
        cells = [mean_std_cell(by_size.get(n)) for n in sizes]
        lines.append(f"| {MODE_LABELS.get(mode, mode)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values (a class absent from the test events has F1 NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def detail_table(rows: list[StudyRow], n_train: int, score: StudyScore) -> str:
    """Mean over seeds of the score, its secondary scalars and every class's F1 at ``n_train``
    labelled events, one line per mode, as Markdown."""
    at = [r for r in rows if r.n_train == n_train]
    if not at:
        return ""
    extras = list(at[0].extras)
    classes = list(at[0].per_class_f1)
    names = [score.name, *[e.replace("_", " ") for e in extras], *[f"F1 {c}" for c in classes]]
    lines = [
        "| mode | seeds | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for mode in dict.fromkeys(r.mode for r in at):
        mine = [r for r in at if r.mode == mode]
        cells = [
            str(len(mine)),
            f"{_nanmean([r.score for r in mine]):.3f}",
            *[f"{_nanmean([r.extras[e] for r in mine]):.3f}" for e in extras],
            *[f"{_nanmean([r.per_class_f1[c] for r in mine]):.3f}" for c in classes],
        ]
        lines.append(f"| {MODE_LABELS.get(mode, mode)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_study_outputs(
    rows: list[StudyRow], cfg: StudyConfig, out_dir: Path, source: str, score: StudyScore
) -> None:
    """results.csv (one row per run), results.md (the table, and per class at each size) and
    label_efficiency.png."""
    extras = list(rows[0].extras) if rows else []
    classes = list(rows[0].per_class_f1) if rows else []
    tmp = out_dir / "results.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "mode",
                "n_train",
                "seed",
                score.column,
                *extras,
                *[f"f1_{c}" for c in classes],
                "seconds",
                "run_dir",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r.mode,
                    r.n_train,
                    r.seed,
                    f"{r.score:.4f}",
                    *[f"{r.extras[e]:.4f}" for e in extras],
                    *[f"{r.per_class_f1[c]:.4f}" for c in classes],
                    f"{r.seconds:.1f}",
                    r.run_dir,
                ]
            )
    tmp.replace(out_dir / "results.csv")
    assert cfg.run.finetune is not None
    header = (
        f"Task {cfg.run.name}, {cfg.run.finetune.n_test} test events, "
        + (
            f"steps per run {dict(zip(cfg.sizes, cfg.steps, strict=True))} by labelled events, "
            if cfg.steps
            else f"{cfg.run.train.max_steps} steps per run, "
        )
        + (
            f"weights selected on {cfg.run.finetune.n_val} val events, "
            if cfg.run.finetune.n_val
            else ""
        )
        + f"seeds {list(cfg.seeds)}; pretrained encoder: {source}. Score: "
        f"{score.name} {score.of} on the test events.\n\n"
    )
    if any(r.mode in PROBE_MODES for r in rows):
        p = cfg.probe
        header = header.replace("\n\n", " ") + (
            "Val-selected modes (no training loop): frozen per-point features computed once; "
            f"class-balanced heads at learning rates {list(p.learning_rates)} "
            f"(at least {p.min_steps} steps) or boosted trees ({p.gbt_max_iter} iterations, "
            f"at most {p.gbt_max_train_points} train points), the candidate with the best val "
            f"macro F1 is scored; train events keep at most {p.train_points_per_event} "
            "points each.\n\n"
        )
    # the per-class table at every size: the targets of a study are often set at one size
    detail = ""
    for n in sorted({r.n_train for r in rows}):
        if table := detail_table(rows, n, score):
            detail += f"\nAt {n} labelled events, mean over seeds:\n\n" + table
    boot = study_bootstrap(rows) if score.classification else None
    uncertainty = f"\n{bootstrap_markdown(boot, MODE_LABELS)}" if boot is not None else ""
    (out_dir / "results.md").write_text(
        header
        + f"{score.name[0].upper() + score.name[1:]}, mean +- sample std over seeds:\n\n"
        + markdown_table(rows)
        + uncertainty
        + detail
    )
    errors: dict[str, dict[int, float]] = {}
    for (mode, n), cell in (boot.cells if boot is not None else {}).items():
        errors.setdefault(MODE_LABELS.get(mode, mode), {})[n] = cell.total
    fig = plot_label_efficiency(
        {MODE_LABELS.get(m, m): v for m, v in summarize(rows).items()},
        ylabel=score.axis + ("" if score.higher_is_better else " (lower is better)"),
        title=f"Label efficiency: {cfg.run.name}",
        errors=errors,
        error_note=(
            "error bars: 1 standard error, test-event bootstrap and seeds (results.md)"
            if boot is not None
            else "error bars: sample std over seeds"
        ),
    )
    save_figure(fig, out_dir / "label_efficiency.png")
