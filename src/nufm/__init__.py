"""nufm: self-supervised foundation models for particle-detector data.

The front door, the few names a user reaches for (the README's "Python" section shows them)::

    import nufm

    events = nufm.read_events("sim.h5")       # or nufm.simulate(100, seed=0)
    model = nufm.load("runs/mae")             # a pretraining run or an exported model
    emb = nufm.embed(model, events)           # emb.event: (E, 2D) event embeddings
    task = nufm.load("runs/semseg")           # a fine-tuning run
    preds = nufm.predict(task, events)        # one dict of arrays per event

Everything else lives in the subpackages (``data``, ``sim``, ``models``, ``ssl``, ``tasks``,
``train``, ``eval``, ``workflows``), which these functions import lazily, so ``import nufm``
stays fast and pulls in neither torch nor h5py.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from nufm.batch import PointBatch
    from nufm.data.event import Event
    from nufm.sim.config import SimConfig
    from nufm.workflows.embed import Embeddings
    from nufm.workflows.load import FineTuned, Pretrained

from nufm._version import __version__

__all__ = [
    "Event",
    "FineTuned",
    "PointBatch",
    "Pretrained",
    "__version__",
    "embed",
    "load",
    "predict",
    "read_events",
    "simulate",
]

_LAZY = {
    "Event": "nufm.data.event",
    "PointBatch": "nufm.batch",
    "Pretrained": "nufm.workflows.load",
    "FineTuned": "nufm.workflows.load",
}
"""Records exported here but defined (and imported on first use) elsewhere."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nufm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def read_events(path: str | os.PathLike, indices: Sequence[int] | None = None) -> list[Event]:
    """Events of a file of any layout nufm reads (:mod:`nufm.data.formats`): PILArNet-M
    ``.h5`` (as written by ``nufm simulate``), JAXTPC Geant4 ``.h5``, an mlreco tutorial
    ``.npz`` or a LArSoft analysis-tree ``.root``.

    Args:
        path: The file.
        indices: Events to read (default all).

    Returns:
        Raw events: voxel coordinates (N, 3) float32 in [0, 768], energies (N,) in MeV, labels.

    Raises:
        nufm.errors.NotFoundError: No such file.
        nufm.errors.InputError: A layout nufm does not read, or a file not of its layout.
    """
    from nufm.data.formats import read_any

    return read_any(path, indices)


def simulate(
    n: int, *, seed: int = 0, config: SimConfig | None = None, workers: int = 1
) -> list[Event]:
    """``n`` labelled events from the built-in LArTPC simulator (:mod:`nufm.sim`).

    Event ``i`` depends only on ``(seed, i)``, whatever the number of worker processes.
    """
    from nufm.errors import ConfigError
    from nufm.sim import SimConfig, generate_events

    if n <= 0:
        raise ConfigError(f"simulate: n must be positive, got {n}")
    return list(generate_events(n, seed, config or SimConfig(), workers=workers))


def load(source: str | os.PathLike) -> Pretrained | FineTuned:
    """Load a model in one call, rebuilt from its saved config (no build function needed).

    Args:
        source: A pretraining run directory (``config.yaml`` + ``checkpoints/``), one of its
            checkpoint files, an exported model (``model.safetensors`` + ``config.json``,
            ``nufm export``) or the name of a model shipped with nufm (``"lartpc-mae-m"``,
            ``nufm.hub.SHIPPED_MODELS``): returns a :class:`~nufm.workflows.load.Pretrained`
            (encoder + preprocessing). The same for a fine-tuning run (``nufm finetune``):
            returns a :class:`~nufm.workflows.load.FineTuned` (task + preprocessing).

    Raises:
        nufm.errors.NotFoundError: No such path, or a run without a complete checkpoint.
        nufm.errors.UserError: A corrupt checkpoint, or weights that do not fit the config.
    """
    from nufm.workflows.load import load as load_any

    return load_any(Path(source))


def embed(
    model: Pretrained | str | os.PathLike,
    events: Sequence[Event] | str | os.PathLike,
    *,
    per_point: bool = False,
    device: str = "cpu",
    batch_points: int = 200_000,
) -> Embeddings:
    """Embed events with a pretrained encoder, applying the preprocessing it was trained with.

    Args:
        model: From :func:`load`, or a path to load.
        events: Raw events (:func:`read_events`, :func:`simulate`) or a PILArNet-M file.
        per_point: Also keep per-point features (``emb.point``, ``emb.point_offset``).
        device: Torch device of the encoder calls.
        batch_points: Point budget of one encoder call.

    Returns:
        :class:`~nufm.workflows.embed.Embeddings`: ``emb.event`` (E, 2D) float32 ([mean, max]
        over tokens or points) and ``emb.event_id`` (E,), the row of each embedded event (an
        event with no point above the energy threshold is skipped).
    """
    from nufm.workflows.embed import embed_events
    from nufm.workflows.load import Pretrained

    if not isinstance(model, Pretrained):
        loaded = load(model)
        if not isinstance(loaded, Pretrained):
            from nufm.errors import ConfigError

            raise ConfigError(f"{model}: a fine-tuning run; embed takes a pretrained encoder")
        model = loaded
    return embed_events(
        model, events, per_point=per_point, device=device, batch_points=batch_points
    )


def predict(
    task: FineTuned, events: Sequence[Event], *, batch_points: int = 100_000
) -> list[dict[str, np.ndarray]]:
    """Run a fine-tuned task on raw events; one dict of arrays per event, in order.

    Per-point outputs (e.g. semantic ``pred`` (N_i,)) follow the event's *preprocessed* points
    (those above the energy threshold, in file order); per-event outputs lose their batch
    axis; per-instance outputs of the PID task keep the event's instances.
    """
    import torch

    from nufm.eval.tasks import iter_predictions
    from nufm.geometry.offsets import offset_to_counts

    results: list[dict[str, np.ndarray]] = []
    transform = task.preprocess.transforms()
    for batch, pred in iter_predictions(task.task, events, batch_points, transform=transform):
        counts = offset_to_counts(batch.offset).tolist()
        n_points, n_events = int(batch.coord.shape[0]), len(counts)
        owner = pred.get("instance_event")  # (I,) event of each instance (PID task)
        bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
        for b in range(n_events):
            out: dict[str, np.ndarray] = {}
            for key, value in pred.items():
                if value.shape[0] == n_points:
                    out[key] = value[bounds[b] : bounds[b + 1]].numpy()
                elif owner is not None and value.shape[0] == owner.shape[0]:
                    out[key] = value[owner == b].numpy()
                elif value.shape[0] == n_events:
                    out[key] = value[b].numpy()
                else:
                    raise ValueError(f"predict: cannot split output {key!r} {tuple(value.shape)}")
            results.append(out)
    return results
