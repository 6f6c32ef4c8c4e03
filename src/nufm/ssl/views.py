"""Multi-view generation and cross-view point matching for self-distillation (Sonata
arXiv:2503.16429, Panda arXiv:2512.01324; docs/references.md).

Owns :class:`ViewConfig`, :class:`Views`, :func:`make_views`, :func:`select_events` and
:func:`match_points`. A view is the k nearest points to a centre, augmented on its own; the
pre-augmentation coordinates are kept in ``Views.origin`` for matching. Views are packed
event-major: pseudo-event ``b * V + v`` is view v of event b. The crops and augmentations are
described in docs/objectives.md, section 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nufm.batch import PointBatch
from nufm.geometry.knn import knn
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts, pad


@dataclass(frozen=True, kw_only=True)
class ViewConfig:
    """Crops and per-view augmentation (defaults: Panda, arXiv:2512.01324)."""

    num_global: int = 2
    """Global views per event (>= 2 for the roll-mask loss)."""
    num_local: int = 6
    """Local views per event (Panda 6, Sonata ScanNet 4)."""
    global_fraction: tuple[float, float] = (0.4, 1.0)
    """Range of the fraction of the event's points in a global view."""
    local_fraction: tuple[float, float] = (0.1, 0.4)
    """Range of the fraction of the event's points in a local view."""
    max_size: int = 30000
    """Cap on the points of one view."""
    rotate_p: float = 0.8
    """Probability of a rotation about each of z, x, y (angle uniform in [-pi, pi])."""
    flip_p: float = 0.5
    """Probability of mirroring each axis."""
    jitter_sigma: float = 0.00025
    """Std of the coordinate jitter, coordinate units (grid/4 for the 0.001 grid)."""
    jitter_clip: float = 0.001
    """Jitter is clipped to [-clip, clip]."""
    coord_channels: tuple[int, ...] = (0, 1, 2)
    """Columns of ``feat`` holding x, y, z (moved with the coordinates); () = none."""

    def __post_init__(self) -> None:
        if self.num_global < 1 or self.num_local < 0:
            raise ValueError(
                f"ViewConfig: need num_global >= 1 and num_local >= 0, got "
                f"{self.num_global}, {self.num_local}"
            )
        for name in ("global_fraction", "local_fraction"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(
                    f"ViewConfig: {name} must satisfy 0 < lo <= hi <= 1, got {(lo, hi)}"
                )
        if len(self.coord_channels) not in (0, 3):
            raise ValueError(
                f"ViewConfig: coord_channels needs 0 or 3 columns, got {self.coord_channels}"
            )


@dataclass
class Views:
    """V views of each of B events, packed event-major.

    Attributes:
        batch: PointBatch of B * V pseudo-events (coord/feat augmented, offset per view).
        origin: (M, 3) float coordinates before augmentation (for matching).
        rows: (M,) int64 row of every view point in the source batch.
        event: (B * V,) int64 source event of every view.
        num_views: V.
    """

    batch: PointBatch
    origin: Tensor
    rows: Tensor
    event: Tensor
    num_views: int


def _crop(coord_p: Tensor, valid_p: Tensor, centre: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """k nearest points of each (event, view) centre.

    Args:
        coord_p: (B, Nmax, 3) padded coordinates; valid_p (B, Nmax) bool.
        centre: (B, V, 3) crop centres; k: (B, V) int64 points per crop (<= event size).

    Returns:
        local_rows (sum k,) int64 event-local rows, event-major then view-major, nearest first,
        and counts (B * V,) int64.
    """
    d = (coord_p[:, None] - centre[:, :, None]).square().sum(-1)  # (B, V, Nmax)
    d = d.masked_fill(~valid_p[:, None], float("inf"))
    order = d.argsort(dim=-1)  # (B, V, Nmax)
    take = torch.arange(order.shape[-1], device=order.device) < k[..., None]  # (B, V, Nmax)
    return order[take], k.reshape(-1)


def _rotation(angle: Tensor, axis: int) -> Tensor:
    """(R,) angles -> (R, 3, 3) rotations about ``axis``."""
    c, s = angle.cos(), angle.sin()
    a, b = [(1, 2), (2, 0), (0, 1)][axis]
    rot = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype, device=angle.device)
    rot[:, axis, axis] = 1.0
    rot[:, a, a], rot[:, a, b], rot[:, b, a], rot[:, b, b] = c, -s, s, c
    return rot


def _augment(
    coord: Tensor, feat: Tensor, offset: Tensor, cfg: ViewConfig, augment: bool
) -> tuple[Tensor, Tensor]:
    """Per-view centre shift, rotation, flip, jitter of coord (and coordinate feat columns)."""
    if not augment:
        return coord, feat
    R = offset.shape[0]
    view = offset_to_batch_index(offset)  # (M,)
    counts = offset_to_counts(offset).clamp(min=1).to(coord.dtype)  # (R,)
    mean = coord.new_zeros(R, 3).index_add_(0, view, coord) / counts[:, None]  # (R, 3)
    dev, dt = coord.device, coord.dtype
    rot = torch.eye(3, dtype=dt, device=dev).expand(R, 3, 3)
    for axis in (2, 0, 1):  # z, then x, then y (Sonata order)
        angle = (torch.rand(R, device=dev, dtype=dt) * 2 - 1) * math.pi
        angle = torch.where(
            torch.rand(R, device=dev) < cfg.rotate_p, angle, torch.zeros_like(angle)
        )
        rot = _rotation(angle, axis) @ rot  # (R, 3, 3)
    sign = torch.where(torch.rand(R, 3, device=dev) < cfg.flip_p, -1.0, 1.0).to(dt)  # (R, 3)
    lin = rot * sign[:, :, None]  # (R, 3, 3): flip after rotation

    def move(x: Tensor) -> Tensor:
        # geometry stays in the input precision, also under bf16 autocast
        with torch.autocast(x.device.type, enabled=False):
            return torch.einsum("mij,mj->mi", lin[view], x - mean[view])  # (M, 3)

    noise = (torch.randn_like(coord) * cfg.jitter_sigma).clamp(-cfg.jitter_clip, cfg.jitter_clip)
    new_coord = move(coord) + noise
    if cfg.coord_channels:
        cols = list(cfg.coord_channels)
        feat = feat.clone()
        feat[:, cols] = move(feat[:, cols])
    return new_coord, feat


def _pack(
    batch: PointBatch,
    coord_p: Tensor,
    valid_p: Tensor,
    centre: Tensor,
    k: Tensor,
    cfg: ViewConfig,
    augment: bool,
) -> Views:
    B, V = k.shape
    local_rows, counts = _crop(coord_p, valid_p, centre, k)
    view_event = torch.arange(B, device=k.device).repeat_interleave(V)  # (B*V,)
    starts = offset_to_starts(batch.offset)
    rows = local_rows + starts[view_event].repeat_interleave(counts)  # (M,)
    offset = torch.cumsum(counts, 0)
    origin = batch.coord[rows]
    coord, feat = _augment(origin, batch.feat[rows], offset, cfg, augment)
    view_batch = PointBatch(coord=coord, feat=feat, offset=offset)
    return Views(batch=view_batch, origin=origin, rows=rows, event=view_event, num_views=V)


def make_views(batch: PointBatch, cfg: ViewConfig, augment: bool = True) -> tuple[Views, Views]:
    """Global and local views of every event (see the module docstring).

    Args:
        batch: packed source events (normalised coordinates).
        cfg: view configuration.
        augment: False = crops only, no centre shift/rotation/flip/jitter (tests, debugging).

    Returns:
        (global views, local views); local Views has zero pseudo-events if ``num_local == 0``.
    """
    counts = batch.counts  # (B,)
    if bool((counts < 1).any()):
        bad = torch.nonzero(counts < 1).flatten().tolist()
        raise ValueError(f"make_views: events {bad} of the batch have no points")
    B = counts.shape[0]
    dev = batch.coord.device
    coord_p, valid_p = pad(batch.coord, batch.offset)  # (B, Nmax, 3), (B, Nmax)

    def sizes(frac: tuple[float, float], V: int) -> Tensor:
        f = frac[0] + (frac[1] - frac[0]) * torch.rand(B, V, device=dev, dtype=torch.float64)
        k = torch.ceil(f * counts[:, None].to(torch.float64)).to(torch.int64)  # (B, V)
        return torch.minimum(k.clamp(min=1, max=cfg.max_size), counts[:, None])

    k_global = sizes(cfg.global_fraction, cfg.num_global)  # (B, Vg)
    first = (torch.rand(B, device=dev, dtype=torch.float64) * counts).to(torch.int64)  # (B,)
    centre0 = coord_p[torch.arange(B, device=dev), first]  # (B, 3)
    # major view = k_global[:, 0] nearest points of centre0; other centres are drawn inside it
    d0 = (coord_p - centre0[:, None]).square().sum(-1).masked_fill(~valid_p, float("inf"))
    order0 = d0.argsort(dim=1)  # (B, Nmax)
    n_other = cfg.num_global - 1 + cfg.num_local
    pick = (torch.rand(B, n_other, device=dev, dtype=torch.float64) * k_global[:, :1]).to(
        torch.int64
    )  # (B, n_other) rank inside the major view
    other = coord_p[torch.arange(B, device=dev)[:, None], torch.gather(order0, 1, pick)]
    centres = torch.cat([centre0[:, None], other], dim=1)  # (B, Vg + Vl, 3)
    g = _pack(batch, coord_p, valid_p, centres[:, : cfg.num_global], k_global, cfg, augment)
    k_local = sizes(cfg.local_fraction, cfg.num_local)  # (B, Vl)
    loc = _pack(batch, coord_p, valid_p, centres[:, cfg.num_global :], k_local, cfg, augment)
    return g, loc


def select_events(offset: Tensor, events: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of a packed batch that form a new packed batch of the listed events (repeats ok).

    Args:
        offset: (E,) int64 event ends of the source.
        events: (R,) int64 source event of every output event.

    Returns:
        rows (M,) int64 source rows, output event-major, and new_offset (R,) int64.
    """
    counts = offset_to_counts(offset)[events]  # (R,)
    starts = offset_to_starts(offset)[events]  # (R,)
    new_offset = torch.cumsum(counts, 0)
    out_event = torch.repeat_interleave(
        torch.arange(events.shape[0], device=offset.device), counts
    )  # (M,)
    local = (
        torch.arange(out_event.shape[0], device=offset.device) - (new_offset - counts)[out_event]
    )
    return starts[out_event] + local, new_offset


def match_points(
    query_origin: Tensor,
    query_offset: Tensor,
    support_origin: Tensor,
    support_offset: Tensor,
    support_events: Tensor,
    max_dist: float,
) -> tuple[Tensor, Tensor]:
    """Pair every query point with its nearest support point (by original coordinates) in the
    support pseudo-event assigned to its own pseudo-event; keep pairs closer than ``max_dist``.

    Args:
        query_origin: (Mq, 3) pre-augmentation coordinates of the query views.
        query_offset: (R,) int64 ends of the query pseudo-events.
        support_origin: (Ms, 3) pre-augmentation coordinates of the support views.
        support_offset: (E,) int64 ends of the support pseudo-events.
        support_events: (R,) int64 support pseudo-event matched to each query pseudo-event.
        max_dist: largest kept distance, coordinate units (Sonata: 2 grid = 0.002).

    Returns:
        query_rows (P,) and support_rows (P,) int64 of the kept pairs.
    """
    rows, sel_offset = select_events(support_offset, support_events)
    idx, dist = knn(query_origin, query_offset, support_origin[rows], sel_offset, k=1)
    kept = (idx[:, 0] >= 0) & (dist[:, 0] < max_dist)  # (Mq,)
    query_rows = torch.nonzero(kept).flatten()
    return query_rows, rows[idx[query_rows, 0]]


__all__ = ["ViewConfig", "Views", "make_views", "match_points", "select_events"]
