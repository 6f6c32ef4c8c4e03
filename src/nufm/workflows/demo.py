"""``nufm demo`` / ``make demo``: the whole story on simulated data, with a report.

simulate -> pretrain (MAE, CPU preset) -> label-efficiency study (quick) -> embeddings, search
and planted-anomaly scores -> ``report/index.md`` + ``report/index.html`` with the figures.
Every number in the report is read from the files this run wrote; nothing is expected or
typed in. Steps whose outputs exist are reused, so an interrupted demo continues where it
stopped.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nufm.data.lartpc import SEGMENT_NAMES
from nufm.errors import ConfigError
from nufm.hub import SHIPPED_MODELS
from nufm.train.precision import native_bf16
from nufm.viz.display import save_figure

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Sizes of the demo (the defaults fit the 30-minute budget on 2 CPU cores that
    docs/benchmarks.md measures)."""

    out: Path = Path("demo_out")
    """Output directory (data, runs, study, report)."""
    events: int = 1500
    """Labelled simulated events (split 80/10/10 by event) for fine-tuning and evaluation."""
    workers: int = 2
    """Simulation worker processes."""
    pretrained: str | None = "lartpc-mae-m-desc"
    """The encoder the study fine-tunes and probes and that embeds, searches and scores
    anomalies: a shipped model's name (nufm.hub.SHIPPED_MODELS), a run or an export; None =
    the live pretraining run of this demo."""
    pretrain_preset: str = "mae-fast-cpu"
    """The live pretraining (nufm.presets.PRESETS), reported beside the shipped encoder so
    the whole pipeline runs; its events are simulated from another seed."""
    pretrain_steps: int = 60
    """Live pretraining optimizer steps (a demonstration of the pipeline beside the shipped
    encoder, kept short for the demo's 30 minutes; its monitor probe: docs/benchmarks.md)."""
    live_probe: bool = False
    """With ``pretrained``: also run the study's probe protocol (sizes, seed 0) on the live
    encoder (about 90 s on 2 cores); its monitor probe during pretraining is reported
    either way."""
    study_preset: str = "demo"
    """Label-efficiency study preset (nufm.presets.STUDY_PRESETS)."""
    study_workers: int = 2
    """Processes that run the study's training and frozen-feature rows side by side,
    longest first (``StudyConfig.workers``, docs/evaluation.md), this process's torch threads
    shared out among them: on 2 cores two rows of one thread each, 1.44x faster than one
    after another on two threads for the training rows (docs/benchmarks.md), each row's
    result that of the row alone on one thread; 1 = one after another."""
    network_seeds: tuple[int, ...] | None = None
    """Seeds of the study's training-loop and tree rows (None: the preset's; ``demo`` runs
    seed 0). ``0 1 2`` puts error bars on the network rows of the figure; each seed adds
    the network rows' time again: about 11 minutes on 2 AVX2 cores in fp32, two rows side
    by side (README, Results), about 9.5 minutes on 2 cores with AMX one row at a time."""
    seed: int = 0
    """Base seed (labelled data use seed + 1000, pretraining data use seed)."""
    probe_every: int | None = None
    """Steps between linear-probe evaluations during pretraining (None: a quarter of the run,
    0: never)."""
    pretrain_events: int | None = None
    """Simulated pretraining events (None: the preset's)."""
    embed_events: int = 120
    """Events embedded for the maps and the search example."""
    anomaly_events: tuple[int, int] = (100, 40)
    """Planted-anomaly study: reference events, and normal (= anomalous) query events."""

    def __post_init__(self) -> None:
        for name in ("events", "workers", "pretrain_steps", "embed_events", "study_workers"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"demo: {name} must be positive, got {getattr(self, name)}")
        if self.pretrain_events is not None and self.pretrain_events <= 0:
            raise ConfigError(f"demo: pretrain_events must be positive, got {self.pretrain_events}")
        if min(self.anomaly_events) <= 0:
            raise ConfigError(f"demo: anomaly_events must be positive, got {self.anomaly_events}")
        if self.network_seeds == ():
            raise ConfigError("demo: network_seeds needs at least one seed (or None)")
        from nufm.presets import PRESETS, STUDY_PRESETS

        if self.pretrain_preset not in PRESETS:
            raise ConfigError(
                f"demo: unknown pretrain_preset {self.pretrain_preset!r}; known: {sorted(PRESETS)}"
            )
        if self.study_preset not in STUDY_PRESETS:
            raise ConfigError(
                f"demo: unknown study_preset {self.study_preset!r}; known: {sorted(STUDY_PRESETS)}"
            )


