"""Pretrained-model files: ``model.safetensors`` + ``config.json`` (weights, the config to
rebuild the model, the nufm version and the preprocessing contract the model expects).

File I/O and key matching only (no config, training or task code): :func:`save_pretrained`,
:func:`read_pretrained`, :func:`plain_state` (tensors safetensors accepts), :func:`match_state`
with its :class:`LoadReport` of missing, unexpected and shape-mismatched keys, and
:func:`from_pretrained` into a model you build (loading nothing is an error, as pimm does for
PoLAr-MAE arXiv:2502.02558 / Panda arXiv:2512.01324 weights). Rebuilding nufm objectives and
tasks from these files, from training checkpoints and from run directories is
:mod:`nufm.workflows.load`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nufm._version import __version__
from nufm.atomic import atomic_output
from nufm.errors import InputError, NotFoundError

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "nufm-pretrained-v1"

SHIPPED_MODELS: dict[str, str] = {
    "lartpc-mae-m": "LArTPC token ViT (width 192, depth 6, 2.8 M parameters), MAE with the "
    "context term on fresh simulated events; the card: nufm/weights/lartpc-mae-m/README.md",
    "lartpc-mae-m-desc": "lartpc-mae-m pretrained further with the descriptor term (its "
    "visible tokens predict their groups' four-scale local-shape descriptors); the demo's "
    "encoder; the card: nufm/weights/lartpc-mae-m-desc/README.md",
    "lartpc-ptv3-distill": "LArTPC point-level PTv3 tiny encoder (4.2 M parameters), "
    "self-distillation (Sonata / Panda) on fresh simulated events; the card: "
    "nufm/weights/lartpc-ptv3-distill/README.md",
    "lartpc-ptv3-desc": "lartpc-ptv3-distill pretrained further with the descriptor term (every "
    "unmasked point predicts its four-scale local-shape descriptors); the best frozen "
    "per-point features nufm ships; the card: nufm/weights/lartpc-ptv3-desc/README.md",
}
"""Pretrained models inside the package (``nufm/weights/<name>/``), loadable by name wherever
a pretrained model is accepted."""


def shipped_model_dir(name: str) -> Path | None:
    """The directory of the shipped model ``name`` (:data:`SHIPPED_MODELS`), else None."""
    if name not in SHIPPED_MODELS:
        return None
    return Path(__file__).resolve().parent / "weights" / name


def resolve_model_path(path: str | Path) -> Path:
    """``path`` itself when it exists, else the shipped model of that name, else ``path``
    (whose reader then reports it missing)."""
    p = Path(path)
    if not p.exists():
        shipped = shipped_model_dir(str(path))
        if shipped is not None:
            return shipped
    return p


@dataclass
class LoadReport:
    """What :func:`from_pretrained` loaded."""

    loaded: list[str] = field(default_factory=list)
    """Keys copied into the model."""
    missing: list[str] = field(default_factory=list)
    """Model keys absent from the file (left at their initial values)."""
    unexpected: list[str] = field(default_factory=list)
    """File keys the model does not have (ignored)."""
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    """(key, shape in file, shape in model) for keys skipped because shapes differ."""
    config: dict[str, Any] = field(default_factory=dict)
    """The full ``config.json`` (``model``, ``preprocess``, ``nufm_version``)."""

    @property
    def is_exact(self) -> bool:
        """True = every model key was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors, missing {len(self.missing)}, unexpected "
            f"{len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        ]
        for k, a, b in self.mismatched[:10]:
            lines.append(f"  shape mismatch {k}: file {a} vs model {b}")
        lines += [f"  missing {k}" for k in self.missing[:10]]
        lines += [f"  unexpected {k}" for k in self.unexpected[:10]]
        return "\n".join(lines)


