"""PoLAr-MAE volumetric tokenizer (arXiv:2502.02558; Point-MAE arXiv:2203.06604; see
docs/references.md).

Owns :class:`PointMAETokenizerConfig`, :data:`TOKENIZER_PRESETS`, the :class:`Tokens` output,
:class:`MiniPointNet`, :class:`PointMAETokenizer` and the grouping helpers
(:func:`ball_group`, :func:`fps_in_groups`, :func:`gather_groups`, :func:`canonical_order`):
centres by centrality NMS, groups by ball query reduced by FPS, a mini-PointNet of
``((xyz - centre) / r, feat)`` per group and an MLP position embedding of the centre. The
pipeline step by step, and where it differs from PoLAr-MAE: docs/objectives.md, section 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from nufm.batch import EventGroups, TokenGroups
from nufm.data.event import Event
from nufm.data.memo import EventMemo
from nufm.geometry.ball_query import ball_query
from nufm.geometry.cnms import centrality_nms
from nufm.geometry.fps import farthest_point_sampling, group_fps
from nufm.geometry.offsets import offset_to_batch_index, pad
from nufm.geometry.segment_max import segment_max
from nufm.models.layers import RowSequential, bucket_rows

log = logging.getLogger(__name__)

VOXELS_PER_UNIT = 665.1
"""PILArNet-M normalisation: 1 normalised unit = 665.1 voxels (arXiv:2502.02558)."""


@dataclass(frozen=True, kw_only=True)
class PointMAETokenizerConfig:
    """Centre selection, grouping and mini-PointNet embedding (defaults: PoLAr-MAE 5 voxel)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {
        "reduction": "fps",
        "rescale_by_group_radius": True,
        "random_fps_start_in_training": True,
    }
    """Removed options -> the value that means what the code does now (``nufm.config``)."""

    in_channels: int = 1
    """Channels C of ``PointBatch.feat`` appended to the relative xyz of every point."""
    embed_dim: int = 384
    """Token width D (must equal the encoder width)."""
    group_radius: float = 5.0 / VOXELS_PER_UNIT
    """Ball-query radius r in normalised coordinate units (5 voxels)."""
    group_max_points: int = 32
    """Points per token K after reduction."""
    group_upscale_points: int = 256
    """Neighbours gathered by the ball query before reduction to ``group_max_points``."""
    overlap_factor: float = 0.72
    """C-NMS suppression radius is ``2 * group_radius * overlap_factor``."""
    num_init_groups: int | None = None
    """FPS seeds per event before C-NMS; None runs C-NMS on all points (PoLAr-MAE main)."""
    cnms_k: int = 256
    """Neighbour-list cap of the C-NMS ball query (256 on PoLAr-MAE main, 2048 paper-era)."""
    context_length: int = 512
    """Maximum tokens per event; extra C-NMS centres are dropped and counted."""
    pointnet_dims: tuple[int, int, int] = (128, 256, 512)
    """Mini-PointNet widths: first MLP hidden, first MLP out (pooled), second MLP hidden."""
    pos_hidden: int = 128
    """Hidden width of the centre positional-embedding MLP."""
    pointnet_fp32: bool = True
    """Run the mini-PointNet in fp32 under bf16 autocast (PoLAr-MAE's choice); False lets
    autocast run its products in bf16 (about 3x faster on a CPU with bf16 units; the inputs are
    group-frame offsets in [-1, 1] and log energies, which bf16 keeps to 0.4 %)."""

    def __post_init__(self) -> None:
        if self.group_radius <= 0:
            raise ValueError(
                f"PointMAETokenizerConfig: group_radius must be > 0, got {self.group_radius}"
            )
        if self.group_upscale_points < self.group_max_points:
            raise ValueError(
                "PointMAETokenizerConfig: group_upscale_points "
                f"({self.group_upscale_points}) < group_max_points "
                f"({self.group_max_points})"
            )
        if self.context_length < 1:
            raise ValueError(
                f"PointMAETokenizerConfig: context_length must be >= 1, got {self.context_length}"
            )


