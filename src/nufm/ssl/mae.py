"""Masked autoencoding of point tokens: PoLAr-MAE (arXiv:2502.02558), after Point-MAE
(arXiv:2203.06604) and MAE (arXiv:2111.06377); see docs/references.md.

Owns :class:`MAEConfig`, :class:`EnergyInfillHead` and :class:`MaskedAutoencoder`: hide
``int(mask_ratio * n_valid)`` random tokens per event, encode the visible ones, decode every
token and, at hidden tokens, reconstruct the group's points and infill their energies. The
optional context term (``context_weight > 0``, this project's addition) asks each visible
token's encoder output alone for the points within ``context_radius`` of its centre. The
optional descriptor term (``descriptor_weight > 0``, this project's addition) asks tokens for
the mean over their group's points of the points' multi-scale local-shape descriptors
(:func:`nufm.models.geometric.point_shape_descriptors`, up to 512 neighbours: the context a
5-voxel token does not hold), each channel standardised over the batch: the hidden tokens
through the decoder (``descriptor_tokens="hidden"``, hand-made features of the hidden part as
MaskFeat predicts HOG, arXiv:2112.09133) or the visible tokens through one linear layer on
the encoder's output (``"visible"``, the features a linear probe reads).

    loss    = chamfer_weight * chamfer + energy_weight * energy + context_weight * context
              + descriptor_weight * descriptor
    chamfer = mean_g [mean_{x in X^} min_{y in X} |x-y|^2 + mean_{y in X} min_{x in X^} |x-y|^2]

over hidden groups g, X^ the first |X| predicted points; ``energy`` is the MSE of the log energy
over the hidden groups' valid points; ``descriptor`` the MSE of the standardised group-mean
descriptors over the hidden (or visible) groups. The step-by-step description, the comparison
with PoLAr-MAE and the measurements are in docs/objectives.md, section 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.offsets import pad_mask, scatter_rows
from nufm.geometry.segment_max import segment_max
from nufm.models.encoders import TokenViTConfig, TokenViTEncoder
from nufm.models.geometric import batch_descriptors
from nufm.models.layers import Mlp, bucket_rows
from nufm.models.tokenizers import (
    ContextGrouping,
    EventGrouper,
    PointMAETokenizerConfig,
    ball_group,
    gather_groups,
)
from nufm.models.vit import ViT, ViTConfig, packed_layout
from nufm.ssl.descriptor_term import check_descriptor_term, descriptor_modules, descriptor_mse
from nufm.ssl.losses import masked_chamfer, masked_mse
from nufm.ssl.masking import random_token_mask
from nufm.step import StepOutput


def _default_encoder() -> TokenViTConfig:
    """PoLAr-MAE ViT-S, 5-voxel tokenizer, on feat = [normalised xyz, log energy] (C = 4)."""
    return TokenViTConfig(tokenizer=PointMAETokenizerConfig(in_channels=4), vit=ViTConfig())


def _default_decoder() -> ViTConfig:
    """PoLAr-MAE decoder: ViT-S width, depth 4, post-norm, position re-added at every block."""
    return ViTConfig(depth=4, add_pos_at_every_layer=True, final_norm=True)


@dataclass(frozen=True, kw_only=True)
class MAEConfig:
    """Masked autoencoder (defaults: PoLAr-MAE ViT-S, arXiv:2502.02558)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {
        "mask_block": 0.0,
        "latent_weight": 0.0,
        "latent_blocks": None,
        "context_with_energy": False,
        "squared_chamfer": True,
    }
    """Options removed after commit 26beabe (the measured ones: docs/objectives.md) -> the value
    that means what the code does now (None: any value, it had no effect); a saved config
    carrying them at that value still loads (``nufm.config``)."""

    name: Literal["mae"] = "mae"
    """Discriminator of the objective union in ``RunConfig`` (fixed)."""
    encoder: TokenViTConfig = field(default_factory=_default_encoder)
    """Tokenizer + ViT encoder (the part exported for fine-tuning)."""
    decoder: ViTConfig = field(default_factory=_default_decoder)
    """Light decoder over all tokens (its width may differ from the encoder's)."""
    mask_ratio: float = 0.6
    """Fraction of each event's valid tokens hidden from the encoder (``int(ratio * n)``)."""
    chamfer_weight: float = 1.0
    """Weight of the Chamfer reconstruction term."""
    energy_weight: float = 1.0
    """Weight of the energy-infilling MSE term."""
    chamfer_with_energy: bool = False
    """True = predict (xyz, energy) per point and take the Chamfer distance in 4-D, as
    PoLAr-MAE does; False = Chamfer on xyz only (energy is learned by infilling alone)."""
    energy_channel: int = -1
    """Column of ``PointBatch.feat`` holding the log energy (target of the infilling)."""
    energy_hidden: int = 128
    """Width of the energy-infilling head."""
    context_weight: float = 0.0
    """Weight of the context-reconstruction term (0 = off, PoLAr-MAE)."""
    context_radius: float = 0.03
    """Radius of the neighbourhood each visible token reconstructs (normalised units;
    0.03 = 20 voxels = 6 cm)."""
    context_points: int = 32
    """Points predicted per visible token (the target is FPS-sampled to this many)."""
    context_candidates: int = 256
    """Nearest points within the radius gathered before the FPS reduction."""
    descriptor_weight: float = 0.0
    """Weight of the descriptor-prediction term (0 = off, PoLAr-MAE)."""
    descriptor_ks: tuple[int, ...] = (8, 32, 128, 512)
    """Neighbourhood sizes (points) of the descriptors the tokens predict (6 per size; computed
    once per event in the data pipeline, :class:`nufm.models.geometric.EventDescriptors`)."""
    descriptor_tokens: Literal["hidden", "visible"] = "hidden"
    """Which tokens predict their descriptors: ``hidden`` (decoder outputs) or ``visible``
    (a linear layer on the encoder's outputs)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAEConfig: mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.chamfer_weight < 0 or self.energy_weight < 0:
            raise ValueError(
                "MAEConfig: loss weights must be >= 0, got "
                f"{self.chamfer_weight}, {self.energy_weight}"
            )
        if self.context_weight < 0 or not self.context_radius > 0:
            raise ValueError(
                f"MAEConfig: need context_weight >= 0 and context_radius > 0, got "
                f"{self.context_weight}, {self.context_radius}"
            )
        if not 1 <= self.context_points <= self.context_candidates:
            raise ValueError(
                f"MAEConfig: need 1 <= context_points <= context_candidates, got "
                f"{self.context_points}, {self.context_candidates}"
            )
        check_descriptor_term("MAEConfig", self.descriptor_weight, self.descriptor_ks)
        if self.descriptor_tokens not in ("hidden", "visible"):
            raise ValueError(
                f"MAEConfig: descriptor_tokens must be 'hidden' or 'visible', got "
                f"{self.descriptor_tokens!r}"
            )
        if self.energy_hidden < 1:
            raise ValueError(f"MAEConfig: energy_hidden must be >= 1, got {self.energy_hidden}")
        ks = {o.tokenizer.group_max_points for o in self.encoder.other_tokenizers}
        if ks - {self.points_per_group}:
            raise ValueError(
                "MAEConfig: every detector's tokenizer needs the same group_max_points (the "
                f"shared decoder predicts that many points); got {self.points_per_group} and "
                f"{sorted(ks)}"
            )

    @property
    def points_per_group(self) -> int:
        """K, the points predicted per hidden token."""
        return self.encoder.tokenizer.group_max_points


class EnergyInfillHead(nn.Module):
    """Per-point energy of a hidden group from its true relative xyz and its decoder token.

    ``e_k = MLP([phi(x_k), max_j phi(x_j), W t])``: phi is a per-point MLP, the max runs over the
    group's valid points, t is the decoder output of the token. Permutation-equivariant in the
    group's points (PoLAr-MAE instead tags slots with a sinusoidal index embedding).
    """

    def __init__(self, token_dim: int, hidden: int) -> None:
        super().__init__()
        self.point_embed = Mlp(3, hidden, hidden)
        self.token_proj = nn.Linear(token_dim, hidden)
        self.out = Mlp(3 * hidden, hidden, 1)

    def forward(self, token: Tensor, rel: Tensor, point_valid: Tensor) -> Tensor:
        """token (Q, Dd), rel (Q, K, 3) group-frame xyz, point_valid (Q, K) -> (Q, K) energy
        (0 at the empty slots). Only the valid points are computed (packed rows, like
        :class:`nufm.models.tokenizers.MiniPointNet`)."""
        lengths = point_valid.sum(1)  # (Q,) valid points per group
        group = torch.nonzero(point_valid)[:, 0]  # (P,) group of every valid point, sorted
        p = self.point_embed(rel[point_valid])  # (P, h)
        g = segment_max(p, lengths)  # (Q, h), 0 for a group with no valid point
        t = self.token_proj(token)  # (Q, h)
        # out.fc1 of cat([p, g, t]) split by its input blocks: the g and t terms are computed
        # once per group, not once per point (same function and parameters, a third the work)
        w_p, w_g, w_t = self.out.fc1.weight.split(p.shape[-1], dim=1)  # (h, h) each
        per_group = F.linear(g, w_g) + F.linear(t, w_t, self.out.fc1.bias)  # (Q, h)
        z = F.linear(p, w_p) + per_group.index_select(0, group)  # (P, h) = out.fc1(cat(...))
        out = self.out
        e = out.drop(out.fc2(out.drop(out.act(z))))[:, 0]  # (P,) = self.out(cat(...))
        return scatter_rows(e, point_valid)  # (Q, K)


class MaskedAutoencoder(nn.Module):
    """PoLAr-MAE objective; ``forward(batch) -> StepOutput`` (see the module docstring)."""

    def __init__(self, cfg: MAEConfig, encoder: TokenViTEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else TokenViTEncoder(cfg.encoder)
        D, Dd = cfg.encoder.vit.embed_dim, cfg.decoder.embed_dim
        K = cfg.points_per_group
        self.point_dim = 4 if cfg.chamfer_with_energy else 3
        self.enc_to_dec = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.dec_pos = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, Dd))
        self.decoder = ViT(cfg.decoder)
        self.point_head = nn.Linear(Dd, K * self.point_dim)
        self.energy_head = EnergyInfillHead(Dd, cfg.energy_hidden)
        self.context_head: Mlp | None = None
        if cfg.context_weight > 0:
            self.context_head = Mlp(D, 2 * D, 3 * cfg.context_points)
        self.descriptor_head: nn.Linear | None = None
        self.descriptor_norm: nn.BatchNorm1d | None = None
        if cfg.descriptor_weight > 0:
            width = Dd if cfg.descriptor_tokens == "hidden" else D
            self.descriptor_head, self.descriptor_norm = descriptor_modules(
                width, cfg.descriptor_ks
            )

    def event_grouper(self, cache: bool = True, detector: str | None = None) -> EventGrouper:
        """What the data pipeline runs once per event so that a step only runs the network:
        the groups of the tokenizer of ``detector``'s events and, with the context term, each
        centre's context points."""
        cfg = self.cfg
        context = None
        if self.context_head is not None:
            context = ContextGrouping(
                cfg.context_radius, cfg.context_candidates, cfg.context_points
            )
        return EventGrouper(cfg.encoder.tokenizer_for(detector), context, cache=cache)

    @property
    def descriptor_ks(self) -> tuple[int, ...]:
        """Sizes of the descriptors the data pipeline should attach (() = none wanted)."""
        return self.cfg.descriptor_ks if self.descriptor_head is not None else ()

    def descriptor_loss(self, batch: PointBatch, feat: Tensor, group_idx: Tensor) -> Tensor:
        """MSE of the descriptor term.

        Args:
            batch: the packed points, with the pipeline's descriptors (else computed here).
            feat: (Q, Dd) decoder outputs of the hidden tokens, or (Q, D) encoder outputs of
                the visible ones (``cfg.descriptor_tokens``).
            group_idx: (Q, K) int64 rows of their group points, -1 = empty.
        """
        assert self.descriptor_head is not None and self.descriptor_norm is not None
        with torch.no_grad():
            d = batch_descriptors(batch, self.cfg.descriptor_ks).float()  # (N, C)
            n = (group_idx >= 0).sum(1, keepdim=True).clamp(min=1)  # (Q, 1)
            target = gather_groups(d, group_idx).sum(1) / n  # (Q, C) group means
        return descriptor_mse(self.descriptor_head, self.descriptor_norm, feat, target)

    def context_loss(
        self,
        batch: PointBatch,
        center: Tensor,
        center_offset: Tensor,
        feat: Tensor,
        idx: Tensor | None = None,
    ) -> Tensor:
        """Chamfer loss of the context reconstruction (docs/objectives.md, section 1).

        Args:
            batch: the packed input points.
            center: (Qv, 3) centres of the visible tokens, event-major.
            center_offset: (B,) int64 exclusive ends of each event's visible tokens.
            feat: (Qv, D) encoder outputs of those tokens.
            idx: (Qv, M) int64 rows of each centre's context points from the data pipeline,
                or None to find them here.
        """
        cfg = self.cfg
        assert self.context_head is not None
        M, R = cfg.context_points, cfg.context_radius
        if idx is None:
            with torch.no_grad():
                idx = ball_group(
                    center, center_offset, batch.coord, batch.offset, R, cfg.context_candidates, M
                )  # (Qv, M)
        point_valid = idx >= 0  # (Qv, M); the centre itself is always found
        target = (gather_groups(batch.coord, idx) - center[:, None]) / R  # (Qv, M, 3)
        target = target * point_valid[..., None].to(target.dtype)
        pred = self.context_head(feat).reshape(-1, M, 3).float()  # (Qv, M, 3)
        pred_valid = torch.arange(M, device=pred.device) < point_valid.sum(1, keepdim=True)
        cd = masked_chamfer(pred, pred_valid, target.float(), point_valid)
        return cd.sum() / max(cd.numel(), 1)

    def forward(self, batch: PointBatch) -> StepOutput:
        cfg = self.cfg
        tokenizer = self.encoder.tokenizer_for(batch.detector)
        tokens = tokenizer(batch.coord, batch.feat, batch.offset, batch.groups, embed=False)
        valid = tokens.valid  # (B, G)
        is_masked = random_token_mask(valid, cfg.mask_ratio)  # (B, G)
        visible = valid & ~is_masked  # (B, G)
        # only visible tokens are embedded (a hidden token's embedding is never used) and
        # encoded, as packed rows
        vis_feat = tokenizer.embed(
            batch.coord, batch.feat, tokens.center[visible], tokens.group_idx[visible]
        )  # (Qv, D)
        latent = self.encoder.encode_rows(tokens, visible, vis_feat)  # (Qv, D)
        # the decoder runs on the packed rows of the valid tokens, the hidden ones as the mask
        # token, and computes only the hidden rows' outputs (the only ones read)
        hidden_row = is_masked[valid]  # (T,)
        x = bucket_rows(self.enc_to_dec, latent)  # (Qv, Dd)
        x = (
            self.mask_token[0]
            .to(x.dtype)
            .expand(len(hidden_row), -1)
            .index_copy(0, torch.nonzero(~hidden_row)[:, 0], x)
        )  # (T, Dd)
        hidden, _ = self.decoder.forward_rows(
            x,
            bucket_rows(self.dec_pos, tokens.center[valid]),  # (T, Dd)
            *packed_layout(valid),
            keep=hidden_row,
        )  # (Qm, Dd), the hidden tokens in row-major order

        group_idx = tokens.group_idx[is_masked]  # (Qm, K)
        center = tokens.center[is_masked]  # (Qm, 3)
        Qm, K = group_idx.shape
        point_valid = group_idx >= 0  # (Qm, K)
        rel = gather_groups(batch.coord, group_idx) - center[:, None]  # (Qm, K, 3)
        rel = rel / tokenizer.cfg.group_radius
        rel = rel * point_valid[..., None].to(rel.dtype)
        energy_true = gather_groups(batch.feat[:, [cfg.energy_channel]], group_idx)[..., 0]

        pred = self.point_head(hidden).reshape(Qm, K, self.point_dim)  # (Qm, K, F)
        target = rel if self.point_dim == 3 else torch.cat([rel, energy_true[..., None]], -1)
        n_true = point_valid.sum(1)  # (Qm,)
        pred_valid = torch.arange(K, device=pred.device) < n_true[:, None]  # (Qm, K)
        cd = masked_chamfer(pred, pred_valid, target, point_valid)  # (Qm,)
        chamfer = cd.sum() / max(Qm, 1)

        energy_pred = self.energy_head(hidden, rel, point_valid)  # (Qm, K)
        energy = masked_mse(energy_pred, energy_true, point_valid)

        loss = cfg.chamfer_weight * chamfer + cfg.energy_weight * energy
        metrics = {}
        if self.descriptor_head is not None:
            if cfg.descriptor_tokens == "hidden":
                feat, rows = hidden, group_idx  # (Qm, Dd), (Qm, K)
            else:
                feat, rows = latent, tokens.group_idx[visible]  # (Qv, D), (Qv, K)
            # batch statistics need two tokens; a batch with fewer adds no term
            descriptor = self.descriptor_loss(batch, feat, rows) if len(rows) > 1 else None
            if descriptor is not None:
                loss = loss + cfg.descriptor_weight * descriptor
            metrics["descriptor"] = (
                descriptor.detach() if descriptor is not None else loss.new_zeros(())
            )
        if self.context_head is not None:
            cached = None
            groups = batch.groups
            if groups is not None and groups.context_idx is not None:
                # the visible tokens' context rows, read through the token slots of the packed
                # centres (no padded copy)
                slots = pad_mask(groups.center_offset, visible.shape[1])  # (B, G)
                cached = groups.context_idx[visible[slots]]  # (Qv, M)
            context = self.context_loss(
                batch,
                tokens.center[visible],
                torch.cumsum(visible.sum(1), 0),
                latent,
                cached,
            )
            loss = loss + cfg.context_weight * context
            metrics["context"] = context.detach()
        metrics |= {
            "chamfer": chamfer.detach(),
            "energy": energy.detach(),
            "n_masked": is_masked.sum().to(torch.float32),
            "n_tokens": valid.sum().to(torch.float32),
        }
        return StepOutput(loss=loss, metrics=metrics)


__all__ = ["EnergyInfillHead", "MAEConfig", "MaskedAutoencoder"]
