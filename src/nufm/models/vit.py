"""ViT encoder over padded point tokens (Point-MAE / PoLAr-MAE style, arXiv:2502.02558;
ViT arXiv:2010.11929; docs/references.md).

Owns :class:`ViTConfig`, the named size presets :data:`VIT_PRESETS` and :class:`ViT`. Blocks are
pre-norm with per-token ``nn.LayerNorm`` (not PoLAr-MAE's batch-global MaskedLayerNorm, which makes
outputs depend on batch composition), SDPA attention with a boolean key mask built from ``valid``,
and linearly increasing drop-path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nufm.geometry.offsets import scatter_rows
from nufm.models.layers import Block, linear_rates


@dataclass(frozen=True, kw_only=True)
class ViTConfig:
    """Transformer over tokens (defaults: PoLAr-MAE ``vit_small``)."""

    embed_dim: int = 384
    """Token width D."""
    depth: int = 12
    """Number of transformer blocks."""
    num_heads: int = 6
    """Attention heads H (embed_dim must be divisible by it)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of embed_dim."""
    qkv_bias: bool = True
    """Bias in the qkv projection."""
    drop_path: float = 0.25
    """Maximum stochastic-depth rate, reached at the last block (linear ramp from 0)."""
    attn_drop: float = 0.05
    """Dropout on attention weights."""
    proj_drop: float = 0.0
    """Dropout after projections and in the MLP."""
    layer_scale: float | None = None
    """Initial LayerScale value; None disables LayerScale."""
    add_pos_at_every_layer: bool = False
    """Re-add the positional embedding before every block (else only before the first)."""
    final_norm: bool = True
    """Apply a LayerNorm to the output tokens."""

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"ViTConfig: embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}"
            )
        if self.depth < 1:
            raise ValueError(f"ViTConfig: depth must be >= 1, got {self.depth}")


VIT_PRESETS: dict[str, ViTConfig] = {
    "vit-tiny": ViTConfig(embed_dim=192, depth=12, num_heads=6),
    "vit-small": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vit-base": ViTConfig(embed_dim=768, depth=12, num_heads=12),
}
"""PoLAr-MAE sizes (arXiv:2502.02558)."""


@dataclass
class ViTOutput:
    """Output of :class:`ViT`.

    Attributes:
        feat: (B, G, D) output tokens (after the final norm when enabled).
        hidden: block index -> (B, G, D) hidden state after that block (0-based, before norm).
    """

    feat: Tensor
    hidden: dict[int, Tensor] = field(default_factory=dict)


class ViT(nn.Module):
    """Pre-norm transformer encoder over padded tokens."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        rates = linear_rates(cfg.drop_path, cfg.depth)
        self.blocks = nn.ModuleList(
            Block(
                cfg.embed_dim,
                cfg.num_heads,
                cfg.mlp_ratio,
                cfg.qkv_bias,
                rates[i],
                cfg.attn_drop,
                cfg.proj_drop,
                cfg.layer_scale,
            )
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim) if cfg.final_norm else nn.Identity()
        self.apply(_init_weights)

    @property
    def out_dim(self) -> int:
        return self.cfg.embed_dim

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None,
        valid: Tensor | None,
        return_blocks: Sequence[int] = (),
        read: Tensor | None = None,
    ) -> ViTOutput:
        """Encode tokens.

        Args:
            x: (B, G, D) token features.
            pos: (B, G, D) positional embedding, or None.
            valid: (B, G) bool, True = the token takes part (may be attended to); None = all.
                Masked-out tokens (padding, or MAE-hidden tokens) are never attended to, so they
                do not influence valid outputs; their outputs are 0. Only the real tokens are
                computed: packed rows through projections and MLPs, attention per event.
            return_blocks: 0-based block indices whose hidden states to return (negative ok);
                not the last block when ``read`` is given.
            read: (B, G) bool, the tokens whose outputs the caller reads (an MAE decoder reads
                only the hidden ones), or None = all valid. The last block computes only
                those rows (every valid token is still attended to); ``feat`` is 0 elsewhere.

        Returns:
            :class:`ViTOutput` with feat (B, G, D) and the requested hidden states.
        """
        if valid is None:
            valid = x.new_ones(x.shape[:2], dtype=torch.bool)
        rows, hidden = self.forward_rows(
            x[valid],  # (T, D): linear layers run on real tokens only
            pos[valid] if pos is not None else None,
            *packed_layout(valid),
            read[valid] if read is not None else None,
            return_blocks,
        )
        out_rows = valid if read is None else valid & read
        return ViTOutput(
            feat=scatter_rows(rows, out_rows),
            hidden={i: scatter_rows(h, valid) for i, h in hidden.items()},
        )

    def forward_rows(
        self,
        rows: Tensor,
        pos_rows: Tensor | None,
        counts: list[int],
        event: Tensor,
        keep: Tensor | None = None,
        return_blocks: Sequence[int] = (),
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """:meth:`forward` on packed rows, with no padded tensor in or out.

        Args:
            rows: (T, D) the real tokens of B = len(counts) events back to back.
            pos_rows: (T, D) their positional embedding, or None.
            counts: tokens per event (sum T).
            event: (T,) int64 event of every row.
            keep: (T,) bool, the rows whose outputs are read (``read`` of :meth:`forward`),
                or None = all.
            return_blocks: as in :meth:`forward`.

        Returns:
            (T_kept, D) the final-normed outputs of the kept rows (all T rows without
            ``keep``), in row order, and {block: (T, D) hidden rows}.
        """
        depth = self.cfg.depth
        wanted = {i % depth for i in return_blocks}
        if keep is not None and depth - 1 in wanted:
            raise ValueError("ViT: the last block's hidden state is not computed with read=")
        hidden: dict[int, Tensor] = {}
        blocks: list[Block] = list(self.blocks)  # type: ignore[arg-type]
        for i, block in enumerate(blocks):
            if pos_rows is not None and (i == 0 or self.cfg.add_pos_at_every_layer):
                rows = rows + pos_rows
            last = i == depth - 1
            rows = block.forward_rows(rows, counts, event, keep if last else None)
            if i in wanted:
                hidden[i] = rows
        return self.norm(rows), hidden


def packed_layout(mask: Tensor) -> tuple[list[int], Tensor]:
    """(B, G) bool -> the layout of its True slots packed back to back, row-major, as
    :meth:`ViT.forward_rows` takes it: (tokens per event, (T,) int64 event of every row)."""
    return mask.sum(1).tolist(), torch.nonzero(mask)[:, 0]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
