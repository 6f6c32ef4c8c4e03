"""PoLAr-MAE-Semantic (Young et al., arXiv:2502.02558): the released PoLAr-MAE encoder, a
PointNet++-style feature propagation back to the points and a per-point segmentation head,
under the reference key names (``encoder.*``, ``upsampler.*``, ``seg_head.*``,
``loss_func.weight``), so its Lightning checkpoint loads as it is.

Owns :class:`PolarMAESegmentorConfig` and :class:`PolarMAESegmentor`. Per event (B events, G
tokens, N points, D width):

1. token features = mean over ``fetch_layers`` of the blocks' outputs, each through the
   whole-batch :func:`~nufm.models.released.polarmae.masked_layer_norm`, times the token mask;
2. global features = [max, mean] of the token features over the event's tokens (2D);
3. up-sampling: each point takes the inverse-squared-distance weighted mean of its ``k`` (5)
   nearest token centres' features (weights ``1 / (d^2 + eps32)``), concatenated after its own
   xyz, then two Conv1d (no bias) -> masked BatchNorm -> ReLU layers (D+3 -> D -> D);
4. head: [up-sampled, global] (3D) -> Conv1d (no bias) -> masked BatchNorm -> ReLU -> Conv1d
   (no bias) -> masked BatchNorm -> ReLU -> Conv1d -> class logits (dropout is off at
   inference).

The reference code was read for this structure; there are no stored reference outputs of the
head, so only the encoder's numbers are checked against the reference (``docs/released_models.md``).
An event with fewer than ``k`` tokens interpolates from all its tokens (the reference pads
the neighbour list there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.models.released.polarmae import (
    MaskedBatchNorm1d,
    PolarMAEConfig,
    PolarMAEEncoder,
    PolarMAETokens,
)


@dataclass(frozen=True, kw_only=True)
class PolarMAESegmentorConfig:
    """PoLAr-MAE-Semantic (defaults: ``configs/part_segmentation_polarmae_fft.yml``)."""

    encoder: PolarMAEConfig = field(default_factory=PolarMAEConfig)
    num_classes: int = 4
    """Shower, track, Michel, delta (low-energy scatters are removed by the preprocessing)."""
    fetch_layers: tuple[int, ...] = (3, 7, 11)
    """Blocks whose outputs are averaged into the token features."""
    head_dim: int = 512
    """Width of the head's first layer (the second is half)."""
    k: int = 5
    """Token centres each point interpolates from."""
    global_features: bool = True
    """Concatenate the event's max and mean token features to every point."""

    @classmethod
    def from_hyper_parameters(
        cls, hp: dict[str, Any], encoder: PolarMAEConfig
    ) -> PolarMAESegmentorConfig:
        """The semantic model's hyper-parameters (``num_classes``, ``seg_head_fetch_layers``,
        ``seg_head_dim``, ``condition_global_features``; a ``seg_decoder`` is refused)."""
        if hp.get("seg_decoder"):
            raise ValueError("PoLAr-MAE-Semantic with a seg_decoder is not supported")
        return cls(
            encoder=encoder,
            num_classes=int(hp.get("num_classes", 4)),
            fetch_layers=tuple(hp.get("seg_head_fetch_layers", (3, 7, 11))),
            head_dim=int(hp.get("seg_head_dim", 512)),
            global_features=bool(hp.get("condition_global_features", False)),
        )


class _Upsampler(nn.Module):
    """``mlp_convs.{i}`` Conv1d (no bias) and ``mlp_bns.{i}`` masked BatchNorm."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp_convs = nn.ModuleList(
            [nn.Conv1d(width + 3, width, 1, bias=False), nn.Conv1d(width, width, 1, bias=False)]
        )
        self.mlp_bns = nn.ModuleList([MaskedBatchNorm1d(width), MaskedBatchNorm1d(width)])

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (B, D+3, N), valid (B, 1, N) -> (B, D, N)."""
        for conv, bn in zip(self.mlp_convs, self.mlp_bns, strict=True):
            x = F.relu(bn(conv(x), valid))
        return x


