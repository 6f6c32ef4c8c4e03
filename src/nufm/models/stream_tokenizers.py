"""Tokenizers for the sub-detector streams of a heterogeneous detector (the FASERCal foundation
model, arXiv:2604.07037, and its code github saulam/faserDL, ``model/minkmaevit.py``; see
docs/references.md).

Owns :class:`PatchTokenizerConfig` / :class:`PatchTokenizer` (:class:`PatchTokens`), for a
fine voxel grid cut into fixed 3D patches, and :class:`SetTokenizerConfig` /
:class:`SetTokenizer` (:class:`SetTokens`), one token per event for a coarse sub-detector, plus
the fixed 3D sin-cos position embedding :func:`sincos_3d`.

Patch tokens. A point at ``coord`` lies in voxel ``v = floor((coord - origin) / voxel_size)``
(3 ints), in patch ``p = v // n`` and in-patch voxel ``u = v % n`` with ``n = patch_size /
voxel_size`` voxels per patch side. Flat indices use C order of the grid and of the patch:

    patch_index = (p_x * g_y + p_y) * g_z + p_z          (grid_shape = (g_x, g_y, g_z))
    slot        = (u_x * n_y + u_y) * n_z + u_z          (0 .. n_x n_y n_z - 1)
    module      = p_z // module_depth_patches            (0 when there are no modules)

Only occupied patches become tokens. The embedding of a patch is a linear map of its dense
voxel content (each voxel: occupancy 1 and its ``C`` feature channels),

    token = LayerNorm(b + sum_{points i in the patch} W[slot_i] @ (1, feat_i)),   W: (S, 1 + C, D)

which is exactly a 3D convolution with kernel = stride = patch on the sparse grid (the reference
uses ``spconv.SparseConv3d`` so), computed sparsely with ``F.embedding_bag`` at a cost of
O(N (1 + C) D). A linear map is chosen over a PointNet because the voxels sit on a regular
grid: every slot gets its own weights (the position of a voxel inside its patch is known
exactly, not re-learned from an offset), and sums keep how many voxels fired and how much
charge they carry, which a max-pool loses. The token's position embedding is the fixed 3D
sin-cos embedding of the patch's integer position inside its module plus a learned embedding
of the module (the reference's ``intra-module sin-cos + module embedding``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, pad
from nufm.models.tokenizers import MiniPointNet


@dataclass(frozen=True, kw_only=True)
class PatchTokenizerConfig:
    """Sparse 3D patches of a voxel grid, one token per occupied patch.

    Example (the FASERCal scintillator in normalised units, cm / 100: 48 x 48 x 200 cubes of
    1 cm, 10 modules of 20 cm along z, patches of 12 x 12 x 10 cubes as the reference "tiny"):
    ``PatchTokenizerConfig(in_channels=4, embed_dim=528, origin=(-0.24, -0.24, -1.0),
    voxel_size=(0.01, 0.01, 0.01), patch_size=(0.12, 0.12, 0.10), grid_shape=(4, 4, 20),
    module_depth_patches=2)`` gives 320 patches of 1440 voxel slots in 10 modules.
    """

    in_channels: int = 4
    """Channels C of ``PointBatch.feat``."""
    embed_dim: int = 384
    """Token width D."""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Lower corner of the grid, in the batch's coordinate units."""
    voxel_size: tuple[float, float, float] = (0.01, 0.01, 0.01)
    """Grid pitch (voxel side) per axis, in the batch's coordinate units."""
    patch_size: tuple[float, float, float] = (0.1, 0.1, 0.1)
    """Patch side per axis in the batch's coordinate units (a whole number of voxels)."""
    grid_shape: tuple[int, int, int] = (1, 1, 1)
    """Patches per axis; points outside ``origin + grid_shape * patch_size`` are an error."""
    module_depth_patches: int = 0
    """Patches per detector module along z (module = ``p_z // module_depth_patches``); 0 = no
    modules (the whole grid is one module)."""

    def __post_init__(self) -> None:
        for ax in range(3):
            ratio = self.patch_size[ax] / self.voxel_size[ax]
            if self.voxel_size[ax] <= 0 or abs(ratio - round(ratio)) > 1e-4 or round(ratio) < 1:
                raise ValueError(
                    f"PatchTokenizerConfig: patch_size {self.patch_size} must be a whole number "
                    f"(>= 1) of voxel_size {self.voxel_size} on every axis"
                )
        if min(self.grid_shape) < 1:
            raise ValueError(f"PatchTokenizerConfig: grid_shape {self.grid_shape} must be >= 1")
        m = self.module_depth_patches
        if m < 0 or (m > 0 and self.grid_shape[2] % m != 0):
            raise ValueError(
                f"PatchTokenizerConfig: module_depth_patches {m} must be 0 or divide "
                f"grid_shape[2] = {self.grid_shape[2]}"
            )

    @property
    def voxels_per_patch(self) -> tuple[int, int, int]:
        """(n_x, n_y, n_z) voxels along each patch side."""
        (px, py, pz), (vx, vy, vz) = self.patch_size, self.voxel_size
        return round(px / vx), round(py / vy), round(pz / vz)

    @property
    def slots_per_patch(self) -> int:
        """S = n_x n_y n_z voxel slots in one patch (1440 for FASERCal 12 x 12 x 10)."""
        return math.prod(self.voxels_per_patch)

    @property
    def num_patches(self) -> int:
        """P = g_x g_y g_z patches in the grid."""
        return math.prod(self.grid_shape)

    @property
    def num_modules(self) -> int:
        """M modules along z (1 when there are no modules)."""
        m = self.module_depth_patches
        return self.grid_shape[2] // m if m > 0 else 1


