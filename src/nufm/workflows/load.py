"""Load trained models and export runs: the one place that reads weights back.

Accepted sources, for every loader:

* a run directory (``config.yaml`` + ``checkpoints/``): its latest complete, verified
  checkpoint, or a fine-tuning run's selected weights (``best.safetensors``, early stopping)
  where it has them;
* a training checkpoint file (``checkpoints/step_XXXXXXXX.pt``, verified against its marker);
* an exported directory (``model.safetensors`` + ``config.json``, written by
  :func:`export_run` through :func:`nufm.hub.save_pretrained`);
* the name of a model shipped inside the package (:data:`nufm.hub.SHIPPED_MODELS`, e.g.
  ``lartpc-mae-m``), when no file or directory of that name exists;
* (:func:`load_encoder`, :func:`load`) a released model of the field: a pimm raw checkpoint, a
  pimm / Hugging Face export folder, a Sonata ``.pth`` or a PoLAr-MAE Lightning ``.ckpt``
  (:mod:`nufm.models.released.files`), with the preprocessing it was trained with.

:func:`load_encoder` rebuilds a pretraining objective from its saved config, loads its weights
*strictly* (a checkpoint that does not fit its own config is refused) and returns its online
encoder with the preprocessing contract it was trained with, so features are never computed
with the wrong preprocessing. :func:`load_task` does the same for a fine-tuned task.
:func:`read_state_dict` returns the raw tensors (also of a bare ``.safetensors`` file), for
:func:`nufm.tasks.build.build_task`. File formats live in :mod:`nufm.hub` and
:mod:`nufm.train.checkpoint`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from nufm.config import (
    ObjectiveConfig,
    RunConfig,
    config_from_dict,
    load_config,
    objective_config_from_dict,
)
from nufm.data.detectors import get_detector
from nufm.data.transforms import Preprocess
from nufm.errors import InputError, NotFoundError
from nufm.hub import (
    CONFIG_NAME,
    SHIPPED_MODELS,
    WEIGHTS_NAME,
    read_pretrained,
    resolve_model_path,
    save_pretrained,
)
from nufm.models.encoders import (
    TokenViTConfig,
    TokenViTEncoder,
    select_detector,
    select_detector_state,
)
from nufm.models.released.encoders import (
    PANDA_PREPROCESS,
    POLARMAE_PREPROCESS,
    ReleasedPolarMAEConfig,
    ReleasedPolarMAEEncoder,
    ReleasedPTv3Config,
    ReleasedPTv3Encoder,
)
from nufm.models.released.files import (
    ReleasedCheckpoint,
    build_released,
    is_released,
    read_released,
)
from nufm.models.released.panda import PandaSegmentor
from nufm.models.released.polarmae_semantic import PolarMAESegmentor
from nufm.ssl.distill import DistillConfig
from nufm.ssl.forecast import ForecastConfig
from nufm.ssl.fusion_mae import FusionMAEConfig
from nufm.ssl.mae import MAEConfig
from nufm.step import online_encoder
from nufm.tasks.backbone import TaskBaseConfig, TaskModule
from nufm.tasks.build import TaskConfig
from nufm.tasks.encoder_state import extract_encoder_state
from nufm.tasks.released import ReleasedSegmentation
from nufm.train.checkpoint import BEST_WEIGHTS, latest_checkpoint, load_checkpoint, load_weights
from nufm.train.components import build_objective, preprocess_contract

log = logging.getLogger(__name__)


@dataclass
class Pretrained:
    """A loaded pretraining objective and what downstream code needs from it.

    Attributes:
        objective_config: the objective's typed config (None for a released model of the
            field, which comes without nufm's pretraining objective).
        encoder: the online encoder module (eval mode).
        encoder_config: the encoder's config for :func:`nufm.tasks.build.build_task`
            (``objective_config.encoder``), or None when the objective has no task encoder
            (the toy objective).
        state: the objective's full state dict (tasks pick the encoder's tensors from it).
        preprocess: the preprocessing contract the encoder was trained with.
        source: where it was loaded from, for messages and metrics files.
        step: the optimizer step of the checkpoint (-1 for exports that do not record it).
    """

    objective_config: ObjectiveConfig | None
    encoder: nn.Module
    encoder_config: object | None
    state: dict[str, Tensor]
    preprocess: Preprocess
    source: str
    step: int = -1


@dataclass
class FineTuned:
    """A loaded fine-tuned task.

    Attributes:
        task: the task module (eval mode); ``task.predict(batch)`` gives its predictions.
        config: the task's typed config.
        preprocess: the preprocessing contract of its inputs.
        source: the checkpoint file or exported directory it was loaded from.
        step: the optimizer step of the checkpoint (-1 for exports).
        run_config: the whole run's config, with its ``finetune`` section (labelled files,
            split); None for exports.
    """

    task: TaskModule
    config: TaskConfig
    preprocess: Preprocess
    source: str
    step: int = -1
    run_config: RunConfig | None = None


ENCODER_PREFIX = "encoder."
"""State-dict prefix of a pretraining objective's online encoder (:func:`online_encoder`)."""
ENCODER_ONLY = "encoder"
"""``config.json`` ``contents`` of an export holding the online encoder's weights alone."""


