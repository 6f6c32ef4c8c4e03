"""Entry points of a pretraining run: :func:`run_pretrain` (library) and :func:`pretrain_cli`
(``nufm pretrain`` / ``python -m nufm.train.run``, also under ``torchrun``), and the argument
parser :func:`parse_run_args` that ``nufm finetune`` shares.

``nufm pretrain [--preset NAME | --config-file config.yaml] --run-dir DIR [--resume]
[overrides such as --train.max-steps 100 --optim.lr 3e-4]``: the preset (or a saved config)
is the base; tyro applies the dotted overrides and validates the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import tyro

from nufm.config import FinetuneConfig, RunConfig, load_config
from nufm.data.detectors import get_detector
from nufm.errors import ConfigError
from nufm.presets import PRESETS, get_preset
from nufm.ssl.build import (
    SSLObjectiveConfig,
    objective_input_width,
    with_detectors,
    with_feature_width,
)
from nufm.train.checkpoint import init_from_run
from nufm.train.components import (
    build_dataset,
    build_objective,
    build_transform,
    mixture_detectors,
    resolve_detector,
    run_preprocess,
)
from nufm.train.distributed import cleanup_distributed, write_slurm_script
from nufm.train.loop import Monitor, TrainResult, seed_everything, train

log = logging.getLogger(__name__)


def run_pretrain(
    cfg: RunConfig, run_dir: str | Path, resume: bool = False, *, monitor: Monitor | None = None
) -> TrainResult:
    """Build the objective, dataset and augmentation of ``cfg`` and train.

    With ``cfg.train.monitor_every > 0`` on simulated or file data and no ``monitor`` given,
    the per-point linear probe of :func:`nufm.eval.monitor.probe_monitor` is logged.

    The torch RNG is seeded with ``cfg.train.seed`` before the objective is built, so its
    initial weights are identical across runs and across DDP ranks.
    """
    cfg = fit_to_detector(cfg, resume)
    lartpc = cfg.data.detector == "lartpc"
    if monitor is None and cfg.train.monitor_every and lartpc:
        from nufm.eval.monitor import probe_monitor

        # the LArTPC semantic probe, on the contract build_transform uses
        monitor = probe_monitor(preprocess=run_preprocess(cfg.data))
    seed_everything(cfg.train.seed)
    objective = build_objective(cfg.objective)
    if cfg.train.init_from is not None:
        init_from_run(objective, cfg.train.init_from)
    try:
        return train(
            cfg,
            objective,
            build_dataset,
            run_dir,
            resume,
            transform=build_transform(cfg.data, objective=objective),
            monitor=monitor,
        )
    finally:
        cleanup_distributed()


def fit_to_detector(cfg: RunConfig, resume: bool = False) -> RunConfig:
    """``cfg`` with its data's detector recorded (:func:`resolve_detector`) and, for a new
    pretraining run, its objective's encoder taking that detector's feature channels (the
    water Cherenkov hit time is a fifth); a resumed run must already match.

    Raises:
        ConfigError: the objective takes another width than the data has, on resume.
    """
    data = resolve_detector(cfg.data)
    cfg = dataclasses.replace(cfg, data=data)
    if data.source == "mixture" and isinstance(cfg.objective, SSLObjectiveConfig):
        names = dict.fromkeys(mixture_detectors(data))
        widths = {d: len(get_detector(d).preprocess.feature_names) for d in names}
        fitted = with_detectors(cfg.objective, widths)
        if resume and fitted != cfg.objective:
            raise ConfigError(
                f"data.mixture: its detectors ({', '.join(names)}) are not those the resumed "
                "run's encoder was made for"
            )
        log.info("pretrain: a mixture of %s events", ", ".join(names))
        return dataclasses.replace(cfg, objective=fitted)
    if data.detector is None or not isinstance(cfg.objective, SSLObjectiveConfig):
        return cfg
    width = len(run_preprocess(data).feature_names)
    if objective_input_width(cfg.objective) == width:
        return cfg
    if resume:
        raise ConfigError(
            f"{data.path}: {data.detector} events have {width} feature channels; the resumed "
            f"run's encoder takes {objective_input_width(cfg.objective)}"
        )
    log.info("pretrain: %s events, encoder input width %d", data.detector, width)
    return dataclasses.replace(cfg, objective=with_feature_width(cfg.objective, width))


_LAUNCHER_HELP = """Launcher options (before the overrides):
  --preset NAME        base config (default {default}), one of: {presets}
  --config-file PATH   base config from a config.yaml (e.g. of an earlier run)
  --run-dir DIR        run directory (required){resume}"""

_RESUME_HELP = """
  --resume             continue from the latest complete checkpoint in --run-dir"""


def parse_run_args(argv: list[str], *, finetune: bool = False) -> tuple[RunConfig, Path, bool]:
    """Parse ``nufm pretrain`` (or, with ``finetune``, ``nufm finetune``) arguments into
    (config, run_dir, resume): launcher flags, then tyro's dotted overrides of the base config.

    Raises:
        SystemExit: an unknown preset, a bad override, a missing ``--run-dir``, or a preset of
            the other kind (a fine-tuning run given to pretrain or the reverse).
    """
    prog = "nufm finetune" if finetune else "nufm pretrain"
    default = "semseg-full" if finetune else "toy"
    parser = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--config-file", type=Path, default=None)
    parser.add_argument("--run-dir", type=Path, default=None)
    if not finetune:
        parser.add_argument("--resume", action="store_true")
    known, rest = parser.parse_known_args(argv)
    if known.preset is not None and known.config_file is not None:
        raise SystemExit(f"{prog}: give --preset or --config-file, not both")
    if known.config_file is not None:
        base = load_config(known.config_file)
    else:
        try:
            base = get_preset(known.preset or default)
        except KeyError as e:
            raise SystemExit(f"{prog}: {e.args[0]}") from e
    if base.is_finetune != finetune:
        other = "nufm pretrain" if finetune else "nufm finetune"
        raise SystemExit(
            f"{prog}: {known.preset or known.config_file} is a "
            f"{'pretraining' if finetune else 'fine-tuning'} run; use {other}"
        )
    if finetune and base.finetune is None:  # a fine-tuning run saved before the section existed
        base = dataclasses.replace(base, finetune=FinetuneConfig())
    kind = [n for n, c in PRESETS.items() if c.is_finetune == finetune]
    what = "Fine-tune and evaluate a task" if finetune else "Pretrain a nufm objective"
    description = f"{what}.\n\n" + _LAUNCHER_HELP.format(
        default=default, presets=", ".join(sorted(kind)), resume="" if finetune else _RESUME_HELP
    )
    cfg = tyro.cli(
        RunConfig,
        default=base,
        args=rest,
        prog=prog,
        config=(tyro.conf.AvoidSubcommands,),
        description=description,
    )
    if known.run_dir is None:
        raise SystemExit(f"{prog}: --run-dir is required")
    return cfg, known.run_dir, bool(getattr(known, "resume", False))


def parse_pretrain_args(argv: list[str]) -> tuple[RunConfig, Path, bool]:
    """Parse ``nufm pretrain`` arguments into (config, run_dir, resume)."""
    return parse_run_args(argv)


def submit_cli(argv: list[str] | None = None) -> Path:
    """``nufm submit``: write (and with ``--submit``, sbatch) a Slurm script for a run.

    Launcher flags: ``--preset``/``--config-file``, ``--run-dir`` (required), ``--nodes``,
    ``--gpus-per-node``, ``--time``, ``--partition``, ``--account``, ``--script`` (default
    ``run_dir/submit.sbatch``), ``--submit``; the rest are config overrides as for pretrain.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="nufm submit", add_help=False)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--time", default="24:00:00")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--script", type=Path, default=None)
    parser.add_argument("--submit", action="store_true")
    known, rest = parser.parse_known_args(argv)
    cfg, run_dir, _ = parse_pretrain_args(rest)
    return write_slurm_script(
        cfg,
        nodes=known.nodes,
        gpus_per_node=known.gpus_per_node,
        time=known.time,
        partition=known.partition,
        account=known.account,
        run_dir=run_dir,
        out_path=known.script or run_dir / "submit.sbatch",
        submit=known.submit,
    )


def pretrain_cli(argv: list[str] | None = None) -> TrainResult:
    """``nufm pretrain``: parse arguments and run :func:`run_pretrain`."""
    cfg, run_dir, resume = parse_pretrain_args(sys.argv[1:] if argv is None else argv)
    return run_pretrain(cfg, run_dir, resume)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = pretrain_cli()
    log.info("done: step %d, last checkpoint %s", result.step, result.last_checkpoint)


if __name__ == "__main__":
    main()
