"""Atomic, verifiable training checkpoints and exact RNG capture for bit-identical resume.

Layout under ``run_dir/checkpoints/``::

    step_00000100.pt              torch.save of the state dict (see :func:`save_checkpoint`)
    step_00000100.complete.json   marker: {"step", "file", "sha256", "bytes", "nufm_version"}

and, beside ``checkpoints/`` in a fine-tuning run with early stopping, ``best.safetensors``: the
selected task weights (:func:`save_weights`), which readers of the run use instead of the last
checkpoint.

A checkpoint is written to a temp file in the same directory, fsynced and renamed with
``os.replace``; only then is its marker written (atomically too). A checkpoint without a marker
(process killed mid-write or before the marker) is ignored; a marker whose sha256 does not match
the file (bit flips, truncation) makes loading fail with a clear reason. Saving the RNG states
of torch (CPU and the process's CUDA device), numpy and python plus the data cursor makes a
resumed run continue exactly where the interrupted one stopped (the pimm "exact resume" idea,
same world size only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from nufm._version import __version__
from nufm.atomic import atomic_output
from nufm.errors import UserError
from nufm.hub import CONFIG_NAME, WEIGHTS_NAME, plain_state, read_pretrained, resolve_model_path
from nufm.step import HasTeacher

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8})\.pt$")
SLOW_WRITE_ENV = "NUFM_TEST_CHECKPOINT_WRITE_DELAY"
"""Test hook: seconds to sleep after the first chunk of a checkpoint reached the disk."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is corrupt, incomplete or incompatible with the current run."""


@dataclass(frozen=True)
class DataCursor:
    """Position of the next micro-batch: batch ``batch`` (0-based, per rank) of ``epoch``."""

    epoch: int = 0
    batch: int = 0


# ---------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and this process's CUDA device when CUDA is in
    use (weights_only-safe). Under DDP each rank owns one device (``cuda:LOCAL_RANK``)."""
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):  # a dict only when the global generator is not MT19937
        raise RuntimeError(f"capture_rng_state: unsupported numpy global RNG {np_state!r:.80}")
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].copy()),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # only this process's device: querying all would create a context on every GPU
        device = torch.cuda.current_device()
        state["cuda"] = {"device": device, "state": torch.cuda.get_rng_state(device)}
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"]["state"], torch.cuda.current_device())
        else:
            log.warning(
                "checkpoint has a CUDA RNG state but CUDA is not available here; not restored"
            )


# ---------------------------------------------------------------- writing


class _HashingWriter:
    """File wrapper that hashes what passes through and honours the slow-write test hook."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.delay = float(os.environ.get(SLOW_WRITE_ENV, "0") or 0)

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        self.sha.update(data)
        self.bytes += len(data)
        if self.delay > 0:
            self.f.flush()
            os.fsync(self.f.fileno())
            time.sleep(self.delay)
            self.delay = 0.0
        return n

    def flush(self) -> None:
        self.f.flush()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


BEST_WEIGHTS = "best.safetensors"
"""File name of a fine-tuning run's selected weights, in the run directory."""