@dataclass(frozen=True, kw_only=True)
class SetTokenizerConfig:
    """One token per event from all the stream's points (a PointNet with a max-pool)."""

    in_channels: int = 4
    """Channels C of ``PointBatch.feat``."""
    embed_dim: int = 384
    """Token width D."""
    mlp_dims: tuple[int, int, int] = (64, 128, 256)
    """Mini-PointNet widths: first MLP hidden, first MLP out (pooled), second MLP hidden."""


@dataclass
class PatchTokens:
    """Padded patch tokens of B events (tokens of an event sorted by ``patch_index``).

    Attributes:
        feat: (B, G, D) float patch embeddings (padding rows 0).
        pos: (B, G, D) float position embedding: fixed sin-cos of the in-module patch
            position + learned module embedding (padding rows 0). Also the natural decoder
            query of a hidden patch.
        center: (B, G, 3) float patch centres, batch coordinate units (padding 0).
        valid: (B, G) bool, True = real (occupied) patch.
        patch_index: (B, G) int64 flat patch index in the grid (module docstring), -1 = padding.
        module_index: (B, G) int64 module of the patch, -1 = padding.
        point_token: (N_s,) int64 column g of every input point's token in its event's row,
            so ``target[event_of_point, point_token, point_slot]`` builds voxel-level targets
            (B, G, S) and ``pred[event_of_point, point_token, point_slot]`` maps voxel-level
            predictions back to the points. Several points may share a slot.
        point_slot: (N_s,) int64 in-patch voxel slot of every input point (0 .. S-1).
    """

    feat: Tensor
    pos: Tensor
    center: Tensor
    valid: Tensor
    patch_index: Tensor
    module_index: Tensor
    point_token: Tensor
    point_slot: Tensor


@dataclass
class SetTokens:
    """One token per event.

    Attributes:
        feat: (B, 1, D) float token (0 for an event with no points in the stream).
        valid: (B, 1) bool, False = the event has no points in this stream.
    """

    feat: Tensor
    valid: Tensor


