"""Serialized point patches and a causal transformer over them: the encoder of next-patch
forecasting after FM4NPP (arXiv:2508.14087; docs/references.md).

Owns :class:`SerializedPatchConfig`, :class:`Patches`, :class:`CausalBlock` and
:class:`SerializedPatchEncoder`. Every event is put in order, along a space-filling curve of
its voxel grid (Hilbert or z order, :func:`nufm.geometry.serialize.serialization_order`) or,
for collider TPCs, FM4NPP's radial-cell order (by radius, then stably by coarse (eta, phi, R)
cells: :func:`nufm.geometry.serialize.radial_cell_order`), and cut into contiguous patches of
``patch_points`` points. A mini-PointNet of ``((xyz - c_t) / target_scale, feat)`` plus an MLP
of the patch centre c_t embeds patch t; causal pre-norm blocks give features in which row t
sees patches <= t. The objective that trains it is :class:`nufm.ssl.forecast.Forecaster`;
``forward`` gives token-level features (the patches as :class:`Tokens`) for the tasks.
Step by step: docs/objectives.md, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.grid import voxelize
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts
from nufm.geometry.serialize import radial_cell_order, serialization_order
from nufm.models.base import Encoder, EncoderOutput
from nufm.models.layers import Block, linear_rates
from nufm.models.tokenizers import VOXELS_PER_UNIT, MiniPointNet, Tokens, gather_groups

VOXEL = 1.0 / VOXELS_PER_UNIT
"""One PILArNet-M voxel in normalised coordinate units (arXiv:2502.02558)."""

TPC_RADIUS_RANGE: tuple[float, float] = (30.0 / 130.0, 78.0 / 130.0)
"""The collider TPC's radii, 30-78 cm (``nufm.sim.collider_tpc``), in its normalised units
(centre 0, scale 130 cm: ``nufm.data.detectors``)."""


@dataclass(frozen=True, kw_only=True)
class SerializedPatchConfig:
    """Ordered patches + causal transformer (defaults: a ~FM4NPP-5M-sized transformer)."""

    in_channels: int = 4
    """Channels C of ``PointBatch.feat``."""
    patch_points: int = 32
    """Points per patch along the order."""
    max_patches: int = 1024
    """Context length: patches beyond it (in order) are dropped."""
    grid_size: float = VOXEL
    """Voxel side used to serialize along a curve (normalised units; curve orders only)."""
    order: Literal["z", "z-trans", "hilbert", "hilbert-trans", "radial-cells"] = "hilbert"
    """Space-filling curve, or ``radial-cells``: FM4NPP's collider-TPC order (by radius from the
    z axis, then stably by (eta, phi, R) cell)."""
    serialization_depth: int = 16
    """Bits per axis of the curve codes (fixed for batch independence; curve orders only)."""
    target_scale: float = 10.0 * VOXEL
    """Length unit of the patch-relative coordinates (input and target), normalised units."""
    cell_bins: tuple[int, int, int] = (8, 8, 6)
    """``radial-cells``: cells along (eta, phi, R), swept in that order (FM4NPP's 8 x 8 x 6)."""
    eta_range: tuple[float, float] = (-2.0, 2.0)
    """``radial-cells``: pseudorapidity covered by the eta cells (outside: the edge cells)."""
    radius_range: tuple[float, float] = TPC_RADIUS_RANGE
    """``radial-cells``: radius from the z axis covered by the R cells, normalised units
    (outside: the edge cells; default the collider TPC's 30-78 cm at scale 130 cm)."""
    embed_dim: int = 256
    """Transformer width D."""
    depth: int = 12
    """Causal blocks."""
    num_heads: int = 8
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of D."""
    drop_path: float = 0.0
    """Maximum stochastic-depth rate."""
    pointnet_dims: tuple[int, int, int] = (128, 256, 512)
    """Mini-PointNet widths of the patch embedding."""

    def __post_init__(self) -> None:
        if self.patch_points < 1 or self.max_patches < 2:
            raise ValueError(
                f"SerializedPatchConfig: need patch_points >= 1 and max_patches >= 2, "
                f"got {self.patch_points}, {self.max_patches}"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"SerializedPatchConfig: embed_dim {self.embed_dim} not divisible by "
                f"num_heads {self.num_heads}"
            )
        if self.grid_size <= 0 or self.target_scale <= 0:
            raise ValueError("SerializedPatchConfig: grid_size and target_scale must be > 0")
        if min(self.cell_bins) < 1:
            raise ValueError(f"SerializedPatchConfig: cell_bins must be >= 1, got {self.cell_bins}")
        if not self.eta_range[0] < self.eta_range[1]:
            raise ValueError(f"SerializedPatchConfig: empty eta_range {self.eta_range}")
        if not 0.0 <= self.radius_range[0] < self.radius_range[1]:
            raise ValueError(
                f"SerializedPatchConfig: need 0 <= radius_range[0] < radius_range[1], "
                f"got {self.radius_range}"
            )


@dataclass
class Patches:
    """Contiguous patches of B ordered events.

    Attributes:
        idx: (B, T, P) int64 global point row of every slot, -1 = empty.
        valid: (B, T) bool, True = patch has at least one point.
        center: (B, T, 3) float mean position of each patch's points (0 for padding).
    """

    idx: Tensor
    valid: Tensor
    center: Tensor


class CausalBlock(Block):
    """:class:`nufm.models.layers.Block` whose attention is causal over the sequence and
    ignores invalid keys (same parameters as ``Block``)."""

    def _causal_attention(self, x: Tensor, valid: Tensor) -> Tensor:
        B, T, D = x.shape
        attn = self.attn
        H = attn.num_heads
        qkv = attn.qkv(x).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D/H)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
        allowed = causal[None] & valid[:, None, :]  # (B, T, T) query t sees valid keys <= t
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=x.device)[None]  # never empty
        out = F.scaled_dot_product_attention(
            qkv[0],
            qkv[1],
            qkv[2],
            attn_mask=allowed[:, None],
            dropout_p=attn.attn_drop if self.training else 0.0,
        )  # (B, H, T, D/H)
        out = out.transpose(1, 2).reshape(B, T, D)
        return attn.proj_drop(attn.proj(out))

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x (B, T, D), valid (B, T) bool -> (B, T, D); position t depends on positions <= t."""
        if valid is None:
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x = x + self.drop_path(self.ls1(self._causal_attention(self.norm1(x), valid)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class SerializedPatchEncoder(Encoder):
    """Ordered patches -> causal transformer features (the encoder forecasting pretrains).

    ``forward(batch)`` returns token-level features (B, T, D) with ``valid`` (B, T) and the
    patches as :class:`Tokens` (centres, point rows), so
    :class:`nufm.models.base.PointFeatures` and the tasks' neck take them to the points.
    """

    def __init__(self, cfg: SerializedPatchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.pointnet = MiniPointNet(3 + cfg.in_channels, D, cfg.pointnet_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, D))
        rates = linear_rates(cfg.drop_path, cfg.depth)
        self.blocks = nn.ModuleList(
            CausalBlock(D, cfg.num_heads, cfg.mlp_ratio, True, rates[i]) for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(D)

    @property
    def out_dim(self) -> int:
        return self.cfg.embed_dim

    def order(self, batch: PointBatch) -> Tensor:
        """(N,) int64 point rows in ``cfg.order``, events contiguous and in batch order."""
        cfg = self.cfg
        match cfg.order:
            case "radial-cells":
                return radial_cell_order(
                    batch.coord, batch.offset, cfg.cell_bins, cfg.eta_range, cfg.radius_range
                )
            case "z" | "z-trans" | "hilbert" | "hilbert-trans":
                grid = voxelize(batch.coord, batch.offset, cfg.grid_size)  # (N, 3)
                order, _ = serialization_order(
                    grid, batch.offset, cfg.serialization_depth, (cfg.order,)
                )
                return order[0]

    @torch.no_grad()
    def patchify(self, batch: PointBatch) -> Patches:
        """Order each event and cut it into patches (no parameters)."""
        cfg = self.cfg
        coord, offset = batch.coord, batch.offset
        rows = self.order(batch)  # (N,) point rows in order
        counts = offset_to_counts(offset)  # (B,)
        event = offset_to_batch_index(offset)  # (N,) event of each ordered position
        pos = torch.arange(rows.shape[0], device=coord.device) - offset_to_starts(offset)[event]
        P = cfg.patch_points
        t, s = pos // P, pos % P  # (N,) patch and slot of each ordered position
        n_patch = ((counts + P - 1) // P).clamp(max=cfg.max_patches)  # (B,)
        T = max(int(n_patch.max()) if counts.numel() else 0, 1)
        keep = t < n_patch[event]
        idx = torch.full((counts.shape[0], T, P), -1, dtype=torch.int64, device=coord.device)
        idx[event[keep], t[keep], s[keep]] = rows[keep]
        valid = torch.arange(T, device=coord.device) < n_patch[:, None]  # (B, T)
        filled = (idx >= 0)[..., None].to(coord.dtype)  # (B, T, P, 1)
        center = (gather_groups(coord, idx) * filled).sum(2) / filled.sum(2).clamp(min=1.0)
        return Patches(idx=idx, valid=valid, center=center)

    def encode(self, batch: PointBatch, patches: Patches) -> Tensor:
        """(B, T, D) causal features of the patches (row t sees patches <= t)."""
        cfg = self.cfg
        B, T, P = patches.idx.shape
        point_valid = patches.idx >= 0  # (B, T, P)
        rel = gather_groups(batch.coord, patches.idx) - patches.center[:, :, None]
        rel = rel / cfg.target_scale  # (B, T, P, 3)
        x = torch.cat([rel, gather_groups(batch.feat, patches.idx)], dim=-1)  # (B, T, P, 3+C)
        x = x * point_valid[..., None].to(x.dtype)
        tok = self.pointnet(x.reshape(B * T, P, -1), point_valid.reshape(B * T, P))  # (B*T, D)
        h = tok.reshape(B, T, -1) + self.pos_embed(patches.center)  # (B, T, D)
        for block in self.blocks:
            h = block(h, patches.valid)
        return self.norm(h)

    def forward(self, batch: PointBatch) -> EncoderOutput:
        """Token-level output: ``feat`` (B, T, D) causal features, ``tokens.center`` (B, T, 3)
        patch centres, ``tokens.group_idx`` (B, T, P) the patches' point rows."""
        patches = self.patchify(batch)
        feat = self.encode(batch, patches)  # (B, T, D)
        B = patches.valid.shape[0]
        tokens = Tokens(
            feat=feat,
            pos=torch.zeros_like(feat),  # position is inside feat (pos_embed before the blocks)
            center=patches.center,
            valid=patches.valid,
            group_idx=patches.idx,
            n_dropped=torch.zeros(B, dtype=torch.int64, device=feat.device),
        )
        return EncoderOutput(
            feat=feat, level="token", offset=batch.offset, valid=patches.valid, tokens=tokens
        )


__all__ = [
    "TPC_RADIUS_RANGE",
    "VOXEL",
    "CausalBlock",
    "Patches",
    "SerializedPatchConfig",
    "SerializedPatchEncoder",
]
