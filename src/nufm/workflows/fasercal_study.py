"""The FASERCal study (``nufm fasercal-study``): the protocol of the FASERCal foundation-model
study (arXiv:2604.07037) on simulated events. One architecture, one head set and one schedule,
three encoder initialisations, so that every difference downstream is due to the
representation:

* ``scratch``: random encoder;
* ``mae``: pretrained by masked patch autoencoding (preset ``fusion-mae-cpu``, phase 1);
* ``mae-rel``: phase 1 then the relational phase (``fusion-rel-cpu``: MAE at 25 % plus the
  per-voxel ghost / hierarchy / category heads, started from phase 1 with
  ``train.init_from``).

Each initialisation is fine-tuned jointly on flavour, charm, momenta and vertex (preset
``fasercal-full`` / ``fasercal-scratch``) with nested labelled subsets of the train split, and
tested on the same held-out events. Pretraining uses its own simulated events (an unlabelled
set: the relational phase reads their simulation truth, as the reference does).

Writes ``results.csv`` (one row per run), ``results.md`` (flavour and charm one-vs-rest ROC AUC,
flavour accuracy, vertex error median and IQR in mm, fractional momentum resolution) and
``label_efficiency.png`` (flavour macro AUC and vertex error against labelled events).

Owns :class:`FaserStudyConfig`, :data:`FASER_STUDY_PRESETS` and :func:`run_fasercal_study`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from nufm.config import FinetuneConfig, RunConfig
from nufm.data.detectors import get_detector
from nufm.data.fasercal import CHARM_NAMES, FLAVOUR_NAMES
from nufm.data.fasercal_h5 import write_fasercal
from nufm.errors import ConfigError
from nufm.presets import get_preset
from nufm.sim.fasercal import generate_fasercal_events
from nufm.train.checkpoint import checkpoint_path, latest_checkpoint
from nufm.train.run import run_pretrain
from nufm.viz.display import save_figure
from nufm.workflows.finetune import finetune_split, run_finetune
from nufm.workflows.load import load_encoder

log = logging.getLogger(__name__)

Init = Literal["scratch", "mae", "mae-rel"]
INIT_LABELS = {
    "scratch": "from scratch",
    "mae": "MAE pretrained",
    "mae-rel": "MAE + relational pretrained",
}


@dataclass(frozen=True, kw_only=True)
class FaserStudyConfig:
    """Sizes, budgets and seeds of a FASERCal study."""

    labelled_events: int = 1500
    """Simulated labelled events (80 / 10 / 10 % train / val / test) when no file is given."""
    pretrain_events: int = 3000
    """Simulated unlabelled pretraining events (another seed)."""
    sim_seed: int = 0
    """Seed of the labelled events; the pretraining events use ``sim_seed + 1``."""
    mae_steps: int = 600
    """Phase 1 steps (8 events each)."""
    rel_steps: int = 300
    """Phase 2 steps."""
    sizes: tuple[int, ...] = (30, 100, 300, 1000)
    """Labelled training events of the fine-tuning runs (nested subsets)."""
    steps: tuple[int, ...] = (100, 150, 250, 400)
    """Fine-tuning steps at each size (8 events per step)."""
    lr: float = 1e-3
    """Peak fine-tuning learning rate (the encoder gets 0.1 of it)."""
    seeds: tuple[int, ...] = (0,)
    """Fine-tuning seeds of every (initialisation, size)."""
    inits: tuple[Init, ...] = ("scratch", "mae", "mae-rel")
    """Encoder initialisations compared."""
    n_test: int = 150
    """Held-out test events."""

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.sizes):
            raise ConfigError(
                f"fasercal study: {len(self.steps)} steps for {len(self.sizes)} sizes"
            )
        if min(self.sizes) <= 0 or min(self.steps) <= 0 or not self.seeds or not self.inits:
            raise ConfigError("fasercal study: sizes and steps must be > 0, seeds and inits given")


FASER_STUDY_PRESETS: dict[str, FaserStudyConfig] = {
    # seconds: a pipeline check (tests), not a measurement
    "smoke": FaserStudyConfig(
        labelled_events=60,
        pretrain_events=24,
        mae_steps=3,
        rel_steps=2,
        sizes=(8, 16),
        steps=(2, 3),
        n_test=6,
    ),
    # the study of docs/detectors.md on 2 CPU cores
    "quick": FaserStudyConfig(),
}
"""Study presets (``nufm fasercal-study --preset NAME``)."""


def _pretrain(
    name: str, pretrain_file: Path, steps: int, run_dir: Path, init_from: Path | None
) -> Path:
    """Run (or, when ``run_dir`` already holds its last checkpoint, reuse) a pretraining phase."""
    base = get_preset(name)
    cfg = dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, warmup_steps=max(steps // 10, 1)),
        train=dataclasses.replace(
            base.train,
            max_steps=steps,
            checkpoint_every=steps,
            keep_checkpoints=1,
            init_from=init_from,
        ),
        logging=dataclasses.replace(base.logging, log_every=max(steps // 20, 1), progress=False),
        data=dataclasses.replace(base.data, source="file", path=pretrain_file),
    )
    last = latest_checkpoint(run_dir / "checkpoints")
    if last == checkpoint_path(run_dir / "checkpoints", steps):
        log.info("fasercal study: reusing %s", last)
        return run_dir
    run_pretrain(cfg, run_dir, resume=last is not None)
    return run_dir


def _finetune_run(cfg: FaserStudyConfig, init: Init, n: int, seed: int, data: Path) -> RunConfig:
    steps = dict(zip(cfg.sizes, cfg.steps, strict=True))[n]
    base = get_preset("fasercal-scratch" if init == "scratch" else "fasercal-full")
    assert base.finetune is not None
    return dataclasses.replace(
        base,
        name=f"fasercal-{init}",
        optim=dataclasses.replace(
            base.optim, lr=cfg.lr, min_lr=cfg.lr * 0.01, warmup_steps=max(steps // 10, 1)
        ),
        train=dataclasses.replace(base.train, max_steps=steps, checkpoint_every=steps, seed=seed),
        logging=dataclasses.replace(base.logging, log_every=max(steps // 10, 1), progress=False),
        finetune=FinetuneConfig(data=(data,), n_train=n, n_test=cfg.n_test),
    )


def _row(init: str, n: int, seed: int, m: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One results.csv row from a run's metrics."""
    row: dict[str, Any] = {"init": init, "n_train": n, "seed": seed}
    for task in ("flavour", "charm"):
        row[f"{task}_macro_auc"] = m[task]["macro_roc_auc"]
        row[f"{task}_accuracy"] = m[task]["accuracy"]
        row[f"{task}_macro_f1"] = m[task]["macro_f1"]
        for name, auc in m[task]["roc_auc"].items():
            row[f"auc_{name}"] = math.nan if auc is None else auc
    row["vertex_mm_median"] = m["vertex"]["error_mm_median"]
    row["vertex_mm_iqr"] = m["vertex"]["error_mm_iqr"]
    for p in ("lepton_p", "jet_p"):
        row[f"{p}_resolution"] = m[p].get("relative_resolution", math.nan)
        row[f"{p}_angle_mrad"] = m[p].get("angle_mrad_median", math.nan)
    row["seconds"] = seconds
    return row


