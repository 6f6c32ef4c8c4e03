"""The released Panda (pimm PT-v3m2, Young et al., arXiv:2512.01324) and Sonata (Wu et al.,
arXiv:2503.16429) Point Transformer V3, numerically as the reference code runs it and under the
reference key names, so their checkpoints load as they are (no spconv, no flash-attn).

Owns :class:`PandaConfig`, :class:`PTv3Released` (encoder, or encoder-decoder),
:class:`PandaSegmentor` (pimm ``DefaultSegmentorV2``: backbone + ``seg_head``) and
:func:`panda_preprocess` (pimm's test transform for PILArNet voxels). Built from nufm's own
pieces: the serialization codes of :mod:`nufm.geometry.serialize` (bit-equal to the
reference), grid pooling, the patch plans and serialized attention of :mod:`nufm.models.ptv3`
and the pure-torch submanifold convolution of :mod:`nufm.models.sparse_conv` (correct with any
thread count, unlike the reference's CPU sparse-conv library).

Behaviours copied from the reference on purpose (``shared/reference/released-models/README.md``
§6); nufm's own :class:`nufm.models.ptv3.PTv3` does none of them:

* **Orders are shuffled in eval.** Each forward draws ``torch.randperm(len(order))`` from the
  global generator once for the stem level (if ``shuffle_orders``) and once after every grid
  pooling (``pool_shuffle_orders``; the reference's pooling layers default to True and the
  model never turns them off). Block i of a stage uses order ``perm[i % len(order)]``. Outputs
  therefore change from call to call; :meth:`PandaConfig.deterministic` turns both off.
* **Patch size depends on the batch** without flash attention: ``min(smallest event, patch)``
  for the whole level. With ``enable_flash`` (the released setting) an event no larger than
  the patch is one patch; ``flash_bf16`` also rounds q, k, v and the output to bf16 as the
  flash kernel does.
* **Serialization depth is adaptive** per level and batch: ``bit_length(max grid_coord + 1)``.
* Grid pooling subtracts the **batch** minimum of the grid coordinates before ``// stride``.
* The decoder reuses its encoder level's orders and patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.geometry.grid import grid_pool
from nufm.geometry.offsets import offset_to_batch_index, offset_to_counts
from nufm.geometry.serialize import adaptive_depth, encode, sort_codes
from nufm.models.layers import DropPath, LayerScale, Mlp, linear_rates
from nufm.models.ptv3 import _PatchPlan, make_patch_plan
from nufm.models.sparse_conv import neighbour_map, submanifold_conv

IGNORED_REFERENCE_KEYS = (
    "qk_scale",
    "attn_drop",
    "proj_drop",
    "pre_norm",
    "enable_rpe",
    "upcast_attention",
    "upcast_softmax",
    "traceable",
    "cpe_first_layer_only",
    "cpe_shared_weight",
    "freeze_encoder",
    "pdnorm_bn",
    "pdnorm_ln",
    "pdnorm_decouple",
    "pdnorm_adaptive",
    "pdnorm_affine",
    "pdnorm_conditions",
)
"""Reference options that only matter in training or must have their default value (checked
by :meth:`PandaConfig.from_reference`)."""

_STRUCTURE = (
    "in_channels",
    "order",
    "stride",
    "enc_depths",
    "enc_channels",
    "enc_num_head",
    "enc_patch_size",
)
"""Keys a released config must give; absent optional keys take the reference signature's
defaults (no LayerScale, no mask token, encoder-decoder)."""

_REQUIRED = {
    "qk_scale": None,
    "pre_norm": True,
    "enable_rpe": False,
    "cpe_first_layer_only": False,
    "cpe_shared_weight": False,
    "pdnorm_bn": False,
    "pdnorm_ln": False,
}


@dataclass(frozen=True, kw_only=True)
class PandaConfig:
    """A released PTv3 (defaults: Panda-Base, pimm ``PT-v3m2`` encoder)."""

    in_channels: int = 4
    """Input channels: normalised x, y, z and the log-energy (Sonata: 9)."""
    order: tuple[str, ...] = ("hilbert", "hilbert-trans", "z", "z-trans")
    """Serialization curves."""
    stride: tuple[int, ...] = (2, 2, 2, 2)
    """Grid-pooling strides."""
    enc_depths: tuple[int, ...] = (3, 3, 3, 9, 3)
    enc_channels: tuple[int, ...] = (48, 96, 192, 384, 512)
    enc_num_head: tuple[int, ...] = (3, 6, 12, 24, 32)
    enc_patch_size: tuple[int, ...] = (256, 256, 256, 256, 256)
    dec_depths: tuple[int, ...] = ()
    dec_channels: tuple[int, ...] = ()
    dec_num_head: tuple[int, ...] = ()
    dec_patch_size: tuple[int, ...] = ()
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_scale: float | None = 1e-5
    """None: no LayerScale modules (Sonata); a number (even 0.0): ``ls*.0.gamma`` exist."""
    enc_mode: bool = True
    """Encoder only (Panda-Base, Sonata); False adds the decoder (Panda-Semantic)."""
    mask_token: bool = True
    """The backbone has ``embedding.mask_token`` (pretraining checkpoints)."""
    shuffle_orders: bool = True
    """Shuffle the stem level's orders on every forward (the released setting)."""
    pool_shuffle_orders: bool = True
    """Shuffle after every grid pooling (the reference's pooling default, see module doc)."""
    drop_path: float = 0.0
    """Stochastic depth in training, rising linearly over the encoder blocks (and falling over
    the decoder's), as the reference trains (Panda-Base 0.3); no effect at inference."""
    enable_flash: bool = True
    """Flash-attention patching (an event <= patch is one patch) instead of the math path's
    batch-wide ``min(smallest event, patch)``."""
    flash_bf16: bool = False
    """With enable_flash: round q, k, v and the attention output to bf16 like the kernel."""

    def __post_init__(self) -> None:
        S = len(self.enc_channels)
        for name in ("enc_depths", "enc_num_head", "enc_patch_size"):
            if len(getattr(self, name)) != S:
                raise ValueError(f"PandaConfig: {name} needs {S} entries")
        if len(self.stride) != S - 1:
            raise ValueError(f"PandaConfig: stride needs {S - 1} entries")
        if not self.enc_mode:
            for name in ("dec_depths", "dec_channels", "dec_num_head", "dec_patch_size"):
                if len(getattr(self, name)) != S - 1:
                    raise ValueError(f"PandaConfig: {name} needs {S - 1} entries (decoder)")

    @classmethod
    def from_reference(cls, cfg: dict[str, Any]) -> PandaConfig:
        """pimm / Sonata ``PointTransformerV3(**cfg)`` keyword arguments -> config.

        Refuses options nufm cannot reproduce (relative position encoding, post-norm, shared
        or first-layer-only CPE, PDNorm) and unknown keys, naming them.
        """
        missing = [k for k in _STRUCTURE if k not in cfg]
        if missing:
            raise ValueError(f"released PTv3: config lacks {missing} (needed to build the model)")
        own = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {"layer_scale": None, "mask_token": False, "enc_mode": False}
        for key, value in cfg.items():
            if key in _REQUIRED and value != _REQUIRED[key]:
                raise ValueError(
                    f"released PTv3: option {key}={value!r} is not supported "
                    f"(only {_REQUIRED[key]!r})"
                )
            if key in own:
                kwargs[key] = value
            elif key not in IGNORED_REFERENCE_KEYS and key != "type":
                raise ValueError(f"released PTv3: unknown option {key!r}")
        n = len(kwargs.get("enc_channels", cls.enc_channels))
        for key in ("enc_patch_size", "dec_patch_size"):
            if isinstance(kwargs.get(key), int):
                kwargs[key] = (kwargs[key],) * (n if key.startswith("enc") else n - 1)
        for key, value in list(kwargs.items()):
            if isinstance(value, list):
                kwargs[key] = tuple(value)
        return cls(**kwargs)

    def deterministic(self) -> PandaConfig:
        """The same model with every order shuffle off (repeatable inference)."""
        return replace(self, shuffle_orders=False, pool_shuffle_orders=False)

    @property
    def out_dim(self) -> int:
        """Width of the backbone output (deepest encoder stage, or decoder stage 0)."""
        return self.enc_channels[-1] if self.enc_mode else self.dec_channels[0]


