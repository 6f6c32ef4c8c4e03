"""Fine-tune a task on labelled events and evaluate it on held-out events (``nufm finetune``).

One run = one :class:`~nufm.config.RunConfig` whose objective is a task config (task x mode)
and whose ``finetune`` section names the pretrained model, the labelled files and the split:

1. events come from PILArNet-M layout files, split into train / val / test **by whole event**
   (:class:`nufm.data.dataset.PILArNetDataset`, seeded); the labelled subset is the first
   ``n_train`` events of a seeded permutation of the train split, so subsets of increasing
   size are nested;
2. the task starts from the pretrained encoder (modes linear / head / full) or from random
   weights (scratch), always with the pretrained model's preprocessing contract, so only the
   encoder's starting weights differ between modes;
3. the same training loop as pretraining (:func:`nufm.train.loop.train`) trains it;
4. :func:`nufm.eval.tasks.evaluate_task` scores it on the test events at data-set level, and
   a versioned ``metrics.json`` records model, data, preprocessing and seed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from nufm.batch import PointBatch
from nufm.config import FinetuneConfig, RunConfig
from nufm.data.dataset import PILArNetDataset
from nufm.data.detectors import DETECTORS, Detector, detector_for_layout, get_detector
from nufm.data.event import Event
from nufm.data.event_split import split_events
from nufm.data.formats import detect_layout, read_any
from nufm.data.transforms import Preprocess, Transform
from nufm.errors import ConfigError, InputError
from nufm.eval.bootstrap import write_event_confusion
from nufm.eval.calibration import set_semseg_offsets
from nufm.eval.report import write_metrics_json
from nufm.eval.tasks import evaluate_task, iter_predictions
from nufm.models.encoders import (
    EncoderConfigs,
    core_prefixes,
    input_width,
    with_detector_inputs,
    with_input_width,
)
from nufm.models.released.files import is_released
from nufm.tasks.backbone import fit_descriptor_encoding, task_pipeline_steps
from nufm.tasks.build import TaskConfig, build_task
from nufm.tasks.encoder_state import extract_encoder_state
from nufm.tasks.event_task import event_target_transforms
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig
from nufm.train.checkpoint import BEST_WEIGHTS, save_weights
from nufm.train.components import build_augmentations
from nufm.train.loop import seed_everything, train
from nufm.train.precision import inference_dtype
from nufm.train.run import parse_run_args
from nufm.workflows.load import Pretrained, for_detector, load_encoder, load_task

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    metrics: dict[str, Any]
    """Output of :func:`nufm.eval.tasks.evaluate_task` on the test events."""
    run_dir: Path
    n_train: int
    n_test: int
    train_losses: list[float] = field(default_factory=list)
    event_confusion: np.ndarray | None = None
    """(test events, C, C) per-event confusion matrices of a classification (points,
    particles or events; :mod:`nufm.eval.bootstrap`; also in ``run_dir``), else None."""


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
        raise ConfigError("finetune: give at least one data file (--finetune.data FILE.h5)")
    if all(detector_for_layout(detect_layout(p)).name != "lartpc" for p in data):
        ds = _other_detector_split(data, preprocess, split, split_seed, split_fractions)
    else:
        ds = _pilarnet_split(data, preprocess, split, split_seed, split_fractions)
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


def _other_detector_split(
    data: tuple[Path, ...],
    preprocess: Preprocess,
    split: Split,
    seed: int,
    fractions: tuple[float, float, float],
) -> list[Event]:
    """The events of ``split`` of collider-TPC / water-Cherenkov files (read whole into memory:
    no point index), with the same split rule and point cuts as :class:`PILArNetDataset`."""
    events = [ev for p in data for ev in read_any(p)]
    keep = [
        ev
        for ev in events
        if int((ev.energy > preprocess.energy_threshold).sum()) >= max(preprocess.min_points, 1)
    ]
    chosen = split_events(len(keep), fractions, seed)[("train", "val", "test").index(split)]
    return [keep[int(i)] for i in chosen]


def data_detector(data: tuple[Path, ...]) -> Detector:
    """The detector whose layout the first data file has (the LArTPC without files)."""
    return detector_for_layout(detect_layout(data[0])) if data else get_detector("lartpc")


def data_preprocess(data: tuple[Path, ...]) -> Preprocess:
    """The default preprocessing of the detector whose layout the first data file has."""
    return data_detector(data).preprocess if data else Preprocess()


def _check_same_detector(pretrained: Pretrained, data: tuple[Path, ...]) -> None:
    """A pretrained model's preprocessing is applied to the data, so the data must come from
    the detector it was made for (told by its preprocessing: another detector's default, else
    the LArTPC, whose released models each have their own): PMT hits normalised with LArTPC
    constants, or voxels given a hit-time channel, would be garbage."""
    if not data:
        return
    det = data_detector(data)
    made_for = next(
        (
            d.name
            for d in DETECTORS.values()
            if d.name != "lartpc" and d.preprocess == pretrained.preprocess
        ),
        "lartpc",
    )
    if made_for != det.name:
        raise ConfigError(
            f"finetune: {data[0]} holds {det.name} events, but {pretrained.source} was made "
            f"for {made_for} events (its preprocessing: {pretrained.preprocess}); to carry "
            "its core across detectors, re-initialising the input embedding, add "
            "--finetune.transfer core (or train with a scratch preset)"
        )


def transfer_core(
    pretrained: Pretrained, task_cfg: TaskConfig, preprocess: Preprocess
) -> tuple[EncoderConfigs, dict[str, torch.Tensor]]:
    """The encoder of a core transfer and the weights that carry over: the pretrained
    architecture with the task preset's input embedding for the data's detector (fitted to its
    feature channels), and the pretrained encoder's core tensors (:func:`core_prefixes`).

    Raises:
        ConfigError: the preset's encoder is another kind than the pretrained one.
    """
    source = cast(EncoderConfigs, pretrained.encoder_config)
    target = _fit_input_width(task_cfg, preprocess, fresh=True).encoder
    try:
        config = with_detector_inputs(source, target)
        prefixes = core_prefixes(source)
    except ValueError as e:
        raise ConfigError(f"finetune.transfer core: {e}") from e
    sub, _ = extract_encoder_state(pretrained.state, pretrained.encoder)
    core = {k: v for k, v in sub.items() if k.startswith(prefixes)}
    if not core:
        raise ConfigError(f"finetune.transfer core: {pretrained.source} holds no core weights")
    log.info(
        "finetune: carrying %d core tensors of %s over (prefixes %s); the input embedding starts "
        "fresh",
        len(core),
        pretrained.source,
        ", ".join(prefixes),
    )
    return config, core


def _fit_input_width(task_cfg: TaskConfig, preprocess: Preprocess, fresh: bool) -> TaskConfig:
    """A preset's fresh encoder takes the data's feature channels (the water Cherenkov hit time
    is a fifth); a given architecture (pretrained model, study) must already take them."""
    names = preprocess.feature_names
    have = input_width(task_cfg.encoder)
    if have == len(names):
        return task_cfg
    if not fresh:
        raise ConfigError(
            f"finetune: the data's events have {len(names)} feature channels "
            f"({', '.join(names)}) but the encoder takes {have}; a model pretrained on another "
            "detector's inputs cannot read them"
        )
    log.info("finetune: encoder input width %d -> %d (%s)", have, len(names), ", ".join(names))
    return dataclasses.replace(task_cfg, encoder=with_input_width(task_cfg.encoder, len(names)))


def _pilarnet_split(
    data: tuple[Path, ...],
    preprocess: Preprocess,
    split: Split,
    seed: int,
    fractions: tuple[float, float, float],
) -> PILArNetDataset:
    return PILArNetDataset(
        list(data),
        split=split,
        split_fractions=fractions,
        seed=seed,
        min_points=preprocess.min_points,
        energy_threshold=preprocess.energy_threshold,
    )


def finetune_split(
    ft: FinetuneConfig, preprocess: Preprocess, split: Split, n: int | None
) -> list[Event]:
    """:func:`load_split_events` of a run's labelled files with its split seed and fractions."""
    return load_split_events(
        ft.data,
        preprocess,
        split,
        n,
        split_seed=ft.split_seed,
        split_fractions=ft.split_fractions,
    )


