"""The released PoLAr-MAE encoder (Young et al., arXiv:2502.02558), numerically as the
reference code runs it, under the reference key names, so its Lightning checkpoints load as
they are.

Owns :class:`PolarMAEConfig`, :class:`PolarMAEEncoder` and the two normalisations whose
behaviour a faithful port must copy (``../shared/reference/released-models/README.md`` §6):

* :class:`MaskedLayerNorm` normalises the **whole batch tensor** with one scalar mean and one
  scalar std over every valid token and channel of every event, eps both inside and outside the
  root; padded tokens are normalised too. A PoLAr-MAE event's features therefore depend on the
  other events of its batch (``PolarMAEEncoder.forward`` documents it; run one event per batch
  for batch-independent features).
* :class:`MaskedBatchNorm1d` (eval) turns padded points of a group into the bias, and the
  mini-PointNet's two max-pools include those padded positions.

Data flow (B events, G tokens, K = 32 points per group, D width):
``points (B, N, 4) + lengths`` -> :meth:`PolarMAEEncoder.tokenize` (C-NMS centres, ball query
of the first 256 points in index order, FPS to 32 from the first, xyz relative to the centre
over the group radius, energy absolute) -> groups (B, G, K, 4), point_valid (B, G, K),
centres (B, G, 3), token_valid (B, G) -> :meth:`embed` (mini-PointNet, (B, G, D)) and
:meth:`pos` (MLP on centres) -> :meth:`forward` (pre-norm ViT blocks, the position added before
every block, no final norm). The reference's C-NMS sorts candidates with a non-stable sort, so
its centres are not reproducible even by itself across batch sizes; ``tokenize`` uses nufm's
deterministic C-NMS (ties: lower row first) and reproduces the grouping of given centres
exactly (tested on the reference's stored centres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nufm.geometry.ball_query import ball_query
from nufm.geometry.cnms import centrality_nms
from nufm.geometry.fps import farthest_point_sampling
from nufm.models.layers import Mlp

ARCHS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 6),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}
"""PoLAr-MAE ``arch`` -> (width, depth, heads); ``transformer_kwargs.depth`` overrides depth."""

MLN_EPS = 1e-13
"""MaskedLayerNorm's eps, added inside and outside the square root."""


@dataclass(frozen=True, kw_only=True)
class PolarMAEConfig:
    """A PoLAr-MAE encoder (defaults: PoLAr-MAE-Pretrain, ``configs/polarmae.yml``)."""

    num_channels: int = 4
    """Point channels: x, y, z (normalised), log-energy."""
    width: int = 384
    """Token width D."""
    depth: int = 12
    """Transformer blocks."""
    num_heads: int = 6
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width over D."""
    group_radius: float = 5 * (1 / (384 * math.sqrt(3)))
    """Group ball radius in normalised units (5 voxels), written as the reference config
    computes it (1 ulp above ``5 / (384 sqrt 3)``)."""
    group_max_points: int = 32
    """K: points kept per group (FPS)."""
    group_upscale_points: int = 256
    """Ball-query cap before FPS."""
    num_init_groups: int = 256
    """Neighbour cap (K) of the C-NMS ball query."""
    overlap_factor: float = 0.72
    """C-NMS suppression radius = 2 * group_radius * overlap_factor."""
    context_length: int = 512
    """Most tokens per event."""
    pos_hidden: int = 128
    """Hidden width of the positional MLP."""

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(
                f"PolarMAEConfig: width {self.width} not divisible by {self.num_heads} heads"
            )

    @classmethod
    def from_encoder_config(cls, cfg: dict[str, Any]) -> PolarMAEConfig:
        """The reference's ``encoder`` hyper-parameters (``arch``, ``num_channels``,
        ``tokenizer_kwargs``, ``transformer_kwargs``) -> config. Unknown archs are refused."""
        arch = cfg.get("arch", "vit_small")
        if arch not in ARCHS:
            raise ValueError(f"PoLAr-MAE encoder: unknown arch {arch!r}; known {sorted(ARCHS)}")
        width, depth, heads = ARCHS[arch]
        tk = cfg.get("tokenizer_kwargs") or {}
        tr = cfg.get("transformer_kwargs") or {}
        if tr.get("postnorm", False):
            raise ValueError("PoLAr-MAE encoder: postnorm=True encoders are not supported")
        return cls(
            num_channels=int(cfg.get("num_channels", 4)),
            width=width,
            depth=int(tr.get("depth", depth)),
            num_heads=heads,
            group_radius=float(tk.get("group_radius", cls.group_radius)),
            group_max_points=int(tk.get("group_max_points", cls.group_max_points)),
            group_upscale_points=int(tk.get("group_upscale_points", cls.group_upscale_points)),
            num_init_groups=int(tk.get("num_groups", cls.num_init_groups)),
            overlap_factor=float(tk.get("overlap_factor", cls.overlap_factor)),
            context_length=int(tk.get("context_length", cls.context_length)),
        )


def masked_layer_norm(x: Tensor, valid: Tensor) -> Tensor:
    """PoLAr-MAE's whole-tensor normalisation (no affine).

    Args:
        x: (B, G, D) float.
        valid: (B, G) bool, True = real token.

    Returns:
        (B, G, D): ``(x - mu) / (sigma + eps)`` with one scalar mu and sigma over all valid
        tokens and channels, ``sigma = sqrt(var + eps)``; padded tokens are transformed too.
    """
    m = valid[..., None].to(x.dtype)  # (B, G, 1)
    n = m.sum() * x.shape[-1]
    mu = (x * m).sum() / n
    var = (((x - mu) * m) ** 2).sum() / n
    return (x - mu) / (torch.sqrt(var + MLN_EPS) + MLN_EPS)


class MaskedLayerNorm(nn.Module):
    """:func:`masked_layer_norm` with ``gamma``/``beta`` of shape (1, 1, D) (reference keys)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.gamma * masked_layer_norm(x, valid) + self.beta


