"""Per-point semantic segmentation (shower, track, Michel, delta, low-energy) as a fine-tuning
task, following PoLAr-MAE (arXiv:2502.02558) and Panda (arXiv:2512.01324); see docs/references.md.

Loss: class-weighted cross-entropy, or the softmax focal loss (Lin et al., arXiv:1708.02002)
with gamma 2 and alpha = inverse-frequency class weights as in PoLAr-MAE, for the rare Michel
(0.65 % of points) and delta (1.8 %) classes. Both are weighted means:
``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over non-ignored points, so focal with gamma 0 equals
``F.cross_entropy(weight=w)``; this normalisation makes the weights' overall scale irrelevant.

Owns :class:`SemsegConfig`, :class:`SemanticSegmentation`, :func:`focal_loss`,
:func:`inverse_frequency_weights` and :data:`PILARNET_SEGMENT_COUNTS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.step import StepOutput
from nufm.tasks.backbone import TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.heads import event_mean_max, mlp, mlp_with_event_context

PILARNET_SEGMENT_COUNTS: tuple[int, ...] = (
    1_926_651_899,
    2_038_240_940,
    34_083_197,
    92_015_482,
    1_145_363_125,
)
"""Points per class (shower, track, Michel, delta, LED) in PILArNet-M v1 (arXiv:2502.02558;
counts released with its code, docs/references.md)."""


def inverse_frequency_weights(counts: Sequence[float]) -> tuple[float, ...]:
    """PoLAr-MAE class weights ``sum(counts) / counts[c]``; a class with no points gets 0."""
    total = float(sum(counts))
    return tuple(total / float(c) if c > 0 else 0.0 for c in counts)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    ignore_index: int = -1,
) -> Tensor:
    """Weighted-mean softmax focal loss.

    ``l_i = -w_{y_i} (1 - p_i)^gamma log p_i``, averaged as ``sum l_i / sum w_{y_i}`` over
    points whose target is not ``ignore_index`` (0 when there are none).

    Args:
        logits: (N, C) float.
        target: (N,) int64 class ids or ``ignore_index``.
        gamma: focusing exponent (0 = weighted cross-entropy).
        weight: (C,) class weights alpha, or None for 1.
    """
    is_kept = target != ignore_index  # (N,)
    logits, target = logits[is_kept], target[is_kept]
    if target.numel() == 0:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None])[:, 0]  # (N',)
    w = weight[target] if weight is not None else torch.ones_like(logp)  # (N',)
    modulation = (1.0 - logp.exp()).clamp(min=0.0).pow(gamma) if gamma != 0 else 1.0
    return -(w * modulation * logp).sum() / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


@dataclass(frozen=True, kw_only=True)
class SemsegConfig(TaskBaseConfig):
    """Per-point semantic segmentation."""

    name: Literal["semseg"] = "semseg"
    """Discriminator of the task-config union (fixed)."""
    num_classes: int = 5
    """C: 5 with low-energy deposits, 4 when they are removed (``Preprocess.remove_low_energy``)."""
    loss: Literal["ce", "focal"] = "focal"
    """Class-weighted cross-entropy or softmax focal loss."""
    focal_gamma: float = 2.0
    """Focusing exponent of the focal loss."""
    class_weighting: Literal["none", "pilarnet", "pilarnet-sqrt", "custom"] = "pilarnet"
    """Class weights: none (all 1), inverse PILArNet-M v1 frequencies of the first C classes
    (PoLAr-MAE), their square roots (milder: Michel 7.5x track instead of 60x), or
    ``class_weights``."""
    class_weights: tuple[float, ...] = ()
    """C weights, used when class_weighting is custom (see :func:`inverse_frequency_weights`)."""
    use_global: bool = True
    """Non-linear modes: concatenate the event's mean+max point features to every point (as
    PoLAr-MAE's global token features)."""
    ignore_index: int = -1
    """Segment label skipped by the loss and the metrics."""
    labels: Literal["segment", "noise"] = "segment"
    """Per-point target: the segment label, or noise tagging (class 1 = points whose
    interaction id is -1, e.g. the collider TPC's noise hits and loopers; num_classes 2)."""
    class_names: tuple[str, ...] = ()
    """Names for the reports (empty: the detector's segment names, ``signal``/``noise`` for
    noise tagging)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 2:
            raise ValueError(f"SemsegConfig.num_classes must be >= 2, got {self.num_classes}")
        if self.class_weighting in ("pilarnet", "pilarnet-sqrt") and self.num_classes > len(
            PILARNET_SEGMENT_COUNTS
        ):
            raise ValueError(
                f"SemsegConfig: class_weighting='pilarnet' knows 5 classes, "
                f"num_classes is {self.num_classes}; use 'custom' or 'none'"
            )
        if self.class_weighting == "custom" and len(self.class_weights) != self.num_classes:
            raise ValueError(
                f"SemsegConfig.class_weights needs {self.num_classes} entries for "
                f"class_weighting='custom', got {self.class_weights}"
            )
        if min(self.class_weights, default=0.0) < 0:
            raise ValueError(f"SemsegConfig.class_weights must be >= 0: {self.class_weights}")
        if self.labels == "noise" and self.num_classes != 2:
            raise ValueError(f"SemsegConfig: noise tagging has 2 classes, not {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"SemsegConfig: {len(self.class_names)} class_names for {self.num_classes} classes"
            )
        if self.loss not in ("ce", "focal") or self.focal_gamma < 0:
            raise ValueError(
                f"SemsegConfig: loss must be ce|focal and focal_gamma >= 0, got "
                f"{self.loss!r}, {self.focal_gamma}"
            )

    @property
    def weights(self) -> tuple[float, ...]:
        """The C class weights the loss uses."""
        match self.class_weighting:
            case "none":
                return (1.0,) * self.num_classes
            case "pilarnet":
                return inverse_frequency_weights(PILARNET_SEGMENT_COUNTS[: self.num_classes])
            case "pilarnet-sqrt":
                return tuple(
                    w**0.5
                    for w in inverse_frequency_weights(PILARNET_SEGMENT_COUNTS[: self.num_classes])
                )
            case "custom":
                return self.class_weights
            case _:
                raise ValueError(
                    f"SemsegConfig.class_weighting={self.class_weighting!r} is not "
                    "one of none, pilarnet, pilarnet-sqrt, custom"
                )


def _zero_offset_if_missing(
    module: nn.Module, state: dict[str, Tensor], prefix: str, *args: object
) -> None:
    """A state saved before ``class_offset`` existed loads with zero offsets (argmax as then)."""
    key = prefix + "class_offset"
    if key not in state:
        state[key] = torch.zeros_like(cast(Tensor, module.class_offset))


class SemanticSegmentation(TaskModule[SemsegConfig]):
    """Encoder -> per-point features -> per-point class logits (N, C)."""

    class_weight: Tensor  # (C,) buffer
    class_offset: Tensor  # (C,) saved buffer: added to the logits before the argmax

    def __init__(self, cfg: SemsegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TaskBackbone(cfg)
        D = self.backbone.out_dim
        self.use_global = cfg.use_global and cfg.mode != "linear"
        if cfg.mode == "linear":
            self.head: nn.Module = nn.Linear(D, cfg.num_classes)
        else:
            in_dim = 3 * D if self.use_global else D
            self.head = mlp(in_dim, cfg.head_hidden, cfg.num_classes, cfg.dropout)
        self.register_buffer(
            "class_weight", torch.tensor(cfg.weights, dtype=torch.float32), persistent=False
        )
        # decision offsets fitted on val events after training (nufm.eval.calibration); zero
        # until then, and in a state saved before they existed
        self.register_buffer("class_offset", torch.zeros(cfg.num_classes))
        self.register_load_state_dict_pre_hook(_zero_offset_if_missing)

    def logits(self, batch: PointBatch) -> Tensor:
        """(N, C) per-point class scores."""
        x = self.backbone(batch)  # (N, D)
        if not self.use_global:
            return self.head(x)
        assert isinstance(self.head, nn.Sequential)  # an mlp() where use_global
        pooled = event_mean_max(x, batch.offset)  # (B, 2D)
        # = head(cat([x, pooled[batch_index]])) without the (N, 3D) input
        return mlp_with_event_context(self.head, x, pooled, batch.offset)  # (N, C)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of (N, C) logits against (N,) segment labels."""
        weight = self.class_weight.to(logits.device)
        match self.cfg.loss:
            case "ce":
                gamma = 0.0
            case "focal":
                gamma = self.cfg.focal_gamma
            case _:
                raise ValueError(f"SemsegConfig.loss={self.cfg.loss!r} is not ce or focal")
        return focal_loss(
            logits, target, gamma=gamma, weight=weight, ignore_index=self.cfg.ignore_index
        )

    def _target(self, batch: PointBatch) -> Tensor:
        if self.cfg.labels == "noise":
            if batch.interaction is None:
                raise ValueError("semseg: noise tagging needs interaction ids (-1 = noise)")
            return (batch.interaction == -1).long()
        if batch.segment is None:
            raise ValueError("semseg: the batch has no segment labels")
        bad = (batch.segment >= self.cfg.num_classes) | (batch.segment < self.cfg.ignore_index)
        if bool(bad.any()):
            raise ValueError(
                f"semseg: segment labels outside [0, {self.cfg.num_classes}) or "
                f"{self.cfg.ignore_index}: {batch.segment[bad].unique().tolist()} "
                f"(set num_classes=5 or Preprocess.remove_low_energy)"
            )
        return batch.segment

    def forward(self, batch: PointBatch) -> StepOutput:
        target = self._target(batch)
        logits = self.logits(batch)  # (N, C)
        loss = self.loss(logits, target)
        is_kept = target != self.cfg.ignore_index
        acc = (
            (logits.argmax(1)[is_kept] == target[is_kept]).float().mean()
            if bool(is_kept.any())
            else logits.new_zeros(())
        )
        return StepOutput(loss=loss, metrics={"loss": loss.detach(), "acc": acc.detach()})

    @torch.no_grad()
    def predict(self, batch: PointBatch) -> dict[str, Tensor]:
        """``logits`` (N, C), ``pred`` (N,) int64 class ids (argmax of the logits plus
        ``class_offset``); ``target`` (N,) when labelled."""
        logits = self.logits(batch)
        out = {"logits": logits, "pred": (logits + self.class_offset.to(logits.dtype)).argmax(1)}
        labelled = batch.interaction if self.cfg.labels == "noise" else batch.segment
        if labelled is not None:
            out["target"] = self._target(batch)
        return out