TOKENIZER_PRESETS: dict[str, PointMAETokenizerConfig] = {
    "polarmae-5voxel": PointMAETokenizerConfig(),
    "polarmae-5voxel-paper": PointMAETokenizerConfig(num_init_groups=2048, cnms_k=2048),
    "polarmae-2.5voxel": PointMAETokenizerConfig(
        group_radius=2.5 / VOXELS_PER_UNIT,
        group_max_points=16,
        group_upscale_points=64,
        overlap_factor=0.73,
        context_length=1024,
    ),
}
"""PoLAr-MAE tokenizer presets (arXiv:2502.02558)."""


@dataclass
class Tokens:
    """Padded point tokens of B events.

    Attributes:
        feat: (B, G, D) float token embeddings (padding rows are 0).
        pos: (B, G, D) float positional embedding of the centres (0 at padding).
        center: (B, G, 3) float centre coordinates (normalised units; padding 0).
        valid: (B, G) bool, True = real token.
        group_idx: (B, G, K) int64 global row (into the packed batch) of every group point,
            -1 = empty slot or padding token.
        n_dropped: (B,) int64 C-NMS centres dropped because of ``context_length``.
    """

    feat: Tensor
    pos: Tensor
    center: Tensor
    valid: Tensor
    group_idx: Tensor
    n_dropped: Tensor


def gather_groups(x: Tensor, group_idx: Tensor) -> Tensor:
    """Gather packed per-point values into groups.

    Args:
        x: (N, F) packed per-point values.
        group_idx: (..., K) int64 global rows, -1 = empty.

    Returns:
        (..., K, F) values, 0 at empty slots.
    """
    filled = group_idx >= 0
    out = x[group_idx.clamp(min=0)]  # (..., K, F)
    return out * filled[..., None].to(out.dtype)


class MiniPointNet(nn.Module):
    """Two-stage PointNet with masked max pooling (PoLAr-MAE/Point-MAE group encoder)."""

    def __init__(self, in_dim: int, out_dim: int, dims: tuple[int, int, int]) -> None:
        super().__init__()
        h1, p1, h2 = dims
        # bucketed rows (nufm.models.layers): the valid points of a batch vary at every step
        self.first = RowSequential(
            nn.Linear(in_dim, h1, bias=False), nn.LayerNorm(h1), nn.ReLU(), nn.Linear(h1, p1)
        )
        self.second = RowSequential(
            nn.Linear(2 * p1, h2, bias=False), nn.LayerNorm(h2), nn.ReLU(), nn.Linear(h2, out_dim)
        )

    def forward(self, x: Tensor, point_valid: Tensor) -> Tensor:
        """x (Q, K, Cin), point_valid (Q, K) bool -> (Q, D). Invalid points never contribute.

        Only valid points go through the MLPs (groups are often far from full), so the cost
        scales with real points, not with Q * K.
        """
        group = torch.nonzero(point_valid)[:, 0]  # (P,) group of every valid point, sorted
        lengths = point_valid.sum(1)  # (Q,) valid points per group
        h = self.first(x[point_valid])  # (P, p1)
        g = segment_max(h, lengths)  # (Q, p1)
        h = torch.cat([g.index_select(0, group), h], dim=-1)  # (P, 2 p1)
        return segment_max(self.second(h), lengths)  # (Q, D)


def fps_in_groups(points: Tensor, point_valid: Tensor, k: int) -> Tensor:
    """Farthest-point sampling inside every group (:func:`nufm.geometry.fps.group_fps`).

    Args:
        points: (Q, Ku, 3) coordinates of each group's candidates.
        point_valid: (Q, Ku) bool, True = real candidate; the valid slots of a group must come
            first (ball-query order). Slot 0 seeds the sampling (the ball query in "nearest"
            mode puts the point nearest the centre there).
        k: samples per group (<= Ku).

    Returns:
        (Q, k) int64 slot indices into Ku. Groups with <= k valid candidates return slots
        0..k-1 unchanged (all their valid points, then their empty slots).
    """
    return group_fps(points, point_valid, k)


