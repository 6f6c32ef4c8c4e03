"""A tiny self-distillation-plus-reconstruction objective for testing the training engine.

It exercises everything the loop must handle without depending on the real encoders: torch
randomness in the forward (random point masking, as in MAE arXiv:2111.06377), an EMA teacher
updated through ``update_teacher(momentum)`` (DINO arXiv:2104.14294), a learned token and a
LayerNorm (weight-decay exclusion) and per-event pooling over packed points. It is not a model
of anything. This file also owns :func:`toy_events` (deterministic small events).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.data.event import Event
from nufm.step import StepOutput


@dataclass(frozen=True, kw_only=True)
class ToyObjectiveConfig:
    """Configuration of :class:`ToyObjective` (tests and smoke runs only)."""

    name: Literal["toy"] = "toy"
    """Discriminator of the objective union in ``RunConfig`` (fixed)."""
    in_channels: int = 1
    """Feature channels C of the input batch (``feat`` width; 1 = energy only)."""
    hidden: int = 16
    """Width D of the per-point MLP."""
    mask_ratio: float = 0.5
    """Fraction of points the student does not see (drawn from the torch RNG each step)."""
    use_teacher: bool = True
    """True = add the EMA-teacher distillation term and expose ``update_teacher``."""

    def __post_init__(self) -> None:
        if self.in_channels <= 0:
            raise ValueError(f"objective.in_channels must be positive, got {self.in_channels}")
        if self.hidden <= 0:
            raise ValueError(f"objective.hidden must be positive, got {self.hidden}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"objective.mask_ratio must be in [0, 1), got {self.mask_ratio}")


class _PointMLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, hidden)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ToyObjective(nn.Module):
    """Student MLP on coord+feat with random point masking; losses: per-point feature
    reconstruction of hidden points, plus MSE between student and EMA-teacher event embeddings.
    """

    def __init__(self, cfg: ToyObjectiveConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = _PointMLP(3 + cfg.in_channels, cfg.hidden)
        self.mask_token = nn.Parameter(torch.zeros(cfg.in_channels))
        self.head = nn.Linear(cfg.hidden, cfg.in_channels)
        self.teacher = copy.deepcopy(self.student) if cfg.use_teacher else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)

    def _pool(self, h: Tensor, batch: PointBatch) -> Tensor:
        B = batch.num_events
        idx = batch.batch_index  # (N,)
        summed = h.new_zeros(B, h.shape[1]).index_add_(0, idx, h)  # (B, D)
        return summed / batch.counts.clamp(min=1).to(h.dtype)[:, None]

    def forward(self, batch: PointBatch) -> StepOutput:
        """Args: batch with coord (N, 3) and feat (N, C). Returns loss and metrics."""
        N, C = batch.feat.shape
        if self.cfg.in_channels != C:
            raise ValueError(
                f"ToyObjective expects feat with {self.cfg.in_channels} channels, got {C}"
            )
        coord = batch.coord / 768.0  # (N, 3) roughly unit scale
        is_masked = torch.rand(N, device=coord.device) < self.cfg.mask_ratio  # (N,) True=hidden
        feat_in = torch.where(is_masked[:, None], self.mask_token.expand(N, C), batch.feat)
        h = self.student(torch.cat([coord, feat_in], 1))  # (N, D)
        pred = self.head(h)  # (N, C)
        n_masked = is_masked.sum().clamp(min=1)
        recon = (((pred - batch.feat) ** 2).sum(1) * is_masked).sum() / (n_masked * C)
        loss = recon
        metrics = {"recon": recon.detach(), "masked_frac": is_masked.float().mean()}
        if self.teacher is not None:
            with torch.no_grad():
                t = self._pool(self.teacher(torch.cat([coord, batch.feat], 1)), batch)  # (B, D)
            s = self._pool(h, batch)  # (B, D)
            distill = ((s - t) ** 2).mean()
            loss = loss + distill
            metrics["distill"] = distill.detach()
        return StepOutput(loss=loss, metrics=metrics)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA: teacher <- momentum * teacher + (1 - momentum) * student."""
        if self.teacher is None:
            return
        for pt, ps in zip(self.teacher.parameters(), self.student.parameters(), strict=False):
            pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)


def toy_events(
    num_events: int, seed: int = 0, min_points: int = 8, max_points: int = 48, source: str = "toy"
) -> list[Event]:
    """Deterministic small random events (uniform points in the 768^3 volume, exponential
    energies in MeV). Event i depends only on (seed, i)."""
    events = []
    for i in range(num_events):
        rng = np.random.default_rng((seed, i))
        n = int(rng.integers(min_points, max_points + 1))
        events.append(
            Event(
                coord=rng.uniform(0, 768, (n, 3)).astype(np.float32),
                energy=rng.exponential(1.0, n).astype(np.float32),
                segment=rng.integers(0, 5, n),
                event_id=i,
                source=source,
            )
        )
    return events
