"""The objective contract: what the training loop, the optimizer and the monitor may call.

Every objective (``nufm.ssl``) and task (``nufm.tasks``) is an ``nn.Module`` whose
``forward(batch: PointBatch) -> StepOutput`` (:class:`Objective`). The training loop
(:mod:`nufm.train.loop`) backpropagates ``loss`` and logs ``metrics``. Three optional parts are
declared here as runtime-checkable protocols, so the loop asks ``isinstance(objective,
HasTeacher)`` instead of probing for attribute names:

* :class:`HasTeacher`: ``update_teacher(momentum)``, the EMA step after each optimizer step
  (DINO, arXiv:2104.14294);
* :class:`HasSchedule`: ``set_schedule(progress)``, training progress in [0, 1] before each
  step's forward (teacher temperature, mask size);
* :class:`HasParamLRScale`: ``param_lr_scale(name)``, per-parameter learning-rate multipliers
  (fine-tuning tasks scale the encoder down).

A pretraining objective also owns its online encoder as the submodule ``encoder``
(:func:`online_encoder`), which the representation monitor probes and the loader returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from nufm.batch import PointBatch


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


class Objective(Protocol):
    """An ``nn.Module`` trained by :func:`nufm.train.loop.train`."""

    def forward(self, batch: PointBatch) -> StepOutput: ...


@runtime_checkable
class HasTeacher(Protocol):
    """An objective with an EMA teacher."""

    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student``, after the optimizer
        step (momentum from the run's schedule)."""
        ...


@runtime_checkable
class HasSchedule(Protocol):
    """An objective with its own schedules (teacher temperature, mask size, ...)."""

    def set_schedule(self, progress: float) -> None:
        """Set the schedules for ``progress = step / (max_steps - 1)`` in [0, 1]."""
        ...


@runtime_checkable
class HasParamLRScale(Protocol):
    """A module with per-parameter learning-rate multipliers."""

    def param_lr_scale(self, name: str) -> float:
        """Multiplier (> 0) of the learning rate of parameter ``name`` (as in
        ``named_parameters``)."""
        ...


@runtime_checkable
class HasEventGrouper(Protocol):
    """An objective whose per-event neighbourhoods (token groups, context targets) the data
    pipeline computes once per event, so that a training step runs only the network."""

    def event_grouper(self, cache: bool = True, detector: str | None = None) -> Any:
        """The transform ``(event, rng) -> event`` that attaches those groups
        (``nufm.models.tokenizers.EventGrouper``); ``cache`` = reuse them across epochs;
        ``detector`` = the input embedding of that detector's events (None: the model's
        first)."""
        ...


@runtime_checkable
class WantsDescriptors(Protocol):
    """An objective that reads per-point local-shape descriptors, which the data pipeline
    computes once per event (``nufm.models.geometric.EventDescriptors``)."""

    @property
    def descriptor_ks(self) -> tuple[int, ...]:
        """The neighbourhood sizes of the descriptors it reads; () = none."""
        ...


def online_encoder(objective: nn.Module) -> nn.Module:
    """The online encoder of a pretraining objective: its submodule ``encoder``.

    Raises:
        AttributeError: the module has none (a fine-tuned task keeps its encoder at
            ``backbone.encoder``).
    """
    try:
        return objective.get_submodule("encoder")
    except AttributeError as e:
        raise AttributeError(
            f"{type(objective).__name__} has no online encoder (submodule 'encoder')"
        ) from e
