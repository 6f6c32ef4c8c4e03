"""Embeddings of events (and optionally of points and tokens) from a pretrained encoder.

Using a self-supervised encoder without any fine-tuning (the "frozen features" use of
PoLAr-MAE, arXiv:2502.02558, and Sonata/Panda, arXiv:2503.16429 / arXiv:2512.01324): run the
encoder in eval mode on events preprocessed exactly as in pretraining, then

* **event embedding** (E, 2D): ``[mean, max]`` over the event's valid tokens (token encoders)
  or points (point encoders), the pooling of PointNet/Point-MAE classification heads;
* **point embedding** (N, D), optional: the encoder's per-point features (token features are
  interpolated to the points without parameters, :class:`nufm.models.base.PointFeatures`);
* **token embedding** (T, D), optional (token encoders): the valid tokens and their centres.

Events are processed one batch at a time with a point budget, so a file of any size streams
through. The encoder runs in eval mode and every event is encoded independently of its batch
neighbours (tested), so an embedding does not depend on the batch size.

This file owns :class:`Embeddings`, :func:`embed_events`, :func:`write_embeddings`,
:func:`read_embeddings`, :func:`event_labels` and :func:`embedding_map`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from nufm.batch import PointBatch
from nufm.data.collate import budget_batches, collate
from nufm.data.event import Event
from nufm.data.lartpc import SEGMENT_NAMES
from nufm.data.pilarnet import DataError
from nufm.errors import ConfigError, EventIndexError, InputError, NotFoundError
from nufm.geometry.offsets import offset_to_batch_index
from nufm.models.base import PointFeatures
from nufm.models.encoders import EncoderOutput
from nufm.tasks.heads import segment_mean_max
from nufm.workflows.load import Pretrained

log = logging.getLogger(__name__)

EventLabel = Literal["n_interactions", "dominant_segment"]
"""Event-level truth that colours an event embedding map."""


@dataclass
class Embeddings:
    """Embeddings of E events (rows in input order).

    Attributes:
        event: (E, 2D) float32 ``[mean, max]`` pooled encoder features per event.
        event_id: (E,) int64 row of each event in its input (file row, or position in the
            event list). Events with no point above the energy threshold are skipped, so
            ``event_id`` need not be ``arange(E)``.
        point: (N, D) float32 per-point features of the *preprocessed* points (energy
            threshold applied), packed in event order; None unless requested.
        point_offset: (E,) int64 exclusive end row of each event in ``point``; None with it.
        point_segment: (N,) int64 semantic label of each point (-1 unknown); None when the
            points are not stored or the events carry no labels.
        token: (T, D) float32 valid token features packed in event order (token encoders
            only); None unless requested.
        token_center: (T, 3) float32 token centres, normalised coordinates; None with it.
        token_offset: (E,) int64 exclusive end row of each event in ``token``; None with it.
        meta: provenance (model source, step, data file, preprocessing JSON, encoder level).
    """

    event: np.ndarray
    event_id: np.ndarray
    point: np.ndarray | None = None
    point_offset: np.ndarray | None = None
    point_segment: np.ndarray | None = None
    token: np.ndarray | None = None
    token_center: np.ndarray | None = None
    token_offset: np.ndarray | None = None
    meta: dict[str, str | int] | None = None

    def __len__(self) -> int:
        return int(self.event.shape[0])

    def row_of(self, event_id: int) -> int:
        """Row of the event with ``event_id`` (its input row); EventIndexError (an IndexError)
        if not embedded."""
        rows = np.flatnonzero(self.event_id == event_id)
        if rows.size == 0:
            raise EventIndexError(
                f"event {event_id} is not among the {len(self)} embedded events "
                "(out of range, or skipped for having no point above threshold)"
            )
        return int(rows[0])


# --------------------------------------------------------------------------------------------
# computing
# --------------------------------------------------------------------------------------------


def _pool_event(out: EncoderOutput, batch: PointBatch) -> torch.Tensor:
    """(B, 2D) ``[mean, max]`` over each event's valid tokens or points, or over its fused
    latents (as the multi-task heads pool them)."""
    B = int(batch.offset.numel())
    match out.level:
        case "token":
            if out.valid is None:
                raise ValueError("token-level encoder output without a valid mask")
            feat = out.feat[out.valid]  # (T, D)
            index = offset_to_batch_index(torch.cumsum(out.valid.sum(1), 0))  # (T,)
        case "point":
            feat = out.feat  # (N, D)
            index = offset_to_batch_index(batch.offset)  # (N,)
        case "latent":  # fused latents of a stream-fusion encoder: (B, L, D)
            lat = out.feat.float()
            return torch.cat([lat.mean(1), lat.amax(1)], dim=1)  # (B, 2D)
        case _:
            raise ValueError(
                f"cannot pool an encoder output of level {out.level!r}; use an "
                "encoder with token or point output (MAE or distillation)"
            )
    return segment_mean_max(feat.float(), index, B)  # (B, 2D)


def _iter_inputs(
    events_or_path: Sequence[Event] | str | os.PathLike,
) -> tuple[Iterable[tuple[int, Event]], str]:
    if isinstance(events_or_path, (str, os.PathLike)):
        from nufm.data.formats import iter_any

        path = str(events_or_path)
        if not Path(path).is_file():
            raise NotFoundError(f"embed_events: no such event file {path}")
        return enumerate(iter_any(path)), path
    return enumerate(events_or_path), "<memory>"


@torch.no_grad()
def embed_events(
    pretrained: Pretrained,
    events_or_path: Sequence[Event] | str | os.PathLike,
    *,
    batch_points: int = 200_000,
    batch_events: int = 64,
    per_point: bool = False,
    per_token: bool = False,
    device: str = "cpu",
    interp_k: int = 3,
) -> Embeddings:
    """Embed events with a pretrained encoder (eval mode, its own preprocessing).

    Args:
        pretrained: from :func:`nufm.workflows.load.load_encoder`.
        events_or_path: raw events (voxel coordinates, MeV) or a PILArNet-M HDF5 file.
        batch_points: point budget of one encoder call.
        batch_events: most events in one encoder call.
        per_point: also keep (N, D) per-point features (memory: N x D floats).
        per_token: also keep the valid tokens (token encoders; ignored for point encoders).
        device: torch device of the encoder calls.
        interp_k: token encoders with ``per_point``: token centres interpolated per point.

    Returns:
        The :class:`Embeddings`; events with no point above the energy threshold are skipped
        (logged).

    Raises:
        FileNotFoundError: the event file does not exist.
        ValueError: no event could be embedded, or the encoder's output cannot be pooled.
    """
    if batch_points <= 0 or batch_events <= 0:
        raise ConfigError(
            f"embed_events: batch_points and batch_events must be positive, got "
            f"{batch_points}, {batch_events}"
        )
    encoder = pretrained.encoder.to(device).eval()
    transform = pretrained.preprocess.transforms()
    point_features = PointFeatures(k=interp_k)
    items, data_source = _iter_inputs(events_or_path)
    rng = np.random.default_rng(0)  # unused by the deterministic preprocessing

    def prepared() -> Iterator[tuple[int, Event]]:
        n_skipped = 0
        for row, ev in items:
            try:
                yield row, transform(ev, rng)
            except DataError as e:
                n_skipped += 1
                log.warning("embed_events: skipping event %d: %s", row, e)
        if n_skipped:
            log.warning("embed_events: skipped %d events with no point above threshold", n_skipped)

    rows: list[int] = []
    event_vecs: list[np.ndarray] = []
    points: list[np.ndarray] = []
    point_counts: list[np.ndarray] = []
    segments: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    centers: list[np.ndarray] = []
    token_counts: list[np.ndarray] = []
    has_segment = True
    level = ""
    chunks = budget_batches(
        prepared(), batch_points, max_events=batch_events, size=lambda item: len(item[1])
    )
    for chunk in chunks:
        batch = collate([ev for _, ev in chunk]).to(device)
        out = encoder(batch)
        level = out.level
        rows += [row for row, _ in chunk]
        event_vecs.append(_pool_event(out, batch).cpu().numpy())
        if per_point and out.level == "latent":
            raise ConfigError(
                f"{pretrained.source}: a stream-fusion encoder gives event latents, not "
                "per-point features; embed without per-point output"
            )
        if per_point:
            points.append(point_features(out, batch).float().cpu().numpy())  # (N_b, D)
            point_counts.append(np.array([len(ev) for _, ev in chunk], np.int64))
            if batch.segment is None:
                has_segment = False
            else:
                segments.append(batch.segment.cpu().numpy())
        if per_token and out.level == "token":
            assert out.valid is not None and out.tokens is not None
            tokens.append(out.feat[out.valid].float().cpu().numpy())  # (T_b, D)
            centers.append(out.tokens.center[out.valid].float().cpu().numpy())  # (T_b, 3)
            token_counts.append(out.valid.sum(1).cpu().numpy().astype(np.int64))
    if not rows:
        raise InputError(f"embed_events: no event of {data_source} could be embedded")
    meta: dict[str, str | int] = {
        "model_source": pretrained.source,
        "model_step": int(pretrained.step),
        "data_source": data_source,
        "encoder": type(encoder).__name__,
        "encoder_level": level,
        "preprocess": json.dumps(pretrained.preprocess.to_dict(), sort_keys=True),
        "pooling": "concat(mean, max) over valid tokens or points",
    }
    emb = Embeddings(
        event=np.concatenate(event_vecs).astype(np.float32),
        event_id=np.asarray(rows, np.int64),
        meta=meta,
    )
    if per_point:
        emb.point = np.concatenate(points).astype(np.float32)
        emb.point_offset = np.cumsum(np.concatenate(point_counts)).astype(np.int64)
        emb.point_segment = np.concatenate(segments).astype(np.int64) if has_segment else None
    if per_token and tokens:
        emb.token = np.concatenate(tokens).astype(np.float32)
        emb.token_center = np.concatenate(centers).astype(np.float32)
        emb.token_offset = np.cumsum(np.concatenate(token_counts)).astype(np.int64)
    log.info(
        "embedded %d events of %s with %s (%s level): event embedding dim %d",
        len(emb),
        data_source,
        meta["encoder"],
        level,
        emb.event.shape[1],
    )
    return emb


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

_ARRAYS = ("point", "point_offset", "point_segment", "token", "token_center", "token_offset")
_H5_NAMES = {
    "event": "event_embedding",
    "event_id": "event_id",
    "point": "point_embedding",
    "point_offset": "point_offset",
    "point_segment": "point_segment",
    "token": "token_embedding",
    "token_center": "token_center",
    "token_offset": "token_offset",
}
"""Embeddings attribute -> HDF5 dataset name."""


def _tmp_next_to(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_embeddings(
    path: str | os.PathLike, emb: Embeddings, meta: dict[str, str | int] | None = None
) -> Path:
    """Write embeddings atomically (temporary file + rename).

    ``.h5``/``.hdf5``: datasets ``event_embedding`` (E, 2D), ``event_id`` (E,), and when present
    ``point_embedding`` (N, D) + ``point_offset`` (E,) + ``point_segment`` (N,),
    ``token_embedding`` (T, D) + ``token_center`` (T, 3) + ``token_offset`` (E,); file
    attributes from ``emb.meta`` updated with ``meta`` (model source, data file, preprocessing
    JSON, ...). ``.npy``: the (E, 2D) event embeddings, and the (E,) event ids next to it in
    ``<stem>.event_id.npy`` (point and token embeddings are not written).

    Returns:
        The path written.
    """
    import h5py

    path = Path(path)
    attrs = {**(emb.meta or {}), **(meta or {})}
    match path.suffix:
        case ".h5" | ".hdf5":
            tmp = _tmp_next_to(path)
            try:
                with h5py.File(tmp, "w") as f:
                    f.create_dataset("event_embedding", data=emb.event)
                    f.create_dataset("event_id", data=emb.event_id)
                    for name in _ARRAYS:
                        arr = getattr(emb, name)
                        if arr is not None:
                            f.create_dataset(
                                _H5_NAMES[name], data=arr, compression="gzip", compression_opts=1
                            )
                    for key, value in attrs.items():
                        f.attrs[key] = value
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        case ".npy":
            ids_path = path.with_name(f"{path.stem}.event_id.npy")
            for target, arr in ((ids_path, emb.event_id), (path, emb.event)):
                tmp = _tmp_next_to(target)
                try:
                    with open(tmp, "wb") as fh:
                        np.save(fh, arr)
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
        case _:
            raise ValueError(f"write_embeddings: {path} must end in .h5, .hdf5 or .npy")
    log.info("wrote %d event embeddings to %s", len(emb), path)
    return path


def read_embeddings(path: str | os.PathLike) -> Embeddings:
    """Read a file written by :func:`write_embeddings` (``.h5``/``.hdf5`` or ``.npy``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"read_embeddings: no such file {path}")
    if path.suffix == ".npy":
        event = np.load(path)
        ids_path = path.with_name(f"{path.stem}.event_id.npy")
        ids = np.load(ids_path) if ids_path.is_file() else np.arange(len(event), dtype=np.int64)
        return Embeddings(event=event, event_id=ids, meta={})
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"read_embeddings: {path} is not a readable HDF5 file: {e}") from e
    with f:
        for name in ("event_embedding", "event_id"):
            if name not in f:
                raise InputError(
                    f"read_embeddings: {path} has no dataset {name!r}; not an embeddings file"
                )
        loaded: dict[str, np.ndarray] = {}
        for attr, h5 in _H5_NAMES.items():
            if h5 in f:
                ds = f[h5]
                if not isinstance(ds, h5py.Dataset):
                    raise ValueError(f"read_embeddings: {path}: {h5!r} is not a dataset")
                loaded[attr] = ds[()]
        meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return Embeddings(**loaded, meta=meta)