def _mean(rows: list[dict[str, Any]], key: str) -> str:
    v = [float(r[key]) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))]
    if not v:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.3f}" if abs(v[0]) < 10 else f"{v[0]:.0f}"
    m, s = float(np.mean(v)), float(np.std(v, ddof=1))
    return f"{m:.3f} +- {s:.3f}" if abs(m) < 10 else f"{m:.0f} +- {s:.0f}"


def _inits(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The initialisations present in ``rows``, in the order of :data:`INIT_LABELS` (rows of
    earlier invocations included)."""
    present = {r["init"] for r in rows}
    return tuple(i for i in INIT_LABELS if i in present)


def results_markdown(rows: list[dict[str, Any]], cfg: FaserStudyConfig, header: str) -> str:
    """The study's tables: one line per (initialisation, size), means over seeds."""
    inits = _inits(rows)
    sizes = sorted({r["n_train"] for r in rows} | set(cfg.sizes))
    cols = [
        ("flavour_macro_auc", "flavour AUC (macro)"),
        ("auc_numu_cc", "AUC numu CC"),
        ("auc_nue_cc", "AUC nue CC"),
        ("auc_nc", "AUC NC"),
        ("flavour_accuracy", "flavour acc."),
        ("charm_macro_auc", "charm AUC"),
        ("vertex_mm_median", "vertex median [mm]"),
        ("vertex_mm_iqr", "vertex IQR [mm]"),
        ("lepton_p_resolution", "lepton dp/p"),
        ("jet_p_resolution", "jet dp/p"),
    ]
    lines = [
        header,
        "",
        "| init | labelled | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for n in sizes:
        for init in inits:
            mine = [r for r in rows if r["init"] == init and r["n_train"] == n]
            if mine:
                cells = [_mean(mine, k) for k, _ in cols]
                lines.append(f"| {INIT_LABELS[init]} | {n} | " + " | ".join(cells) + " |")
    largest = max((r["n_train"] for r in rows), default=0)
    per = [r for r in rows if r["n_train"] == largest]
    if per:
        names = [*FLAVOUR_NAMES, *CHARM_NAMES[1:]]
        lines += [
            "",
            f"One-vs-rest ROC AUC per class at {largest} labelled events:",
            "",
            "| init | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for init in inits:
            mine = [r for r in per if r["init"] == init]
            if mine:
                cells = [_mean(mine, f"auc_{c}") for c in names]
                lines.append(f"| {INIT_LABELS[init]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_fasercal_study(rows: list[dict[str, Any]], inits: tuple[str, ...]) -> Figure:
    """Flavour macro AUC and vertex error median against labelled events, per initialisation
    (mean +- std over seeds)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for key, ax, label in (
        ("flavour_macro_auc", axes[0], "flavour macro ROC AUC (test)"),
        ("vertex_mm_median", axes[1], "vertex error, median [mm] (test)"),
    ):
        for init in inits:
            sizes = sorted({r["n_train"] for r in rows if r["init"] == init})
            vals = [
                [float(r[key]) for r in rows if r["init"] == init and r["n_train"] == n]
                for n in sizes
            ]
            mean = [float(np.nanmean(v)) for v in vals]
            std = [float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=INIT_LABELS[init])
        ax.set(xscale="log", xlabel="labelled training events", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("FASERCal: pretraining vs scratch", fontsize=10)
    return fig


def _write_outputs(
    rows: list[dict[str, Any]], cfg: FaserStudyConfig, out: Path, header: str
) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "results.csv")
    (out / "results.md").write_text(results_markdown(rows, cfg, header))
    save_figure(plot_fasercal_study(rows, _inits(rows)), out / "label_efficiency.png")


def _earlier_rows(out: Path, cfg: FaserStudyConfig) -> list[dict[str, Any]]:
    """Rows of an earlier invocation in ``out`` (results.csv) that this one does not redo (other
    seeds, say), so that a study run in pieces keeps every row."""
    path = out / "results.csv"
    if not path.is_file():
        return []
    redo = {(i, n, s) for i in cfg.inits for n in cfg.sizes for s in cfg.seeds}
    kept = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {
                k: (v if k == "init" else float(v) if v not in ("", "nan") else math.nan)
                for k, v in r.items()
            }
            row["n_train"], row["seed"] = int(row["n_train"]), int(row["seed"])
            if (row["init"], row["n_train"], row["seed"]) not in redo:
                kept.append(row)
    if kept:
        log.info("fasercal study: keeping %d rows of %s", len(kept), path)
    return kept


def run_fasercal_study(
    cfg: FaserStudyConfig,
    out: str | Path,
    *,
    data: Path | None = None,
    pretrain_data: Path | None = None,
) -> list[dict[str, Any]]:
    """Simulate (unless files are given), pretrain both phases (reusing finished runs in
    ``out``), fine-tune every (initialisation, size, seed) and write the tables and plot
    (with the rows of earlier invocations in ``out`` for other seeds or sizes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if data is None:
        data = out / "labelled.h5"
        if not data.is_file():
            write_fasercal(data, generate_fasercal_events(cfg.labelled_events, cfg.sim_seed))
    pre_inits = [i for i in cfg.inits if i != "scratch"]
    runs: dict[str, Path] = {}
    if pre_inits:
        if pretrain_data is None:
            pretrain_data = out / "pretrain.h5"
            if not pretrain_data.is_file():
                events = generate_fasercal_events(cfg.pretrain_events, cfg.sim_seed + 1)
                write_fasercal(pretrain_data, events)
        runs["mae"] = _pretrain(
            "fusion-mae-cpu", pretrain_data, cfg.mae_steps, out / "pretrain-mae", None
        )
        if "mae-rel" in cfg.inits:
            runs["mae-rel"] = _pretrain(
                "fusion-rel-cpu",
                pretrain_data,
                cfg.rel_steps,
                out / "pretrain-mae-rel",
                runs["mae"],
            )
    preprocess = get_detector("fasercal").preprocess
    ft = FinetuneConfig(data=(data,), n_test=cfg.n_test)
    pool = finetune_split(ft, preprocess, "train", max(cfg.sizes))
    test = finetune_split(ft, preprocess, "test", cfg.n_test)
    pretrained = {k: load_encoder(v) for k, v in runs.items()}
    header = (
        f"FASERCal study: {len(test)} test events, fine-tuning steps "
        f"{dict(zip(cfg.sizes, cfg.steps, strict=True))} by labelled events (8 events a step), "
        f"seeds {list(cfg.seeds)}; pretraining on {cfg.pretrain_events} other simulated events: "
        f"MAE {cfg.mae_steps} steps, then the relational phase {cfg.rel_steps} steps."
    )
    rows = _earlier_rows(out, cfg)
    for n in sorted(cfg.sizes):
        for init in cfg.inits:
            for seed in cfg.seeds:
                name = f"{init}-n{n}-s{seed}"
                t0 = time.perf_counter()
                run = _finetune_run(cfg, init, n, seed, data)
                result = run_finetune(
                    run,
                    out / "runs" / name,
                    pretrained=pretrained.get(init),
                    encoder_config=run.objective.encoder if init == "scratch" else None,  # type: ignore[union-attr]
                    preprocess=preprocess,
                    train_events=pool[:n],
                    test_events=test,
                )
                row = _row(init, n, seed, result.metrics, time.perf_counter() - t0)
                rows.append(row)
                log.info(
                    "fasercal study %s: flavour AUC %.3f, vertex %.0f mm (%.0f s)",
                    name,
                    row["flavour_macro_auc"],
                    row["vertex_mm_median"],
                    row["seconds"],
                )
                _write_outputs(rows, cfg, out, header)
    log.info("fasercal study: %d runs in %.0f s", len(rows), time.perf_counter() - t_start)
    return rows
