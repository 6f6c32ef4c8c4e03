"""What every encoder returns (:class:`EncoderOutput`) and the :class:`Encoder` base class.

Kept apart from :mod:`nufm.models.encoders` so that encoders in other files (for example
:mod:`nufm.models.geometric`) subclass it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from nufm.batch import PointBatch
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