def save_weights(model: nn.Module, path: str | Path, step: int) -> Path:
    """Write ``model``'s state dict as safetensors (atomically), with its training step."""
    path = Path(path)
    with atomic_output(path, suffix=".safetensors") as tmp:
        meta = {"step": str(step), "nufm_version": __version__}
        save_file(plain_state(model.state_dict()), tmp, metadata=meta)
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], int]:
    """``(state, step)`` written by :func:`save_weights`.

    Raises:
        CheckpointError: the file is not readable safetensors with a step.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            step = int((f.metadata() or {})["step"])
        return load_file(str(path)), step
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise CheckpointError(f"{path}: not readable saved weights (corrupt?): {e}") from e


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def marker_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.stem + ".complete.json")


def save_checkpoint(
    directory: str | Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    cursor: DataCursor,
    config: dict,
    rng: list[dict[str, Any]],
    keep: int = 3,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``step_XXXXXXXX.pt`` atomically, then its completeness marker; prune old ones.

    The state holds ``model`` (state dict), ``optimizer``, ``step`` (next step to run, i.e.
    the schedule position), ``cursor`` (next micro-batch), ``rng`` (one
    :func:`capture_rng_state` per DDP rank), ``config`` (the run config dict) and
    ``nufm_version``.

    Returns:
        Path of the checkpoint file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "cursor": asdict(cursor),
        "rng": rng,
        "config": config,
        "nufm_version": __version__,
        "extra": extra or {},
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        writer = _HashingWriter(f)
        torch.save(state, cast(IO[bytes], writer))  # torch.save needs only write() and flush()
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)
    marker = {
        "step": step,
        "file": path.name,
        "sha256": writer.sha.hexdigest(),
        "bytes": writer.bytes,
        "nufm_version": __version__,
    }
    _atomic_write_bytes(marker_path(path), json.dumps(marker, indent=1).encode())
    _fsync_dir(directory)
    log.info("checkpoint written: %s", path)
    _prune(directory, keep)
    return path


def _prune(directory: Path, keep: int) -> None:
    complete = list_checkpoints(directory)
    for old in complete[:-keep] if keep > 0 else []:
        marker_path(old).unlink(missing_ok=True)  # marker first: never a marker without file
        old.unlink(missing_ok=True)
    for tmp in directory.glob(".step_*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- reading


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files that have a completeness marker, oldest first (by step).

    Files without a marker (partial writes, temp files) are skipped.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m and marker_path(p).is_file():
            found.append((int(m.group(1)), p))
        elif m:
            log.warning("%s has no completeness marker (interrupted write?); ignored", p)
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def verify_checkpoint(path: str | Path) -> dict:
    """Check a checkpoint against its marker; return the marker.

    Raises:
        CheckpointError: no marker, unreadable marker, size or sha256 mismatch.
    """
    path = Path(path)
    mpath = marker_path(path)
    if not mpath.is_file():
        raise CheckpointError(
            f"{path}: no completeness marker {mpath.name}; the write was "
            "interrupted, so this checkpoint is not trusted"
        )
    try:
        marker = json.loads(mpath.read_text())
        expected_sha, expected_bytes = marker["sha256"], int(marker["bytes"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mpath}: unreadable completeness marker ({e})") from e
    size = path.stat().st_size
    if size != expected_bytes:
        raise CheckpointError(
            f"{path}: size {size} bytes differs from the {expected_bytes} "
            "recorded when it was written (truncated or overwritten)"
        )
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            sha.update(chunk)
    if sha.hexdigest() != expected_sha:
        raise CheckpointError(
            f"{path}: sha256 {sha.hexdigest()[:12]}… differs from "
            f"{expected_sha[:12]}… recorded when it was written (corrupt "
            "file); delete it (and its .complete.json) to resume from an "
            "older checkpoint"
        )
    return marker


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Verify (:func:`verify_checkpoint`) and load a checkpoint state dict."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).split(". ")[0]  # torch's explanation runs to several sentences
        raise CheckpointError(f"{path}: cannot be read by torch.load ({first}); corrupt?") from e
    for key in ("step", "model", "cursor", "config"):
        if key not in state:
            raise CheckpointError(f"{path}: not a nufm training checkpoint (no '{key}')")
    if state.get("nufm_version") != __version__:
        log.warning(
            "%s was written by nufm %s, this is nufm %s",
            path,
            state.get("nufm_version"),
            __version__,
        )
    return state


def check_model_compatible(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str
) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and shape-mismatched keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"shape mismatch: {mismatched[:5]}")
        if missing:
            parts.append(f"missing in checkpoint: {missing[:5]}")
        if unexpected:
            parts.append(f"not in model: {unexpected[:5]}")
        raise CheckpointError(
            f"{where}: incompatible with the current model (" + "; ".join(parts) + ")"
        )


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two config dicts differ, as 'path: saved -> current'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(saved) | set(current)):
            out += config_differences(saved.get(k), current.get(k), f"{prefix}{k}.")
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


def init_from_run(objective: nn.Module, path: str | Path) -> int:
    """Start ``objective`` from the weights of an earlier pretraining run (its directory, whose
    latest complete checkpoint is read, or one checkpoint file) or of an exported model (a
    ``nufm export`` directory, or a shipped model's name such as ``lartpc-mae-m``): every
    tensor whose name and shape match is loaded, the rest keeps its fresh initialisation
    (e.g. the relational heads of a second pretraining phase, or a new loss term's head). The
    encoder must match whole.

    Returns:
        The number of tensors loaded.

    Raises:
        CheckpointError: no checkpoint or export there, or its encoder differs from the
            objective's.
    """
    p = resolve_model_path(path)
    if (p / WEIGHTS_NAME).is_file() and (p / CONFIG_NAME).is_file():
        source, state = p, read_pretrained(p)[0]  # the objective's (or encoder's) tensors
    else:
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        ckpt = latest_checkpoint(folder) if p.is_dir() else p
        if ckpt is None or not ckpt.is_file():
            raise CheckpointError(f"train.init_from {p}: no complete checkpoint to start from")
        source, state = ckpt, load_checkpoint(ckpt)["model"]
    own = objective.state_dict()
    encoder = [k for k in own if k.startswith("encoder.")]
    bad = [k for k in encoder if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(
            f"train.init_from {source}: its encoder does not match this run's ({len(bad)} of "
            f"{len(encoder)} encoder tensors missing or of another shape, e.g. {bad[0]})"
        )
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    objective.load_state_dict(loadable, strict=False)  # copies into the run's dtypes
    if isinstance(objective, HasTeacher) and not any(k.startswith("teacher_") for k in loadable):
        # an encoder-only export has no EMA teacher: it starts as a copy of the loaded student,
        # as a fresh run's teacher starts as a copy of its student
        objective.update_teacher(0.0)
        log.info("init_from %s: no teacher there; the EMA teacher starts as the student", source)
    log.info(
        "initialised %d of %d tensors from %s; %d start fresh",
        len(loadable),
        len(own),
        source,
        len(own) - len(loadable),
    )
    return len(loadable)