def _step(name: str) -> float:
    log.info("==== demo: %s", name)
    return time.perf_counter()


def run_demo(cfg: DemoConfig) -> Path:
    """Run every stage; returns the path of ``report/index.html``."""
    from nufm.data.pilarnet import write_events
    from nufm.presets import get_preset, get_study_preset
    from nufm.sim import generate_events
    from nufm.train.run import run_pretrain
    from nufm.workflows.load import load_encoder
    from nufm.workflows.study import run_study

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = _step("simulate labelled events")
    data = out / "data" / "sim.h5"
    if not data.is_file():
        data.parent.mkdir(parents=True, exist_ok=True)
        write_events(
            data, generate_events(cfg.events, cfg.seed + 1000, workers=cfg.workers, progress=True)
        )
    timings["simulate"] = time.perf_counter() - t

    t = _step("pretrain")
    run_dir = out / "pretrain"
    base = get_preset(cfg.pretrain_preset)
    pre_cfg = dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train,
            max_steps=cfg.pretrain_steps,
            checkpoint_every=max(cfg.pretrain_steps // 4, 1),
            monitor_every=(
                max(cfg.pretrain_steps // 4, 1) if cfg.probe_every is None else cfg.probe_every
            ),
        ),
        optim=dataclasses.replace(base.optim, warmup_steps=max(cfg.pretrain_steps // 10, 1)),
        data=dataclasses.replace(
            base.data, sim_seed=cfg.seed, num_events=cfg.pretrain_events or base.data.num_events
        ),
    )
    done = run_dir / "checkpoints" / f"step_{cfg.pretrain_steps:08d}.complete.json"
    if not done.is_file():
        run_pretrain(pre_cfg, run_dir, resume=True)
    timings["pretrain"] = time.perf_counter() - t

    t = _step("label-efficiency study")
    study_dir = out / "study"
    study = dataclasses.replace(
        get_study_preset(cfg.study_preset),
        workers=cfg.study_workers,
        **({} if cfg.network_seeds is None else {"network_seeds": cfg.network_seeds}),
    )
    encoder = cfg.pretrained if cfg.pretrained is not None else run_dir
    if not (study_dir / "results.md").is_file() or not (study_dir / "complete").is_file():
        run_study(study, encoder, (data,), study_dir)
        (study_dir / "complete").write_text("done\n")
    timings["study"] = time.perf_counter() - t

    if cfg.pretrained is not None and cfg.live_probe:
        t = _step("probe of the live pretraining")
        live_dir = out / "study_live"
        if not (live_dir / "complete").is_file():
            live = dataclasses.replace(study, modes=("probe",), seeds=(0,), network_seeds=None)
            run_study(live, run_dir, (data,), live_dir)
            (live_dir / "complete").write_text("done\n")
        timings["live_probe"] = time.perf_counter() - t

    t = _step("embeddings, search, anomalies")
    pretrained = load_encoder(encoder)
    figures = out / "report" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    extras = _use_the_encoder(pretrained, data, figures, cfg)
    timings["embed_search_anomaly"] = time.perf_counter() - t

    t = _step("report")
    report = write_report(out, data, figures, extras, timings, cfg)
    log.info("demo report: %s", report)
    return report


def _use_the_encoder(pretrained, data: Path, figures: Path, cfg: DemoConfig) -> dict:
    from nufm.data.pilarnet import read_events
    from nufm.workflows.anomaly import (
        anomaly_figure,
        corruption_figure,
        plant_and_embed,
        score_planted,
    )
    from nufm.workflows.embed import embed_events, embedding_map, event_labels
    from nufm.workflows.search import search_figure, search_similar

    events = read_events(data, list(range(min(cfg.embed_events, cfg.events))))
    emb = embed_events(pretrained, events, per_point=True)
    labels, names = event_labels(events, "n_interactions")
    save_figure(
        embedding_map(emb, labels, names, level="event", label_name="interactions"),
        figures / "embedding_events.png",
    )
    save_figure(
        embedding_map(emb, level="point", names=SEGMENT_NAMES), figures / "embedding_points.png"
    )
    query = int(emb.event_id[0])
    hits = search_similar(emb, query, k=4)
    save_figure(search_figure(events, query, hits), figures / "search.png")
    found = {}
    n_ref, n_query = cfg.anomaly_events
    for kind in ("noise_burst", "dead_region"):
        planted = plant_and_embed(
            pretrained,
            n_reference=n_ref,
            n_normal=n_query,
            n_anomalous=n_query,
            kind=kind,
            seed=cfg.seed + 2000,
        )
        for score in ("token", "event"):  # both scores on the same embedded events
            res = score_planted(planted, score)
            save_figure(anomaly_figure(res), figures / f"anomaly_{kind}_{score}.png")
            found[f"{kind} ({score} score)"] = res.auc
        if res.examples:
            save_figure(corruption_figure(res), figures / f"anomaly_{kind}_example.png")
    return {"search": {"query": query, "hits": hits}, "anomaly_auc": found}


def _prediction_figure(study_dir: Path, data: Path, figures: Path) -> str | None:
    """Event display of predicted vs true classes from the best full fine-tune of the study."""
    import torch

    from nufm.data.collate import collate
    from nufm.viz.display import display_event
    from nufm.workflows.finetune import load_split_events
    from nufm.workflows.load import load_task

    # the fine-tune with the most labelled events, the fused one when the study ran both
    runs = sorted(
        [*(study_dir / "runs").glob("full-n*-s0"), *(study_dir / "runs").glob("full-fused-n*-s0")],
        key=lambda p: (int(p.name.rsplit("-n", 1)[1].split("-")[0]), "fused" in p.name),
    )
    if not runs:
        return None
    run = runs[-1]
    fine_tuned = load_task(run)
    task, pre = fine_tuned.task, fine_tuned.preprocess
    meta = json.loads((run / "metrics.json").read_text())
    # the first test event of the run's split (the study evaluates on the test split)
    event = load_split_events(
        (data,),
        pre,
        "test",
        1,
        split_seed=meta["data"]["split_seed"],
        split_fractions=tuple(meta["data"]["split_fractions"]),
    )[0]
    model_input = pre.transforms()(event, np.random.default_rng(0))
    with torch.no_grad():
        pred = task.predict(collate([model_input]))["pred"].numpy()
    disp = event.select(event.energy > pre.energy_threshold)  # the points the model saw
    if len(disp) != len(pred):
        log.warning("prediction display skipped: %d points vs %d predictions", len(disp), len(pred))
        return None
    name = "prediction.png"
    save_figure(
        display_event(disp, color="segment", pred=pred, title=f"{run.name}: truth vs prediction"),
        figures / name,
    )
    return name


def _curves(run_dir: Path, figures: Path) -> list[str]:
    from nufm.eval.plots import plot_loss_curves

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    probe = [
        (r["step"], r["monitor/probe_macro_f1"]) for r in rows if "monitor/probe_macro_f1" in r
    ]
    names = []
    if loss:
        s, v = zip(*loss, strict=False)
        save_figure(
            plot_loss_curves({"MAE loss": (s, v)}, title="Pretraining loss"),
            figures / "pretrain_loss.png",
        )
        names.append("pretrain_loss.png")
    if probe:
        s, v = zip(*probe, strict=False)
        save_figure(
            plot_loss_curves(
                {"linear probe macro F1 (test events)": (s, v)},
                ylabel="macro F1",
                title="Probe during pretraining",
            ),
            figures / "pretrain_probe.png",
        )
        names.append("pretrain_probe.png")
    return names


def _precision_line() -> str:
    """What the runs' ``train.bf16`` became on this machine (:mod:`nufm.train.precision`)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if native_bf16(device):
        return f"training ran under bf16 autocast on {device.type.upper()}"
    return (
        f"training ran in fp32 on {device.type.upper()} (no native bf16 matrix products here, "
        "where bf16 autocast is several times slower)"
    )


def write_report(
    out: Path,
    data: Path,
    figures: Path,
    extras: dict,
    timings: dict[str, float],
    cfg: DemoConfig | None = None,
) -> Path:
    """report/index.md and report/index.html from the files of this demo run."""
    cfg = cfg or DemoConfig()
    import shutil

    study_dir = out / "study"
    shutil.copy(study_dir / "label_efficiency.png", figures / "label_efficiency.png")
    curves = _curves(out / "pretrain", figures)
    pred = _prediction_figure(study_dir, data, figures)
    probe_rows = [
        json.loads(x)
        for x in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()
        if "monitor/probe_macro_f1" in x
    ]
    md = [
        "# nufm demo report",
        "",
        f"Data: `{data}` (simulated, split by event). Timings (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + f". Machine: {os.cpu_count()} CPU threads; {_precision_line()}.",
        "",
        "## The encoder",
        "",
        "The study, the embeddings, the search and the anomaly scores use "
        + (f"`{cfg.pretrained}`" if cfg.pretrained else "the live pretraining run below")
        + (
            f" (shipped with nufm: {SHIPPED_MODELS[cfg.pretrained]})"
            if cfg.pretrained in SHIPPED_MODELS
            else ""
        )
        + ". How it was made and its measured probe curve: its card "
        "(`src/nufm/weights/<name>/README.md`) and docs/benchmarks.md.",
        "",
        f"## Live pretraining (`{cfg.pretrain_preset}`, {cfg.pretrain_steps} steps)",
        "",
        "A short pretraining run on this machine, so the whole pipeline runs. Per-point "
        "linear probe of its frozen encoder during pretraining (the monitor's small probe: "
        "macro F1 on held-out simulated events; step 0 = random initialisation):",
        "",
        "| step | probe macro F1 | probe mIoU |",
        "|---|---|---|",
    ]
    md += [
        f"| {r['step']} | {r['monitor/probe_macro_f1']:.3f} | {r['monitor/probe_miou']:.3f} |"
        for r in probe_rows
    ]
    live = out / "study_live" / "results.md"
    md += [
        "",
        *[f"![{c}](figures/{c})" for c in curves],
        "",
        *(
            [
                "The study's probe protocol on the live encoder (one seed):",
                "",
                live.read_text(),
                "",
            ]
            if live.is_file()
            else []
        ),
        f"## Label efficiency of `{cfg.pretrained or 'the live encoder'}` "
        "(semantic segmentation, 5 classes)",
        "",
        (study_dir / "results.md").read_text(),
        "",
        "![](figures/label_efficiency.png)",
        "",
        "The supervised ceiling (the scratch row's network trained on all 1,200 labelled "
        "events for 4,000 steps) is in the README's Results section, a point-level PTv3 "
        "tiny ceiling and the earlier demos in docs/results_history.md; the probe against "
        "pretraining compute for three encoder sizes and the demo's timings are in "
        "docs/benchmarks.md.",
        "",
    ]
    if pred:
        md += ["## Predicted vs true classes", "", f"![](figures/{pred})", ""]
    md += [
        "## Embeddings",
        "",
        "![](figures/embedding_events.png)",
        "![](figures/embedding_points.png)",
        "",
        "## Search",
        "",
        f"Query event {extras['search']['query']}; hits (event, cosine distance): "
        + ", ".join(f"{e} ({d:.3f})" for e, d in extras["search"]["hits"]),
        "",
        "![](figures/search.png)",
        "",
        "## Anomaly detection (planted)",
        "",
        "Token score: mean of an event's largest token distances to a bank of reference "
        "tokens; event score: mean distance of the pooled embedding to the 5 nearest "
        "reference events. ROC AUC of normal vs corrupted events: "
        + ", ".join(f"{k} {v:.3f}" for k, v in extras["anomaly_auc"].items()),
        "",
    ]
    md += [f"![](figures/{p.name})" for p in sorted(figures.glob("anomaly_*.png"))]
    report = out / "report"
    (report / "index.md").write_text("\n".join(md) + "\n")
    (report / "index.html").write_text(_to_html("\n".join(md)))
    return report / "index.html"


def _to_html(markdown: str) -> str:
    """A minimal Markdown -> HTML for the report (headings, tables, images, paragraphs)."""
    body, table = [], []

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [
                [html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows
            ]
            body.append(
                "<table>"
                + "".join(
                    "<tr>"
                    + "".join(
                        f"<{'th' if i == 0 else 'td'}>{c}</{'th' if i == 0 else 'td'}>" for c in row
                    )
                    + "</tr>"
                    for i, row in enumerate(cells)
                )
                + "</table>"
            )
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : line.rindex(")")]
            body.append(f'<p><img src="{html.escape(src)}" style="max-width:100%"></p>')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>nufm demo</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
