"""Autoregressive forecasting along a space-filling curve, after FM4NPP (arXiv:2508.14087;
docs/references.md).

Owns :class:`ForecastConfig`, :class:`Patches`, :class:`CausalBlock`,
:class:`SerializedPatchEncoder` and :class:`Forecaster`: every event is serialized along a
Hilbert curve and cut into patches of ``patch_points`` points; a causal transformer over the
patches predicts, from patch t, the points X_{t+1} of patch t + 1 relative to the centre c_t
of patch t (in units of ``target_scale``):

    loss = mean over pairs (t, t+1) of Chamfer(X^_t, (X_{t+1} - c_t) / target_scale)

with X^_t truncated to |X_{t+1}|. Metric ``copy_baseline`` is the same loss for the forecast
"patch t + 1 looks like patch t". Step by step, and how it differs from FM4NPP:
docs/objectives.md, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.grid import voxelize
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts, offset_to_starts
from nufm.geometry.serialize import serialization_order
from nufm.models.encoders import Encoder, EncoderOutput
from nufm.models.layers import Block, linear_rates
from nufm.models.tokenizers import MiniPointNet, gather_groups
from nufm.ssl.losses import masked_chamfer
from nufm.step import StepOutput

VOXEL = 1.0 / 665.1
"""One PILArNet-M voxel in normalised coordinate units (arXiv:2502.02558)."""


@dataclass(frozen=True, kw_only=True)
class ForecastConfig:
    """Next-patch forecasting (defaults: a ~FM4NPP-5M-sized transformer)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {"squared_chamfer": True}
    """Removed options -> the value that means what the code does now (``nufm.config``)."""

    name: Literal["forecast"] = "forecast"
    """Discriminator of the objective union in ``RunConfig`` (fixed)."""
    in_channels: int = 4
    """Channels C of ``PointBatch.feat``."""
    patch_points: int = 32
    """Points per patch along the curve."""
    max_patches: int = 1024
    """Context length: patches beyond it (curve order) are dropped."""
    grid_size: float = VOXEL
    """Voxel side used to serialize (normalised units)."""
    order: Literal["z", "z-trans", "hilbert", "hilbert-trans"] = "hilbert"
    """Space-filling curve."""
    serialization_depth: int = 16
    """Bits per axis of the curve codes (fixed for batch independence)."""
    target_scale: float = 10.0 * VOXEL
    """Length unit of the patch-relative coordinates (input and target), normalised units."""
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
                f"ForecastConfig: need patch_points >= 1 and max_patches >= 2, "
                f"got {self.patch_points}, {self.max_patches}"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"ForecastConfig: embed_dim {self.embed_dim} not divisible by "
                f"num_heads {self.num_heads}"
            )
        if self.grid_size <= 0 or self.target_scale <= 0:
            raise ValueError("ForecastConfig: grid_size and target_scale must be > 0")


@dataclass
class Patches:
    """Contiguous curve patches of B events.

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
    """Curve patches -> causal transformer features; the exported encoder of :class:`Forecaster`.

    ``forward(batch)`` returns token-level features (B, T, D) with ``valid`` (B, T).
    """

    def __init__(self, cfg: ForecastConfig) -> None:
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

    @torch.no_grad()
    def patchify(self, batch: PointBatch) -> Patches:
        """Serialize each event and cut it into patches (no parameters)."""
        cfg = self.cfg
        coord, offset = batch.coord, batch.offset
        grid = voxelize(coord, offset, cfg.grid_size)  # (N, 3)
        order, _ = serialization_order(grid, offset, cfg.serialization_depth, (cfg.order,))
        rows = order[0]  # (N,) point rows along the curve, events contiguous and in order
        counts = offset_to_counts(offset)  # (B,)
        event = offset_to_batch_index(offset)  # (N,) event of each curve position
        pos = torch.arange(rows.shape[0], device=coord.device) - offset_to_starts(offset)[event]
        P = cfg.patch_points
        t, s = pos // P, pos % P  # (N,) patch and slot of each curve position
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
        x = torch.cat([rel, gather_groups(batch.feat, patches.idx)], dim=-1)
        x = x * point_valid[..., None].to(x.dtype)
        tok = self.pointnet(x.reshape(B * T, P, -1), point_valid.reshape(B * T, P))
        h = tok.reshape(B, T, -1) + self.pos_embed(patches.center)  # (B, T, D)
        for block in self.blocks:
            h = block(h, patches.valid)
        return self.norm(h)

    def forward(self, batch: PointBatch) -> EncoderOutput:
        patches = self.patchify(batch)
        feat = self.encode(batch, patches)
        return EncoderOutput(feat=feat, level="token", offset=batch.offset, valid=patches.valid)


class Forecaster(nn.Module):
    """Next-patch forecasting objective; ``forward(batch) -> StepOutput``."""

    def __init__(self, cfg: ForecastConfig, encoder: SerializedPatchEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else SerializedPatchEncoder(cfg)
        self.head = nn.Linear(cfg.embed_dim, 3 * cfg.patch_points)

    def forward(self, batch: PointBatch) -> StepOutput:
        cfg = self.cfg
        patches = self.encoder.patchify(batch)
        h = self.encoder.encode(batch, patches)  # (B, T, D)
        _B, _T, P = patches.idx.shape
        has_next = patches.valid[:, 1:]  # (B, T-1) pair (t, t+1) exists
        src = h[:, :-1][has_next]  # (Q, D)
        center = patches.center[:, :-1][has_next]  # (Q, 3) centre of patch t
        nxt = patches.idx[:, 1:][has_next]  # (Q, P) rows of patch t+1
        cur = patches.idx[:, :-1][has_next]  # (Q, P) rows of patch t
        Q = src.shape[0]
        target_valid = nxt >= 0
        target = (gather_groups(batch.coord, nxt) - center[:, None]) / cfg.target_scale
        pred = self.head(src).reshape(Q, P, 3)  # (Q, P, 3)
        pred_valid = torch.arange(P, device=pred.device) < target_valid.sum(1)[:, None]
        cd = masked_chamfer(pred, pred_valid, target, target_valid)
        chamfer = cd.sum() / max(Q, 1)
        with torch.no_grad():
            copy = (gather_groups(batch.coord, cur) - center[:, None]) / cfg.target_scale
            copy_cd = masked_chamfer(copy, cur >= 0, target, target_valid)
        metrics = {
            "chamfer": chamfer.detach(),
            "copy_baseline": copy_cd.sum() / max(Q, 1),
            "n_pairs": torch.tensor(float(Q), device=chamfer.device),
        }
        return StepOutput(loss=chamfer, metrics=metrics)


__all__ = ["CausalBlock", "ForecastConfig", "Forecaster", "Patches", "SerializedPatchEncoder"]