def match_state(
    own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], report: LoadReport | None = None
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Split ``saved`` into tensors that fit ``own`` (same key and shape) and the rest.

    Returns:
        (the usable tensors, a :class:`LoadReport` listing loaded, missing, unexpected and
        shape-mismatched keys). Nothing is loaded here.
    """
    report = report if report is not None else LoadReport()
    usable: dict[str, torch.Tensor] = {}
    for k, v in saved.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            usable[k] = v
    report.missing = sorted(set(own) - set(saved))
    report.loaded = sorted(usable)
    return usable, report


def plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors, no two sharing storage (safetensors refuses shared ones)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), int(t.storage_offset()))
        if t.numel() and key in seen:
            t = t.clone()
        seen.add(key)
        out[k] = t
    return out


def save_pretrained(
    model: nn.Module | dict[str, torch.Tensor],
    directory: str | Path,
    config: dict[str, Any],
    preprocess: dict[str, Any],
    *,
    dtype: torch.dtype | None = None,
    provenance: dict[str, Any] | None = None,
    contents: str = "objective",
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``.

    Args:
        model: The module (or its state dict) to save.
        directory: Output directory (created).
        config: The model config needed to rebuild it (e.g. the objective config dict).
        preprocess: The preprocessing contract the inputs must follow (normalisation centre,
            scale, energy transform, ...), stored verbatim.
        dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` halves the
            file; loading casts back to the model's dtype); None keeps them.
        provenance: how the model was made (command, data, compute), stored in
            ``config.json`` under ``provenance``.
        contents: what the weights are, stored as ``contents``: ``objective`` (the whole
            module ``config`` describes) or ``encoder`` (its online encoder alone).

    Returns:
        The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = plain_state(model.state_dict() if isinstance(model, nn.Module) else model)
    if dtype is not None:
        state = {k: t.to(dtype) if t.is_floating_point() else t for k, t in state.items()}
    # atomic (no half-written file at the path) and with the mode a plain open gives
    # (safetensors itself writes 0600, unreadable for a group sharing models)
    with atomic_output(directory / WEIGHTS_NAME, suffix=".safetensors") as tmp:
        save_file(state, tmp, metadata={"format": FORMAT, "nufm_version": __version__})
    meta = {
        "format": FORMAT,
        "nufm_version": __version__,
        "model": config,
        "preprocess": preprocess,
        "contents": contents,
    }
    if provenance is not None:
        meta["provenance"] = provenance
    with atomic_output(directory / CONFIG_NAME, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True))
    log.info("saved pretrained model to %s", directory)
    return directory


def read_pretrained(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a directory written by :func:`save_pretrained`.

    Returns:
        (the saved tensors on CPU, the full ``config.json``: ``model``, ``preprocess``,
        ``nufm_version``, ``format``). A different nufm version is logged, not refused.

    Raises:
        nufm.errors.NotFoundError: A file is missing.
        nufm.errors.InputError: ``config.json`` is not readable or names another format, or
            the weights file is corrupt.
    """
    directory = Path(directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (directory / name).is_file():
            raise NotFoundError(f"{directory}: no {name} (not a save_pretrained directory)")
    try:
        meta = json.loads((directory / CONFIG_NAME).read_text())
    except ValueError as e:
        raise InputError(f"{directory / CONFIG_NAME}: not readable JSON (corrupt?): {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{directory / CONFIG_NAME}: format {found!r}, expected {FORMAT!r}")
    if meta.get("nufm_version") != __version__:
        log.warning(
            "%s was saved by nufm %s, this is nufm %s",
            directory,
            meta.get("nufm_version"),
            __version__,
        )
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
    except Exception as e:
        raise InputError(f"{directory / WEIGHTS_NAME}: not readable (corrupt?): {e}") from e
    return state, meta


def from_pretrained(
    directory: str | Path, build_fn: Callable[[dict[str, Any]], nn.Module], strict: bool = False
) -> tuple[nn.Module, LoadReport]:
    """Rebuild a model with ``build_fn(config["model"])`` and load the saved weights into it.

    Keys whose shapes differ are skipped and reported, never loaded partially. For nufm's own
    objectives and tasks (no ``build_fn``) use :mod:`nufm.workflows.load`.

    Args:
        directory: A directory written by :func:`save_pretrained`.
        build_fn: Builds the (randomly initialised) model from the saved model config.
        strict: True = raise unless the load is exact.

    Returns:
        The model and a :class:`LoadReport`.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: Another file format, no tensor could be loaded, or ``strict`` and the load
            is not exact.
    """
    directory = Path(directory)
    saved, meta = read_pretrained(directory)
    model = build_fn(meta["model"])
    usable, report = match_state(model.state_dict(), saved, LoadReport(config=meta))
    if not usable:
        raise ValueError(
            f"{directory}: none of the {len(saved)} saved tensors fit the model "
            f"built from its config\n{report}"
        )
    if strict and not report.is_exact:
        raise ValueError(f"{directory}: load is not exact\n{report}")
    model.load_state_dict(usable, strict=False)
    if not report.is_exact:
        log.warning("%s: partial load\n%s", directory, report)
    return model, report