def val_score(metrics: dict[str, Any]) -> float:
    """The number early stopping maximises: macro F1 (semantic, pid, event class, the joint
    heads' flavour), the mean ARI (clustering) or minus the mean RMS (regression); NaN counts
    as the worst."""
    for block in ("semantic", "pid", "event_class"):
        if block in metrics:
            value = metrics[block].get("macro_f1")
            break
    else:
        if "flavour" in metrics:  # the joint FASERCal heads: flavour macro F1
            value = metrics["flavour"].get("macro_f1")
        elif "instance" in metrics:
            value = metrics["instance"].get("ari_mean")
        else:
            rms = [v["rms"] for v in metrics.get("regression", {}).values() if "rms" in v]
            value = -float(np.mean(rms)) if rms else None
    return float(value) if value is not None and np.isfinite(value) else -np.inf


class BestWeights:
    """Early stopping as a loop monitor: scores the task on val events and keeps a copy of
    the weights with the best :func:`val_score` (the first, on ties).

    Steps before ``min_step`` are not scored (the loop's step-0 call: an untrained head is no
    candidate). With ``keep_logits`` (a semantic segmentation task), the val logits and
    targets of the best pass are kept too (``best_logits``, ``best_target``), so decision
    offsets are fitted on them without another pass over the val events.
    """

    def __init__(
        self,
        events: list[Event],
        preprocess: Preprocess,
        batch_points: int,
        seed: int,
        task: object = None,
        front: Sequence[Transform] = (),
        *,
        min_step: int = 0,
        autocast_dtype: torch.dtype | None = None,
        keep_logits: bool = False,
    ) -> None:
        self.events = events
        self.transform = preprocess.transforms(augment=[*front, *event_target_transforms(task)])
        self.batch_points = batch_points
        self.seed = seed
        self.min_step = min_step
        self.autocast_dtype = autocast_dtype
        self.keep_logits = keep_logits
        self.best_score = -np.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_logits: np.ndarray | None = None
        """(N, C) float32 val logits of the best pass (``keep_logits``), else None."""
        self.best_target: np.ndarray | None = None
        """(N,) int64 targets of those points."""
        self.scores: dict[int, float] = {}
        """Step -> val score, in the order scored."""

    @property
    def scored_steps(self) -> list[int]:
        return list(self.scores)

    def __call__(self, task: torch.nn.Module, step: int) -> dict[str, float]:
        if step in self.scores:  # already scored (the loop's last step)
            return {"val_score": self.scores[step]}
        if step < self.min_step:
            return {}
        was_training = task.training
        task.eval()
        kept: list[tuple[np.ndarray, np.ndarray]] = []  # (logits, target) of each batch

        def predictions() -> Iterator[tuple[PointBatch, dict[str, torch.Tensor]]]:
            for batch, pred in iter_predictions(
                task,  # type: ignore[arg-type]
                self.events,
                self.batch_points,
                transform=self.transform,
                seed=self.seed,
                autocast_dtype=self.autocast_dtype,
            ):
                if self.keep_logits:
                    kept.append((pred["logits"].numpy(), pred["target"].numpy()))
                yield batch, pred

        with torch.no_grad():  # the metrics read the predictions as they are made
            metrics = evaluate_task(
                task,  # type: ignore[arg-type]
                self.events,
                predictions=predictions(),
            )
        task.train(was_training)
        score = val_score(metrics)
        self.scores[step] = score
        if score > self.best_score or self.best_state is None:
            self.best_score, self.best_step = score, step
            self.best_state = {k: v.detach().clone() for k, v in task.state_dict().items()}
            if self.keep_logits:
                self.best_logits = np.concatenate([logits for logits, _ in kept])
                self.best_target = np.concatenate([target for _, target in kept])
        return {"val_score": score}


