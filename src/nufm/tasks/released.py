"""A released segmentation model of the field scored as a nufm semantic-segmentation task, so
``nufm evaluate`` and :func:`nufm.eval.tasks.evaluate_task` take it (inference only).

Owns :class:`ReleasedSegmentation`. Panda-Semantic needs no wrapper: its backbone and linear
``seg_head`` are a nufm linear-mode semseg task (:func:`nufm.workflows.load.load_task`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.offsets import offset_to_counts, pad, unpad
from nufm.models.released.polarmae_semantic import PolarMAESegmentor
from nufm.tasks.semseg import SemanticSegmentation, SemsegConfig


class ReleasedSegmentation(SemanticSegmentation):
    """PoLAr-MAE-Semantic behind the :class:`SemanticSegmentation` interface (``logits``,
    ``predict``); events are padded per batch as the reference does."""

    def __init__(self, cfg: SemsegConfig, model: PolarMAESegmentor) -> None:
        nn.Module.__init__(self)  # no nufm backbone or head: the released model is both
        self.cfg = cfg
        self.model = model
        self.use_global = False
        self.register_buffer("class_weight", torch.ones(cfg.num_classes), persistent=False)
        # the released model's own decisions: plain argmax, no offsets in its state
        self.register_buffer("class_offset", torch.zeros(cfg.num_classes), persistent=False)

    def logits(self, batch: PointBatch) -> Tensor:
        """(N, C) per-point class scores of the packed batch."""
        points, valid = pad(batch.feat, batch.offset)  # (B, N_max, C)
        out = self.model(points, offset_to_counts(batch.offset))  # (B, N_max, K)
        return unpad(out, valid)  # (N, K)