class _SegHead(nn.Module):
    """``conv1``/``bn1``, ``conv2``/``bn2``, ``conv3`` (the reference key names)."""

    def __init__(self, cin: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, dim, 1, bias=False)
        self.bn1 = MaskedBatchNorm1d(dim)
        self.conv2 = nn.Conv1d(dim, dim // 2, 1, bias=False)
        self.bn2 = MaskedBatchNorm1d(dim // 2)
        self.conv3 = nn.Conv1d(dim // 2, num_classes, 1)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (B, C, N), valid (B, 1, N) -> (B, classes, N)."""
        x = F.relu(self.bn1(self.conv1(x), valid))
        x = F.relu(self.bn2(self.conv2(x), valid))
        return self.conv3(x)


class _LossWeights(nn.Module):
    """Holds the checkpoint's ``loss_func.weight`` buffer (class weights of training; unused)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.weight: Tensor
        self.register_buffer("weight", torch.ones(num_classes))


class PolarMAESegmentor(nn.Module):
    """PoLAr-MAE-Semantic: padded points -> per-point class logits (see the module doc)."""

    def __init__(self, cfg: PolarMAESegmentorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.encoder.width
        if max(cfg.fetch_layers) >= cfg.encoder.depth:
            raise ValueError(
                f"PoLAr-MAE-Semantic: fetch_layers {cfg.fetch_layers} beyond depth "
                f"{cfg.encoder.depth}"
            )
        self.encoder = PolarMAEEncoder(cfg.encoder)
        self.upsampler = _Upsampler(D)
        self.seg_head = _SegHead(
            (3 if cfg.global_features else 1) * D, cfg.head_dim, cfg.num_classes
        )
        self.loss_func = _LossWeights(cfg.num_classes)

    def forward(
        self, points: Tensor, lengths: Tensor, tokens: PolarMAETokens | None = None
    ) -> Tensor:
        """points (B, N, C) padded (xyz first, normalised) + lengths (B,) -> logits (B, N, K);
        rows past an event's length are meaningless. ``tokens``: given tokens (else C-NMS)."""
        tokens = self.encoder.tokenize(points, lengths) if tokens is None else tokens
        valid_t = tokens.token_valid  # (B, G)
        hidden = self.encoder(
            self.encoder.embed(tokens), self.encoder.pos(tokens), valid_t, return_hidden=True
        )
        assert isinstance(hidden, list)
        feat = self.encoder.combine_layers(
            hidden, valid_t, list(self.cfg.fetch_layers)
        )  # (B, G, D)
        B, N, _ = points.shape
        xyz = points[..., :3]
        d2 = torch.cdist(xyz, tokens.centres).square()  # (B, N, G)
        d2 = d2.masked_fill(~valid_t[:, None, :], float("inf"))
        k = min(self.cfg.k, tokens.centres.shape[1])
        near, idx = d2.topk(k, dim=-1, largest=False)  # (B, N, k)
        w = 1.0 / (near + torch.finfo(near.dtype).eps)
        w = torch.where(torch.isfinite(near), w, torch.zeros_like(w))
        w = w / w.sum(-1, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)  # (B, N, k)
        gathered = torch.gather(
            feat[:, None].expand(B, N, -1, -1), 2, idx[..., None].expand(-1, -1, -1, feat.shape[-1])
        )  # (B, N, k, D)
        up = (gathered * w[..., None]).sum(2)  # (B, N, D)
        valid_p = (torch.arange(N, device=points.device)[None] < lengths[:, None])[
            :, None
        ]  # (B, 1, N)
        x = self.upsampler(torch.cat([xyz, up], -1).transpose(1, 2), valid_p)  # (B, D, N)
        if self.cfg.global_features:
            m = valid_t[..., None]
            g_max = feat.masked_fill(~m, -1e10).max(1).values  # (B, D)
            g_mean = (feat * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)
            glob = torch.cat([g_max, g_mean], -1)[:, :, None].expand(-1, -1, N)  # (B, 2D, N)
            x = torch.cat([x, glob], 1)  # (B, 3D, N)
        return self.seg_head(x, valid_p).transpose(1, 2)  # (B, N, K)
