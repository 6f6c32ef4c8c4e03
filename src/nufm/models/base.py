"""What every encoder returns (:class:`EncoderOutput`), the :class:`Encoder` base class and the
parameter-free map :class:`PointFeatures` from any encoder output to per-point features.

Kept apart from :mod:`nufm.models.encoders` so that encoders in other files (for example
:mod:`nufm.models.geometric`) subclass it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.interpolate import interpolate
from nufm.models.ptv3 import PTv3Output
from nufm.models.tokenizers import Tokens


@dataclass
class EncoderOutput:
    """Features produced by an :class:`Encoder`.

    Attributes:
        feat: (B, G, D) per-token features when ``level == "token"``; (N, D) per-point
            features when ``level == "point"``; (B, L, D) fused latents when ``"latent"``.
        level: "token", "point" or "latent".
        offset: (B,) int64 point offsets of the input batch.
        valid: (B, G) bool valid tokens (token level), else None.
        tokens: the :class:`Tokens` that were encoded (token level), else None.
        hidden: block index -> (B, G, D) hidden states requested via ``return_blocks``.
        ptv3: the full :class:`PTv3Output` (point level), else None.
    """

    feat: Tensor
    level: Literal["token", "point", "latent"]
    offset: Tensor
    valid: Tensor | None = None
    tokens: Tokens | None = None
    hidden: dict[int, Tensor] = field(default_factory=dict)
    ptv3: PTv3Output | None = None


class Encoder(nn.Module):
    """Base class of nufm encoders: ``forward(batch) -> EncoderOutput``, ``out_dim``."""

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def forward(self, batch: PointBatch) -> EncoderOutput:  # pragma: no cover - interface
        raise NotImplementedError


class PointFeatures(nn.Module):
    """Parameter-free map from an :class:`EncoderOutput` to (N, D) per-point features.

    Point-level encoders (PTv3) already give (N, D). Token-level encoders give (B, G, D) at
    token centres; each point gets the inverse-distance-weighted mean of its ``k`` nearest
    valid token centres of the same event (PointNet++ eq. 2, arXiv:1706.02413), with no
    learned weights, so a linear layer on top is a true linear probe.
    """

    def __init__(self, k: int = 3, power: float = 2.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"PointFeatures: k must be >= 1, got {k}")
        self.k = k
        self.power = power

    def forward(self, out: EncoderOutput, batch: PointBatch) -> Tensor:
        """Per-point features (N, D) of the batch's points (packed order)."""
        N = batch.num_points
        match out.level:
            case "point":
                if out.feat.shape[0] != N:
                    raise ValueError(
                        f"PointFeatures: point-level features have "
                        f"{out.feat.shape[0]} rows, the batch {N} points"
                    )
                return out.feat
            case "token":
                if out.tokens is None or out.valid is None:
                    raise ValueError("PointFeatures: token-level output without tokens/valid")
                valid = out.valid  # (B, G)
                support_offset = torch.cumsum(valid.sum(1), 0)  # (B,)
                return interpolate(
                    batch.coord,
                    batch.offset,
                    out.tokens.center[valid],
                    support_offset,
                    out.feat[valid],
                    k=self.k,
                    power=self.power,
                )  # (N, D)
            case _:
                raise ValueError(f"PointFeatures: unknown encoder output level {out.level!r}")
