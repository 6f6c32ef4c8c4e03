"""Per-step schedules computed up front as arrays (DINO, arXiv:2104.14294, Sec. 3 / App. B).

The loop indexes them by the optimizer step: ``lr[step]``, ``weight_decay[step]``,
``momentum[step]``. Nothing reads trainer state at run time, and resuming at step k reads the
same values as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
) -> np.ndarray:
    """Linear warmup then half-cosine decay.

    Args:
        base_value: Value reached at the end of warmup (peak).
        final_value: Value at the last step.
        total_steps: Length of the schedule (number of optimizer steps).
        warmup_steps: Steps of linear warmup from ``warmup_start_value`` to ``base_value``.
        warmup_start_value: Value at step 0 when ``warmup_steps > 0``.

    Returns:
        (total_steps,) float64 array; entry ``s`` is the value used at optimizer step ``s``.
        During warmup ``v[s] = start + (base - start) * s / warmup_steps``; afterwards
        ``v[s] = final + (base - final) * (1 + cos(pi * t / T)) / 2`` with ``t = s - warmup``
        and ``T = total_steps - warmup_steps - 1`` (so the last entry equals ``final_value``).
    """
    if total_steps <= 0:
        raise ValueError(f"cosine_schedule: total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"cosine_schedule: warmup_steps={warmup_steps} must be in "
            f"[0, total_steps={total_steps}]"
        )
    warmup = warmup_start_value + (base_value - warmup_start_value) * (
        np.arange(warmup_steps, dtype=np.float64) / max(warmup_steps, 1)
    )
    n_decay = total_steps - warmup_steps
    t = np.arange(n_decay, dtype=np.float64)
    denom = max(n_decay - 1, 1)
    decay = final_value + 0.5 * (base_value - final_value) * (1.0 + np.cos(np.pi * t / denom))
    if n_decay == 1:
        decay = np.array([base_value], dtype=np.float64)
    out = np.concatenate([warmup, decay])
    assert out.shape == (total_steps,)
    return out


@dataclass(frozen=True)
class Schedules:
    """All per-step schedules of a run, each a (max_steps,) float64 array."""

    lr: np.ndarray
    """Learning rate of every parameter group at each step."""
    weight_decay: np.ndarray
    """Weight decay of the decayed parameter group at each step (the other group has 0)."""
    momentum: np.ndarray
    """EMA teacher momentum passed to ``objective.update_teacher`` after each step."""


def build_schedules(
    *,
    max_steps: int,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    warmup_start_lr: float,
    weight_decay: float,
    weight_decay_end: float,
    momentum_start: float,
    momentum_end: float,
) -> Schedules:
    """Precompute the learning-rate, weight-decay and EMA-momentum schedules.

    Learning rate: linear warmup then cosine to ``min_lr``. Weight decay and momentum: cosine
    from start to end value over the whole run, no warmup (DINO's choice).
    """
    return Schedules(
        lr=cosine_schedule(lr, min_lr, max_steps, warmup_steps, warmup_start_lr),
        weight_decay=cosine_schedule(weight_decay, weight_decay_end, max_steps),
        momentum=cosine_schedule(momentum_start, momentum_end, max_steps),
    )