def ball_group(
    center: Tensor,
    center_offset: Tensor,
    coord: Tensor,
    offset: Tensor,
    radius: float,
    candidates: int,
    k: int,
) -> Tensor:
    """Up to ``k`` points of the same event within ``radius`` of every centre.

    The ``candidates`` nearest points in the ball (:func:`ball_query`, "nearest" mode) are
    reduced to ``k`` by farthest-point sampling seeded at the nearest one
    (:func:`fps_in_groups`).

    Args:
        center: (Q, 3) centres, event-major; center_offset: (B,) their event ends.
        coord: (N, 3) packed points (same dtype as ``center``); offset: (B,) event ends.
        radius: ball radius; candidates: neighbours gathered first (>= k); k: kept.

    Returns:
        (Q, k) int64 global rows of ``coord``, -1 in empty slots (filled slots first).
    """
    idx, _ = ball_query(
        center, center_offset, coord, offset, radius, candidates, mode="nearest"
    )  # (Q, Ku)
    if candidates > k:
        slots = fps_in_groups(coord[idx.clamp(min=0)], idx >= 0, k)  # (Q, k)
        idx = torch.gather(idx, 1, slots)
    return idx


def canonical_order(coord: Tensor, offset: Tensor) -> Tensor:
    """Rows of a packed batch sorted per event by x, then y, then z (stable: exact ties keep
    their stored order).

    Args:
        coord: (N, 3) float positions.
        offset: (B,) int64 exclusive event ends.

    Returns:
        (N,) int64 permutation; ``coord[order]`` is the canonical order, events stay in place.
    """
    order = torch.arange(coord.shape[0], device=coord.device)
    for axis in (2, 1, 0):  # least significant key first, stable sorts
        order = order[torch.argsort(coord[order, axis], stable=True)]
    event = offset_to_batch_index(offset)  # (N,)
    return order[torch.argsort(event[order], stable=True)]


def grouping_key(cfg: PointMAETokenizerConfig) -> str:
    """The settings that decide an event's token groups, as a string (cached groups carry it)."""
    return (
        f"radius={cfg.group_radius:.9g} k={cfg.group_max_points} "
        f"candidates={cfg.group_upscale_points} overlap={cfg.overlap_factor:.9g} "
        f"init={cfg.num_init_groups} cnms_k={cfg.cnms_k} length={cfg.context_length}"
    )


