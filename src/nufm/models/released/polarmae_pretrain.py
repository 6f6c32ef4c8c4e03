"""PoLAr-MAE-Pretrain (Young et al., arXiv:2502.02558): the whole pretraining model of the
released Lightning checkpoint, under its key names (``encoder.*``, ``decoder.transformer.*``,
``mask_token``, ``increase_dim.*``, ``equivariant_patch_encoder.*``, ``energy_decoder.*``), so
that the file loads strictly, every key used.

Owns :class:`PolarMAEPretrainConfig`, :class:`PolarMAEPretrain`, :func:`random_token_mask` and
:class:`PolarMAEReconstruction`. The losses that compare a reconstruction with its targets
live in :mod:`nufm.ssl.released` (the model layer computes no objectives).

One pass (B events, G tokens, K points per group, D width, M masked tokens of the batch):

1. ``random_token_mask``: per event ``int(ratio * tokens)`` tokens are hidden at random, the
   others kept (padded tokens are neither);
2. the encoder runs on the kept tokens alone (its attention and whole-batch MaskedLayerNorms
   see only them);
3. the decoder (``depth`` blocks, the position before every block, a final MaskedLayerNorm)
   runs on all tokens, the hidden ones replaced by ``mask_token``;
4. ``increase_dim`` (Conv1d D -> C K) turns each hidden token's decoder output into K points
   of C channels (xyz relative to the centre over the group radius, and energy);
5. ``equivariant_patch_encoder`` (a mini-PointNet on the hidden group's true xyz, with a
   learned embedding of each point's slot added after its first stack) is concatenated with
   the decoder output, and ``energy_decoder`` (Conv1d 2D -> K) gives each slot's energy.

The released model is run in eval mode (BatchNorm running statistics, no dropout, no
stochastic depth). The reference's pretraining config sets ``use_flash_self_attn``, whose
attention dropout (0.05) stays on even in eval mode; here attention is the deterministic math
path, as in the reference's fine-tuning configs. There are no stored reference outputs of
this model: its encoder is checked number by number (:mod:`nufm.models.released.polarmae`),
the rest by its key set and shapes and by hand-computed cases (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nufm.models.released.polarmae import (
    MiniPointNet,
    PolarMAEConfig,
    PolarMAEEncoder,
    PolarMAETokens,
    _Transformer,
)


@dataclass(frozen=True, kw_only=True)
class PolarMAEPretrainConfig:
    """PoLAr-MAE-Pretrain (defaults: ``configs/polarmae.yml``)."""

    encoder: PolarMAEConfig = field(default_factory=PolarMAEConfig)
    decoder_depth: int = 4
    """Decoder blocks (same width and heads as the encoder, final MaskedLayerNorm)."""
    mae_channels: int = 4
    """Channels of the reconstructed points: 4 (``mae_prediction: full``, xyz and energy) or 3
    (``pos``, xyz only)."""
    masking_ratio: float = 0.6
    """Share of each event's tokens hidden."""

    def __post_init__(self) -> None:
        if self.mae_channels not in (3, 4):
            raise ValueError(
                f"PoLAr-MAE-Pretrain: mae_channels must be 3 or 4, got {self.mae_channels}"
            )
        if not 0.0 <= self.masking_ratio < 1.0:
            raise ValueError(
                f"PoLAr-MAE-Pretrain: masking_ratio must be in [0, 1), got {self.masking_ratio}"
            )

    @classmethod
    def from_weights(
        cls, state: dict[str, Tensor], encoder: PolarMAEConfig, masking_ratio: float = 0.6
    ) -> PolarMAEPretrainConfig:
        """Config of a checkpoint's weights: the decoder depth and ``mae_channels`` are read
        from ``decoder.transformer.blocks.*`` and ``increase_dim.weight``."""
        depth = len({k.split(".")[3] for k in state if k.startswith("decoder.transformer.blocks.")})
        out = int(state["increase_dim.weight"].shape[0])
        if out % encoder.group_max_points:
            raise ValueError(
                f"PoLAr-MAE-Pretrain: increase_dim gives {out} outputs, not a multiple of "
                f"{encoder.group_max_points} points"
            )
        return cls(
            encoder=encoder,
            decoder_depth=depth,
            mae_channels=out // encoder.group_max_points,
            masking_ratio=masking_ratio,
        )


