"""Run the benchmark suites and format their rows as Markdown (``nufm bench``).

Each suite is a function returning ``list[dict]`` (one row per measurement, medians of
repeated runs); this module only dispatches and formats. Benchmarks enforce nothing: they
measure on the machine at hand, which is why every figure in ``docs/benchmarks.md`` sits next
to the command that produced it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from nufm.train.precision import default_dtypes

log = logging.getLogger(__name__)

Suite = Literal["sim", "geometry", "models", "pretrain", "released"]
SUITES: tuple[Suite, ...] = ("sim", "geometry", "models", "pretrain", "released")


def run_suite(name: Suite, quick: bool, pretrain: dict | None = None) -> list[dict]:
    """Run one suite; ``quick`` shrinks sizes/repeats for a smoke run; ``pretrain``: keyword
    arguments of :func:`nufm.benchmarks.pretrain.bench_pretrain` (presets, batch_events,
    threads, dtypes, ddp); the released suite takes its threads and dtypes."""
    match name:
        case "sim":
            from nufm.benchmarks.sim import bench_simulator

            return bench_simulator(n_events=50 if quick else 200, repeats=3)
        case "geometry":
            from nufm.benchmarks.geometry import bench_geometry

            return bench_geometry(
                n_points=(4000,) if quick else (4000, 20000), repeats=2 if quick else 3
            )
        case "models":
            from nufm.benchmarks.models import bench_models

            if quick:
                return bench_models(
                    sizes=(4000,), ptv3_sizes=(4000, 16000), repeats=1, vit="vit-tiny"
                )
            return bench_models(dtypes=(pretrain or {}).get("dtypes", default_dtypes()))
        case "pretrain":
            from nufm.benchmarks.pretrain import bench_pretrain

            return bench_pretrain(quick=quick, **(pretrain or {}))
        case "released":
            from nufm.benchmarks.released import bench_released

            opts = pretrain or {}
            threads, dtypes = opts.get("threads"), opts.get("dtypes", default_dtypes())
            if quick:
                return bench_released(sizes=(2000,), repeats=1, dtypes=("fp32",), threads=threads)
            return bench_released(dtypes=dtypes, threads=threads)
        case _:
            raise ValueError(f"unknown benchmark suite {name!r}; choose from {SUITES}")


def machine_info() -> dict:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(rows: Sequence[dict]) -> str:
    """Rows with possibly different keys -> one Markdown table (union of keys, in order)."""
    if not rows:
        return "(no rows)\n"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_benchmarks(
    suites: Sequence[Suite], quick: bool, out: Path | None, pretrain: dict | None = None
) -> str:
    """Run ``suites``, return Markdown, and write rows + machine info as JSON to ``out``
    (``pretrain``: options of the pretrain suite, :func:`run_suite`)."""
    results = {"machine": machine_info(), "quick": quick, "suites": {}}
    text = []
    for name in suites:
        log.info("benchmark suite %s", name)
        rows = run_suite(name, quick, pretrain)
        results["suites"][name] = rows
        text.append(f"## {name}\n\n{to_markdown(rows)}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(out)
    return "\n".join(text)
