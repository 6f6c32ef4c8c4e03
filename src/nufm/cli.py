"""The ``nufm`` command line: one subcommand per job, each a typed function parsed by tyro.

Heavy modules are imported inside each command so ``nufm --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro

log = logging.getLogger("nufm")

Pos = tyro.conf.Positional


def simulate(
    *,
    events: int = 1000,
    seed: int = 0,
    out: Path = Path("sim.h5"),
    workers: int = 1,
) -> None:
    """Simulate LArTPC events with the built-in simulator and write a PILArNet-M (v2) HDF5 file.

    Args:
        events: Number of events to simulate.
        seed: Base seed; event i depends only on (seed, i), whatever the number of workers.
        out: Output HDF5 file (written atomically).
        workers: Worker processes for simulation.
    """
    from nufm.data.pilarnet import write_events
    from nufm.sim import generate_events

    if events <= 0:
        raise SystemExit(f"nufm simulate: --events must be positive, got {events}")
    summary = write_events(out, generate_events(events, seed, workers=workers, progress=True),
                           progress=False)
    log.info("wrote %s: %s", out, summary)


def info(file: Pos[Path]) -> None:
    """Print events, points per event, class fractions and energy ranges of an HDF5 file.

    Args:
        file: A PILArNet-M layout HDF5 file.
    """
    from nufm.data.pilarnet import iter_events
    from nufm.data.summary import summarize

    print(f"{file}\n{summarize(iter_events(file)).format()}")  # noqa: T201 (command output)


def display(
    file: Pos[Path],
    *,
    event: int = 0,
    color: Literal["segment", "pid", "instance", "interaction", "energy"] = "segment",
    out: Path = Path("event.png"),
    html: bool = False,
) -> None:
    """Draw an event: three 2D projections and a 3D view, coloured by a label or the energy.

    Args:
        file: A PILArNet-M layout HDF5 file.
        event: Row of the event in the file.
        color: What colours the points.
        out: Output PNG (with --html, an .html page is written instead).
        html: Write an interactive plotly page instead of a PNG.
    """
    from nufm.data.pilarnet import read_events
    from nufm.viz.display import display_event, display_event_html, save_figure

    (ev,) = read_events(file, [event])
    if html:
        path = out if out.suffix == ".html" else out.with_suffix(".html")
        display_event_html(ev, color=color, path=path)
    else:
        path = out
        save_figure(display_event(ev, color=color), path)
    log.info("wrote %s", path)


def bench(
    *,
    suites: tuple[Literal["sim", "geometry", "models", "pretrain"], ...] = (
        "sim", "geometry", "models", "pretrain"),
    quick: bool = False,
    out: Path | None = Path("bench_results.json"),
) -> None:
    """Measure simulator, geometry-kernel, encoder and pretraining speed on this machine.

    Prints Markdown tables (medians of repeated runs) and writes all rows as JSON.

    Args:
        suites: Which benchmark suites to run.
        quick: Smaller sizes and fewer repeats (a smoke run, not for reporting).
        out: JSON file for the rows and the machine description (None: do not write).
    """
    from nufm.benchmarks.report import run_benchmarks

    print(run_benchmarks(suites, quick, out))  # noqa: T201 (command output)


def pretrain() -> None:
    """Pretrain an encoder with a self-supervised objective (run `nufm pretrain --help`).

    Launcher flags --preset/--config-file, --run-dir, --resume, then typed config overrides
    such as --train.max-steps 100. Works under torchrun for DDP.
    """


def submit() -> None:
    """Write (and with --submit, sbatch) a Slurm script for a multi-node pretraining run
    (run `nufm submit --help`)."""


COMMANDS = {"simulate": simulate, "info": info, "display": display, "bench": bench,
            "pretrain": pretrain, "submit": submit}
_LAUNCHERS = ("pretrain", "submit")
"""Commands whose arguments are launcher flags + tyro overrides of a preset (parsed by
``nufm.train.run``); the entries in COMMANDS only document them in ``nufm --help``."""


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in _LAUNCHERS:
        from nufm.train.run import pretrain_cli, submit_cli

        (pretrain_cli if args[0] == "pretrain" else submit_cli)(args[1:])
        return
    tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="nufm", args=args)


if __name__ == "__main__":
    main()