@dataclass
class _Saved:
    """What :func:`_read` found: the objective config and weights, and where they came from."""

    objective_config: ObjectiveConfig
    state: dict[str, Tensor]
    step: int
    source: str
    run_dir: Path | None
    """The run a checkpoint belongs to (None for exports)."""
    run_config: RunConfig | None
    """The run's config (None for exports)."""
    preprocess: dict[str, Any] | None
    """The contract stored in an export (None for checkpoints)."""
    encoder_only: bool = False
    """An export of the online encoder's weights alone (``export_run(encoder_only=True)``)."""


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def _latest(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise NotFoundError(f"{run_dir}: no such run directory, so no complete checkpoint")
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise NotFoundError(f"{run_dir}: no complete checkpoint under checkpoints/")
    return ckpt


def _read(path: Path) -> _Saved:
    """Read a run directory, a checkpoint file, an exported directory or a shipped model
    (module docstring)."""
    path = resolve_model_path(path)
    if not path.exists():
        raise NotFoundError(
            f"{path}: no such run directory, checkpoint file or exported model directory, "
            f"and no shipped model of that name (shipped: {', '.join(sorted(SHIPPED_MODELS))})"
        )
    if path.is_dir() and _is_run_dir(path):
        cfg = load_config(path / "config.yaml")
        if (path / BEST_WEIGHTS).is_file():  # a fine-tuning run's selected weights
            state, step = load_weights(path / BEST_WEIGHTS)
            return _Saved(cfg.objective, state, step, str(path / BEST_WEIGHTS), path, cfg, None)
        ckpt = _latest(path)
        saved = load_checkpoint(ckpt)
        return _Saved(cfg.objective, saved["model"], int(saved["step"]), str(ckpt), path, cfg, None)
    if path.is_dir() and (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file():
        state, meta = read_pretrained(path)
        objective_cfg = objective_config_from_dict(meta["model"])
        return _Saved(
            objective_cfg,
            state,
            -1,
            str(path),
            None,
            None,
            meta.get("preprocess"),
            encoder_only=meta.get("contents") == ENCODER_ONLY,
        )
    if path.is_file():
        saved = load_checkpoint(path)
        cfg = config_from_dict(saved["config"])
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        return _Saved(
            cfg.objective, saved["model"], int(saved["step"]), str(path), run_dir, cfg, None
        )
    raise NotFoundError(
        f"{path}: not a run directory (config.yaml + checkpoints/), an exported model "
        f"({WEIGHTS_NAME} + {CONFIG_NAME}) or a training checkpoint file"
    )


def _preprocess_from(contract: dict | None, source: str) -> Preprocess:
    if not contract:
        log.warning("%s: no preprocessing contract saved; using the defaults", source)
        return Preprocess()
    known = {k: v for k, v in contract.items() if k != "source"}
    try:
        return Preprocess.from_dict(known)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: the saved preprocessing contract is not readable: {e}") from e


def _rebuild(saved: _Saved) -> nn.Module:
    """The objective or task of ``saved.objective_config`` with ``saved.state`` loaded strictly."""
    torch.manual_seed(0)  # deterministic init of anything the state does not cover
    model = build_objective(saved.objective_config)
    kind = "task" if isinstance(saved.objective_config, TaskBaseConfig) else "objective"
    try:
        if not saved.encoder_only:
            model.load_state_dict(saved.state, strict=True)
            return model.eval()
        result = model.load_state_dict(saved.state, strict=False)
    except RuntimeError as e:
        raise InputError(f"{saved.source}: weights do not fit the saved {kind} config: {e}") from e
    # an encoder-only export: every encoder tensor and nothing else
    missing = [k for k in result.missing_keys if k.startswith(ENCODER_PREFIX)]
    if missing or result.unexpected_keys:
        raise InputError(
            f"{saved.source}: an encoder-only export that does not fit the saved {kind} "
            f"config: missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The saved tensors of any source of the module docstring, or of a ``.safetensors`` file
    (for :func:`nufm.tasks.build.build_task`, which finds the encoder's tensors in them).

    Raises:
        nufm.errors.NotFoundError: nothing to read at ``path``, or a run without a complete
            checkpoint.
        nufm.train.checkpoint.CheckpointError: a checkpoint fails verification.
    """
    path = resolve_model_path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return load_file(str(path))
    if path.is_dir() and (path / WEIGHTS_NAME).is_file():
        return load_file(str(path / WEIGHTS_NAME))
    if path.is_dir() and not _is_run_dir(path):
        raise NotFoundError(
            f"{path}: directory without {WEIGHTS_NAME} (and not a run directory with "
            "config.yaml + checkpoints/)"
        )
    if not path.exists():
        raise NotFoundError(f"{path}: no such weights file or directory")
    return dict(_read(path).state)


def load_encoder(path: str | Path) -> Pretrained:
    """Load the encoder of a pretraining run, checkpoint or export, with its preprocessing.

    Example: ``pre = load_encoder("runs/mae-tiny"); features = pre.encoder(batch)``.

    Raises:
        nufm.errors.NotFoundError: ``path`` is none of the accepted sources, or a run has no
            complete checkpoint.
        nufm.errors.InputError: a fine-tuned task (use :func:`load_task`), or the weights do
            not fit the saved config.
    """
    if is_released(resolve_model_path(path)):
        return _released(read_released(Path(path)))
    return _encoder_from(_read(Path(path)), str(path))


def _released(ckpt: ReleasedCheckpoint) -> Pretrained:
    """A released model of the field as a nufm encoder (a segmentor gives its backbone)."""
    path = ckpt.source
    model, _ = build_released(ckpt)  # logs what loaded and what was ignored
    if isinstance(model, PandaSegmentor):
        encoder = ReleasedPTv3Encoder(ReleasedPTv3Config(ptv3=model.cfg.backbone))
        encoder.model = model.backbone
        model = encoder.eval()
    elif isinstance(model, PolarMAESegmentor):
        pm = ReleasedPolarMAEEncoder(ReleasedPolarMAEConfig(polarmae=model.cfg.encoder))
        pm.model = model.encoder
        model = pm.eval()
    cfg = getattr(model, "cfg", None)
    assert isinstance(cfg, ReleasedPTv3Config | ReleasedPolarMAEConfig)
    preprocess = PANDA_PREPROCESS if isinstance(cfg, ReleasedPTv3Config) else POLARMAE_PREPROCESS
    log.info("loaded released %s model from %s (%s)", ckpt.kind, path, ckpt.format)
    return Pretrained(
        objective_config=None,
        encoder=model,
        encoder_config=cfg,
        state=model.state_dict(),
        preprocess=preprocess,
        source=str(path),
    )


def _encoder_from(saved: _Saved, path: str) -> Pretrained:
    cfg = saved.objective_config
    if isinstance(cfg, TaskBaseConfig):
        raise InputError(
            f"{saved.source}: a fine-tuned {cfg.name} task, not a pretraining run "
            "(load it with load_task)"
        )
    if saved.run_config is not None:
        contract = preprocess_contract(saved.run_config.data)
    else:
        contract = saved.preprocess
    preprocess = _preprocess_from(contract, path)
    encoder = online_encoder(_rebuild(saved))
    log.info(
        "loaded pretrained %s encoder from %s (step %d)",
        type(encoder).__name__,
        saved.source,
        saved.step,
    )
    return Pretrained(
        objective_config=cfg,
        encoder=encoder,
        encoder_config=cfg.encoder
        if isinstance(cfg, MAEConfig | DistillConfig | ForecastConfig | FusionMAEConfig)
        else None,
        state=saved.state,
        preprocess=preprocess,
        source=saved.source,
        step=saved.step,
    )


def for_detector(pretrained: Pretrained, detector: str) -> Pretrained:
    """The one-detector encoder of a cross-experiment model (``TokenViTConfig
    .other_tokenizers``): ``detector``'s tokenizer with the shared ViT, its weights exactly,
    and that detector's preprocessing; any other model is returned as it is.

    Raises:
        nufm.errors.InputError: the model has no tokenizer for ``detector``.
    """
    cfg = pretrained.encoder_config
    if not isinstance(cfg, TokenViTConfig) or not cfg.other_tokenizers:
        return pretrained
    sub, _ = extract_encoder_state(pretrained.state, pretrained.encoder)
    try:
        one = select_detector(cfg, detector)
    except InputError as e:
        raise InputError(f"{pretrained.source}: {e}") from e
    state = select_detector_state(sub, cfg, detector)
    encoder = TokenViTEncoder(one)
    encoder.load_state_dict(state)  # strict: every tensor of the one-detector encoder
    objective = pretrained.objective_config
    if isinstance(objective, MAEConfig):
        objective = replace(objective, encoder=one)
    log.info("%s: the %s tokenizer and the shared ViT", pretrained.source, detector)
    return replace(
        pretrained,
        objective_config=objective,
        encoder=encoder.eval(),
        encoder_config=one,
        state=state,
        preprocess=get_detector(detector).preprocess,
    )


def load_task(path: str | Path) -> FineTuned:
    """Load a fine-tuned task from its run, checkpoint or export, with its preprocessing.

    A run's preprocessing is the one its ``metrics.json`` records (written by ``nufm
    finetune``); an export stores it in ``config.json``.

    Example: ``ft = load_task("runs/semseg-full"); pred = ft.task.predict(batch)["pred"]``.

    Raises:
        nufm.errors.NotFoundError: ``path`` is none of the accepted sources, a run has no
            complete checkpoint or no ``metrics.json``.
        nufm.errors.InputError: not a fine-tuned task (use :func:`load_encoder`), or the
            weights do not fit the saved config.
    """
    if is_released(resolve_model_path(path)):
        return _released_task(read_released(Path(path)))
    return _task_from(_read(Path(path)))


def _released_task(ckpt: ReleasedCheckpoint) -> FineTuned:
    """A released Panda-Semantic (or its linear-probe variant) as a nufm semseg task: the
    backbone as the task's encoder and ``seg_head`` as its linear head, so ``nufm evaluate``
    scores it like a fine-tuned run."""
    from nufm.tasks.semseg import SemsegConfig

    path = ckpt.source
    model, _ = build_released(ckpt)
    if isinstance(model, PolarMAESegmentor):
        pm_cfg = SemsegConfig(
            encoder=ReleasedPolarMAEConfig(polarmae=model.cfg.encoder),
            mode="linear",
            num_classes=model.cfg.num_classes,
            class_weighting="none",
        )
        log.info("loaded released PoLAr-MAE-Semantic from %s as a semseg task", path)
        return FineTuned(
            task=ReleasedSegmentation(pm_cfg, model).eval(),
            config=pm_cfg,
            preprocess=POLARMAE_PREPROCESS,
            source=str(path),
        )
    if not isinstance(model, PandaSegmentor):
        raise InputError(
            f"{path}: a released {ckpt.kind} encoder, not a segmentation model "
            "(fine-tune it with nufm finetune --finetune.pretrained, or embed it)"
        )
    encoder_cfg = ReleasedPTv3Config(ptv3=model.cfg.backbone, features="concat")
    cfg = SemsegConfig(
        encoder=encoder_cfg,
        mode="linear",
        num_classes=model.cfg.num_classes,
        class_weighting="none",
    )
    if model.cfg.backbone_out_channels != encoder_cfg.out_dim:
        raise InputError(
            f"{path}: seg_head takes {model.cfg.backbone_out_channels} features, the backbone "
            f"gives {encoder_cfg.out_dim}"
        )
    torch.manual_seed(0)
    task = build_objective(cfg)
    assert isinstance(task, TaskModule)
    encoder = task.backbone.encoder
    assert isinstance(encoder, ReleasedPTv3Encoder)
    encoder.model.load_state_dict(model.backbone.state_dict(), strict=True)
    head = task.head
    assert isinstance(head, nn.Linear)
    head.load_state_dict(model.seg_head.state_dict(), strict=True)
    log.info("loaded released segmentor from %s as a semseg task (%s)", path, ckpt.format)
    return FineTuned(task=task.eval(), config=cfg, preprocess=PANDA_PREPROCESS, source=str(path))


def _task_from(saved: _Saved) -> FineTuned:
    cfg = saved.objective_config
    if not isinstance(cfg, TaskBaseConfig):
        raise InputError(
            f"{saved.source}: a {type(cfg).__name__} pretraining objective, not a fine-tuned "
            "task (load it with load_encoder)"
        )
    if saved.run_dir is not None:
        recorded = saved.run_dir / "metrics.json"
        if not recorded.is_file():
            raise NotFoundError(f"{recorded}: missing; it records the preprocessing contract")
        preprocess = _preprocess_from(json.loads(recorded.read_text())["preprocess"], str(recorded))
    else:
        preprocess = _preprocess_from(saved.preprocess, saved.source)
    task = _rebuild(saved)
    assert isinstance(task, TaskModule)
    log.info("loaded %s task (%s) from %s (step %d)", cfg.name, cfg.mode, saved.source, saved.step)
    return FineTuned(
        task=task,
        config=cfg,
        preprocess=preprocess,
        source=saved.source,
        step=saved.step,
        run_config=saved.run_config,
    )


def load(path: str | Path) -> Pretrained | FineTuned:
    """Load whatever ``path`` holds: a pretrained encoder (:func:`load_encoder`) or a
    fine-tuned task (:func:`load_task`), decided by the saved config.

    Raises:
        nufm.errors.NotFoundError: ``path`` is none of the accepted sources, or a run has no
            complete checkpoint.
        nufm.errors.InputError: the weights do not fit the saved config.
    """
    if is_released(resolve_model_path(path)):
        ckpt = read_released(Path(path))  # read once: released files are hundreds of MB
        if ckpt.kind in ("ptv3-segmentor", "polarmae-segmentor"):
            return _released_task(ckpt)
        return _released(ckpt)
    saved = _read(Path(path))
    if isinstance(saved.objective_config, TaskBaseConfig):
        return _task_from(saved)
    return _encoder_from(saved, str(path))


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    preprocess: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    provenance: dict[str, Any] | None = None,
    encoder_only: bool = False,
) -> Path:
    """Export the latest complete checkpoint of a training run as a pretrained directory.

    The weights are the objective's state dict, or with ``encoder_only`` only its online
    encoder's (``encoder.*``: a self-distillation run's teacher and heads, or an MAE's decoder,
    are left out; ``config.json`` says ``"contents": "encoder"``, and :func:`load_encoder`
    builds the rest of the objective fresh); ``config.json`` holds the objective config and
    ``preprocess`` (default: :func:`nufm.train.components.preprocess_contract` of the run's data
    config). :func:`load_encoder` and :func:`load_task` read it back. ``dtype`` and
    ``provenance``: :func:`nufm.hub.save_pretrained`.

    Raises:
        nufm.errors.NotFoundError: The run has no complete checkpoint.
        nufm.train.checkpoint.CheckpointError: The latest checkpoint fails verification.
    """
    ckpt = _latest(Path(run_dir))
    state = load_checkpoint(ckpt)
    cfg = state["config"]
    if preprocess is None:
        preprocess = preprocess_contract(config_from_dict(cfg).data)
    weights = state["model"]
    if encoder_only:
        weights = {k: v for k, v in weights.items() if k.startswith(ENCODER_PREFIX)}
        if not weights:
            raise InputError(f"{ckpt}: no online-encoder weights ({ENCODER_PREFIX}*) to export")
    out = save_pretrained(
        weights,
        out_dir,
        config=cfg["objective"],
        preprocess=preprocess,
        dtype=dtype,
        provenance=provenance,
        contents=ENCODER_ONLY if encoder_only else "objective",
    )
    log.info("exported %s (step %d) to %s", ckpt, state["step"], out)
    return out