class MaskedBatchNorm1d(nn.Module):
    """Inference-only BatchNorm over (M, C, K) with a point mask: padded points become ``bias``.

    Keys ``weight``, ``bias``, ``running_mean``, ``running_var`` (no ``num_batches_tracked``).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.running_mean: Tensor
        self.running_var: Tensor
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (M, C, K), valid (M, 1, K) -> (M, C, K)."""
        mean = self.running_mean[None, :, None]
        var = self.running_var[None, :, None]
        x = (x - mean) / torch.sqrt(var + self.eps) * valid.to(x.dtype)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class _ConvStack(nn.Module):
    """Conv1d(k=1) -> MaskedBatchNorm1d -> ReLU -> Conv1d(k=1), registered as ``0``..``3``
    like the reference's ``nn.Sequential`` (ReLU at 2 has no weights)."""

    def __init__(self, cin: int, hidden: int, cout: int) -> None:
        super().__init__()
        self.add_module("0", nn.Conv1d(cin, hidden, 1, bias=False))
        self.add_module("1", MaskedBatchNorm1d(hidden))
        self.add_module("2", nn.ReLU())
        self.add_module("3", nn.Conv1d(hidden, cout, 1))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (M, cin, K), valid (M, 1, K) -> (M, cout, K)."""
        m = self._modules
        x = m["1"](m["0"](x), valid)  # type: ignore[misc]
        return m["3"](m["2"](x))  # type: ignore[misc]


def slot_embedding(K: int, dim: int) -> Tensor:
    """Sinusoidal embedding of the slot indices 0..K-1 (the reference's ``TimeEmbedding``):
    ``[sin(k w_j), cos(k w_j)]`` with ``w_j = exp(-j ln(10^4) / (dim/2 - 1))``. (K, dim)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))  # (half,)
    arg = torch.arange(K)[:, None] * freq[None, :]  # (K, half)
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


class _SlotEncoder(nn.Module):
    """``time_embed``: slot embedding -> Linear(dim, dim) (key ``time_embed.1``) -> ReLU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.time_embed = nn.ModuleDict({"1": nn.Linear(dim, dim)})

    def forward(self, K: int, like: Tensor) -> Tensor:
        """(K, dim) learned embedding of the slot order."""
        emb = slot_embedding(K, self.dim).to(like)
        return torch.relu(self.time_embed["1"](emb))


class MiniPointNet(nn.Module):
    """PoLAr-MAE's group embedding (reference ``tokenizer.embedding``): two masked conv stacks
    with a global max between them and a final max; the maxes include padded points.

    ``slot_order=True`` is the pretraining model's ``equivariant_patch_encoder``: a learned
    embedding of each point's slot index in its group (``position_encoder``) is added after
    the first stack, so the features depend on the order of the group's points.
    """

    def __init__(self, channels: int, width: int, slot_order: bool = False) -> None:
        super().__init__()
        self.first_conv = _ConvStack(channels, 128, 256)
        self.second_conv = _ConvStack(512, 512, width)
        self.position_encoder = _SlotEncoder(256) if slot_order else None

    def forward(self, groups: Tensor, point_valid: Tensor) -> Tensor:
        """groups (M, K, C), point_valid (M, K) bool -> (M, D)."""
        K = groups.shape[1]
        valid = point_valid[:, None, :]  # (M, 1, K)
        f = self.first_conv(groups.transpose(1, 2), valid)  # (M, 256, K)
        if self.position_encoder is not None:
            f = f + self.position_encoder(K, f).T[None]  # every slot, padded ones too
        g = f.max(dim=2, keepdim=True).values.expand(-1, -1, K)  # (M, 256, K)
        f = self.second_conv(torch.cat([g, f], dim=1), valid)  # (M, D, K)
        return f.max(dim=2).values  # (M, D)


class _Tokenizer(nn.Module):
    """Holds the mini-PointNet under the reference name ``tokenizer.embedding``."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.embedding = MiniPointNet(channels, width)


