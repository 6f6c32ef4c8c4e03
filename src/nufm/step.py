"""The result of one objective forward: a scalar loss plus named metrics.

Every objective (``nufm.ssl``) and task (``nufm.tasks``) is an ``nn.Module`` whose
``forward(batch: PointBatch) -> StepOutput``. The training loop (:mod:`nufm.train.loop`)
backpropagates ``loss`` and logs ``metrics``; it never looks inside the module otherwise,
except for the optional ``update_teacher(momentum: float)`` EMA step (DINO, arXiv:2104.14294).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class StepOutput:
    """What an objective returns for one micro-batch.

    Attributes:
        loss: () float scalar to minimise (already averaged over the batch).
        metrics: name -> () scalar tensor, logged (averaged over the logging window and, under
            DDP, over ranks). Detach them; the loop does not backpropagate through metrics.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
