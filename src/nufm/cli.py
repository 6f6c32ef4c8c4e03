"""The ``nufm`` command line: one subcommand per job, each a typed function parsed by tyro.

Heavy modules are imported inside each command so ``nufm --help`` stays fast. A user error
(:class:`nufm.errors.UserError`: a missing or unreadable file, a bad option, an unusable run
directory) ends with a short message and exit status 2, without a traceback; ``--debug`` (anywhere
on the command line) or ``NUFM_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro

from nufm.errors import ConfigError, InputError, UserError
from nufm.workflows.anomaly import AnomalyStudyConfig
from nufm.workflows.demo import DemoConfig

log = logging.getLogger("nufm")

Pos = tyro.conf.Positional


def simulate(
    *,
    events: int = 1000,
    seed: int = 0,
    out: Path = Path("sim.h5"),
    workers: int = 1,
    detector: Literal["lartpc", "collider-tpc", "water-cherenkov", "fasercal"] = "lartpc",
    particle: tuple[Literal["e-", "mu-", "pi+", "pi0", "gamma", "p"], ...] = ("mu-",),
    energy: tuple[float, float] = (100.0, 1000.0),
    gun: Literal["together", "one-of", "numu-cc", "nue-cc"] = "together",
) -> None:
    """Simulate events with a built-in simulator: a LArTPC written as PILArNet-M (v2) HDF5, a
    collider TPC in the TPCpp .npz layout, a water Cherenkov detector in the WatChMaL HDF5
    layout (a particle gun), or TeV neutrino interactions in a FASERCal-like detector in
    nufm's FASERCal HDF5 layout.

    Args:
        events: Number of events to simulate.
        seed: Base seed; event i depends only on (seed, i), whatever the number of workers.
        out: Output file, written atomically (.h5; .npz for collider-tpc).
        workers: Worker processes for simulation (lartpc).
        detector: Which detector (nufm.data.detectors).
        particle: water-cherenkov: the gun's particle(s); several start at one vertex.
        energy: water-cherenkov: kinetic energy range of the gun, MeV (uniform).
        gun: water-cherenkov: "together" fires every listed particle from one vertex;
            "one-of" fires one of them per event, drawn uniformly (a mixed sample for
            particle identification); "numu-cc" / "nue-cc" simulate charged-current
            neutrino interactions instead (quasi-elastic, 30 % single pi+; a beam along +x,
            --energy the neutrino energy range; nufm.sim.nu_interactions).
    """
    if events <= 0:
        raise ConfigError(f"--events must be positive, got {events}")
    if detector == "collider-tpc":
        from nufm.data.tpcpp import write_tpcpp
        from nufm.sim.collider_tpc import generate_collider_events

        if out.suffix != ".npz":
            raise ConfigError(f"--out {out}: collider-tpc events are written as TPCpp .npz")
        n = write_tpcpp(out, generate_collider_events(events, seed), progress=True)
        log.info("wrote %s: %d collider-TPC events", out, n)
        return
    if detector == "fasercal":
        from nufm.data.fasercal_h5 import write_fasercal
        from nufm.sim.fasercal import generate_fasercal_events

        if out.suffix not in (".h5", ".hdf5"):
            raise ConfigError(f"--out {out}: fasercal events are written as nufm-fasercal .h5")
        n = write_fasercal(out, generate_fasercal_events(events, seed), progress=True)
        log.info("wrote %s: %d FASERCal neutrino interactions", out, n)
        return
    if detector == "water-cherenkov":
        from nufm.data.watchmal import write_watchmal
        from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions

        if out.suffix not in (".h5", ".hdf5"):
            raise ConfigError(f"--out {out}: water-cherenkov events are written as WatChMaL .h5")
        if not 0 < energy[0] <= energy[1]:
            raise ConfigError(f"--energy {energy}: need 0 < low <= high (MeV)")
        cfg = WaterCherenkovConfig()
        if gun in ("numu-cc", "nue-cc"):
            from nufm.sim.nu_interactions import ccqe_threshold
            from nufm.sim.water_cherenkov import generate_wc_cc_events

            flavour = "numu" if gun == "numu-cc" else "nue"
            if energy[0] <= ccqe_threshold(flavour):
                raise ConfigError(
                    f"--energy {energy}: {flavour} CC needs neutrino energies above "
                    f"{ccqe_threshold(flavour):.1f} MeV (the quasi-elastic threshold)"
                )
            stream = generate_wc_cc_events(events, seed, flavour, energy, cfg=cfg)
            what = f"{flavour} CC"
        else:
            stream = generate_wc_events(events, seed, particle, energy, cfg, one_of=gun == "one-of")
            what = (" or " if gun == "one-of" else " + ").join(particle)
        n = write_watchmal(out, stream, pmt_positions(cfg).position, progress=True)
        log.info("wrote %s: %d water Cherenkov %s events", out, n, what)
        return
    from nufm.data.pilarnet import write_events
    from nufm.sim import generate_events

    summary = write_events(
        out, generate_events(events, seed, workers=workers, progress=True), progress=False
    )
    log.info("wrote %s: %s", out, summary)


def info(file: Pos[Path]) -> None:
    """Print events, points per event, class fractions and energy ranges of an event file.

    Args:
        file: PILArNet-M, JAXTPC, WatChMaL, LUCiD (its sensor file) or nufm-fasercal .h5,
            mlreco or TPCpp .npz, or a LArSoft analysis-tree .root.
    """
    from nufm.data.detectors import detector_for_layout
    from nufm.data.formats import count_any, detect_layout, iter_any
    from nufm.data.summary import summarize

    layout = detect_layout(file)
    if count_any(file) == 0:
        raise InputError(f"{file}: the file holds no events")
    det = detector_for_layout(layout)
    summary = summarize(
        iter_any(file),
        det.segment_names,
        det.pid_names,
        det.energy,
        stream_names=det.stream_names,
        label_names=det.label_names,
        event_classes=det.event_classes,
    )
    print(f"{file} ({layout}, {det.title}; coordinates in {det.coord_unit})\n{summary.format()}")


def tracks(
    file: Pos[Path],
    *,
    events: int | None = None,
    min_hits: int = 8,
    split: Literal["all", "train", "val", "test"] = "all",
    split_seed: int = 0,
) -> None:
    """Classical track finding (a Hough transform of circles through the beam line) on a
    collider-TPC file; prints the mean adjusted Rand index, track efficiency and fake rate
    against the true tracks (the baseline beside the networks).

    Args:
        file: A TPCpp .npz file with true track ids (e.g. from nufm simulate --detector
            collider-tpc).
        events: Use the first N events (default all) of the file or split.
        min_hits: Hits a track needs.
        split: Score only one split of the file, the events `nufm finetune` / `evaluate`
            use with the default fractions 0.8 / 0.1 / 0.1 (the network's test events: test).
        split_seed: Seed of that split (the fine-tuning default 0).
    """
    import itertools
    import json

    from nufm.data.detectors import detector_for_layout
    from nufm.data.formats import detect_layout, iter_any
    from nufm.eval.track_finding import evaluate_track_finding
    from nufm.workflows.finetune import load_split_events

    det = detector_for_layout(detect_layout(file))
    if det.name != "collider-tpc":
        raise InputError(f"{file}: not collider-TPC events; track finding needs a TPCpp file")
    if split == "all":
        evs = list(itertools.islice(iter_any(file), events))
    else:
        evs = load_split_events((file,), det.preprocess, split, events, split_seed=split_seed)
    if not evs:
        raise InputError(f"{file}: the file holds no events")
    print(json.dumps(evaluate_track_finding(evs, min_hits=min_hits), indent=1))


def wc_fit(
    file: Pos[Path],
    *,
    events: int | None = None,
    train_events: int = 400,
    split_seed: int = 0,
) -> None:
    """Classical reconstruction of water Cherenkov events (nufm.eval.wc_fit): vertex from a
    time-residual point fit, direction from the charge-weighted hit directions, energy from
    total charge through a line fitted on training events; prints the vertex distance (m),
    direction angle (deg) and energy resolution on the test events, the same events and
    definitions as the networks' wc-vertex / wc-direction / wc-energy rows.

    Args:
        file: A WatChMaL .h5 file with the particle truth (nufm simulate --detector
            water-cherenkov).
        events: Fit the first N test events (default all of the test split).
        train_events: Training events the energy line is fitted on.
        split_seed: Seed of the split (the fine-tuning default 0; fractions 0.8 / 0.1 / 0.1).
    """
    import json

    from nufm.data.detectors import detector_for_layout
    from nufm.data.formats import detect_layout
    from nufm.eval.wc_fit import evaluate_fit
    from nufm.workflows.finetune import load_split_events

    if train_events < 2:
        raise ConfigError(f"--train-events must be >= 2, got {train_events}")
    det = detector_for_layout(detect_layout(file))
    if det.name != "water-cherenkov":
        raise InputError(f"{file}: not water Cherenkov events; the fit needs a WatChMaL file")
    pre = det.preprocess
    train = load_split_events((file,), pre, "train", train_events, split_seed=split_seed)
    test = load_split_events((file,), pre, "test", events, split_seed=split_seed)
    if len(train) < 2 or not test:
        raise InputError(
            f"{file}: too few events for the fit ({len(train)} train, {len(test)} test)"
        )
    print(json.dumps(evaluate_fit(train, test), indent=1))


def convert(src: Pos[Path], dst: Pos[Path], *, progress: bool = True) -> None:
    """Write an event file of any layout nufm reads as PILArNet-M HDF5 (event by event, the
    output appears only when complete).

    Args:
        src: PILArNet-M or JAXTPC .h5, mlreco .npz or LArSoft analysis-tree .root.
        dst: The PILArNet-M .h5 to write.
        progress: Show a progress bar.
    """
    from nufm.data.formats import convert as convert_file

    log.info("wrote %s", convert_file(src, dst, progress=progress))


def display(
    file: Pos[Path],
    *,
    event: int = 0,
    color: Literal[
        "segment", "pid", "instance", "interaction", "energy", "ghost", "hierarchy", "category"
    ] = "segment",
    out: Path = Path("event.png"),
    html: bool = False,
) -> None:
    """Draw an event, coloured by a label or the energy: LArTPC events as three 2D projections
    and a 3D view, collider-TPC events as x-y and r-z views, water Cherenkov events on the
    unrolled detector, FASERCal events as the three scintillator views, the 3D voxels and the
    calorimeters.

    Args:
        file: An event file of any layout nufm reads.
        event: Row of the event in the file.
        color: What colours the points (ghost, hierarchy, category: FASERCal only; FASERCal
            takes segment as category).
        out: Output PNG (with --html, an .html page is written instead).
        html: Write an interactive plotly page instead of a PNG.
    """
    from nufm.data.formats import read_any
    from nufm.viz.display import display_event, display_event_html, save_figure

    (ev,) = read_any(file, [event])
    detector = ev.meta.get("detector", "lartpc")
    if detector == "fasercal":
        from nufm.viz.display_fasercal import FASERCAL_COLOR_OPTIONS, display_fasercal_event

        color = "category" if color == "segment" else color
        if html or color not in FASERCAL_COLOR_OPTIONS:
            raise ConfigError(
                f"fasercal events: PNG only, coloured by {', '.join(FASERCAL_COLOR_OPTIONS)}"
            )
        save_figure(display_fasercal_event(ev, color=color), out)
        log.info("wrote %s", out)
        return
    if color in ("ghost", "hierarchy", "category"):
        raise ConfigError(f"--color {color}: a FASERCal label; {detector} events do not have it")
    if detector != "lartpc":  # the other detectors have their own PNG views
        from nufm.viz.display_tpc import display_tpc_event
        from nufm.viz.display_wc import display_wc_event

        draw = {"collider-tpc": display_tpc_event, "water-cherenkov": display_wc_event}[detector]
        if html or color == "pid":
            raise ConfigError(
                f"{detector} events: PNG only, coloured by segment, instance, interaction or energy"
            )
        save_figure(draw(ev, color=color), out)
        log.info("wrote %s", out)
        return
    if html:
        path = out if out.suffix == ".html" else out.with_suffix(".html")
        display_event_html(ev, color=color, path=path)
    else:
        path = out
        save_figure(display_event(ev, color=color), path)
    log.info("wrote %s", path)


def bench(
    *,
    suites: tuple[Literal["sim", "geometry", "models", "pretrain", "released"], ...] = (
        "sim",
        "geometry",
        "models",
        "pretrain",
    ),
    quick: bool = False,
    out: Path | None = Path("bench_results.json"),
    presets: tuple[str, ...] | None = None,
    batch_events: int = 8,
    threads: int | None = None,
    dtypes: tuple[Literal["fp32", "bf16"], ...] | None = None,
    ddp: bool = True,
) -> None:
    """Measure simulator, geometry-kernel, encoder and pretraining speed on this machine.

    Prints Markdown tables (medians of repeated runs) and writes all rows as JSON.

    Args:
        suites: Which benchmark suites to run ("released": full-size Panda-Base and
            PoLAr-MAE inference, not run by default).
        quick: Smaller sizes and fewer repeats (a smoke run, not for reporting).
        out: JSON file for the rows and the machine description (None: do not write).
        presets: pretrain suite: the presets to step (None: the CPU MAE, distillation and
            forecasting presets).
        batch_events: pretrain suite: simulated events per step.
        threads: pretrain and released suites: torch threads (None: torch's default).
        dtypes: pretrain and released suites: fp32 and/or bf16 autocast (None: fp32, plus
            bf16 where this CPU has native bf16 matrix products, see nufm.train.precision).
        ddp: pretrain suite: also the torchrun 1 -> 2 process scaling run.
    """
    from nufm.benchmarks.pretrain import TINY_PRESETS
    from nufm.benchmarks.report import run_benchmarks
    from nufm.train.precision import default_dtypes

    pretrain = {
        "presets": presets or TINY_PRESETS,
        "batch_events": batch_events,
        "threads": threads,
        "dtypes": dtypes or default_dtypes(),
        "ddp": ddp,
    }
    print(run_benchmarks(suites, quick, out, pretrain))


def finetune() -> None:
    """Fine-tune a task (semseg, pid, cluster, event) from a pretrained encoder, or from scratch,
    on labelled events, then evaluate it on held-out test events (run `nufm finetune --help`).

    Launcher flags --preset/--config-file and --run-dir, then the same typed overrides as
    pretrain (--optim.lr 1e-3, --train.device cpu) plus the fine-tuning section:
    --finetune.pretrained RUN, --finetune.data FILE.h5, --finetune.n-train 100, and the mode
    as --objective.mode linear|head|full|scratch.
    """


def evaluate(
    run_dir: Pos[Path],
    *,
    data: tuple[Path, ...],
    split: Literal["train", "val", "test"] = "test",
    n_events: int | None = None,
    split_seed: int | None = None,
    out: Path | None = None,
) -> None:
    """Evaluate a fine-tuning run on a split of a data set: data-set-level metrics written to a
    versioned JSON file (per-class precision/recall/F1/IoU, macro F1, mIoU, confusion matrix).

    Args:
        run_dir: A directory written by `nufm finetune`, or a released segmentation model
            (Panda-Semantic: pimm checkpoint or export folder).
        data: Event file(s): PILArNet-M or JAXTPC .h5, mlreco .npz, LArSoft .root.
        split: Which event split to evaluate.
        n_events: Evaluate only the first n events of the split (seeded order).
        split_seed: Seed of the event split (None: the run's own, with its split fractions).
        out: Metrics JSON path (default RUN_DIR/eval_<split>.json).
    """
    import json

    from nufm.workflows.finetune import evaluate_run

    metrics = evaluate_run(run_dir, data, split, n_events, split_seed, out=out)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=1))


def compare(
    run_dirs: Pos[tuple[Path, ...]],
    *,
    draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> None:
    """Compare classification runs scored on the same test events: each run's macro F1 with
    its test-event bootstrap interval, and every run against the first, paired on the same
    draws of the test events (docs/evaluation.md, the test-event bootstrap).

    Args:
        run_dirs: Two or more run directories of `nufm finetune`, or rows of a `nufm study`
            (its runs/<row> folders), each with its test_event_confusion.npy; or the
            eval_<split>_event_confusion.npy files `nufm evaluate` writes. Runs joined by
            commas (a/s0,a/s1,a/s2) are one group, scored as their mean: compare recipes
            by their seed means.
        draws: Draws of the test events with replacement.
        seed: Seed of the draws.
        level: Coverage of the percentile intervals.
    """
    from nufm.workflows.compare import compare_runs, comparison_markdown

    groups = [str(d).split(",") for d in run_dirs]
    print(comparison_markdown(compare_runs(groups, draws, seed, level)), end="")


def study() -> None:
    """Label-efficiency study: fine-tune each mode (linear probe, head, full, scratch, and the
    linear probes on a random encoder and on classical local-shape descriptors) at several
    labelled-set sizes; write results.md/.csv and label_efficiency.png (run `nufm study --help`).

    Launcher flags --preset quick|full|smoke, --pretrained RUN, --data FILE.h5 ..., --out DIR,
    then overrides such as --sizes 10 100, --modes linear full, --seeds 0 1 and the shared
    fine-tuning run's --run.train.max-steps 100 or --run.optim.lr 1e-3.
    """


def presets(name: Pos[str | None] = None) -> None:
    """List the run presets (pretraining and fine-tuning) and study presets, or print one
    fully resolved as YAML: the config.yaml a run saves, which --config-file reads back.

    Args:
        name: A preset name; omitted = list them all.
    """
    from nufm.config import PROBE_MODES, config_to_yaml
    from nufm.presets import DESCRIPTIONS, PRESETS, STUDY_PRESETS

    if name is None:
        width = max(map(len, [*PRESETS, *STUDY_PRESETS]))
        lines = ["run presets (nufm pretrain / nufm finetune --preset NAME):"]
        lines += [f"  {k:<{width}}  {DESCRIPTIONS[k]}" for k in PRESETS]
        lines += ["study presets (nufm study --preset NAME):"]
        for k, c in STUDY_PRESETS.items():
            trained = [m for m in c.modes if m not in PROBE_MODES]
            steps = "/".join(map(str, c.steps)) if c.steps else str(c.run.train.max_steps)
            budget = f"{steps} steps per trained run" if trained else "no training"
            if trained and c.network_seeds is not None:
                budget += f" ({len(c.network_seeds)} seeds for the costly modes)"
            lines.append(
                f"  {k:<{width}}  {len(c.sizes)} sizes x {len(c.modes)} modes x {len(c.seeds)} "
                f"seeds, {budget}"
            )
        print("\n".join(lines))
    elif name in PRESETS:
        print(config_to_yaml(PRESETS[name]), end="")
    elif name in STUDY_PRESETS:
        print(config_to_yaml(STUDY_PRESETS[name]), end="")
    else:
        raise SystemExit(
            f"nufm presets: unknown preset {name!r}; known: {sorted(PRESETS)}, "
            f"study presets {sorted(STUDY_PRESETS)}"
        )


def export(
    run_dir: Pos[Path], out_dir: Pos[Path], half: bool = False, encoder_only: bool = False
) -> None:
    """Export the latest checkpoint of a pretraining run as a pretrained model directory
    (model.safetensors + config.json with the preprocessing contract).

    Args:
        run_dir: A pretraining run directory.
        out_dir: Output directory.
        half: store the weights as float16 (half the file; loading casts them back).
        encoder_only: store the online encoder's weights alone (no teacher, heads or
            decoder: a smaller file to fine-tune and embed with, not to continue pretraining).
    """
    import torch

    from nufm.workflows.load import export_run

    export_run(run_dir, out_dir, dtype=torch.float16 if half else None, encoder_only=encoder_only)


def demo(cfg: Annotated[DemoConfig, tyro.conf.OmitArgPrefixes] = DemoConfig()) -> None:
    """The main job: simulate -> pretrain (MAE) -> label-efficiency study -> embeddings, search
    and anomaly examples -> report/index.html (its time on 2 CPU cores: docs/benchmarks.md).

    Args:
        cfg: The demo's sizes, presets and seed.
    """
    from nufm.workflows.demo import run_demo

    run_demo(cfg)


def embed(
    model: Pos[Path],
    file: Pos[Path],
    *,
    out: Path = Path("embeddings.h5"),
    per_point: bool = False,
    batch_points: int = 200_000,
    device: str = "cpu",
    map_out: Path | None = None,
    map_method: Literal["tsne", "pca"] = "tsne",
    color_by: Literal["n_interactions", "dominant_segment"] = "n_interactions",
) -> None:
    """Embed every event of a file with a pretrained encoder ([mean, max] over its tokens/points).

    Args:
        model: A pretraining run directory, an exported model directory or a shipped
            model's name (e.g. lartpc-mae-m).
        file: An event file: PILArNet-M or JAXTPC .h5, mlreco .npz, LArSoft .root.
        out: Output .h5 (event_embedding, event_id, optional point_embedding + point_offset,
            provenance attributes) or .npy (event embeddings only, ids in <stem>.event_id.npy).
        per_point: Also store per-point embeddings (N x D floats; .h5 only).
        batch_points: Point budget of one encoder call.
        device: Torch device, e.g. cpu or cuda.
        map_out: Also draw a 2D map of the event embeddings to this PNG (and, with --per-point,
            a map of 5000 random points coloured by semantic class to <stem>_points.png).
        map_method: t-SNE or PCA for the map.
        color_by: Event-level truth colouring the event map.
    """
    from nufm.data.formats import read_any
    from nufm.viz.display import save_figure
    from nufm.workflows.embed import embed_events, embedding_map, event_labels, write_embeddings
    from nufm.workflows.load import load_encoder

    pretrained = load_encoder(model)
    emb = embed_events(
        pretrained, file, batch_points=batch_points, per_point=per_point, device=device
    )
    write_embeddings(out, emb, {"data_file": str(file)})
    if map_out is not None:
        events = read_any(file, emb.event_id.tolist())
        labels, names = event_labels(events, color_by)
        legend = "interactions" if color_by == "n_interactions" else "dominant class"
        save_figure(
            embedding_map(emb, labels, names, method=map_method, label_name=legend), map_out
        )
        if per_point:
            save_figure(
                embedding_map(emb, level="point", method=map_method),
                map_out.with_name(f"{map_out.stem}_points.png"),
            )


def search(
    embeddings: Pos[Path],
    file: Pos[Path],
    *,
    event: int = 0,
    k: int = 5,
    out: Path = Path("search.png"),
    color: Literal["segment", "pid", "instance", "interaction", "energy"] = "segment",
) -> None:
    """Find the events most similar to one event (cosine distance of event embeddings).

    Prints the hits and draws the query and its hits side by side.

    Args:
        embeddings: Embeddings file written by `nufm embed` (.h5 or .npy).
        file: The event file that was embedded (for the displays).
        event: Row of the query event in the file.
        k: Number of hits.
        out: Output PNG.
        color: What colours the points.
    """
    from nufm.data.formats import read_any
    from nufm.viz.display import save_figure
    from nufm.workflows.embed import read_embeddings
    from nufm.workflows.search import search_figure, search_similar

    emb = read_embeddings(embeddings)
    hits = search_similar(emb, event, k)
    for rank, (hit, dist) in enumerate(hits, 1):
        print(f"{rank:3d}  event {hit:7d}  distance {dist:.4f}")
    ids = [event, *(h for h, _ in hits)]
    events = dict(zip(ids, read_any(file, ids), strict=False))
    save_figure(search_figure(events, event, hits, color=color), out)


def anomaly(
    model: Pos[Path],
    cfg: Annotated[AnomalyStudyConfig, tyro.conf.OmitArgPrefixes] = AnomalyStudyConfig(),
    *,
    out: Path = Path("anomaly.png"),
) -> None:
    """Planted-anomaly study: ROC AUC of embedding anomaly scores for corrupted simulated events.

    Simulates reference and query events, corrupts some queries (a dead slab or a noise
    burst), embeds all with the pretrained encoder and scores each query: ``token`` = mean of
    its largest token distances to a bank of reference tokens (local oddities), ``event`` =
    mean distance of its pooled embedding to the k nearest reference events. Prints the AUC;
    writes the score histograms and ROC curve to OUT and example events before/after
    corruption to <stem>_examples.png.

    Args:
        model: A pretraining run directory, an exported model directory or a shipped
            model's name (e.g. lartpc-mae-m).
        cfg: The study's pathology, event counts and score.
        out: Output PNG.
    """
    from nufm.viz.display import save_figure
    from nufm.workflows.anomaly import anomaly_figure, corruption_figure, run_anomaly_study
    from nufm.workflows.load import load_encoder

    result = run_anomaly_study(load_encoder(model), cfg)
    print(
        f"{cfg.kind}, {cfg.score} score: ROC AUC {result.auc:.3f} "
        f"({int((~result.is_anomaly).sum())} normal, {int(result.is_anomaly.sum())} anomalous, "
        f"{result.n_reference} reference)"
    )
    save_figure(anomaly_figure(result), out)
    save_figure(corruption_figure(result), out.with_name(f"{out.stem}_examples.png"))


def pretrain() -> None:
    """Pretrain an encoder with a self-supervised objective (run `nufm pretrain --help`).

    Launcher flags --preset/--config-file, --run-dir, --resume, then typed config overrides
    such as --train.max-steps 100. Works under torchrun for DDP.
    """


def fasercal_study(
    *,
    preset: Literal["smoke", "quick"] = "quick",
    out: Path = Path("fasercal-study"),
    data: Path | None = None,
    pretrain_data: Path | None = None,
    seeds: tuple[int, ...] | None = None,
) -> None:
    """The FASERCal study: scratch vs MAE vs MAE + relational pretraining of the stream-fusion
    encoder, fine-tuned jointly on flavour, charm, momenta and vertex at several labelled-set
    sizes (arXiv:2604.07037's protocol on simulated events); writes results.md, results.csv
    and label_efficiency.png in --out, reusing finished pretraining runs there.

    Args:
        preset: quick (the docs' study on 2 CPU cores) or smoke (a seconds-long check).
        out: Output directory (simulated files, pretraining and fine-tuning runs, tables).
        data: Labelled nufm-fasercal .h5 (default: simulated into --out).
        pretrain_data: Unlabelled pretraining .h5 (default: simulated into --out).
        seeds: Fine-tuning seeds (default: the preset's).
    """
    from nufm.workflows.fasercal_study import FASER_STUDY_PRESETS, run_fasercal_study

    cfg = FASER_STUDY_PRESETS[preset]
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    for path, what in ((data, "--data"), (pretrain_data, "--pretrain-data")):
        if path is not None and not path.is_file():
            raise InputError(f"{what} {path}: no such file")
    run_fasercal_study(cfg, out, data=data, pretrain_data=pretrain_data)
    print((out / "results.md").read_text())


def cross_study(
    *,
    preset: Literal["smoke", "quick"] = "quick",
    out: Path = Path("cross-study"),
    seeds: tuple[int, ...] | None = None,
    detectors: tuple[Literal["lartpc", "water-cherenkov", "collider-tpc"], ...] | None = None,
) -> None:
    """The cross-experiment study: on each detector's task (LArTPC semantic segmentation,
    water Cherenkov particle ID, collider-TPC hit particle class), fine-tune the same token
    ViT from scratch, pretrained on each detector alone (its core carried to the others) and
    pretrained on the mixture of all (one tokenizer per detector, a shared ViT); writes
    results.md, results.csv and cross_experiment.png in --out, reusing its simulated files
    and finished pretraining runs.

    Args:
        preset: quick (the docs' study on 2 CPU cores) or smoke (a seconds-long check).
        out: Output directory (simulated files, pretraining and fine-tuning runs, tables).
        seeds: Fine-tuning seeds (default: the preset's).
        detectors: The detectors (default: all three).
    """
    from nufm.workflows.cross_study import CROSS_STUDY_PRESETS, run_cross_study

    cfg = CROSS_STUDY_PRESETS[preset]
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    if detectors is not None:
        cfg = dataclasses.replace(cfg, detectors=tuple(dict.fromkeys(detectors)))
    run_cross_study(cfg, out)
    print((out / "results.md").read_text())


def submit() -> None:
    """Write (and with --submit, sbatch) a Slurm script for a multi-node pretraining run
    (run `nufm submit --help`)."""


COMMANDS = {
    "simulate": simulate,
    "info": info,
    "convert": convert,
    "tracks": tracks,
    "wc-fit": wc_fit,
    "display": display,
    "pretrain": pretrain,
    "submit": submit,
    "export": export,
    "finetune": finetune,
    "evaluate": evaluate,
    "study": study,
    "compare": compare,
    "fasercal-study": fasercal_study,
    "cross-study": cross_study,
    "presets": presets,
    "embed": embed,
    "search": search,
    "anomaly": anomaly,
    "demo": demo,
    "bench": bench,
}
_LAUNCHERS = ("pretrain", "submit", "finetune", "study")
"""Commands whose arguments are launcher flags + tyro overrides of a preset (parsed by
:func:`launch`); the entries in COMMANDS only document them in ``nufm --help``."""


def launch(command: str, argv: list[str]) -> None:
    """Run one of :data:`_LAUNCHERS` with its arguments."""
    if command == "pretrain":
        from nufm.train.run import pretrain_cli

        pretrain_cli(argv)
    elif command == "submit":
        from nufm.train.run import submit_cli

        submit_cli(argv)
    elif command == "finetune":
        from nufm.workflows.finetune import finetune_cli

        finetune_cli(argv)
    elif command == "study":
        from nufm.workflows.study import study_cli

        out = study_cli(argv)
        print((out / "results.md").read_text())
    else:
        raise ValueError(f"launch: {command!r} is not one of {_LAUNCHERS}")


DEBUG_FLAG = "--debug"
DEBUG_ENV = "NUFM_DEBUG"
USER_ERROR_EXIT = 2
"""Exit status of a user error (as for tyro's own argument errors)."""

_PATH_ERRORS = (
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""OS errors about a path the user gave (``open('missing.h5')``), user errors too."""


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, is a user error.

    User errors are :class:`~nufm.errors.UserError` and OS errors that name a path (a file that
    does not exist or cannot be written). Following ``__cause__`` keeps a wrapper such as the
    training loop's per-event ``EventStreamError`` a user error when what it wraps is one (a bad row
    of a file) and a bug when it wraps a bug.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UserError):
            return True
        if isinstance(seen, _PATH_ERRORS) and seen.filename is not None:
            return True
        seen = seen.__cause__
    return False


def _dispatch(args: list[str]) -> None:
    if args and args[0] in _LAUNCHERS:
        launch(args[0], args[1:])
        return
    tyro.extras.subcommand_cli_from_dict(
        COMMANDS,
        prog="nufm",
        args=args,
        description=(
            "nufm: self-supervised foundation models for particle-detector data. "
            f"Add {DEBUG_FLAG} (or set {DEBUG_ENV}=1) to any command to see the traceback of "
            "an error."
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the ``nufm`` command line on ``argv`` (default ``sys.argv[1:]``).

    Exits with status 2 and a one- or two-line message on a user error (see the module
    docstring); any other exception is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    command = f"nufm {args[0]}" if args and args[0] in COMMANDS else "nufm"
    try:
        _dispatch(args)
    except SystemExit as e:
        if not isinstance(e.code, str):  # tyro's own exits (help: 0, bad arguments: 2)
            raise
        print(e.code, file=sys.stderr)  # a launcher's message about its arguments
        raise SystemExit(USER_ERROR_EXIT) from None
    except Exception as e:
        if debug or not is_user_error(e):
            raise
        print(f"{command}: error: {e}", file=sys.stderr)
        print(f"{command}: (add {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None


if __name__ == "__main__":
    main()