class _PosEmbed(nn.Module):
    """``pos_embed.pos_enc``: Linear(3, h) -> GELU -> Linear(h, D) on token centres."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.pos_enc = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, centres: Tensor) -> Tensor:
        return self.pos_enc(centres)


class _Attention(nn.Module):
    """Math-path attention with an additive -1e9 on padded keys (reference keys qkv, proj)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (B, G, D), valid (B, G) -> (B, G, D)."""
        B, G, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).reshape(B, G, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, G, Dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (D // H) ** -0.5  # (B, H, G, G)
        attn = attn + (~valid)[:, None, None, :].to(x.dtype) * -1e9
        out = attn.softmax(dim=-1) @ v  # (B, H, G, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, G, D))


class _Block(nn.Module):
    """Pre-norm block with MaskedLayerNorm (keys norm1, attn, norm2, mlp)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = MaskedLayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = MaskedLayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x, valid), valid)
        return x + self.mlp(self.norm2(x, valid))


class _Transformer(nn.Module):
    """``blocks.{i}`` and, with ``postnorm`` (the pretraining decoder), a final ``norm``."""

    def __init__(self, cfg: PolarMAEConfig, depth: int | None = None, postnorm: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            _Block(cfg.width, cfg.num_heads, cfg.mlp_ratio) for _ in range(depth or cfg.depth)
        )
        self.norm = MaskedLayerNorm(cfg.width) if postnorm else None

    def forward(self, x: Tensor, pos: Tensor, valid: Tensor) -> list[Tensor]:
        """Blocks with the position added before each -> every block's output (B, G, D); the
        last one through ``norm`` when there is one."""
        hidden = []
        for block in self.blocks:
            x = block(x + pos, valid)
            hidden.append(x)
        if self.norm is not None:
            hidden[-1] = self.norm(hidden[-1], valid)
        return hidden


@dataclass
class PolarMAETokens:
    """Tokens of a padded batch (the reference's ``prepare_tokens`` output)."""

    groups: Tensor  # (B, G, K, C) xyz relative to the centre / radius, other channels as given
    point_valid: Tensor  # (B, G, K) bool, True = real point of the group
    centres: Tensor  # (B, G, 3) normalised coordinates
    grouping_idx: Tensor  # (B, G, K) int64 point index in the event (-1 for padded tokens)
    token_valid: Tensor  # (B, G) bool


