"""Perceiver-IO multi-stream fusion block (Perceiver IO arXiv:2107.14795; used as the latent
bottleneck that fuses the FASERCal sub-detector streams, arXiv:2604.07037; docs/references.md).

Owns :class:`PerceiverConfig` and :class:`PerceiverIO`. Learned latents cross-attend to several
padded token streams, each projected to the latent width and tagged with a learned stream
embedding; the latents then self-attend; :meth:`PerceiverIO.decode` lets arbitrary output queries
cross-attend to the latents. Padded stream tokens are excluded by the key mask, so they never
influence any output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from nufm.models.layers import Block, CrossBlock


@dataclass(frozen=True, kw_only=True)
class PerceiverConfig:
    """Perceiver-IO fusion of several token streams."""

    stream_dims: tuple[int, ...] = (384, 384)
    """Input token width D_s of every stream (one entry per stream)."""
    num_latents: int = 64
    """Number of learned latent vectors L."""
    latent_dim: int = 256
    """Latent width."""
    num_heads: int = 8
    """Attention heads in every (cross-)attention."""
    depth: int = 4
    """Latent self-attention blocks after each cross-attention."""
    num_cross: int = 1
    """Rounds of (cross-attend to the streams, then ``depth`` self-attention blocks)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of latent_dim."""
    drop_path: float = 0.0
    """Stochastic depth in the latent blocks."""

    def __post_init__(self) -> None:
        if len(self.stream_dims) < 1:
            raise ValueError("PerceiverConfig: stream_dims needs at least one stream")
        if self.latent_dim % self.num_heads != 0:
            raise ValueError(
                f"PerceiverConfig: latent_dim {self.latent_dim} not divisible by "
                f"num_heads {self.num_heads}"
            )


class PerceiverIO(nn.Module):
    """Latent bottleneck over several padded token streams."""

    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.latent_dim
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, D) * 0.02)  # (L, D)
        self.stream_proj = nn.ModuleList(nn.Linear(d, D) for d in cfg.stream_dims)
        self.stream_embed = nn.Parameter(torch.randn(len(cfg.stream_dims), D) * 0.02)  # (S, D)
        self.cross = nn.ModuleList(
            CrossBlock(D, D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.num_cross)
        )
        self.self_blocks = nn.ModuleList(
            nn.ModuleList(
                Block(D, cfg.num_heads, cfg.mlp_ratio, drop_path=cfg.drop_path)
                for _ in range(cfg.depth)
            )
            for _ in range(cfg.num_cross)
        )
        self.norm = nn.LayerNorm(D)
        self.decoder = CrossBlock(D, D, cfg.num_heads, cfg.mlp_ratio)

    def forward(self, streams: Sequence[Tensor], valids: Sequence[Tensor]) -> Tensor:
        """Fuse streams into latents.

        Args:
            streams: one (B, G_s, D_s) token tensor per stream, in ``cfg.stream_dims`` order.
            valids: one (B, G_s) bool per stream, True = real token (False = padding).

        Returns:
            (B, L, latent_dim) latents.
        """
        if len(streams) != len(self.stream_proj) or len(valids) != len(streams):
            raise ValueError(
                f"PerceiverIO: expected {len(self.stream_proj)} streams and valid "
                f"masks, got {len(streams)} and {len(valids)}"
            )
        B = streams[0].shape[0]
        tokens = []
        for s, (x, proj) in enumerate(zip(streams, self.stream_proj, strict=False)):
            if x.shape[-1] != self.cfg.stream_dims[s]:
                raise ValueError(
                    f"PerceiverIO: stream {s} has width {x.shape[-1]}, "
                    f"config says {self.cfg.stream_dims[s]}"
                )
            # Zero the padding so non-finite junk there cannot leak through 0-weight attention.
            x = x.masked_fill(~valids[s][..., None], 0.0)
            tokens.append(proj(x) + self.stream_embed[s])  # (B, G_s, D)
        context = torch.cat(tokens, dim=1)  # (B, sum G_s, D)
        context_valid = torch.cat(list(valids), dim=1)  # (B, sum G_s)
        z = self.latents.expand(B, -1, -1)  # (B, L, D)
        for cross, blocks in zip(self.cross, self.self_blocks, strict=False):
            z = cross(z, context, context_valid)
            for block in cast(nn.ModuleList, blocks):
                z = block(z)
        return self.norm(z)

    def decode(self, queries: Tensor, latents: Tensor) -> Tensor:
        """Perceiver-IO output step: ``queries`` (B, Q, latent_dim) attend to ``latents``.

        Args:
            queries: (B, Q, latent_dim) output queries (e.g. learned task queries, or a
                positional embedding of the points/tokens to decode).
            latents: (B, L, latent_dim) from :meth:`forward`.

        Returns:
            (B, Q, latent_dim); each query's output depends only on its own query and the latents.
        """
        return self.decoder(queries, latents)
