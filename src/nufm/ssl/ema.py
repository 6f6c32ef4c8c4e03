"""Exponential-moving-average teachers (BYOL arXiv:2006.07733, DINO arXiv:2104.14294; used by
Sonata arXiv:2503.16429 and Panda arXiv:2512.01324 with momentum 0.994 -> 1).

Owns :func:`make_teacher` (a frozen deep copy) and :func:`ema_update`. The training loop owns
the momentum schedule and calls ``objective.update_teacher(momentum)`` after every optimizer
step; objectives forward to :func:`ema_update`.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def make_teacher(student: ModuleT) -> ModuleT:
    """A deep copy of ``student`` in eval mode (no drop-path, no dropout) whose parameters have
    ``requires_grad=False``."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, parameter by parameter.

    Floating-point buffers are averaged the same way; integer buffers are copied.

    Args:
        teacher: module with the same parameter names and shapes as ``student``.
        student: the online module.
        momentum: in [0, 1]; 1 keeps the teacher unchanged, 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_update: momentum must be in [0, 1], got {momentum}")
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise ValueError(f"ema_update: teacher and student parameters differ, e.g. {missing}")
    names = list(s_params)
    t_list = [t_params[n].data for n in names]
    s_list = [s_params[n].data.to(t_params[n].dtype) for n in names]
    if t_list:
        # The foreach ops are public API but missing from torch's __all__.
        torch._foreach_mul_(t_list, momentum)  # pyright: ignore[reportPrivateImportUsage]
        torch._foreach_add_(t_list, s_list, alpha=1.0 - momentum)  # pyright: ignore[reportPrivateImportUsage]
    s_bufs = dict(student.named_buffers())
    for name, tb in teacher.named_buffers():
        sb = s_bufs[name]
        if tb.dtype.is_floating_point:
            tb.mul_(momentum).add_(sb.to(tb.dtype), alpha=1.0 - momentum)
        else:
            tb.copy_(sb)


__all__ = ["ema_update", "make_teacher"]
