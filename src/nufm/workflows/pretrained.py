"""Load a pretrained encoder (with its preprocessing contract) from a run or an export.

Accepted sources:
* a pretraining run directory (``config.yaml`` + ``checkpoints/``): the latest complete,
  verified checkpoint;
* an exported directory (``model.safetensors`` + ``config.json``, :func:`nufm.hub.export`).

Either way the objective is rebuilt from its saved config, its weights are loaded *strictly*
(a checkpoint that does not fit its own config is refused), and its online ``encoder`` is
returned in eval mode together with the :class:`~nufm.data.transforms.Preprocess` it was
trained with, so features are never computed with the wrong preprocessing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from nufm.config import ObjectiveConfig, load_config, objective_config_from_dict
from nufm.data.transforms import Preprocess
from nufm.errors import InputError, NotFoundError

log = logging.getLogger(__name__)


@dataclass
class Pretrained:
    """A loaded pretraining objective and what downstream code needs from it.

    Attributes:
        objective_config: the objective's typed config.
        encoder: the online encoder module (eval mode).
        encoder_config: the encoder's config for :func:`nufm.tasks.build.build_task`
            (``objective_config.encoder``), or None when the objective's encoder is not a
            task encoder (forecasting).
        state: the objective's full state dict (tasks pick the encoder's tensors from it).
        preprocess: the preprocessing contract the encoder was trained with.
        source: where it was loaded from, for messages and metrics files.
        step: the optimizer step of the checkpoint (-1 for exports that do not record it).
    """

    objective_config: ObjectiveConfig
    encoder: nn.Module
    encoder_config: object | None
    state: dict[str, Tensor]
    preprocess: Preprocess
    source: str
    step: int = -1


def _preprocess_from(contract: dict | None, source: str) -> Preprocess:
    if not contract:
        log.warning("%s: no preprocessing contract saved; using the defaults", source)
        return Preprocess()
    known = {k: v for k, v in contract.items() if k != "source"}
    try:
        return Preprocess.from_dict(known)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: the saved preprocessing contract is not readable: {e}") from e


def load_pretrained(path: str | Path) -> Pretrained:
    """Load a pretraining run directory or an exported directory (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` is neither kind of directory, or a run has no complete
            checkpoint.
        ValueError: the weights do not fit the saved config.
    """
    from nufm.train.build import build_objective, preprocess_contract
    from nufm.train.checkpoint import latest_checkpoint, load_checkpoint

    path = Path(path)
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        cfg = load_config(path / "config.yaml")
        ckpt = latest_checkpoint(path / "checkpoints")
        if ckpt is None:
            raise NotFoundError(f"{path}: no complete checkpoint under checkpoints/")
        saved = load_checkpoint(ckpt)
        objective_cfg, state, step = cfg.objective, saved["model"], int(saved["step"])
        preprocess = _preprocess_from(preprocess_contract(cfg.data), str(path))
        source = str(ckpt)
    elif (path / "model.safetensors").is_file() and (path / "config.json").is_file():
        from safetensors.torch import load_file

        try:
            meta = json.loads((path / "config.json").read_text())
            objective_cfg = objective_config_from_dict(meta["model"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path / 'config.json'}: not a readable model config: {e}") from e
        try:
            state, step = load_file(str(path / "model.safetensors")), -1
        except Exception as e:  # safetensors raises its own SafetensorError
            raise InputError(f"{path / 'model.safetensors'}: not readable (corrupt?): {e}") from e
        preprocess = _preprocess_from(meta.get("preprocess"), str(path))
        source = str(path)
    else:
        raise NotFoundError(
            f"{path}: not a pretraining run (config.yaml + checkpoints/) or an exported model "
            "(model.safetensors + config.json)"
        )
    torch.manual_seed(0)  # deterministic init of anything the state does not cover
    objective = build_objective(objective_cfg)
    try:
        objective.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{source}: weights do not fit the saved objective config: {e}") from e
    encoder = objective.encoder.eval()
    log.info("loaded pretrained %s encoder from %s (step %d)", type(encoder).__name__, source, step)
    return Pretrained(
        objective_config=objective_cfg,
        encoder=encoder,
        encoder_config=getattr(objective_cfg, "encoder", None),
        state=state,
        preprocess=preprocess,
        source=source,
        step=step,
    )
