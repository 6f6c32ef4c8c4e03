"""Point Transformer V3 encoder-decoder over packed points, without spconv (PTv3
arXiv:2312.10035; Sonata arXiv:2503.16429; as configured by Panda arXiv:2512.01324;
docs/references.md).

Owns :class:`PTv3Config`, :class:`PTv3Output` and :class:`PTv3`: a U-Net of serialized-attention
stages. Each stage serializes its voxels along space-filling curves (orders shuffled per forward
and per stage in training, fixed in eval so inference is deterministic), cuts the curve into
non-overlapping patches with the PTv3 padding rule and runs SDPA inside every patch. The
conditional positional encoding is a submanifold 3x3x3 sparse convolution on a hash of voxel
coordinates (:mod:`nufm.models.sparse_conv`). Stages are linked by grid pooling (stride 2,
Linear -> segment max -> LayerNorm -> GELU) and, in the decoder, grid unpooling with projected
skip connections. Every step is linear in N apart from sorts, so cost grows ~linearly with points.
Named sizes are in :mod:`nufm.models.presets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.geometry.grid import grid_pool, voxelize
from nufm.geometry.serialize import patch_padding, serialization_order
from nufm.models.layers import DropPath, LayerScale, Mlp, linear_rates
from nufm.models.sparse_conv import SubMConv3d, neighbour_map

Order = Literal["z", "z-trans", "hilbert", "hilbert-trans"]


@dataclass(frozen=True, kw_only=True)
class PTv3Config:
    """Serialized point transformer (defaults: Panda-Base encoder + semseg decoder)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {"shuffle_orders": True}
    """Removed options -> the value that means what the code does now (``nufm.config``)."""

    in_channels: int = 4
    """Channels C of ``PointBatch.feat``."""
    grid_size: float = 0.001
    """Voxel size of stage 0 in coordinate units, used when the batch has no ``grid_coord``."""
    order: tuple[Order, ...] = ("hilbert", "hilbert-trans", "z", "z-trans")
    """Space-filling curves; block i of a stage uses order i % len(order). In training the orders
    are randomly permuted per forward and stage (never in eval)."""
    serialization_depth: int = 16
    """Bits per axis of the stage-0 curve codes; stage s uses this minus log2 of the product of
    the strides so far. Fixed (not adaptive), so codes never depend on batch composition."""
    stride: tuple[int, ...] = (2, 2, 2, 2)
    """Grid-pooling stride between consecutive encoder stages."""
    enc_depths: tuple[int, ...] = (3, 3, 3, 9, 3)
    """Blocks per encoder stage."""
    enc_channels: tuple[int, ...] = (48, 96, 192, 384, 512)
    """Width per encoder stage."""
    enc_num_head: tuple[int, ...] = (3, 6, 12, 24, 32)
    """Attention heads per encoder stage."""
    enc_patch_size: tuple[int, ...] = (256, 256, 256, 256, 256)
    """Serialized patch size per encoder stage."""
    dec_depths: tuple[int, ...] = (2, 2, 2, 2)
    """Blocks per decoder stage (stage i is at the resolution of encoder stage i)."""
    dec_channels: tuple[int, ...] = (64, 96, 192, 384)
    """Width per decoder stage; the output width is dec_channels[0]."""
    dec_num_head: tuple[int, ...] = (4, 6, 12, 24)
    """Attention heads per decoder stage."""
    dec_patch_size: tuple[int, ...] = (256, 256, 256, 256)
    """Serialized patch size per decoder stage."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of the stage width."""
    qkv_bias: bool = True
    """Bias in the qkv projections."""
    drop_path: float = 0.3
    """Maximum stochastic-depth rate (linear over encoder blocks; decoder likewise)."""
    attn_drop: float = 0.0
    """Dropout on attention weights."""
    layer_scale: float | None = None
    """Initial LayerScale value (Panda pretraining 1e-5); None disables it."""
    enc_mode: bool = False
    """Encoder only: no decoder; ``feat`` is the up-cast encoder output (see ``enc_upcast``)."""
    enc_upcast: Literal["concat", "last"] = "concat"
    """In enc_mode, per-point feat = concat of all stages up-cast to points (Panda linear
    probing, sum(enc_channels) wide) or only the deepest stage up-cast."""
    mask_token: bool = False
    """Learn a token that replaces the stem features of masked points (Sonata/Panda)."""

    def __post_init__(self) -> None:
        S = len(self.enc_channels)
        for name in ("enc_depths", "enc_num_head", "enc_patch_size"):
            if len(getattr(self, name)) != S:
                raise ValueError(f"PTv3Config: {name} needs {S} entries (one per encoder stage)")
        if len(self.stride) != S - 1:
            raise ValueError(f"PTv3Config: stride needs {S - 1} entries, got {len(self.stride)}")
        if not self.enc_mode:
            for name in ("dec_depths", "dec_channels", "dec_num_head", "dec_patch_size"):
                if len(getattr(self, name)) != S - 1:
                    raise ValueError(
                        f"PTv3Config: {name} needs {S - 1} entries (one per decoder"
                        " stage) unless enc_mode=True"
                    )
        for c, h in zip(
            self.enc_channels + self.dec_channels,
            self.enc_num_head + self.dec_num_head,
            strict=False,
        ):
            if c % h != 0:
                raise ValueError(f"PTv3Config: width {c} not divisible by {h} heads")
        if not self.order:
            raise ValueError("PTv3Config: order needs at least one curve")

    @property
    def out_dim(self) -> int:
        """Width of ``PTv3Output.feat``."""
        if not self.enc_mode:
            return self.dec_channels[0]
        return sum(self.enc_channels) if self.enc_upcast == "concat" else self.enc_channels[-1]