def panda_preprocess(
    xyz_voxel: np.ndarray, energy_mev: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pimm's PILArNet test transform for one event, row order included.

    ``coord = (xyz - 384) / (768 sqrt(3) / 2)`` (float32); energy ->
    ``2 (log10(E + 0.01) - log10(0.01)) / (log10(20.01) - log10(0.01)) - 1``;
    ``grid_coord = floor(coord / 0.001) - min`` (per event); rows sorted by the 64-bit FNV-1
    hash of ``grid_coord`` as GridSample does, keeping one row per cell (the first in hash
    order; the reference keeps a random one, the same when cells hold one point).

    Args:
        xyz_voxel: (N, 3) voxel indices in the 768^3 cube.
        energy_mev: (N,) deposited energy, MeV.

    Returns:
        coord (M, 3) float32, feat (M, 4) float32 = [coord, energy], grid_coord (M, 3) int64.
    """
    coord = (xyz_voxel.astype(np.float32) - np.float32(384)) / np.float32(768 * math.sqrt(3) / 2)
    e = energy_mev.astype(np.float64)
    lo, hi = math.log10(0.01), math.log10(20.01)
    energy = (2 * (np.log10(e + 0.01) - lo) / (hi - lo) - 1).astype(np.float32)
    grid = np.floor(coord / np.array(0.001)).astype(np.int64)
    grid -= grid.min(axis=0) if len(grid) else 0
    h = np.full(len(grid), np.uint64(14695981039346656037))
    for j in range(3):  # FNV-1: multiply by the prime, then xor the next word
        h = np.bitwise_xor(h * np.uint64(1099511628211), grid[:, j].astype(np.uint64))
    order = np.argsort(h, kind="stable")
    first = np.concatenate([[True], h[order][1:] != h[order][:-1]]) if len(h) else order == 0
    keep = order[first]
    feat = np.concatenate([coord[keep], energy[keep, None]], axis=1)
    return coord[keep], feat, grid[keep]


class _Seq(nn.Module):
    """Children registered as ``0``, ``1``, ... (the reference's ``PointSequential`` keys)."""

    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def forward(self, x: Tensor) -> Tensor:
        for m in self._modules.values():
            x = cast(nn.Module, m)(x)
        return x


class RefSubMConv3d(nn.Module):
    """Submanifold 3x3x3 conv with the reference weight layout ``[Cout, 3, 3, 3, Cin]``: a
    cross-correlation, ``W[:, a, b, c, :]`` taking the voxel at ``(a-1, b-1, c-1)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, 3, 3, 3, cin))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, feat: Tensor, nbr: Tensor) -> Tensor:
        """feat (N, Cin), nbr (N, 27) -> (N, Cout)."""
        cout, cin = self.weight.shape[0], self.weight.shape[-1]
        w = self.weight.permute(1, 2, 3, 4, 0).reshape(27, cin, cout)  # tap (a, b, c) = 9a+3b+c
        return submanifold_conv(feat, nbr, w, self.bias)


class _CPE(nn.Module):
    """``cpe.0`` sparse conv, ``cpe.1`` Linear, ``cpe.2`` LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.add_module("0", RefSubMConv3d(dim, dim))
        self.add_module("1", nn.Linear(dim, dim))
        self.add_module("2", nn.LayerNorm(dim))

    def forward(self, feat: Tensor, nbr: Tensor) -> Tensor:
        m = self._modules
        return m["2"](m["1"](m["0"](feat, nbr)))  # type: ignore[misc]


class _Attention(nn.Module):
    """Serialized patch attention (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, feat: Tensor, plan: _PatchPlan, bf16: bool) -> Tensor:
        """feat (N, C) -> (N, C), attention inside the plan's patches."""
        C = feat.shape[1]
        H = self.num_heads
        P, Kp = plan.rows.shape
        qkv = self.qkv(feat)[plan.rows]  # (P, Kp, 3C)
        if bf16:
            qkv = qkv.to(torch.bfloat16).float()
        q, k, v = qkv.reshape(P, Kp, 3, H, C // H).permute(2, 0, 3, 1, 4)  # (P, H, Kp, C/H)
        mask = None if plan.slot_valid is None else plan.slot_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (P, H, Kp, C/H)
        if bf16:
            out = out.to(torch.bfloat16).float()
        out = out.transpose(1, 2).reshape(P * Kp, C)[plan.back]  # (N, C)
        return self.proj(out)


class _Block(nn.Module):
    """Keys ``cpe.*``, ``norm1.0``, ``attn.*``, ``ls1.0``, ``norm2.0``, ``mlp.0``, ``ls2.0``."""

    def __init__(self, dim: int, heads: int, cfg: PandaConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.drop_path = DropPath(drop_path)  # no weights
        self.cpe = _CPE(dim)
        self.norm1 = _Seq(nn.LayerNorm(dim))
        self.attn = _Attention(dim, heads, cfg.qkv_bias)
        ls = cfg.layer_scale
        self.ls1 = _Seq(LayerScale(dim, ls) if ls is not None else nn.Identity())
        self.norm2 = _Seq(nn.LayerNorm(dim))
        self.mlp = _Seq(Mlp(dim, int(dim * cfg.mlp_ratio)))
        self.ls2 = _Seq(LayerScale(dim, ls) if ls is not None else nn.Identity())

    def forward(self, feat: Tensor, nbr: Tensor, plan: _PatchPlan, bf16: bool) -> Tensor:
        feat = feat + self.cpe(feat, nbr)
        feat = feat + self.drop_path(self.ls1(self.attn(self.norm1(feat), plan, bf16)))
        return feat + self.drop_path(self.ls2(self.mlp(self.norm2(feat))))


class _Stem(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.norm = nn.LayerNorm(cout)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


class _Embedding(nn.Module):
    def __init__(self, cfg: PandaConfig) -> None:
        super().__init__()
        self.stem = _Stem(cfg.in_channels, cfg.enc_channels[0])
        if cfg.mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, cfg.enc_channels[0]))


class _Down(nn.Module):
    """Grid pooling: ``proj`` Linear, segment max, ``norm.0`` LayerNorm, GELU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, cout)
        self.norm = _Seq(nn.LayerNorm(cout))
        self.act = nn.GELU()


class _Up(nn.Module):
    """Unpooling: ``proj`` (coarse) and ``proj_skip`` (fine), each Linear, LayerNorm, GELU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.proj = _Seq(nn.Linear(cin, cout), nn.LayerNorm(cout), nn.GELU())
        self.proj_skip = _Seq(nn.Linear(cskip, cout), nn.LayerNorm(cout), nn.GELU())


@dataclass
class PTv3Level:
    """One resolution level of a forward pass (encoder output features)."""

    feat: Tensor  # (N_s, C_s)
    coord: Tensor  # (N_s, 3) mean coordinate of the level's cells
    grid_coord: Tensor  # (N_s, 3) int64
    offset: Tensor  # (B,) int64
    code: Tensor  # (k, N_s) int64 serialization codes in the order the level's blocks used
    inverse: Tensor | None = None  # (N_{s-1},) row of this level holding each finer row
    nbr: Tensor | None = None
    plans: list[_PatchPlan] = field(default_factory=list)


@dataclass
class PTv3ReleasedOutput:
    """Output of :class:`PTv3Released`."""

    feat: Tensor
    """(N_out, D) backbone output: the deepest level's features (enc_mode) or the decoder's
    full-resolution features."""
    levels: list[PTv3Level]
    """Encoder levels 0..S-1 (after their blocks)."""

    def upcast(self) -> Tensor:
        """(N, sum C_s): every encoder level brought back to the input points and concatenated
        finest first (pimm's linear-probe features, 1232 wide for Panda-Base)."""
        up = self.levels[-1].feat
        for s in range(len(self.levels) - 2, -1, -1):
            inv = self.levels[s + 1].inverse
            assert inv is not None
            up = torch.cat([self.levels[s].feat, up[inv]], dim=-1)
        return up


class PTv3Released(nn.Module):
    """The reference PTv3 (keys ``embedding.*``, ``enc.enc{s}.*``, ``dec.dec{s}.*``)."""

    def __init__(self, cfg: PandaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = _Embedding(cfg)
        self.enc = nn.Module()
        rates = iter(linear_rates(cfg.drop_path, sum(cfg.enc_depths)))
        for s, (depth, ch, heads) in enumerate(
            zip(cfg.enc_depths, cfg.enc_channels, cfg.enc_num_head, strict=True)
        ):
            stage = nn.Module()
            if s > 0:
                stage.down = _Down(cfg.enc_channels[s - 1], ch)
            for i in range(depth):
                stage.add_module(f"block{i}", _Block(ch, heads, cfg, next(rates)))
            self.enc.add_module(f"enc{s}", stage)
        if not cfg.enc_mode:
            self.dec = nn.Module()
            S = len(cfg.enc_channels)
            dec_rates = linear_rates(cfg.drop_path, sum(cfg.dec_depths))[::-1]
            first = [sum(cfg.dec_depths[:s]) for s in range(S - 1)]  # stage s's first rate
            for s in reversed(range(S - 1)):
                stage = nn.Module()
                coarse = cfg.dec_channels[s + 1] if s + 1 < S - 1 else cfg.enc_channels[-1]
                stage.up = _Up(coarse, cfg.enc_channels[s], cfg.dec_channels[s])
                for i in range(cfg.dec_depths[s]):
                    stage.add_module(
                        f"block{i}",
                        _Block(
                            cfg.dec_channels[s], cfg.dec_num_head[s], cfg, dec_rates[first[s] + i]
                        ),
                    )
                self.dec.add_module(f"dec{s}", stage)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def _serialize(self, level: PTv3Level, shuffle: bool, patch: int) -> None:
        """Codes, orders (permuted when ``shuffle``), neighbour map and patch plans."""
        cfg = self.cfg
        depth = adaptive_depth(level.grid_coord)
        if depth > 16:
            raise ValueError(
                f"released PTv3: grid_coord up to {int(level.grid_coord.max())} needs "
                f"{depth} bits per axis; the reference allows 16 (check the grid size)"
            )
        batch = offset_to_batch_index(level.offset)  # (N,)
        code = torch.stack([encode(level.grid_coord, batch, depth, o) for o in cfg.order])
        order, inverse = sort_codes(code)  # (k, N) each
        if shuffle:
            perm = torch.randperm(len(cfg.order))
            code, order, inverse = code[perm], order[perm], inverse[perm]
        counts = offset_to_counts(level.offset)
        k = patch if cfg.enable_flash else min(int(counts.min()), patch)
        level.code = code
        level.nbr = neighbour_map(level.grid_coord, level.offset)
        level.plans = [
            make_patch_plan(order[j], inverse[j], level.offset, k) for j in range(len(cfg.order))
        ]

    def _blocks(self, stage: nn.Module, level: PTv3Level, feat: Tensor) -> Tensor:
        assert level.nbr is not None
        bf16 = self.cfg.enable_flash and self.cfg.flash_bf16
        blocks = [m for name, m in stage.named_children() if name.startswith("block")]
        for i, block in enumerate(blocks):
            feat = block(feat, level.nbr, level.plans[i % len(level.plans)], bf16)
        return feat

    def forward(
        self,
        coord: Tensor,
        feat: Tensor,
        grid_coord: Tensor,
        offset: Tensor,
        is_masked: Tensor | None = None,
    ) -> PTv3ReleasedOutput:
        """Run the backbone on a packed batch.

        Args:
            coord: (N, 3) float normalised coordinates.
            feat: (N, in_channels) float input features.
            grid_coord: (N, 3) int64 stage-0 grid cells (per-event minimum at 0).
            offset: (B,) int64 exclusive event ends.
            is_masked: (N,) bool, True = stem features replaced by the mask token.

        Returns:
            :class:`PTv3ReleasedOutput`.
        """
        cfg = self.cfg
        if feat.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"released PTv3: feat has {feat.shape[-1]} channels, the model {cfg.in_channels}"
            )
        empty = torch.empty(0, dtype=torch.int64)
        level = PTv3Level(feat, coord, grid_coord.to(torch.int64), offset, code=empty)
        self._serialize(level, cfg.shuffle_orders, cfg.enc_patch_size[0])
        x = self.embedding.stem(feat)  # (N, C0)
        if is_masked is not None:
            token = getattr(self.embedding, "mask_token", None)
            if token is None:
                raise ValueError("released PTv3: is_masked given but the model has no mask token")
            x = torch.where(is_masked[:, None], token.to(x.dtype), x)
        levels: list[PTv3Level] = []
        for s in range(len(cfg.enc_channels)):
            stage = cast(nn.Module, getattr(self.enc, f"enc{s}"))
            if s > 0:
                down = cast(_Down, stage.down)
                prev = levels[-1]
                gc = prev.grid_coord - prev.grid_coord.min(dim=0).values  # batch-wide minimum
                pooled = grid_pool(
                    down.proj(prev.feat), gc, prev.offset, cfg.stride[s - 1], "max", prev.coord
                )
                assert pooled.coord is not None
                x = down.act(down.norm(pooled.feat))
                level = PTv3Level(
                    x, pooled.coord, pooled.grid_coord, pooled.new_offset, empty, pooled.cluster
                )
                self._serialize(level, cfg.pool_shuffle_orders, cfg.enc_patch_size[s])
            level.feat = self._blocks(stage, level, x)
            levels.append(level)
        if cfg.enc_mode:
            return PTv3ReleasedOutput(levels[-1].feat, levels)
        up = levels[-1].feat
        for s in reversed(range(len(cfg.enc_channels) - 1)):
            stage = cast(nn.Module, getattr(self.dec, f"dec{s}"))
            unpool = cast(_Up, stage.up)
            inv = levels[s + 1].inverse
            assert inv is not None
            x = unpool.proj_skip(levels[s].feat) + unpool.proj(up)[inv]
            up = self._blocks(stage, levels[s], x)
        return PTv3ReleasedOutput(up, levels)


@dataclass(frozen=True, kw_only=True)
class PandaSegmentorConfig:
    """pimm ``DefaultSegmentorV2``: a backbone and a linear ``seg_head``."""

    backbone: PandaConfig
    num_classes: int = 5
    backbone_out_channels: int = 64
    """Width into the head: the decoder output, or sum(enc_channels) for the linear-probe
    variant (encoder levels concatenated back to the points)."""

    @classmethod
    def from_reference(cls, cfg: dict[str, Any]) -> PandaSegmentorConfig:
        return cls(
            backbone=PandaConfig.from_reference(cfg["backbone"]),
            num_classes=int(cfg.get("num_classes", 5)),
            backbone_out_channels=int(cfg.get("backbone_out_channels", 64)),
        )


class PandaSegmentor(nn.Module):
    """Panda-Semantic (keys ``backbone.*``, ``seg_head.*``): per-point class logits."""

    def __init__(self, cfg: PandaSegmentorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = PTv3Released(cfg.backbone)
        self.seg_head = nn.Linear(cfg.backbone_out_channels, cfg.num_classes)

    def forward(self, coord: Tensor, feat: Tensor, grid_coord: Tensor, offset: Tensor) -> Tensor:
        """Packed points -> (N, num_classes) logits."""
        out = self.backbone(coord, feat, grid_coord, offset)
        x = out.upcast() if self.cfg.backbone.enc_mode else out.feat
        return self.seg_head(x)