def sincos_3d(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 3D sin-cos embedding (MAE's 2D recipe, arXiv:2111.06377, on three axes).

    Args:
        pos: (P, 3) float positions (integer patch coordinates here).
        dim: output width D; each axis gets ``2 * (D // 6)`` channels (half sin, half cos),
            the remaining ``D % 6`` channels are 0.

    Returns:
        (P, D) float32 embedding.
    """
    per_axis = dim // 6
    omega = 1.0 / temperature ** (torch.arange(per_axis, dtype=torch.float32) / max(per_axis, 1))
    parts = []
    for ax in range(3):
        angle = pos[:, ax : ax + 1].float() * omega  # (P, D/6)
        parts += [angle.sin(), angle.cos()]
    out = torch.cat(parts, dim=1)  # (P, 6 * (D // 6))
    return F.pad(out, (0, dim - out.shape[1]))  # (P, D)


class PatchTokenizer(nn.Module):
    """Packed points on a voxel grid -> padded tokens of the occupied patches."""

    patch_grid: Tensor
    """(P, 3) int64 integer position of every patch in the grid."""
    patch_module: Tensor
    """(P,) int64 module of every patch."""
    patch_sincos: Tensor
    """(P, D) fixed sin-cos embedding of every patch's in-module position."""

    def __init__(self, cfg: PatchTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, D, S, M = cfg.in_channels, cfg.embed_dim, cfg.slots_per_patch, cfg.num_modules
        # Row slot * (1 + C) + c of ``voxel_weight`` multiplies channel c of a voxel in ``slot``.
        self.voxel_weight = nn.Parameter(torch.randn(S * (1 + C), D) * 0.02)  # (S (1+C), D)
        self.bias = nn.Parameter(torch.zeros(D))
        self.norm = nn.LayerNorm(D)
        self.module_embed = nn.Parameter(torch.randn(M, D) * 0.02)  # (M, D)
        # The learned summary ("CLS") token of every module, read by the encoder's module blocks.
        self.module_summary = nn.Parameter(torch.randn(M, D) * 0.02)  # (M, D)
        _, gy, gz = cfg.grid_shape
        p = torch.arange(cfg.num_patches)
        grid = torch.stack([p // (gy * gz), (p // gz) % gy, p % gz], dim=1)  # (P, 3)
        depth = cfg.module_depth_patches
        in_module = grid.clone()
        if depth > 0:
            in_module[:, 2] = grid[:, 2] % depth
        self.register_buffer("patch_grid", grid, persistent=False)  # (P, 3) int64
        self.register_buffer(
            "patch_module",
            grid[:, 2] // depth if depth > 0 else torch.zeros_like(p),
            persistent=False,
        )  # (P,) int64
        self.register_buffer("patch_sincos", sincos_3d(in_module, D), persistent=False)  # (P, D)

    def forward(self, coord: Tensor, feat: Tensor, offset: Tensor) -> PatchTokens:
        """Tokenize the stream's points.

        Args:
            coord: (N_s, 3) float positions, batch coordinate units (the grid's frame).
            feat: (N_s, C) float per-point features.
            offset: (B,) int64 exclusive event ends of these points.

        Returns:
            :class:`PatchTokens` with G = the largest number of occupied patches in an event.

        Raises:
            ValueError: when points lie outside the grid (says how many) or ``feat`` has the
                wrong width.
        """
        cfg = self.cfg
        if feat.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"PatchTokenizer: feat has {feat.shape[-1]} channels, config "
                f"in_channels={cfg.in_channels}"
            )
        patch, slot = self.locate(coord)  # (N_s,), (N_s,)
        B, P = offset.shape[0], cfg.num_patches
        event = offset_to_batch_index(offset)  # (N_s,)
        key, point_tok = torch.unique(event * P + patch, return_inverse=True)  # (Q,), (N_s,)
        tok_event = key // P  # (Q,) tokens sorted by (event, patch)
        tok_patch = key % P  # (Q,)
        tok_offset = torch.cumsum(torch.bincount(tok_event, minlength=B), 0)  # (B,)
        tok_start = (tok_offset - offset_to_counts(tok_offset))[tok_event]  # (Q,)
        point_token = point_tok - tok_start[point_tok]  # (N_s,) column in the event's row

        emb = self.norm(self.embed(feat, point_tok, slot, key.shape[0]) + self.bias)  # (Q, D)
        pos = self.patch_sincos[tok_patch] + self.module_embed[self.patch_module[tok_patch]]
        center = coord.new_tensor(cfg.origin) + (
            self.patch_grid[tok_patch].to(coord.dtype) + 0.5
        ) * coord.new_tensor(cfg.patch_size)  # (Q, 3)
        feat_p, valid = pad(emb, tok_offset)  # (B, G, D), (B, G)
        pos_p, _ = pad(pos, tok_offset)  # (B, G, D)
        center_p, _ = pad(center, tok_offset)  # (B, G, 3)
        patch_p, _ = pad(tok_patch, tok_offset, fill=-1)  # (B, G)
        module_p, _ = pad(self.patch_module[tok_patch], tok_offset, fill=-1)  # (B, G)
        return PatchTokens(
            feat=feat_p,
            pos=pos_p,
            center=center_p,
            valid=valid,
            patch_index=patch_p,
            module_index=module_p,
            point_token=point_token,
            point_slot=slot,
        )

    @torch.no_grad()
    def locate(self, coord: Tensor) -> tuple[Tensor, Tensor]:
        """Patch and in-patch slot of every point.

        Args:
            coord: (N_s, 3) float positions, batch coordinate units.

        Returns:
            patch_index (N_s,) int64 and slot (N_s,) int64 (module docstring).
        """
        cfg = self.cfg
        n = coord.new_tensor(cfg.voxels_per_patch, dtype=torch.int64)  # (3,)
        g = coord.new_tensor(cfg.grid_shape, dtype=torch.int64)  # (3,)
        rel = (coord - coord.new_tensor(cfg.origin)) / coord.new_tensor(cfg.voxel_size)
        voxel = torch.floor(rel).long()  # (N_s, 3)
        inside = ((voxel >= 0) & (voxel < n * g)).all(dim=1)  # (N_s,)
        if not bool(inside.all()):
            lo = cfg.origin
            hi = tuple(
                o + k * p
                for o, k, p in zip(cfg.origin, cfg.grid_shape, cfg.patch_size, strict=True)
            )
            raise ValueError(
                f"PatchTokenizer: {int((~inside).sum())} of {coord.shape[0]} points lie outside "
                f"the patch grid [{lo}, {hi})"
            )
        p = voxel // n  # (N_s, 3)
        u = voxel % n  # (N_s, 3)
        patch = (p[:, 0] * g[1] + p[:, 1]) * g[2] + p[:, 2]  # (N_s,)
        slot = (u[:, 0] * n[1] + u[:, 1]) * n[2] + u[:, 2]  # (N_s,)
        return patch, slot

    def embed(self, feat: Tensor, point_tok: Tensor, slot: Tensor, Q: int) -> Tensor:
        """Linear map of every token's dense patch, computed over its occupied voxels only.

        Args:
            feat: (N_s, C) per-point features.
            point_tok: (N_s,) int64 token (0..Q-1) of every point.
            slot: (N_s,) int64 in-patch slot of every point.
            Q: number of tokens.

        Returns:
            (Q, D) float32 ``sum_i W[slot_i] @ (1, feat_i)`` (no bias).
        """
        C1 = 1 + self.cfg.in_channels
        order = torch.argsort(point_tok, stable=True)  # (N_s,) points grouped by token
        values = torch.cat([feat.new_ones(feat.shape[0], 1), feat], dim=1)[order]  # (N_s, 1+C)
        rows = slot[order, None] * C1 + torch.arange(C1, device=feat.device)  # (N_s, 1+C)
        counts = torch.bincount(point_tok, minlength=Q)  # (Q,) points per token
        starts = torch.cumsum(counts, 0) - counts  # (Q,) first point of every token in ``order``
        with torch.autocast(device_type=feat.device.type, enabled=False):
            return F.embedding_bag(
                rows.reshape(-1),
                self.voxel_weight.float(),
                starts * C1,
                mode="sum",
                per_sample_weights=values.reshape(-1).float(),
            )  # (Q, D)


class SetTokenizer(nn.Module):
    """All points of an event's stream -> one token (Mini-PointNet of (coord, feat), max-pool)."""

    def __init__(self, cfg: SetTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pointnet = MiniPointNet(3 + cfg.in_channels, cfg.embed_dim, cfg.mlp_dims)

    def forward(self, coord: Tensor, feat: Tensor, offset: Tensor) -> SetTokens:
        """Tokenize the stream's points.

        Args:
            coord: (N_s, 3) float positions, batch coordinate units.
            feat: (N_s, C) float per-point features.
            offset: (B,) int64 exclusive event ends (events may have 0 points).

        Returns:
            :class:`SetTokens`: feat (B, 1, D), valid (B, 1).
        """
        if feat.shape[-1] != self.cfg.in_channels:
            raise ValueError(
                f"SetTokenizer: feat has {feat.shape[-1]} channels, config "
                f"in_channels={self.cfg.in_channels}"
            )
        x, point_valid = pad(torch.cat([coord, feat], dim=1), offset)  # (B, K, 3+C), (B, K)
        with torch.autocast(device_type=x.device.type, enabled=False):
            token = self.pointnet(x.float(), point_valid)  # (B, D)
        return SetTokens(feat=token[:, None], valid=point_valid.any(dim=1, keepdim=True))


__all__ = [
    "PatchTokenizer",
    "PatchTokenizerConfig",
    "PatchTokens",
    "SetTokenizer",
    "SetTokenizerConfig",
    "SetTokens",
    "sincos_3d",
]
