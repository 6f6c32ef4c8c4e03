"""Joint multi-task event heads: flavour and charm classification, lepton and jet momentum and
vertex regression, trained together on one pooled event representation (the FASERCal
fine-tuning, arXiv:2604.07037: the pretraining decoder is discarded and light heads sit on
the fused latents; docs/references.md).

The pooled representation is the mean and max of the encoder's fused latents (a latent-level
encoder such as :class:`nufm.models.stream_fusion.StreamFusionEncoder`) or of its per-point
features (any other encoder). Targets come from the event truth that
:func:`nufm.data.collate.collate` packs into ``PointBatch.targets`` (FASERCal:
:data:`nufm.data.fasercal_h5.TRUTH_NAMES`): ``flavour``, ``charm``, ``is_cc``,
``lepton_p{x,y,z}`` and ``jet_p{x,y,z}`` (GeV/c), ``vertex_{x,y,z}`` (cm). A momentum is
modelled as its log magnitude (standardised by ``log_p_shift`` / ``log_p_scale``, Huber loss)
and its direction (1 - cosine); the lepton terms count for CC events only. The vertex is
modelled in units of ``vertex_scale`` cm (Huber loss).

Owns :class:`MultiTaskConfig` and :class:`MultiTask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.data.fasercal import CHARM_NAMES, FLAVOUR_NAMES
from nufm.step import StepOutput
from nufm.tasks.backbone import TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.event_task import stack_targets
from nufm.tasks.heads import event_mean_max, mlp

_AXES = ("x", "y", "z")


@dataclass(frozen=True, kw_only=True)
class MultiTaskConfig(TaskBaseConfig):
    """Flavour, charm, momenta and vertex heads trained jointly (loss: the weighted sum)."""

    name: Literal["multitask"] = "multitask"
    """Discriminator of the task-config union (fixed)."""
    flavour_names: tuple[str, ...] = FLAVOUR_NAMES
    """Flavour classes (``targets['flavour']`` holds the index)."""
    charm_names: tuple[str, ...] = CHARM_NAMES
    """Charm classes (``targets['charm']`` holds the index)."""
    flavour_weight: float = 1.0
    charm_weight: float = 1.0
    momentum_weight: float = 1.0
    vertex_weight: float = 1.0
    log_p_shift: float = 4.0
    """ln(GeV/c) subtracted from log momenta (about 55 GeV/c)."""
    log_p_scale: float = 1.5
    """Divides the shifted log momenta."""
    vertex_scale: float = 100.0
    """cm per unit of the modelled vertex coordinates."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.flavour_names) < 2 or len(self.charm_names) < 2:
            raise ValueError("MultiTaskConfig: flavour and charm need at least two classes each")
        weights = (self.flavour_weight, self.charm_weight, self.momentum_weight, self.vertex_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"MultiTaskConfig: task weights {weights} must be >= 0, not all 0")
        if self.log_p_scale <= 0 or self.vertex_scale <= 0:
            raise ValueError("MultiTaskConfig: log_p_scale and vertex_scale must be > 0")


def _momentum_terms(out: Tensor, p: Tensor, cfg: MultiTaskConfig) -> tuple[Tensor, Tensor]:
    """Per-event losses of a (B, 4) momentum head (standardised log|p|, direction) against true
    momenta p (B, 3) GeV/c: (B,) Huber on log|p|, (B,) 1 - cosine."""
    mag = p.norm(dim=1).clamp(min=1e-3)  # (B,)
    z = (mag.log() - cfg.log_p_shift) / cfg.log_p_scale
    log_term = F.huber_loss(out[:, 0], z, delta=1.0, reduction="none")
    cos = F.cosine_similarity(out[:, 1:4], p, dim=1, eps=1e-6)
    return log_term, 1.0 - cos