@torch.no_grad()
def group_points(
    cfg: PointMAETokenizerConfig, coord: Tensor, offset: Tensor, random_start: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Choose centres and group points (no parameters, no gradients).

    Args:
        cfg: the tokenizer settings.
        coord: (N, 3) float normalised coordinates.
        offset: (B,) int64 exclusive event ends.
        random_start: random FPS seeds (only used with ``cfg.num_init_groups``).

    Returns:
        center_row (Q,) int64 point row of every centre, center_offset (B,),
        group_idx (Q, K) int64 global point rows (-1 empty), n_dropped (B,) int64.

    The points are visited in a canonical order (per event, sorted by x, then y, then z;
    :func:`canonical_order`), so the tokens do not depend on the order in which an event's
    points are stored (C-NMS and the ball query break ties by visiting order); only
    points at identical positions keep their stored order.
    """
    order = canonical_order(coord, offset)  # (N,) stored row of each canonical row
    center_row, center_offset, idx, n_dropped = _group_sorted(
        cfg, coord[order], offset, random_start
    )
    idx = torch.where(idx >= 0, order[idx.clamp(min=0)], idx)  # (Q, K) stored rows
    return order[center_row], center_offset, idx, n_dropped


_warned_overflow = False


def _group_sorted(
    cfg: PointMAETokenizerConfig, coord: Tensor, offset: Tensor, random_start: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`group_points` on points already in canonical order (rows refer to that order)."""
    global _warned_overflow
    N = coord.shape[0]
    if cfg.num_init_groups is not None:
        start = "random" if random_start else "first"
        cand_row, cand_offset = farthest_point_sampling(
            coord, offset, cfg.num_init_groups, start=start
        )
    else:
        cand_row = torch.arange(N, device=coord.device)
        cand_offset = offset
    keep, center_offset, n_dropped = centrality_nms(
        coord[cand_row],
        cand_offset,
        2.0 * cfg.group_radius * cfg.overlap_factor,
        cfg.cnms_k,
        cfg.context_length,
    )
    center_row = cand_row[keep]  # (Q,)
    if bool((n_dropped > 0).any()) and not _warned_overflow:
        _warned_overflow = True
        log.warning(
            "PointMAETokenizer: %d events had more than context_length=%d C-NMS "
            "centres; extra centres dropped (counted in Tokens.n_dropped; logged once)",
            int((n_dropped > 0).sum()),
            cfg.context_length,
        )
    idx = ball_group(
        coord[center_row],
        center_offset,
        coord,
        offset,
        cfg.group_radius,
        cfg.group_upscale_points,
        cfg.group_max_points,
    )  # (Q, K)
    return center_row, center_offset, idx, n_dropped


@dataclass(frozen=True)
class ContextGrouping:
    """A wider neighbourhood of every centre (the MAE context target, ``nufm.ssl.mae``)."""

    radius: float
    candidates: int
    points: int

    @property
    def key(self) -> str:
        return f" context={self.radius:.9g}/{self.candidates}/{self.points}"


def _groups_nbytes(groups: EventGroups) -> int:
    context = groups.context.nbytes if groups.context is not None else 0
    return groups.center.nbytes + groups.group.nbytes + context


class EventGrouper:
    """Computes an event's :class:`~nufm.batch.EventGroups` once, in the data pipeline.

    A transform (``grouper(event, rng) -> event`` with ``groups`` attached), placed by
    :func:`nufm.train.components.build_transform` after the coordinates are normalised and
    before the augmentations: groups are a function of the event's points alone, so they are
    cached per event (source, row and size; at most ``max_cached_bytes``) and a later epoch
    reuses them. Tokens of the rotated, flipped or scaled event are then the same groups of the
    same points, whose centre positions and offsets the model reads from the augmented
    coordinates.
    """

    def __init__(
        self,
        cfg: PointMAETokenizerConfig,
        context: ContextGrouping | None = None,
        *,
        cache: bool = True,
        max_cached_bytes: int = 2 << 30,
    ) -> None:
        self.cfg = cfg
        self.context = context
        self.key = grouping_key(cfg) + (context.key if context is not None else "")
        # about 60 kB an event (300 tokens of 16 + 32 rows): 2 GiB holds ~35,000 events
        self.memo: EventMemo[EventGroups] = EventMemo(_groups_nbytes, cache, max_cached_bytes)

    @property
    def cache(self) -> bool:
        """Whether groups are kept per event (:class:`nufm.data.memo.EventMemo`)."""
        return self.memo.enabled

    def groups(self, coord: np.ndarray) -> EventGroups:
        """(N, 3) normalised coordinates of one event -> its groups (rows of ``coord``)."""
        xyz = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))  # (N, 3)
        offset = torch.tensor([xyz.shape[0]], dtype=torch.int64)
        center_row, _, idx, n_dropped = group_points(self.cfg, xyz, offset)
        context = None
        if self.context is not None:
            c = self.context
            context = (
                ball_group(
                    xyz[center_row],
                    offset.new_tensor([center_row.shape[0]]),
                    xyz,
                    offset,
                    c.radius,
                    c.candidates,
                    c.points,
                )
                .to(torch.int32)
                .numpy()
            )  # (G, M)
        return EventGroups(
            key=self.key,
            n_points=int(xyz.shape[0]),
            center=center_row.numpy(),
            group=idx.to(torch.int32).numpy(),
            context=context,
            n_dropped=int(n_dropped[0]),
        )

    def __call__(self, event: Event, rng: np.random.Generator | None = None) -> Event:
        """Attach the event's groups (computed, or reused when this event was seen before)."""
        del rng  # deterministic
        return event.with_fields(groups=self.memo.get(event, lambda ev: self.groups(ev.coord)))