# --------------------------------------------------------------------------------------------
# maps
# --------------------------------------------------------------------------------------------


def event_labels(
    events: Sequence[Event], kind: EventLabel = "n_interactions"
) -> tuple[np.ndarray, list[str]]:
    """An event-level truth label and its class names, for colouring an event map.

    Args:
        events: raw events (same order as the embeddings' rows).
        kind: ``n_interactions`` (``meta['n_interactions']``, classes 1, 2, ..., capped at
            ">= 6") or ``dominant_segment`` (the semantic class with the most energy).

    Returns:
        (E,) int64 labels (-1 unknown) and the class names.
    """
    match kind:
        case "n_interactions":
            cap = 6
            raw = np.array([int(e.meta.get("n_interactions", 0)) for e in events], np.int64)
            labels = np.where(raw > 0, np.minimum(raw, cap) - 1, -1)
            return labels, [str(i) for i in range(1, cap)] + [f">= {cap}"]
        case "dominant_segment":
            labels = np.full(len(events), -1, np.int64)
            for i, e in enumerate(events):
                if e.segment is not None and (e.segment >= 0).any():
                    known = e.segment >= 0
                    energy = np.bincount(
                        e.segment[known], weights=e.energy[known], minlength=len(SEGMENT_NAMES)
                    )
                    labels[i] = int(np.argmax(energy))
            return labels, list(SEGMENT_NAMES)
        case _:
            raise ValueError(
                f"event_labels: kind must be 'n_interactions' or 'dominant_segment', got {kind!r}"
            )