class PolarMAEEncoder(nn.Module):
    """The PoLAr-MAE ``TransformerEncoder`` (keys ``tokenizer.embedding.*``,
    ``pos_embed.pos_enc.*``, ``transformer.blocks.*``); eval-mode inference only."""

    def __init__(self, cfg: PolarMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = _Tokenizer(cfg.num_channels, cfg.width)
        self.pos_embed = _PosEmbed(cfg.pos_hidden, cfg.width)
        self.transformer = _Transformer(cfg)

    @property
    def out_dim(self) -> int:
        return self.cfg.width

    def group(self, points: Tensor, lengths: Tensor, centre_idx: list[Tensor]) -> PolarMAETokens:
        """Groups around given centres, exactly as the reference forms them.

        Args:
            points: (B, N, C) padded events (C = num_channels, xyz first, normalised).
            lengths: (B,) int64 real points per event.
            centre_idx: per event, (G_b,) int64 point indices of its centres (G_b <=
                context_length).

        Returns:
            :class:`PolarMAETokens` with G = max G_b. A group holds the first
            ``group_upscale_points`` points with d^2 < r^2 in index order, reduced by FPS
            (starting at the first) to ``group_max_points``; empty slots repeat the first point.
        """
        cfg = self.cfg
        B, _, C = points.shape
        K = cfg.group_max_points
        G = max([int(c.numel()) for c in centre_idx] + [1])
        groups = points.new_zeros(B, G, K, C)
        grouping_idx = torch.full((B, G, K), -1, dtype=torch.int64, device=points.device)
        point_valid = torch.zeros(B, G, K, dtype=torch.bool, device=points.device)
        centres = points.new_zeros(B, G, 3)
        token_valid = torch.zeros(B, G, dtype=torch.bool, device=points.device)
        for b in range(B):
            n = int(lengths[b])
            xyz = points[b, :n, :3].contiguous()  # (n, 3)
            ci = centre_idx[b].to(torch.int64)
            g = int(ci.numel())
            if g == 0:
                continue
            one = torch.tensor([n], dtype=torch.int64)
            ball, count = ball_query(
                xyz[ci], torch.tensor([g]), xyz, one, cfg.group_radius, cfg.group_upscale_points
            )  # (g, U), (g,)
            flat = ball[ball >= 0]  # (sum count,) point rows, group by group
            offs = torch.cumsum(count, 0)
            pick, pick_off = farthest_point_sampling(xyz[flat], offs, K)  # rows into flat
            take = pick_off - torch.cat([pick_off.new_zeros(1), pick_off[:-1]])  # (g,)
            slot = torch.arange(K)[None, :]  # (1, K)
            starts = pick_off - take  # (g,)
            src = pick[(starts[:, None] + slot).clamp(max=len(pick) - 1)]  # (g, K)
            src = torch.where(slot < take[:, None], src, pick[starts][:, None])  # (g, K)
            idx = flat[src]  # (g, K) point rows
            grouping_idx[b, :g] = idx
            point_valid[b, :g] = slot < take[:, None]
            centres[b, :g] = xyz[ci]
            token_valid[b, :g] = True
            grp = points[b, idx]  # (g, K, C)
            rel = (grp[..., :3] - xyz[ci][:, None, :]) / cfg.group_radius
            groups[b, :g] = torch.cat([rel, grp[..., 3:]], dim=-1)
        return PolarMAETokens(groups, point_valid, centres, grouping_idx, token_valid)

    def tokenize(self, points: Tensor, lengths: Tensor) -> PolarMAETokens:
        """C-NMS centres over all points (nufm's deterministic order), then :meth:`group`."""
        cfg = self.cfg
        centre_idx = []
        for b in range(points.shape[0]):
            n = int(lengths[b])
            xyz = points[b, :n, :3].contiguous()
            keep, _, _ = centrality_nms(
                xyz,
                torch.tensor([n]),
                2 * cfg.group_radius * cfg.overlap_factor,
                cfg.num_init_groups,
                max_per_event=cfg.context_length,
            )
            centre_idx.append(keep)
        return self.group(points, lengths, centre_idx)

    def embed(self, tokens: PolarMAETokens) -> Tensor:
        """Mini-PointNet token features (B, G, D); padded tokens are zero (as the reference)."""
        B, G, K, C = tokens.groups.shape
        x = self.tokenizer.embedding(
            tokens.groups.reshape(B * G, K, C), tokens.point_valid.reshape(B * G, K)
        )  # (B G, D)
        return x.reshape(B, G, -1) * tokens.token_valid[..., None].to(x.dtype)

    def pos(self, tokens: PolarMAETokens) -> Tensor:
        """Positional embedding (B, G, D) of the token centres."""
        return self.pos_embed(tokens.centres)

    def forward(
        self, x: Tensor, pos: Tensor, token_valid: Tensor, return_hidden: bool = False
    ) -> Tensor | list[Tensor]:
        """Transformer blocks (the position added before each, no final norm).

        Args:
            x: (B, G, D) token features from :meth:`embed`.
            pos: (B, G, D) from :meth:`pos`.
            token_valid: (B, G) bool.
            return_hidden: return every block's output (list of (B, G, D)) instead of the last.

        Returns:
            (B, G, D) last hidden state (rows of padded tokens are meaningless). The
            MaskedLayerNorms couple the events of a batch: an event's output changes with its
            batch mates (by up to 0.4 on the reference's reduced model).
        """
        hidden = self.transformer(x, pos, token_valid)
        return hidden if return_hidden else hidden[-1]

    @staticmethod
    def combine_layers(hidden: list[Tensor], token_valid: Tensor, layers: list[int]) -> Tensor:
        """The reference's ``combine_intermediate_layers``: mean of the chosen blocks' outputs,
        each through :func:`masked_layer_norm`, times the token mask. (B, G, D)."""
        normed = [masked_layer_norm(hidden[i], token_valid) for i in layers]
        out = torch.stack(normed).mean(dim=0)
        return out * token_valid[..., None].to(out.dtype)

    def encode(self, points: Tensor, lengths: Tensor) -> tuple[Tensor, PolarMAETokens]:
        """points (B, N, C) + lengths -> last hidden state (B, G, D) and the tokens."""
        tokens = self.tokenize(points, lengths)
        x = self.forward(self.embed(tokens), self.pos(tokens), tokens.token_valid)
        assert isinstance(x, Tensor)
        return x, tokens