class PointMAETokenizer(nn.Module):
    """Packed points -> padded tokens (see the module docstring for the pipeline)."""

    def __init__(self, cfg: PointMAETokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pointnet = MiniPointNet(3 + cfg.in_channels, cfg.embed_dim, cfg.pointnet_dims)
        self.pos_embed = nn.Sequential(
            nn.Linear(3, cfg.pos_hidden), nn.GELU(), nn.Linear(cfg.pos_hidden, cfg.embed_dim)
        )

    @torch.no_grad()
    def group(self, coord: Tensor, offset: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:func:`group_points` with this tokenizer's settings (random FPS starts in training)."""
        return group_points(self.cfg, coord, offset, random_start=self.training)

    @property
    def grouping_key(self) -> str:
        """:func:`grouping_key` of this tokenizer's settings."""
        return grouping_key(self.cfg)

    def forward(
        self,
        coord: Tensor,
        feat: Tensor,
        offset: Tensor,
        groups: TokenGroups | None = None,
        embed: bool = True,
    ) -> Tokens:
        """Tokenize a packed batch.

        Args:
            coord: (N, 3) float normalised coordinates.
            feat: (N, C) float per-point features (C = ``cfg.in_channels``).
            offset: (B,) int64 exclusive event ends.
            groups: groups computed by the data pipeline with this tokenizer's settings
                (``PointBatch.groups``), or None to group here.
            embed: False = leave ``feat`` at 0 (call :meth:`embed` for the tokens that need
                it, e.g. only the visible ones of a masked autoencoder).

        Returns:
            :class:`Tokens` with G = the largest token count in the batch.
        """
        cfg = self.cfg
        if feat.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"PointMAETokenizer: feat has {feat.shape[-1]} channels, config "
                f"in_channels={cfg.in_channels}"
            )
        if coord.shape[0] != feat.shape[0]:
            raise ValueError(
                f"PointMAETokenizer: coord has {coord.shape[0]} rows, feat {feat.shape[0]}"
            )
        if groups is None:
            center_row, center_offset, idx, n_dropped = self.group(coord, offset)
        else:
            if not groups.key.startswith(self.grouping_key):
                raise ValueError(
                    f"PointMAETokenizer: the batch's token groups were made with "
                    f"{groups.key!r}, this tokenizer groups with {self.grouping_key!r}"
                )
            center_row, center_offset = groups.center_row, groups.center_offset
            idx, n_dropped = groups.group_idx, groups.n_dropped
        center = coord[center_row]  # (Q, 3)
        center_p, valid = pad(center, center_offset)  # (B, G, 3), (B, G)
        group_p, _ = pad(idx, center_offset, fill=-1)  # (B, G, K)
        valid = valid & (group_p >= 0).any(-1)
        if embed:
            tok_p, _ = pad(self.embed(coord, feat, center, idx), center_offset)  # (B, G, D)
        else:
            tok_p = center.new_zeros(*valid.shape, cfg.embed_dim)  # (B, G, D)
        pos, _ = pad(bucket_rows(self.pos_embed, center), center_offset)  # (B, G, D), 0 at pads
        return Tokens(
            feat=tok_p,
            pos=pos,
            center=center_p,
            valid=valid,
            group_idx=group_p,
            n_dropped=n_dropped,
        )

    def embed(self, coord: Tensor, feat: Tensor, center: Tensor, group_idx: Tensor) -> Tensor:
        """Mini-PointNet embedding of groups.

        Args:
            coord: (N, 3) packed coordinates; feat: (N, C) packed features.
            center: (Q, 3) group centres.
            group_idx: (Q, K) int64 rows of the group points, -1 = empty slot.

        Returns:
            (Q, D) float32 token features (computed in fp32, as in PoLAr-MAE, unless
            ``cfg.pointnet_fp32`` is False).
        """
        cfg = self.cfg
        point_valid = group_idx >= 0  # (Q, K)
        rel = gather_groups(coord, group_idx) - center[:, None]  # (Q, K, 3)
        rel = rel / cfg.group_radius
        x = torch.cat([rel, gather_groups(feat, group_idx)], dim=-1)  # (Q, K, 3 + C)
        x = x * point_valid[..., None].to(x.dtype)
        if not cfg.pointnet_fp32:
            return self.pointnet(x, point_valid).float()  # (Q, D)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.pointnet(x.float(), point_valid)  # (Q, D)


__all__ = [
    "TOKENIZER_PRESETS",
    "ContextGrouping",
    "EventGrouper",
    "MiniPointNet",
    "PointMAETokenizer",
    "PointMAETokenizerConfig",
    "Tokens",
    "ball_group",
    "canonical_order",
    "fps_in_groups",
    "gather_groups",
    "group_points",
    "grouping_key",
]