def random_token_mask(
    token_valid: Tensor, ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Hide ``int(ratio * n_b)`` of each event's ``n_b`` tokens, chosen uniformly.

    Args:
        token_valid: (B, G) bool, True = real token (real tokens first in each row).
        ratio: share hidden, in [0, 1).
        generator: random source (the default generator when None).

    Returns:
        (hidden, kept), each (B, G) bool; padded tokens are in neither.
    """
    B, G = token_valid.shape
    score = torch.rand(B, G, generator=generator, device=token_valid.device)
    score = score.masked_fill(~token_valid, float("inf"))
    rank = score.argsort(dim=1).argsort(dim=1)  # (B, G) rank of each token's score
    n_hide = (ratio * token_valid.sum(1).to(torch.float32)).to(torch.int64)  # (B,)
    hidden = (rank < n_hide[:, None]) & token_valid
    return hidden, token_valid & ~hidden


@dataclass
class PolarMAEReconstruction:
    """What PoLAr-MAE-Pretrain predicts for the M hidden tokens of a batch, and the truth."""

    points: Tensor  # (M, K, mae_channels) predicted group points
    energy: Tensor  # (M, K) predicted energy of each slot of the true group
    target: Tensor  # (M, K, C) the true groups (xyz relative, energy last)
    point_valid: Tensor  # (M, K) bool, real points of each true group


class _Decoder(nn.Module):
    """Holds the decoder transformer under the reference name ``decoder.transformer``."""

    def __init__(self, cfg: PolarMAEPretrainConfig) -> None:
        super().__init__()
        self.transformer = _Transformer(cfg.encoder, cfg.decoder_depth, postnorm=True)


class PolarMAEPretrain(nn.Module):
    """PoLAr-MAE's pretraining model (module docstring); inference of its reconstruction."""

    def __init__(self, cfg: PolarMAEPretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, K = cfg.encoder.width, cfg.encoder.group_max_points
        self.encoder = PolarMAEEncoder(cfg.encoder)
        self.decoder = _Decoder(cfg)
        self.mask_token = nn.Parameter(torch.zeros(D))
        self.increase_dim = nn.Conv1d(D, cfg.mae_channels * K, 1)
        self.equivariant_patch_encoder = MiniPointNet(3, D, slot_order=True)
        self.energy_decoder = nn.Conv1d(2 * D, K, 1)

    def forward(self, tokens: PolarMAETokens, hidden: Tensor) -> PolarMAEReconstruction:
        """Reconstruct the ``hidden`` tokens from the others.

        Args:
            tokens: the batch's tokens (:meth:`PolarMAEEncoder.tokenize` or given).
            hidden: (B, G) bool tokens to hide (real tokens only; at least one per batch).

        Returns:
            :class:`PolarMAEReconstruction` of the hidden tokens, in row-major (B, G) order.
        """
        valid = tokens.token_valid  # (B, G)
        if bool((hidden & ~valid).any()):
            raise ValueError("PolarMAEPretrain: a hidden token is a padded slot")
        kept = valid & ~hidden
        enc = self.encoder
        pos = enc.pos(tokens)  # (B, G, D)
        x = enc(enc.embed(tokens), pos, kept)  # (B, G, D)
        assert isinstance(x, Tensor)
        h = hidden[..., None].to(x.dtype)
        corrupted = x * kept[..., None].to(x.dtype) + self.mask_token * h  # (B, G, D)
        out = self.decoder.transformer(corrupted, pos, valid)[-1][hidden]  # (M, D)
        K, C = self.cfg.encoder.group_max_points, self.cfg.mae_channels
        points = self.increase_dim(out[:, :, None])[:, :, 0].reshape(-1, K, C)  # (M, K, C)
        target = tokens.groups[hidden]  # (M, K, C_in)
        point_valid = tokens.point_valid[hidden]  # (M, K)
        shape = self.equivariant_patch_encoder(target[..., :3], point_valid)  # (M, D)
        energy = self.energy_decoder(torch.cat([shape, out], -1)[:, :, None])[:, :, 0]  # (M, K)
        return PolarMAEReconstruction(points, energy, target, point_valid)