def _device(cfg: RunConfig) -> torch.device:
    """The device the run trains (and so evaluates) on."""
    cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
    return torch.device("cuda" if cuda else "cpu")


def run_finetune(
    cfg: RunConfig,
    run_dir: str | Path,
    pretrained: Pretrained | None = None,
    *,
    random_encoder: bool = False,
    encoder_config: object | None = None,
    preprocess: Preprocess | None = None,
    train_events: list[Event] | None = None,
    test_events: list[Event] | None = None,
    val_events: list[Event] | None = None,
    pipeline_steps: Sequence[Transform] | None = None,
) -> FinetuneResult:
    """Train and evaluate one task (see the module docstring).

    Args:
        cfg: the run: its objective is the task (the mode is ``objective.mode``), its
            ``finetune`` section names the pretrained model, the labelled files and the split;
            optim, train, logging and data (batching, augmentation) work as in pretraining. The
            saved ``config.yaml`` records ``data.source='file'`` and the first labelled file.
        run_dir: where checkpoints, logs and ``metrics.json`` go.
        pretrained: the loaded pretrained model (default: loaded from
            ``cfg.finetune.pretrained``); its encoder config, weights and preprocessing are used.
        random_encoder: keep the encoder randomly initialised even in linear / head / full
            mode (the random-representation baseline of the study).
        encoder_config: the encoder architecture when no ``pretrained`` is given (scratch
            runs of a study use the pretrained model's architecture).
        preprocess: the preprocessing contract when no ``pretrained`` is given.
        train_events, test_events, val_events: raw events to use instead of loading
            ``cfg.finetune.data`` (a study shares them between runs); val events are used
            only with ``cfg.finetune.n_val > 0`` (early stopping: the weights with the best
            val score are tested; the run's checkpoints keep the last weights, and
            ``metrics.json`` records the selected step).
        pipeline_steps: the per-event steps before the augmentations, in the train, val and
            test transforms (default :func:`~nufm.tasks.backbone.task_pipeline_steps` of the
            task); a study passes one list to all its runs, so their caches are shared.

    Raises:
        ValueError: the objective is no task, or a mode needs a pretrained model that is
            missing.
    """
    run_dir = Path(run_dir)
    ft = cfg.finetune
    task_cfg = cfg.objective
    if ft is None or not isinstance(task_cfg, TaskConfig):
        raise ValueError(
            f"finetune: run {cfg.name!r} needs a task objective and a finetune section "
            f"(objective is {type(task_cfg).__name__}); use a fine-tuning preset such as "
            "semseg-full"
        )
    if pretrained is None and ft.pretrained is not None:
        pretrained = load_encoder(ft.pretrained)
    core_state: dict[str, torch.Tensor] | None = None
    if pretrained is not None:
        if pretrained.encoder_config is None:
            raise ConfigError(
                f"{pretrained.source}: a "
                f"{type(pretrained.objective_config).__name__} encoder cannot be "
                "fine-tuned by the tasks (use an MAE, distillation or forecasting model)"
            )
        if ft.transfer == "core":
            preprocess = preprocess or data_preprocess(ft.data)
            encoder_config, core_state = transfer_core(pretrained, task_cfg, preprocess)
        else:
            pretrained = for_detector(pretrained, data_detector(ft.data).name)
            _check_same_detector(pretrained, ft.data)
            encoder_config = pretrained.encoder_config
            preprocess = pretrained.preprocess
    if encoder_config is not None:
        task_cfg = dataclasses.replace(task_cfg, encoder=encoder_config)
    preprocess = preprocess or data_preprocess(ft.data)
    task_cfg = _fit_input_width(task_cfg, preprocess, fresh=encoder_config is None)
    weights = pretrained if task_cfg.mode != "scratch" and not random_encoder else None
    if task_cfg.mode != "scratch" and weights is None and not random_encoder:
        raise ConfigError(
            f"finetune: mode {task_cfg.mode!r} needs a pretrained model "
            "(--finetune.pretrained RUN_OR_MODEL_DIR)"
        )
    if train_events is None:
        train_events = finetune_split(ft, preprocess, "train", ft.n_train)
    if test_events is None:
        test_events = finetune_split(ft, preprocess, "test", ft.n_test)
    data_cfg = (
        dataclasses.replace(cfg.data, source="file", path=ft.data[0]) if ft.data else cfg.data
    )
    run_cfg = dataclasses.replace(cfg, objective=task_cfg, data=data_cfg)
    seed = cfg.train.seed
    front = (  # per-event model inputs such as descriptors: one cache for train, val, test
        task_pipeline_steps(task_cfg, preprocess) if pipeline_steps is None else pipeline_steps
    )
    # val and test passes in the precision the run trains in (bf16 autocast where native)
    autocast_dtype = inference_dtype(cfg.train.bf16, _device(cfg))
    selector = None
    if ft.n_val > 0:
        if val_events is None:
            val_events = finetune_split(ft, preprocess, "val", ft.n_val)
        selector = BestWeights(
            val_events[: ft.n_val],
            preprocess,
            ft.eval_batch_points,
            seed,
            task_cfg,
            front,
            min_step=1,  # the untrained head at step 0 is never selected: not scored
            autocast_dtype=autocast_dtype,
            keep_logits=ft.calibrate and isinstance(task_cfg, SemsegConfig),
        )
        if not run_cfg.train.monitor_every:  # score at least the final weights
            run_cfg = dataclasses.replace(
                run_cfg,
                train=dataclasses.replace(run_cfg.train, monitor_every=run_cfg.train.max_steps),
            )
    seed_everything(seed)
    if core_state is not None and weights is not None:
        task = build_task(task_cfg, core_state, encoder_prefix="")
        report = task.encoder_load_report
        if report is None or report.mismatched or len(report.loaded) != len(core_state):
            raise ConfigError(
                f"finetune: the core of {weights.source} did not load whole\n{report}"
            )
    else:
        task = build_task(task_cfg, weights.state if weights is not None else None)
    n_fit = fit_descriptor_encoding(
        task, train_events, preprocess.transforms(augment=front), seed=seed
    )  # the head's descriptor bins, from the labelled events (none: nothing to fit)
    if n_fit:
        log.info("%s: descriptor bins fitted on %d training points", cfg.name, n_fit)
    targets = event_target_transforms(task_cfg)  # vertex / visible energy, when read
    augment = build_augmentations(cfg.data, symmetry=data_detector(ft.data).symmetry)
    transform = preprocess.transforms(augment=[*front, *augment, *targets])
    result = train(
        run_cfg, task, lambda _: train_events, run_dir, transform=transform, monitor=selector
    )
    selected: dict[str, Any] = {}
    if selector is not None:
        selector(task, result.step)  # the final weights, if the loop did not score them
        assert selector.best_state is not None
        task.load_state_dict(selector.best_state)
        selected = {
            "selected_step": selector.best_step,
            "val_score": selector.best_score,
            "n_val": len(selector.events),
            "scored_steps": selector.scored_steps,
        }
        if selector.best_logits is not None and isinstance(task, SemanticSegmentation):
            assert selector.best_target is not None
            offsets = set_semseg_offsets(task, selector.best_logits, selector.best_target)
            selected["class_offsets"] = offsets.tolist()
            log.info("%s: decision offsets fitted on the val events: %s", cfg.name, offsets)
        save_weights(task, run_dir / BEST_WEIGHTS, selector.best_step)
    task.eval()
    per_event: list[np.ndarray] = []  # a classification's per-event confusion matrices
    with torch.no_grad():
        metrics = evaluate_task(
            task,
            test_events,
            ft.eval_batch_points,
            transform=preprocess.transforms(augment=[*front, *targets]),
            seed=seed,
            autocast_dtype=autocast_dtype,
            event_confusion=per_event,
        )
    event_confusion = write_event_confusion(run_dir, per_event)  # for the study's bootstrap
    write_metrics_json(
        run_dir / "metrics.json",
        metrics,
        model={
            "task": cfg.name,
            "mode": task_cfg.mode,
            "random_encoder": random_encoder,
            "encoder": type(task_cfg.encoder).__name__,
            "pretrained": weights.source if weights is not None else None,
            "pretrained_step": weights.step if weights is not None else None,
            "transfer": ft.transfer if weights is not None else None,
            "steps": cfg.train.max_steps,
            "final_train_metrics": result.metrics,
            **selected,
        },
        data={
            "files": [str(p) for p in ft.data],
            "split_fractions": ft.split_fractions,
            "split_seed": ft.split_seed,
            "n_train": len(train_events),
            "n_test": len(test_events),
        },
        preprocess=preprocess.to_dict(),
        seed=seed,
    )
    log.info("%s: test %s", cfg.name, _headline(metrics))
    return FinetuneResult(
        metrics=metrics,
        run_dir=run_dir,
        n_train=len(train_events),
        n_test=len(test_events),
        event_confusion=event_confusion,
    )


