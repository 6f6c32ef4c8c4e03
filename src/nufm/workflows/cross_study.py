"""The cross-experiment study (``nufm cross-study``): does pretraining carry across detectors?

For each detector (LArTPC, water Cherenkov, collider TPC) one task is fine-tuned with nested
labelled subsets and tested on the same held-out events, from five starting points of one
architecture (the token ViT of ``mae-cpu``, width 96 depth 4, with each detector's tokenizer):

* ``scratch``: random weights;
* ``<detector>``: MAE-pretrained on that detector's events alone (``mae-cpu``,
  ``mae-wc-cpu``, ``mae-tpc-cpu``). On its own detector the whole encoder carries over; on
  another one only the ViT core, its input embedding (tokenizer) starting fresh, as the
  FASERCal study carried its core from SuperFGD to PILArNet (arXiv:2604.07037);
* ``mixture``: one MAE run over all detectors' events (``mae-mix-cpu``: one tokenizer per
  detector, the ViT shared), as many steps on each detector as its own run had; fine-tuning
  takes the detector's tokenizer and the shared ViT.

Tasks (all scored by macro F1 on their classes): LArTPC 5-class semantic segmentation
(``semseg-ce``, plain cross-entropy as in the demo's study: the class-weighted ``semseg``
presets predict the rare classes everywhere in a 100-step run), water Cherenkov particle ID
of single e / mu / pi0 / pi+ events (``wc-pid``), collider-TPC per-hit particle class
(``tpc-pid``). Every run of a detector uses one step budget
per labelled-set size, so only the encoder's starting weights differ.

Writes ``results.csv`` (one row per run), ``results.md`` (a table per detector, mean +- std
over seeds) and ``cross_experiment.png`` (macro F1 against labelled events, one panel per
detector). Owns :class:`CrossStudyConfig`, :data:`CROSS_STUDY_PRESETS` and
:func:`run_cross_study`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nufm.config import FinetuneConfig, RunConfig
from nufm.data.detectors import get_detector
from nufm.data.event import Event
from nufm.data.pilarnet import write_events
from nufm.data.tpcpp import write_tpcpp
from nufm.data.watchmal import write_watchmal
from nufm.errors import ConfigError
from nufm.presets import get_preset
from nufm.sim import generate_events
from nufm.sim.collider_tpc import generate_collider_events
from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
from nufm.train.checkpoint import checkpoint_path, latest_checkpoint
from nufm.train.run import run_pretrain
from nufm.viz.display import save_figure
from nufm.workflows.finetune import finetune_split, run_finetune
from nufm.workflows.load import Pretrained, load_encoder
from nufm.workflows.study import class_block, mean_std_cell

log = logging.getLogger(__name__)

DETECTOR_SETUP: dict[str, tuple[str, str, str]] = {
    "lartpc": ("mae-cpu", "semseg-ce", "h5"),
    "water-cherenkov": ("mae-wc-cpu", "wc-pid", "h5"),
    "collider-tpc": ("mae-tpc-cpu", "tpc-pid", "npz"),
}
"""Detector -> (its pretraining preset, its fine-tuning task's preset prefix, file suffix)."""
TASK_TEXT = {
    "lartpc": "LArTPC semantic segmentation (5 classes, per voxel)",
    "water-cherenkov": "water Cherenkov particle ID (e, mu, pi0, pi+; per event)",
    "collider-tpc": "collider-TPC particle class (other, pion, kaon, proton, electron; per hit)",
}
WC_GUN = ("e-", "mu-", "pi0", "pi+")
"""The water Cherenkov events: one of these particles, 100-1000 MeV (the wc-pid study's)."""


@dataclass(frozen=True, kw_only=True)
class CrossStudyConfig:
    """Sizes, budgets and seeds of a cross-experiment study."""

    detectors: tuple[str, ...] = ("lartpc", "water-cherenkov", "collider-tpc")
    """The detectors pretrained on and fine-tuned on."""
    labelled_events: int = 800
    """Simulated labelled events per detector (80 / 10 / 10 % train / val / test)."""
    pretrain_events: int = 1500
    """Simulated unlabelled pretraining events per detector (other seeds)."""
    sim_seed: int = 0
    """Seed of the labelled events; pretraining events use ``sim_seed + 1000``."""
    pretrain_steps: int = 300
    """Steps of each one-detector MAE run; the mixture runs this many per detector."""
    sizes: tuple[int, ...] = (50, 400)
    """Labelled training events of the fine-tuning runs (nested subsets)."""
    steps: tuple[int, ...] = (100, 250)
    """Fine-tuning steps at each size (8 events each)."""
    lr: float = 2e-3
    """Peak fine-tuning learning rate (a pretrained encoder trains at 0.1 of it)."""
    seeds: tuple[int, ...] = (0, 1)
    """Fine-tuning seeds of every (detector, initialisation, size)."""
    n_test: int = 80
    """Held-out test events per detector."""
    max_events: int = 8
    """Events per pretraining and fine-tuning step."""

    def __post_init__(self) -> None:
        unknown = [d for d in self.detectors if d not in DETECTOR_SETUP]
        if unknown or not self.detectors:
            raise ConfigError(
                f"cross study: detectors must be among {', '.join(DETECTOR_SETUP)}, got "
                f"{list(self.detectors)}"
            )
        if len(self.steps) != len(self.sizes):
            raise ConfigError(f"cross study: {len(self.steps)} steps for {len(self.sizes)} sizes")
        if min(self.sizes) <= 0 or min(self.steps) <= 0 or not self.seeds:
            raise ConfigError("cross study: sizes and steps must be > 0, seeds given")
        if self.pretrain_steps <= 0 or self.pretrain_events <= 0:
            raise ConfigError("cross study: pretrain_steps and pretrain_events must be > 0")

    @property
    def inits(self) -> tuple[str, ...]:
        """The starting points compared on every detector."""
        return ("scratch", *self.detectors, "mixture")


CROSS_STUDY_PRESETS: dict[str, CrossStudyConfig] = {
    # seconds: a pipeline check (tests), not a measurement
    "smoke": CrossStudyConfig(
        labelled_events=40,
        pretrain_events=12,
        pretrain_steps=2,
        sizes=(8,),
        steps=(2,),
        seeds=(0,),
        n_test=4,
        max_events=4,
    ),
    # the study of docs/detectors.md on 2 CPU cores
    "quick": CrossStudyConfig(),
}
"""Study presets (``nufm cross-study --preset NAME``)."""


def _simulate(detector: str, n: int, seed: int) -> Iterator[Event]:
    match detector:
        case "lartpc":
            return generate_events(n, seed)
        case "water-cherenkov":
            return generate_wc_events(n, seed, WC_GUN, (100.0, 1000.0), one_of=True)
        case "collider-tpc":
            return generate_collider_events(n, seed)
        case _:
            raise ConfigError(f"cross study: no simulator for {detector!r}")


def _write(detector: str, path: Path, events: Iterator[Event]) -> None:
    """Write the events atomically in the detector's layout (a file that exists is whole)."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    match detector:
        case "lartpc":
            write_events(tmp, events)
        case "water-cherenkov":
            write_watchmal(tmp, events, pmt_positions(WaterCherenkovConfig()).position)
        case "collider-tpc":
            write_tpcpp(tmp, events)
    tmp.replace(path)


def _event_file(out: Path, detector: str, kind: str, n: int, seed: int) -> Path:
    path = out / "data" / f"{detector}-{kind}.{DETECTOR_SETUP[detector][2]}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("cross study: simulating %d %s events (%s, seed %d)", n, detector, kind, seed)
        _write(detector, path, _simulate(detector, n, seed))
    return path


def _pretrain(cfg: CrossStudyConfig, preset: str, data: list[Path], run_dir: Path) -> Path:
    """Run (or, when ``run_dir`` holds its last checkpoint, reuse) one MAE pretraining."""
    base = get_preset(preset)
    steps = cfg.pretrain_steps * len(data)
    source = (
        {"source": "mixture", "mixture": tuple(str(p) for p in data), "path": None}
        if len(data) > 1
        else {"source": "file", "path": data[0]}
    )
    run = dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, warmup_steps=max(steps // 10, 1)),
        train=dataclasses.replace(
            base.train, max_steps=steps, checkpoint_every=steps, keep_checkpoints=1
        ),
        logging=dataclasses.replace(base.logging, log_every=max(steps // 20, 1), progress=False),
        data=dataclasses.replace(
            base.data, max_events=cfg.max_events, detector=None, cache_groups=True, **source
        ),
    )
    last = latest_checkpoint(run_dir / "checkpoints")
    if last == checkpoint_path(run_dir / "checkpoints", steps):
        log.info("cross study: reusing %s", last)
        return run_dir
    run_pretrain(run, run_dir, resume=last is not None)
    return run_dir


def _finetune_run(
    cfg: CrossStudyConfig, detector: str, init: str, n: int, seed: int, data: Path
) -> RunConfig:
    """The fine-tuning run of one (detector, init, size, seed): the task preset in full mode
    (scratch for 'scratch'), the detector's pretraining encoder, ``cfg``'s budget."""
    preset, task, _ = DETECTOR_SETUP[detector]
    base = get_preset(f"{task}-{'scratch' if init == 'scratch' else 'full'}")
    encoder = get_preset(preset).objective.encoder  # type: ignore[union-attr]
    steps = dict(zip(cfg.sizes, cfg.steps, strict=True))[n]
    transfer = "core" if init not in ("scratch", "mixture", detector) else "whole"
    return dataclasses.replace(
        base,
        name=f"{task}-{init}",
        objective=dataclasses.replace(base.objective, encoder=encoder),  # type: ignore[arg-type]
        optim=dataclasses.replace(
            base.optim, lr=cfg.lr, min_lr=cfg.lr * 0.01, warmup_steps=max(steps // 10, 1)
        ),
        train=dataclasses.replace(
            base.train, max_steps=steps, checkpoint_every=steps, seed=seed, monitor_every=0
        ),
        logging=dataclasses.replace(base.logging, log_every=max(steps // 10, 1), progress=False),
        data=dataclasses.replace(base.data, max_events=cfg.max_events),
        finetune=FinetuneConfig(data=(data,), n_train=n, n_test=cfg.n_test, transfer=transfer),
    )


def _row(
    detector: str, init: str, n: int, seed: int, block: dict[str, Any], seconds: float
) -> dict[str, Any]:
    return {
        "detector": detector,
        "init": init,
        "n_train": n,
        "seed": seed,
        "macro_f1": float(block["macro_f1"]),
        "accuracy": float(block["accuracy"]),
        "seconds": seconds,
    }


def _stats(rows: list[dict[str, Any]], detector: str, init: str, n: int) -> list[float]:
    return [
        float(r["macro_f1"])
        for r in rows
        if r["detector"] == detector and r["init"] == init and int(r["n_train"]) == n
    ]


def init_label(init: str, detector: str) -> str:
    """How a table names an initialisation on ``detector``'s task."""
    if init == "scratch":
        return "from scratch"
    if init == "mixture":
        return "pretrained on the mixture (its tokenizer + shared ViT)"
    if init == detector:
        return f"pretrained on {init} (same detector)"
    return f"pretrained on {init} (ViT core; tokenizer fresh)"


def results_markdown(rows: list[dict[str, Any]], cfg: CrossStudyConfig, header: str) -> str:
    """One macro-F1 table per detector: initialisations x labelled-set sizes."""
    out = [f"# Cross-experiment study\n\n{header}\n"]
    sizes = sorted({int(r["n_train"]) for r in rows})
    for det in cfg.detectors:
        out.append(f"\n## {TASK_TEXT[det]}\n")
        out.append("| initialisation | " + " | ".join(f"{n} labelled" for n in sizes) + " |")
        out.append("|---|" + "---|" * len(sizes))
        for init in cfg.inits:
            cells = [mean_std_cell(_stats(rows, det, init, n)) for n in sizes]
            out.append(f"| {init_label(init, det)} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_cross_study(rows: list[dict[str, Any]], cfg: CrossStudyConfig) -> Figure:
    """Macro F1 against labelled events (log x), one panel per detector, one line per init
    (mean +- std over seeds)."""
    fig = Figure(figsize=(5.0 * len(cfg.detectors), 4.2), layout="constrained")
    axes = fig.subplots(1, len(cfg.detectors), squeeze=False)[0]
    for ax, det in zip(axes, cfg.detectors, strict=True):
        for init in cfg.inits:
            ns = sorted({int(r["n_train"]) for r in rows if r["detector"] == det})
            pts = [(n, _stats(rows, det, init, n)) for n in ns]
            pts = [(n, v) for n, v in pts if v]
            if not pts:
                continue
            mean = [float(np.mean(v)) for _, v in pts]
            std = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for _, v in pts]
            label = f"{init} (same detector)" if init == det else init
            style = "--" if init == "scratch" else "-"
            ax.errorbar(
                [n for n, _ in pts],
                mean,
                yerr=std,
                marker="o",
                capsize=3,
                ls=style,
                label=label,
                color=f"C{cfg.inits.index(init)}",  # one colour per init in every panel
            )
        ax.set_xscale("log")
        sizes = sorted({int(r["n_train"]) for r in rows})
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("labelled training events")
        ax.set_ylabel("macro F1 (test events)")
        ax.set_title(TASK_TEXT[det], fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=7, title="encoder pretrained on", title_fontsize=7)
    return fig


def _write_outputs(
    rows: list[dict[str, Any]], cfg: CrossStudyConfig, out: Path, header: str
) -> None:
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "results.csv")
    (out / "results.md").write_text(results_markdown(rows, cfg, header))
    save_figure(plot_cross_study(rows, cfg), out / "cross_experiment.png")