class MultiTask(TaskModule[MultiTaskConfig]):
    """Encoder -> pooled event vector -> flavour, charm, lepton / jet momentum, vertex."""

    def __init__(self, cfg: MultiTaskConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TaskBackbone(cfg)
        D = 2 * self.backbone.out_dim  # mean and max

        def head(out: int) -> nn.Module:
            if cfg.mode == "linear":
                return nn.Linear(D, out)
            return mlp(D, cfg.head_hidden, out, cfg.dropout)

        self.flavour_head = head(len(cfg.flavour_names))
        self.charm_head = head(len(cfg.charm_names))
        self.momentum_head = head(8)  # lepton (log|p|, direction), jet (log|p|, direction)
        self.vertex_head = head(3)

    def pooled(self, batch: PointBatch) -> Tensor:
        """(B, 2D) mean and max of the fused latents, or of the per-point features."""
        out = self.backbone.encode(batch)
        if out.level == "latent":
            return torch.cat([out.feat.mean(1), out.feat.amax(1)], dim=1)  # (B, 2D)
        x = self.backbone(batch)  # (N, D)
        return event_mean_max(x, batch.offset)  # (B, 2D)

    def _target(self, batch: PointBatch, names: list[str]) -> Tensor:
        return stack_targets(batch, names, "multitask", "FASERCal events carry them in their truth")

    def targets(self, batch: PointBatch) -> dict[str, Tensor]:
        """Flavour, charm (B,) int64; is_cc (B,) bool; lepton_p, jet_p (B, 3) GeV/c;
        vertex (B, 3) cm."""
        return {
            "flavour": self._target(batch, ["flavour"])[:, 0].round().long(),
            "charm": self._target(batch, ["charm"])[:, 0].round().long(),
            "is_cc": self._target(batch, ["is_cc"])[:, 0] > 0.5,
            "lepton_p": self._target(batch, [f"lepton_p{a}" for a in _AXES]),
            "jet_p": self._target(batch, [f"jet_p{a}" for a in _AXES]),
            "vertex": self._target(batch, [f"vertex_{a}" for a in _AXES]),
        }

    def outputs(self, batch: PointBatch) -> dict[str, Tensor]:
        z = self.pooled(batch)
        return {
            "flavour": self.flavour_head(z),  # (B, F)
            "charm": self.charm_head(z),  # (B, C)
            "momentum": self.momentum_head(z),  # (B, 8)
            "vertex": self.vertex_head(z),  # (B, 3), units of vertex_scale
        }

    def forward(self, batch: PointBatch) -> StepOutput:
        cfg = self.cfg
        out = self.outputs(batch)
        t = self.targets(batch)
        flavour = F.cross_entropy(out["flavour"], t["flavour"])
        charm = F.cross_entropy(out["charm"], t["charm"])
        lep_log, lep_dir = _momentum_terms(out["momentum"][:, :4], t["lepton_p"], cfg)
        jet_log, jet_dir = _momentum_terms(out["momentum"][:, 4:], t["jet_p"], cfg)
        cc = t["is_cc"].float()
        lepton = ((lep_log + lep_dir) * cc).sum() / cc.sum().clamp(min=1.0)
        momentum = lepton + (jet_log + jet_dir).mean()
        vertex = F.huber_loss(out["vertex"], t["vertex"] / cfg.vertex_scale, delta=1.0)
        loss = (
            cfg.flavour_weight * flavour
            + cfg.charm_weight * charm
            + cfg.momentum_weight * momentum
            + cfg.vertex_weight * vertex
        )
        with torch.no_grad():
            acc = (out["flavour"].argmax(1) == t["flavour"]).float().mean()
            err = ((out["vertex"] * cfg.vertex_scale - t["vertex"]).norm(dim=1)).mean()
        return StepOutput(
            loss=loss,
            metrics={
                "loss": loss.detach(),
                "flavour": flavour.detach(),
                "charm": charm.detach(),
                "momentum": momentum.detach(),
                "vertex": vertex.detach(),
                "flavour_acc": acc,
                "vertex_err_cm": err,
            },
        )

    @torch.no_grad()
    def predict(self, batch: PointBatch) -> dict[str, Tensor]:
        """``flavour_logits`` (B, F), ``charm_logits`` (B, C), ``lepton_p`` / ``jet_p``
        (B, 3) GeV/c, ``vertex`` (B, 3) cm; with ``target_<name>`` for each when the batch
        carries the truth."""
        cfg = self.cfg
        out = self.outputs(batch)
        res = {"flavour_logits": out["flavour"], "charm_logits": out["charm"]}
        for name, sl in (("lepton_p", slice(0, 4)), ("jet_p", slice(4, 8))):
            m = out["momentum"][:, sl]
            mag = (m[:, 0] * cfg.log_p_scale + cfg.log_p_shift).exp()  # (B,)
            res[name] = F.normalize(m[:, 1:4], dim=1) * mag[:, None]
        res["vertex"] = out["vertex"] * cfg.vertex_scale
        if "flavour" in batch.targets:
            res.update({f"target_{k}": v for k, v in self.targets(batch).items()})
        return res