@dataclass
class PTv3Output:
    """Output of :class:`PTv3`.

    Attributes:
        feat: (N, D) per-point features at full input resolution (decoder output, or in enc_mode
            the up-cast encoder features).
        offset: (B,) int64 event ends of ``feat`` (the input offsets).
        deep_feat: (N_L, C_L) features of the deepest (coarsest) encoder stage.
        deep_coord: (N_L, 3) mean coordinate of each deepest-stage voxel.
        deep_offset: (B,) int64 event ends of the deepest stage.
        point_to_deep: (N,) int64 deepest-stage row containing each input point.
        stage_feat: encoder output per stage, (N_s, C_s).
    """

    feat: Tensor
    offset: Tensor
    deep_feat: Tensor
    deep_coord: Tensor
    deep_offset: Tensor
    point_to_deep: Tensor
    stage_feat: list[Tensor] = field(default_factory=list)


@dataclass
class _PatchPlan:
    """How one serialization order cuts a stage's points into attention patches."""

    rows: Tensor  # (P, Kp) int64 point row feeding each patch slot
    slot_valid: Tensor | None  # (P, Kp) bool, None when every patch is full
    back: Tensor  # (N,) int64 flat slot (into P * Kp) holding each point's output


@dataclass
class _Level:
    """Points of one resolution stage plus the structures its blocks share."""

    feat: Tensor  # (N_s, C)
    coord: Tensor  # (N_s, 3)
    grid_coord: Tensor  # (N_s, 3) int64
    offset: Tensor  # (B,)
    cluster: Tensor | None = None  # (N_{s-1},) row of this level containing each finer row
    nbr: Tensor | None = None  # (N_s, 27)
    plans: dict[int, list[_PatchPlan]] = field(default_factory=dict)  # patch size -> per order
    depth_drop: int = 0  # curve bits saved: grid_coord < 2**(depth - depth_drop) at this stage


def make_patch_plan(order: Tensor, inverse: Tensor, offset: Tensor, patch_size: int) -> _PatchPlan:
    """Patch plan of one order with the PTv3 padding rule (arXiv:2312.10035).

    Args:
        order: (N,) int64 point row at each serialized position.
        inverse: (N,) int64 serialized position of each point row.
        offset: (B,) int64 event ends.
        patch_size: K.
    """
    pad_idx, unpad_idx, cu32 = patch_padding(offset, patch_size)  # (M,), (N,), (P+1,)
    cu = cu32.to(torch.int64)
    dev = order.device
    lengths = cu[1:] - cu[:-1]  # (P,)
    P = lengths.shape[0]
    Kp = int(lengths.max()) if P else 0
    src = order[pad_idx]  # (M,) point row at every padded position
    if P and bool((lengths == Kp).all()):
        return _PatchPlan(rows=src.reshape(P, Kp), slot_valid=None, back=unpad_idx[inverse])
    slot = torch.arange(Kp, device=dev)
    slot_valid = slot < lengths[:, None]  # (P, Kp)
    flat_pos = (cu[:-1, None] + slot).clamp(max=max(src.shape[0] - 1, 0))  # (P, Kp)
    rows = src[flat_pos]  # (P, Kp)
    padded_to_flat = torch.nonzero(slot_valid.reshape(-1)).squeeze(1)  # (M,) row-major = padded
    return _PatchPlan(rows=rows, slot_valid=slot_valid, back=padded_to_flat[unpad_idx[inverse]])