def finetune_cli(argv: list[str]) -> FinetuneResult:
    """``nufm finetune [--preset NAME | --config-file config.yaml] --run-dir DIR [overrides]``:
    the same launcher flags and dotted overrides as ``nufm pretrain`` (e.g. ``--optim.lr 1e-3
    --train.device cpu --finetune.pretrained RUN --finetune.data FILE.h5
    --finetune.n-train 100 --objective.mode linear``)."""
    cfg, run_dir, _ = parse_run_args(argv, finetune=True)
    return run_finetune(cfg, run_dir)


def evaluate_run(
    run_dir: str | Path,
    data: tuple[Path, ...],
    split: Split = "test",
    n_events: int | None = None,
    split_seed: int | None = None,
    split_fractions: tuple[float, float, float] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the latest checkpoint of a fine-tuning run on a split of ``data``.

    The task is rebuilt from the run's saved config and loaded strictly; the preprocessing is
    the one recorded in the run's ``metrics.json`` (written by :func:`run_finetune`), see
    :func:`nufm.workflows.load.load_task`. ``split_seed`` and ``split_fractions`` default to
    the run's own (its saved ``finetune`` section), so the test events are the ones it was
    tested on, in the precision it was tested in (bf16 autocast when it trained so). Writes a
    versioned metrics JSON to ``out`` (default ``run_dir/eval_<split>.json``, or
    ``./eval_<split>.json`` for a released segmentation model given in place of a run) and,
    for a classification, its per-event confusion matrices beside it
    (``<out stem>_event_confusion.npy``, :mod:`nufm.eval.bootstrap`; ``nufm compare`` reads
    them).
    """
    run_dir = Path(run_dir)
    loaded = load_task(run_dir)
    if out is None and is_released(run_dir):
        out = Path(f"eval_{split}.json")  # a released model: not into the model's folder
    task, preprocess = loaded.task, loaded.preprocess
    saved = loaded.run_config.finetune if loaded.run_config is not None else None
    saved = saved or FinetuneConfig()  # a run saved before the finetune section existed
    split_seed = saved.split_seed if split_seed is None else split_seed
    split_fractions = saved.split_fractions if split_fractions is None else split_fractions
    events = load_split_events(
        tuple(data),
        preprocess,
        split,
        n_events,
        split_seed=split_seed,
        split_fractions=split_fractions,
    )
    # the precision the run trained and tested in (a released model: fp32)
    trained_bf16 = loaded.run_config is not None and loaded.run_config.train.bf16
    dtype = inference_dtype(trained_bf16, next(task.parameters()).device)
    per_event: list[np.ndarray] = []  # a classification's per-event confusion matrices
    with torch.no_grad():
        front = task_pipeline_steps(task.cfg, preprocess)  # per-event inputs of the model
        transform = preprocess.transforms(augment=[*front, *event_target_transforms(task.cfg)])
        metrics = evaluate_task(
            task, events, transform=transform, autocast_dtype=dtype, event_confusion=per_event
        )
    out = out or run_dir / f"eval_{split}.json"
    write_event_confusion(out.with_name(f"{out.stem}_event_confusion.npy"), per_event)
    write_metrics_json(
        out,
        metrics,
        model={"run_dir": str(run_dir), "checkpoint": loaded.source},
        data={
            "files": [str(p) for p in data],
            "split": split,
            "split_seed": split_seed,
            "split_fractions": list(split_fractions),
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
