"""Autoregressive forecasting of ordered point patches, after FM4NPP (arXiv:2508.14087;
docs/references.md).

Owns :class:`ForecastConfig` and :class:`Forecaster`; the encoder (ordering, patches, causal
transformer) is :class:`nufm.models.serialized_patches.SerializedPatchEncoder`. Every event is
put in order (a Hilbert curve, or FM4NPP's radial cells for collider TPCs) and cut into patches
of ``patch_points`` points; a causal transformer over the patches predicts, from patch t, the
points X_{t+1} of patch t + 1 relative to the centre c_t of patch t (in units of
``target_scale``):

    loss = mean over pairs (t, t+1) of Chamfer(X^_t, (X_{t+1} - c_t) / target_scale)

with X^_t truncated to |X_{t+1}|. Metric ``copy_baseline`` is the same loss for the forecast
"patch t + 1 looks like patch t". Step by step, and how it differs from FM4NPP:
docs/objectives.md, section 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from nufm.batch import PointBatch
from nufm.models.serialized_patches import SerializedPatchConfig, SerializedPatchEncoder
from nufm.models.tokenizers import gather_groups
from nufm.ssl.losses import masked_chamfer
from nufm.step import StepOutput


@dataclass(frozen=True, kw_only=True)
class ForecastConfig:
    """Next-patch forecasting (defaults: a ~FM4NPP-5M-sized transformer on Hilbert patches)."""

    REMOVED_OPTIONS: ClassVar[dict[str, object]] = {"squared_chamfer": True}
    """Removed options -> the value that means what the code does now (``nufm.config``)."""
    MOVED_OPTIONS: ClassVar[dict[str, str]] = {
        f.name: "encoder" for f in dataclasses.fields(SerializedPatchConfig)
    }
    """Options that moved into ``encoder`` (at 2372e93): a config saved with them at the top
    level still loads (``nufm.config``)."""

    name: Literal["forecast"] = "forecast"
    """Discriminator of the objective union in ``RunConfig`` (fixed)."""
    encoder: SerializedPatchConfig = field(default_factory=SerializedPatchConfig)
    """Ordering, patches and causal transformer (the part exported for fine-tuning); its
    ``patch_points`` and ``target_scale`` also size the forecast."""


class Forecaster(nn.Module):
    """Next-patch forecasting objective; ``forward(batch) -> StepOutput``."""

    def __init__(self, cfg: ForecastConfig, encoder: SerializedPatchEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else SerializedPatchEncoder(cfg.encoder)
        self.head = nn.Linear(cfg.encoder.embed_dim, 3 * cfg.encoder.patch_points)

    def forward(self, batch: PointBatch) -> StepOutput:
        scale = self.cfg.encoder.target_scale
        patches = self.encoder.patchify(batch)
        h = self.encoder.encode(batch, patches)  # (B, T, D)
        _B, _T, P = patches.idx.shape
        has_next = patches.valid[:, 1:]  # (B, T-1) pair (t, t+1) exists
        src = h[:, :-1][has_next]  # (Q, D)
        center = patches.center[:, :-1][has_next]  # (Q, 3) centre of patch t
        nxt = patches.idx[:, 1:][has_next]  # (Q, P) rows of patch t+1
        cur = patches.idx[:, :-1][has_next]  # (Q, P) rows of patch t
        Q = src.shape[0]
        target_valid = nxt >= 0
        target = (gather_groups(batch.coord, nxt) - center[:, None]) / scale
        pred = self.head(src).reshape(Q, P, 3)  # (Q, P, 3)
        pred_valid = torch.arange(P, device=pred.device) < target_valid.sum(1)[:, None]
        cd = masked_chamfer(pred, pred_valid, target, target_valid)
        chamfer = cd.sum() / max(Q, 1)
        with torch.no_grad():
            copy = (gather_groups(batch.coord, cur) - center[:, None]) / scale
            copy_cd = masked_chamfer(copy, cur >= 0, target, target_valid)
        metrics = {
            "chamfer": chamfer.detach(),
            "copy_baseline": copy_cd.sum() / max(Q, 1),
            "n_pairs": torch.tensor(float(Q), device=chamfer.device),
        }
        return StepOutput(loss=chamfer, metrics=metrics)


__all__ = ["ForecastConfig", "Forecaster"]