class SerializedAttention(nn.Module):
    """Multi-head attention inside serialized patches, with SDPA on (P, H, K, C/H)."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop

    def forward(self, feat: Tensor, plan: _PatchPlan) -> Tensor:
        """feat (N, C) -> (N, C); points attend only within their patch."""
        _N, C = feat.shape
        H = self.num_heads
        P, Kp = plan.rows.shape
        qkv = self.qkv(feat)[plan.rows]  # (P, Kp, 3C)
        qkv = qkv.reshape(P, Kp, 3, H, C // H).permute(2, 0, 3, 1, 4)  # (3, P, H, Kp, C/H)
        attn_mask = None if plan.slot_valid is None else plan.slot_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(
            qkv[0],
            qkv[1],
            qkv[2],
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )  # (P, H, Kp, C/H)
        out = out.transpose(1, 2).reshape(P * Kp, C)[plan.back]  # (N, C)
        return self.proj(out)


class PTv3Block(nn.Module):
    """CPE (sparse conv -> Linear -> LN, residual), then pre-norm attention and MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        attn_drop: float,
        layer_scale: float | None,
    ) -> None:
        super().__init__()
        self.cpe_conv = SubMConv3d(dim, dim)
        self.cpe_linear = nn.Linear(dim, dim)
        self.cpe_norm = nn.LayerNorm(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SerializedAttention(dim, num_heads, qkv_bias, attn_drop)
        self.ls1 = LayerScale(dim, layer_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, feat: Tensor, nbr: Tensor, plan: _PatchPlan) -> Tensor:
        """feat (N, C), nbr (N, 27), plan -> (N, C)."""
        with torch.autocast(device_type=feat.device.type, enabled=False):
            cpe = self.cpe_conv(feat.float(), nbr)  # fp32 like Panda's CPE
        feat = feat + self.cpe_norm(self.cpe_linear(cpe.to(feat.dtype)))
        feat = feat + self.drop_path(self.ls1(self.attn(self.norm1(feat), plan)))
        return feat + self.drop_path(self.ls2(self.mlp(self.norm2(feat))))


class _Proj(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Linear(cin, cout), nn.LayerNorm(cout), nn.GELU())


class PTv3(nn.Module):
    """PTv3 U-Net over packed points (see the module docstring)."""

    def __init__(self, cfg: PTv3Config) -> None:
        super().__init__()
        self.cfg = cfg
        S = len(cfg.enc_channels)
        self.stem = _Proj(cfg.in_channels, cfg.enc_channels[0])
        self.mask_token = (
            nn.Parameter(torch.zeros(1, cfg.enc_channels[0])) if cfg.mask_token else None
        )
        enc_rates = linear_rates(cfg.drop_path, sum(cfg.enc_depths))
        self.pools = nn.ModuleList(
            _Proj(cfg.enc_channels[s - 1], cfg.enc_channels[s]) for s in range(1, S)
        )
        self.enc = nn.ModuleList()
        i = 0
        for s in range(S):
            blocks = nn.ModuleList()
            for _ in range(cfg.enc_depths[s]):
                blocks.append(
                    PTv3Block(
                        cfg.enc_channels[s],
                        cfg.enc_num_head[s],
                        cfg.mlp_ratio,
                        cfg.qkv_bias,
                        enc_rates[i],
                        cfg.attn_drop,
                        cfg.layer_scale,
                    )
                )
                i += 1
            self.enc.append(blocks)
        self.unpool_up = nn.ModuleList()
        self.unpool_skip = nn.ModuleList()
        self.dec = nn.ModuleList()
        if not cfg.enc_mode:
            dec_rates = linear_rates(cfg.drop_path, sum(cfg.dec_depths))[::-1]
            i = 0
            for s in range(S - 1):  # decoder stage s works at encoder-stage-s resolution
                coarse = cfg.dec_channels[s + 1] if s + 1 < S - 1 else cfg.enc_channels[-1]
                self.unpool_up.append(_Proj(coarse, cfg.dec_channels[s]))
                self.unpool_skip.append(_Proj(cfg.enc_channels[s], cfg.dec_channels[s]))
                blocks = nn.ModuleList()
                for _ in range(cfg.dec_depths[s]):
                    blocks.append(
                        PTv3Block(
                            cfg.dec_channels[s],
                            cfg.dec_num_head[s],
                            cfg.mlp_ratio,
                            cfg.qkv_bias,
                            dec_rates[i],
                            cfg.attn_drop,
                            cfg.layer_scale,
                        )
                    )
                    i += 1
                self.dec.append(blocks)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def _orders(self) -> list[str]:
        orders: list[str] = list(self.cfg.order)
        if self.training:
            perm = torch.randperm(len(orders)).tolist()
            orders = [orders[j] for j in perm]
        return orders

    def _prepare(self, level: _Level, patch_sizes: set[int]) -> None:
        """Neighbour map and patch plans of a level (once per forward, shared by its blocks)."""
        if level.nbr is None:
            level.nbr = neighbour_map(level.grid_coord, level.offset)
        missing = [p for p in patch_sizes if p not in level.plans]
        if not missing:
            return
        depth = self.cfg.serialization_depth - level.depth_drop
        if level.grid_coord.numel() and int(level.grid_coord.max()) >= 2**depth:
            raise ValueError(
                f"PTv3: grid_coord up to {int(level.grid_coord.max())} does not fit "
                f"serialization_depth={self.cfg.serialization_depth} bits; raise it "
                "or coarsen grid_size"
            )
        order, inverse = serialization_order(
            level.grid_coord, level.offset, depth, tuple(self._orders())
        )
        for p in missing:
            level.plans[p] = [
                make_patch_plan(order[k], inverse[k], level.offset, p)
                for k in range(order.shape[0])
            ]

    @staticmethod
    def _run(blocks: nn.ModuleList, level: _Level, patch: int) -> Tensor:
        feat = level.feat
        plans = level.plans[patch]
        assert level.nbr is not None
        for i, block in enumerate(blocks):
            feat = block(feat, level.nbr, plans[i % len(plans)])
        return feat

    def forward(
        self,
        coord: Tensor,
        feat: Tensor,
        offset: Tensor,
        grid_coord: Tensor | None = None,
        is_masked: Tensor | None = None,
    ) -> PTv3Output:
        """Encode (and decode) a packed batch.

        Args:
            coord: (N, 3) float coordinates (normalised units).
            feat: (N, C) float input features.
            offset: (B,) int64 exclusive event ends.
            grid_coord: (N, 3) int64 stage-0 lattice coordinates; None = ``voxelize(coord,
                offset, cfg.grid_size)``.
            is_masked: (N,) bool, True = replace the point's stem features by the mask token
                (requires ``cfg.mask_token``).

        Returns:
            :class:`PTv3Output`.
        """
        cfg = self.cfg
        if feat.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"PTv3: feat has {feat.shape[-1]} channels, config in_channels={cfg.in_channels}"
            )
        if grid_coord is None:
            grid_coord = voxelize(coord, offset, cfg.grid_size)
        x = self.stem(feat)  # (N, C0)
        if is_masked is not None:
            if self.mask_token is None:
                raise ValueError("PTv3: is_masked given but cfg.mask_token is False")
            x = torch.where(is_masked[:, None], self.mask_token.to(x.dtype), x)
        levels = [_Level(feat=x, coord=coord, grid_coord=grid_coord.to(torch.int64), offset=offset)]
        S = len(cfg.enc_channels)
        for s in range(S):
            if s > 0:
                prev = levels[-1]
                pool = cast(_Proj, self.pools[s - 1])
                pooled = grid_pool(
                    pool[0](prev.feat),
                    prev.grid_coord,
                    prev.offset,
                    cfg.stride[s - 1],
                    reduce_feat="max",
                    coord=prev.coord,
                )
                assert pooled.coord is not None  # grid_pool reduces the coord it is given
                # grid_coord // (product of strides) needs floor(log2(product)) fewer bits.
                drop = int(math.log2(math.prod(cfg.stride[:s])))
                levels.append(
                    _Level(
                        feat=pool[2](pool[1](pooled.feat)),
                        coord=pooled.coord,
                        grid_coord=pooled.grid_coord,
                        offset=pooled.new_offset,
                        cluster=pooled.cluster,
                        depth_drop=min(drop, cfg.serialization_depth - 1),
                    )
                )
            level = levels[s]
            sizes = {cfg.enc_patch_size[s]}
            if not cfg.enc_mode and s < S - 1:
                sizes.add(cfg.dec_patch_size[s])
            self._prepare(level, sizes)
            level.feat = self._run(cast(nn.ModuleList, self.enc[s]), level, cfg.enc_patch_size[s])
        stage_feat = [lv.feat for lv in levels]
        to_point = [torch.arange(coord.shape[0], device=coord.device)]  # level s row per point
        for s in range(1, S):
            cl = levels[s].cluster
            assert cl is not None
            to_point.append(cl[to_point[-1]])
        if cfg.enc_mode:
            if cfg.enc_upcast == "concat":
                out = torch.cat([f[m] for f, m in zip(stage_feat, to_point, strict=False)], dim=-1)
            else:
                out = stage_feat[-1][to_point[-1]]
        else:
            up = stage_feat[-1]
            for s in range(S - 2, -1, -1):
                cl = levels[s + 1].cluster
                assert cl is not None
                level = levels[s]
                level.feat = self.unpool_skip[s](stage_feat[s]) + self.unpool_up[s](up)[cl]
                up = self._run(cast(nn.ModuleList, self.dec[s]), level, cfg.dec_patch_size[s])
            out = up
        deep = levels[-1]
        return PTv3Output(
            feat=out,
            offset=offset,
            deep_feat=deep.feat,
            deep_coord=deep.coord,
            deep_offset=deep.offset,
            point_to_deep=to_point[-1],
            stage_feat=stage_feat,
        )