def _earlier_rows(out: Path, cfg: CrossStudyConfig) -> list[dict[str, Any]]:
    """Rows of an earlier invocation in ``out`` (results.csv) that this one does not redo
    (other seeds, say), so that a study run in pieces keeps every row."""
    path = out / "results.csv"
    if not path.is_file():
        return []
    redo = {
        (d, i, n, s) for d in cfg.detectors for i in cfg.inits for n in cfg.sizes for s in cfg.seeds
    }
    kept = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {
                "detector": r["detector"],
                "init": r["init"],
                "n_train": int(r["n_train"]),
                "seed": int(r["seed"]),
                "macro_f1": float(r["macro_f1"]),
                "accuracy": float(r["accuracy"]),
                "seconds": float(r["seconds"]),
            }
            if (row["detector"], row["init"], row["n_train"], row["seed"]) not in redo:
                kept.append(row)
    if kept:
        log.info("cross study: keeping %d rows of %s", len(kept), path)
    return kept


def run_cross_study(cfg: CrossStudyConfig, out: str | Path) -> list[dict[str, Any]]:
    """Simulate each detector's labelled and pretraining events (reusing files in ``out``),
    pretrain one MAE per detector and one on the mixture (reusing finished runs), fine-tune
    every (detector, initialisation, size, seed) and write the tables and plot (with the rows
    of earlier invocations in ``out`` for other seeds, sizes or detectors)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    labelled = {
        d: _event_file(out, d, "labelled", cfg.labelled_events, cfg.sim_seed) for d in cfg.detectors
    }
    unlabelled = {
        d: _event_file(out, d, "pretrain", cfg.pretrain_events, cfg.sim_seed + 1000)
        for d in cfg.detectors
    }
    pretrained: dict[str, Pretrained] = {}
    for d in cfg.detectors:
        run = _pretrain(cfg, DETECTOR_SETUP[d][0], [unlabelled[d]], out / f"pretrain-{d}")
        pretrained[d] = load_encoder(run)
    mix = _pretrain(
        cfg, "mae-mix-cpu", [unlabelled[d] for d in cfg.detectors], out / "pretrain-mixture"
    )
    pretrained["mixture"] = load_encoder(mix)
    t_pretrained = time.perf_counter() - t_start
    header = (
        f"{cfg.labelled_events} labelled simulated events per detector ({cfg.n_test} test "
        f"events), fine-tuning steps {dict(zip(cfg.sizes, cfg.steps, strict=True))} by "
        f"labelled events ({cfg.max_events} events a step), seeds {list(cfg.seeds)}. "
        f"Pretraining: {cfg.pretrain_events} other simulated events per detector, MAE "
        f"{cfg.pretrain_steps} steps per detector (the mixture: {cfg.pretrain_steps} x "
        f"{len(cfg.detectors)}, equal weights). Macro F1 on the test events."
    )
    rows = _earlier_rows(out, cfg)
    for det in cfg.detectors:
        pre = get_detector(det).preprocess
        ft = FinetuneConfig(data=(labelled[det],), n_test=cfg.n_test)
        pool = finetune_split(ft, pre, "train", max(cfg.sizes))
        test = finetune_split(ft, pre, "test", cfg.n_test)
        if len(pool) < max(cfg.sizes):
            raise ConfigError(
                f"cross study: {labelled[det]} has {len(pool)} training events, fewer than "
                f"the largest size {max(cfg.sizes)}; raise labelled_events"
            )
        for n in sorted(cfg.sizes):
            for init in cfg.inits:
                for seed in cfg.seeds:
                    name = f"{det}/{init}-n{n}-s{seed}"
                    t0 = time.perf_counter()
                    run = _finetune_run(cfg, det, init, n, seed, labelled[det])
                    result = run_finetune(
                        run,
                        out / "runs" / name,
                        pretrained=pretrained.get(init),
                        encoder_config=run.objective.encoder if init == "scratch" else None,  # type: ignore[union-attr]
                        preprocess=pre,
                        train_events=pool[:n],
                        test_events=test,
                    )
                    block = class_block(result.metrics)
                    rows.append(_row(det, init, n, seed, block, time.perf_counter() - t0))
                    log.info(
                        "cross study %s: macro F1 %.3f (%.0f s)",
                        name,
                        rows[-1]["macro_f1"],
                        rows[-1]["seconds"],
                    )
                    _write_outputs(rows, cfg, out, header)
    total = time.perf_counter() - t_start
    log.info(
        "cross study: %d runs, %.0f s in all (%.0f s simulating and pretraining)",
        len(rows),
        total,
        t_pretrained,
    )
    return rows
