"""Versioned metric reports: one JSON file per evaluation, written atomically.

This file owns the on-disk metric schema (``schema_version``), documented in
``docs/evaluation.md``. It answers the user request recorded for PoLAr-MAE (arXiv:2502.02558)
and Panda (arXiv:2512.01324) users: an evaluation output that states the model, the data, the
preprocessing contract and the seed next to every number, so results are comparable.

Schema (version 1)::

    {
      "schema_version": 1,
      "kind": "nufm.metrics",
      "created_utc": "2026-01-01T00:00:00+00:00",
      "nufm_version": "0.1.0",
      "seed": 0,
      "model": {...}, "data": {...}, "preprocess": {...},
      "metrics": {"semantic": {...}, "instance": {...}, "regression": {name: {...}}, ...}
    }

Non-finite floats (NaN for undefined scores, e.g. a class absent from both targets and
predictions) are written as ``null``; numpy scalars and arrays become JSON numbers and lists.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nufm._version import __version__
from nufm.eval.metrics import ConfusionMatrix, InstanceMetrics, RegressionMetrics, SemanticMetrics

SCHEMA_VERSION = 1
"""Bump when a key is renamed or its meaning changes; adding keys keeps the version."""
SCHEMA_KIND = "nufm.metrics"


def metrics_report(
    *,
    semantic: ConfusionMatrix | SemanticMetrics | None = None,
    class_names: Sequence[str] | None = None,
    instance: InstanceMetrics | None = None,
    regression: Mapping[str, RegressionMetrics] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect computed metrics into the ``metrics`` block of the JSON schema.

    Args:
        semantic: a filled confusion matrix (computed here) or its computed scores.
        class_names: C names for the per-class entries (default "0".."C-1").
        instance: per-event instance accumulator (ARI, PQ).
        regression: target name -> residual statistics.
        extra: any further JSON-ready entries (e.g. probe settings); keys must not clash.
    """
    out: dict[str, Any] = {}
    if semantic is not None:
        scores = semantic.compute() if isinstance(semantic, ConfusionMatrix) else semantic
        out["semantic"] = scores.to_dict(class_names)
    if instance is not None:
        out["instance"] = instance.compute()
    if regression is not None:
        out["regression"] = {name: m.to_dict() for name, m in regression.items()}
    for key, value in (extra or {}).items():
        if key in out:
            raise ValueError(f"metrics_report: extra key {key!r} clashes with a built-in block")
        out[key] = value
    return out


def to_jsonable(x: Any) -> Any:
    """Recursively convert numpy/torch values to JSON types; non-finite floats -> None."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to the metrics JSON: {x!r}")


def write_metrics_json(
    path: str | Path,
    metrics: Mapping[str, Any],
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    seed: int,
) -> Path:
    """Write a versioned metrics JSON atomically (temp file in the same folder, then rename).

    Args:
        path: output file; parent folders are created.
        metrics: e.g. the output of :func:`metrics_report`.
        model: model identity (name, checkpoint path, step, config hash, ...).
        data: data identity (files, split, number of events, class convention, thresholds).
        preprocess: the preprocessing contract used (centre, scale, energy transform, grid).
        seed: the evaluation seed.

    Returns:
        The written path.
    """
    path = Path(path)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": SCHEMA_KIND,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nufm_version": __version__,
        "seed": int(seed),
        "model": to_jsonable(model),
        "data": to_jsonable(data),
        "preprocess": to_jsonable(preprocess),
        "metrics": to_jsonable(metrics),
    }
    text = json.dumps(doc, indent=2, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read a metrics JSON and check its kind and schema version."""
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("kind") != SCHEMA_KIND:
        raise ValueError(f"{path}: kind is {doc.get('kind')!r}, expected {SCHEMA_KIND!r}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {version!r} is not supported (this nufm reads "
            f"{SCHEMA_VERSION})"
        )
    return doc
