"""Multi-view prototype self-distillation: Sonata (arXiv:2503.16429) as used by Panda
(arXiv:2512.01324) for LArTPC pretraining; see docs/references.md.

Owns :class:`DistillConfig`, :class:`PrototypeHead` and :class:`SelfDistillation`: the student
sees grid-masked global views and local views, an EMA teacher the unmasked global views; points
of two views are paired by nearest pre-augmentation coordinate and, with q the teacher's
Sinkhorn-Knopp targets and s the student's prototype scores,

    CE(i, j)  = -sum_p q_j,p log softmax(s_i / tau_s)_p        (mean per event, then over events)
    loss      = w_mask * mask + w_roll * roll_mask + w_unmask * unmask     (Sonata: 2/8, 2/8, 4/8)
                + w_descriptor * descriptor                               (optional, 0 by default)

The optional descriptor term (``descriptor_weight > 0``, this project's addition, as the
MAE's visible-token form in :mod:`nufm.ssl.mae`) asks a linear read-out of the student's
features at every unmasked point of the global views for that point's multi-scale local-shape
descriptors (:func:`nufm.models.geometric.point_shape_descriptors` of the source event, up to
512 neighbours), each channel standardised over the batch: the MSE. The views, pairs, schedules and
collapse metrics are described in docs/objectives.md, section 2.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.offsets import offset_to_batch_index
from nufm.models.base import Encoder, PointFeatures
from nufm.models.encoders import TokenViTConfig, build_encoder
from nufm.models.geometric import batch_descriptors
from nufm.models.ptv3 import PTv3Config
from nufm.ssl.descriptor_term import check_descriptor_term, descriptor_modules, descriptor_mse
from nufm.ssl.ema import ema_update, make_teacher
from nufm.ssl.losses import entropy, sinkhorn_knopp, soft_cross_entropy
from nufm.ssl.masking import grid_mask
from nufm.ssl.views import ViewConfig, make_views, match_points
from nufm.step import StepOutput


def _default_encoder() -> PTv3Config:
    """Panda-Base encoder in pretraining mode (arXiv:2512.01324)."""
    return PTv3Config(enc_mode=True, mask_token=True, layer_scale=1e-5)


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """Sonata/Panda self-distillation (defaults: Panda pretraining, arXiv:2512.01324)."""

    name: Literal["distill"] = "distill"
    """Discriminator of the objective union in ``RunConfig`` (fixed)."""
    encoder: PTv3Config | TokenViTConfig = field(default_factory=_default_encoder)
    """Student encoder: a PTv3 with ``enc_mode=True`` and ``mask_token=True``, or a token ViT
    with ``mask_token=True`` (its token features reach the points by parameter-free
    interpolation, :class:`nufm.models.base.PointFeatures`)."""
    views: ViewConfig = field(default_factory=ViewConfig)
    """View crops and augmentation."""
    head_hidden: int = 4096
    """Hidden width of the prototype-head MLP."""
    head_bottleneck: int = 256
    """Width of the L2-normalised embedding compared with the prototypes."""
    num_prototypes: int = 4096
    """Number of prototypes P."""
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    """Teacher temperature at progress 0 and after the warm-up."""
    student_temp: float = 0.1
    """Student temperature."""
    sinkhorn_iters: int = 3
    """Sinkhorn-Knopp rounds on the teacher logits."""
    mask_size: tuple[float, float] = (0.01, 0.075)
    """Mask cell side (normalised units) at progress 0 and after the warm-up."""
    mask_ratio: tuple[float, float] = (0.5, 0.9)
    """Fraction of hidden cells at progress 0 and after the warm-up."""
    schedule_warmup: float = 0.05
    """Fraction of training over which temperature and masking warm up."""
    mask_jitter: float = 0.0005
    """Std of the coordinate jitter of hidden points (clipped at 2 std), normalised units."""
    match_max_r: float = 0.002
    """Largest original-coordinate distance of a matched pair (normalised units)."""
    mask_weight: float = 0.25
    """Weight of the mask loss."""
    roll_mask_weight: float = 0.25
    """Weight of the roll-mask loss (needs num_global >= 2; ignored otherwise)."""
    unmask_weight: float = 0.5
    """Weight of the unmask (local -> global) loss (ignored when num_local == 0)."""
    descriptor_weight: float = 0.0
    """Weight of the descriptor term (0 = off, Sonata/Panda)."""
    descriptor_ks: tuple[int, ...] = (8, 32, 128, 512)
    """Neighbourhood sizes (points) of the descriptors the unmasked global-view points predict
    (6 per size; computed once per event by the data pipeline, else in the step)."""

    def __post_init__(self) -> None:
        match self.encoder:
            case PTv3Config() if not (self.encoder.enc_mode and self.encoder.mask_token):
                raise ValueError(
                    "DistillConfig: a PTv3 encoder needs enc_mode=True and mask_token=True"
                )
            case TokenViTConfig() if not self.encoder.mask_token:
                raise ValueError("DistillConfig: a token-ViT encoder needs mask_token=True")
        if min(self.teacher_temp) <= 0:
            raise ValueError(f"DistillConfig: teacher_temp must be > 0, got {self.teacher_temp}")
        if self.student_temp <= 0:
            raise ValueError(f"DistillConfig: student_temp must be > 0, got {self.student_temp}")
        if not all(0.0 <= r < 1.0 for r in self.mask_ratio):
            raise ValueError(f"DistillConfig: mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if not all(s > 0 for s in self.mask_size):
            raise ValueError(f"DistillConfig: mask_size must be > 0, got {self.mask_size}")
        if not 0.0 < self.schedule_warmup <= 1.0:
            raise ValueError(
                f"DistillConfig: schedule_warmup must be in (0, 1], got {self.schedule_warmup}"
            )
        check_descriptor_term("DistillConfig", self.descriptor_weight, self.descriptor_ks)


class PrototypeHead(nn.Module):
    """Sonata ``OnlineCluster``: Linear -> GELU -> Linear -> L2 norm -> cosine similarity to P
    unit-norm prototypes (a weight-normalised linear layer with its norm fixed to 1)."""

    def __init__(self, in_dim: int, hidden: int, bottleneck: int, num_prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, bottleneck))
        nn.init.normal_(self.prototypes, std=1.0)

    def embed(self, x: Tensor) -> Tensor:
        """x (M, D) -> (M, bottleneck) unit vectors."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """x (M, D) -> (M, P) cosine logits in [-1, 1]."""
        return self.embed(x) @ F.normalize(self.prototypes, dim=-1).t()


def _per_event_mean(values: Tensor, event: Tensor, num_events: int) -> Tensor:
    """Mean of (M,) values per event, then over events that have at least one value."""
    sums = values.new_zeros(num_events).index_add_(0, event, values)
    counts = values.new_zeros(num_events).index_add_(0, event, torch.ones_like(values))
    has = counts > 0
    if not bool(has.any()):
        return values.sum() * 0.0
    return (sums[has] / counts[has]).mean()


def _cosine_warmup(start: float, end: float, progress: float, warmup: float) -> float:
    t = min(max(progress / warmup, 0.0), 1.0)
    return start + (end - start) * 0.5 * (1.0 - math.cos(math.pi * t))


class SelfDistillation(nn.Module):
    """Sonata/Panda objective; ``forward(batch) -> StepOutput`` (see the module docstring)."""

    def __init__(self, cfg: DistillConfig, encoder: Encoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else build_encoder(cfg.encoder)
        self.to_points = PointFeatures()
        D = self.encoder.out_dim
        args = (D, cfg.head_hidden, cfg.head_bottleneck, cfg.num_prototypes)
        self.mask_head = PrototypeHead(*args)
        self.unmask_head = PrototypeHead(*args)
        self.teacher_encoder = make_teacher(self.encoder)
        self.teacher_mask_head = make_teacher(self.mask_head)
        self.teacher_unmask_head = make_teacher(self.unmask_head)
        self.descriptor_head: nn.Linear | None = None
        self.descriptor_norm: nn.BatchNorm1d | None = None
        if cfg.descriptor_weight > 0:
            self.descriptor_head, self.descriptor_norm = descriptor_modules(D, cfg.descriptor_ks)
        self.progress = 0.0

    @property
    def descriptor_ks(self) -> tuple[int, ...]:
        """Sizes of the descriptors the data pipeline should attach (() = none wanted)."""
        return self.cfg.descriptor_ks if self.descriptor_head is not None else ()

    def descriptor_loss(self, batch: PointBatch, feat: Tensor, rows: Tensor) -> Tensor:
        """MSE of the descriptor term.

        Args:
            batch: the packed source events, with the pipeline's descriptors (else computed).
            feat: (M, D) student features of view points.
            rows: (M,) int64 their rows in ``batch``.
        """
        assert self.descriptor_head is not None and self.descriptor_norm is not None
        with torch.no_grad():
            d = batch_descriptors(batch, self.cfg.descriptor_ks).float()  # (N, C)
        return descriptor_mse(self.descriptor_head, self.descriptor_norm, feat, d[rows])

    # ----------------------------------------------------------------------------- schedules

    def _teachers(self) -> tuple[nn.Module, ...]:
        return (self.teacher_encoder, self.teacher_mask_head, self.teacher_unmask_head)

    def train(self, mode: bool = True) -> SelfDistillation:
        """Set train/eval mode; the teachers always stay in eval mode (no drop-path)."""
        super().train(mode)
        for t in self._teachers():
            t.eval()
        return self

    def set_schedule(self, progress: float) -> None:
        """Training progress in [0, 1]; sets the teacher temperature and the masking."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(
                f"SelfDistillation.set_schedule: progress must be in [0, 1], got {progress}"
            )
        self.progress = float(progress)

    @property
    def teacher_temp(self) -> float:
        """Current teacher temperature (linear warm-up, then constant)."""
        lo, hi = self.cfg.teacher_temp
        t = min(self.progress / self.cfg.schedule_warmup, 1.0)
        return lo + (hi - lo) * t

    @property
    def mask_size(self) -> float:
        """Current mask cell side (cosine warm-up, then constant)."""
        return _cosine_warmup(*self.cfg.mask_size, self.progress, self.cfg.schedule_warmup)

    @property
    def mask_ratio(self) -> float:
        """Current fraction of hidden cells (cosine warm-up, then constant)."""
        return _cosine_warmup(*self.cfg.mask_ratio, self.progress, self.cfg.schedule_warmup)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step of the teacher encoder and heads (called by the loop after each step)."""
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_mask_head, self.mask_head, momentum)
        ema_update(self.teacher_unmask_head, self.unmask_head, momentum)

    # ----------------------------------------------------------------------------- forward

    def forward(self, batch: PointBatch) -> StepOutput:
        cfg = self.cfg
        B = batch.num_events
        gv, lv = make_views(batch, cfg.views)
        Vg, Vl = gv.num_views, lv.num_views
        g = gv.batch
        is_masked = grid_mask(g.coord, g.offset, self.mask_size, self.mask_ratio)  # (Ng,)
        jitter = (torch.randn_like(g.coord) * cfg.mask_jitter).clamp(max=2 * cfg.mask_jitter)
        student_g = dataclasses.replace(
            g, coord=torch.where(is_masked[:, None], g.coord + jitter, g.coord)
        )
        s_global = self.to_points(
            self.encoder(student_g, is_masked=is_masked), student_g
        )  # (Ng, D)
        with torch.no_grad():
            t_global = self.to_points(self.teacher_encoder(g), g)  # (Ng, D)
            t_mask_logits = self.teacher_mask_head(t_global)  # (Ng, P)
            q_mask = sinkhorn_knopp(t_mask_logits, self.teacher_temp, cfg.sinkhorn_iters)
        g_event = gv.event[offset_to_batch_index(g.offset)]  # (Ng,) source event
        s_mask_logits = self.mask_head(s_global)  # (Ng, P)
        tau_s = cfg.student_temp
        ce_mask = soft_cross_entropy(s_mask_logits, q_mask, tau_s)  # (Ng,)
        mask_loss = _per_event_mean(ce_mask, g_event, B)
        loss = cfg.mask_weight * mask_loss
        metrics: dict[str, Tensor] = {"mask": mask_loss.detach()}

        if self.descriptor_head is not None:
            seen = ~is_masked  # (Ng,) the points whose own neighbourhood the student sees
            if int(seen.sum()) > 1:  # batch statistics need two rows
                descriptor = self.descriptor_loss(batch, s_global[seen], gv.rows[seen])
            else:  # keep the head in the graph (DDP)
                descriptor = 0.0 * self.descriptor_head(s_global[:1]).float().sum()
            loss = loss + cfg.descriptor_weight * descriptor
            metrics["descriptor"] = descriptor.detach()

        if Vg >= 2 and cfg.roll_mask_weight > 0:
            view = torch.arange(B * Vg, device=g.offset.device)
            rolled = view - view % Vg + (view % Vg + 1) % Vg  # (B Vg,) teacher view per view
            qr, sr = match_points(gv.origin, g.offset, gv.origin, g.offset, rolled, cfg.match_max_r)
            ce_roll = soft_cross_entropy(s_mask_logits[qr], q_mask[sr], tau_s)  # (pairs,)
            roll_loss = _per_event_mean(ce_roll, g_event[qr], B)
            loss = loss + cfg.roll_mask_weight * roll_loss
            metrics["roll_mask"] = roll_loss.detach()
            metrics["roll_matched"] = qr.new_tensor(
                qr.numel() / max(g.num_points, 1), dtype=torch.float32
            )

        if Vl >= 1 and cfg.unmask_weight > 0:
            s_local = self.to_points(self.encoder(lv.batch), lv.batch)  # (Nl, D)
            with torch.no_grad():
                q_unmask = sinkhorn_knopp(
                    self.teacher_unmask_head(t_global), self.teacher_temp, cfg.sinkhorn_iters
                )  # (Ng, P)
            major = lv.event * Vg  # (B Vl,) global pseudo-event 0 of the same event
            ql, sg = match_points(
                lv.origin, lv.batch.offset, gv.origin, g.offset, major, cfg.match_max_r
            )
            s_unmask_logits = self.unmask_head(s_local[ql])  # (pairs, P)
            ce_unmask = soft_cross_entropy(s_unmask_logits, q_unmask[sg], tau_s)
            l_event = lv.event[offset_to_batch_index(lv.batch.offset)]  # (Nl,)
            unmask_loss = _per_event_mean(ce_unmask, l_event[ql], B)
            if ql.numel() == 0:  # keep every head parameter in the graph
                unmask_loss = unmask_loss + 0.0 * self.unmask_head(s_local[:1]).sum()
            loss = loss + cfg.unmask_weight * unmask_loss
            metrics["unmask"] = unmask_loss.detach()

        with torch.no_grad():
            h_teacher = entropy(q_mask)  # (Ng,)
            metrics["teacher_entropy"] = h_teacher.mean()
            metrics["proto_entropy"] = entropy(q_mask.mean(0))
            metrics["kl"] = (ce_mask - h_teacher).mean()
            z = F.normalize(s_global.float(), dim=-1)
            metrics["feat_std"] = z.std(0).mean() * math.sqrt(z.shape[1])
            metrics["mask_fraction"] = is_masked.float().mean()
            metrics["teacher_temp"] = torch.tensor(self.teacher_temp, device=loss.device)
        return StepOutput(loss=loss, metrics=metrics)


__all__ = ["DistillConfig", "PrototypeHead", "SelfDistillation"]