def embedding_map(
    emb: Embeddings,
    labels: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    *,
    level: Literal["event", "point"] = "event",
    method: Literal["tsne", "pca"] = "tsne",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
    label_name: str | None = None,
) -> Figure:
    """2D map (t-SNE or PCA, :func:`nufm.eval.projection.embed_2d`) of event or point embeddings.

    Args:
        emb: the embeddings.
        labels: level ``event``: (E,) int class per event (e.g. :func:`event_labels`), -1 grey;
            level ``point``: ignored, points are coloured by ``emb.point_segment``.
        names: class names of ``labels`` (level ``point``: the semantic classes).
        level: ``event`` maps ``emb.event``; ``point`` maps a random subsample of
            ``emb.point`` (needs ``per_point=True`` at embedding time).
        method: ``tsne`` or ``pca``.
        max_points: level ``point``: points subsampled (uniformly, seeded).
        seed: seed of the subsample and of the reduction.
        title: figure title; default states level, method and count.
        label_name: legend title, e.g. "interactions" (level ``point``: "semantic class").

    Returns:
        The scatter figure (:func:`nufm.eval.plots.plot_embedding_2d`).
    """
    from nufm.eval.plots import plot_embedding_2d
    from nufm.eval.projection import embed_2d

    match level:
        case "event":
            x = emb.event
            lab = np.full(len(x), -1, np.int64) if labels is None else np.asarray(labels)
            if lab.shape != (len(x),):
                raise ValueError(f"embedding_map: labels must be ({len(x)},), got {lab.shape}")
        case "point":
            if emb.point is None:
                raise ValueError(
                    "embedding_map(level='point') needs point embeddings; embed with per_point=True"
                )
            rng = np.random.default_rng(seed)
            n = len(emb.point)
            pick = np.sort(rng.choice(n, size=min(max_points, n), replace=False))  # (M,)
            x = emb.point[pick]
            lab = (
                emb.point_segment[pick]
                if emb.point_segment is not None
                else np.full(len(pick), -1, np.int64)
            )
            names = list(SEGMENT_NAMES) if names is None else names
        case _:
            raise ValueError(f"embedding_map: level must be 'event' or 'point', got {level!r}")
    xy = embed_2d(x, method=method, seed=seed)  # (M, 2)
    what = "event embeddings" if level == "event" else "point embeddings (random subsample)"
    head = title or f"{'t-SNE' if method == 'tsne' else 'PCA'} of {len(x)} {what}"
    fig = plot_embedding_2d(
        xy, lab, names, title=head, point_size=12.0 if level == "event" else 3.0
    )
    legend = fig.axes[0].get_legend()
    key = label_name or ("semantic class" if level == "point" else None)
    if legend is not None and key:
        legend.set_title(key)
    return fig
