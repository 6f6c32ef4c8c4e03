"""Per-class decision offsets chosen on validation points to maximise macro F1.

Owns :func:`fit_class_offsets`, :func:`set_semseg_offsets` and :func:`macro_f1_of`. A
classifier trained on few labelled events rarely predicts a rare class (a Michel electron is
under 1 % of the points): its logits may rank the class's points well while its argmax never
picks them. Adding one offset per class to the logits before the argmax moves the decision
boundaries without touching the representation (the post-hoc form of logit adjustment, Menon et al.
arXiv:2007.07314, with the offsets fitted to macro F1 instead of set from the class priors). The
offsets are chosen on validation events and reported on test events; class 0's offset stays 0
(only differences matter).

Search: coordinate ascent, ``rounds`` passes over the classes 1..C-1, each trying every value of
``grid`` for one class with the others fixed and keeping the best (ties: the value nearest 0),
so the fitted offsets never score below all-zero offsets on the points they were fitted on.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from nufm.eval.metrics import metrics_from_counts
from nufm.tasks.semseg import SemanticSegmentation

DEFAULT_GRID: NDArray[np.float64] = np.round(np.arange(-4.0, 8.0001, 0.25), 2)
"""Offsets tried per class (logit units)."""


def macro_f1_of(pred: NDArray[np.int64], target: NDArray[np.int64], num_classes: int) -> float:
    """Macro F1 of class ids ``pred`` against ``target`` by the rule of every nufm report
    (:func:`nufm.eval.metrics.metrics_from_counts`: classes present in either)."""
    counts = np.bincount(target * num_classes + pred, minlength=num_classes**2)  # (C * C,)
    return metrics_from_counts(counts.reshape(num_classes, num_classes)).macro_f1


def fit_class_offsets(
    logits: NDArray[np.floating],
    target: NDArray[np.integer],
    *,
    grid: NDArray[np.float64] = DEFAULT_GRID,
    rounds: int = 3,
    ignore_index: int = -1,
) -> NDArray[np.float64]:
    """Offsets ``b`` (C,) that maximise macro F1 of ``argmax(logits + b)`` on these points.

    Args:
        logits: (N, C) class scores of validation points.
        target: (N,) true class ids; ``ignore_index`` rows are skipped.
        grid: offsets tried for each class (must contain 0).
        rounds: passes of coordinate ascent over classes 1..C-1.

    Returns:
        (C,) float64, ``b[0] = 0``.
    """
    if logits.ndim != 2 or target.shape != (logits.shape[0],):
        raise ValueError(
            f"fit_class_offsets: logits (N, C) and target (N,) needed, got "
            f"{logits.shape} and {target.shape}"
        )
    if not np.any(grid == 0):
        raise ValueError("fit_class_offsets: the grid must contain 0 (no offset)")
    kept = target != ignore_index
    x = np.asarray(logits[kept], dtype=np.float64)  # (N', C)
    y = np.asarray(target[kept], dtype=np.int64)  # (N',)
    C = x.shape[1]
    b = np.zeros(C)
    if y.size == 0:
        return b
    best = macro_f1_of(np.argmax(x, 1), y, C)
    order = np.argsort(np.abs(grid), kind="stable")  # ties go to the smallest |offset|
    for _ in range(rounds):
        changed = False
        for c in range(1, C):
            for v in grid[order]:
                if v == b[c]:
                    continue
                trial = b.copy()
                trial[c] = v
                score = macro_f1_of(np.argmax(x + trial, 1), y, C)
                if score > best + 1e-12:
                    best, b, changed = score, trial, True
        if not changed:
            break
    return b


def set_semseg_offsets(
    task: SemanticSegmentation, logits: NDArray[np.floating], target: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Fit the task's ``class_offset`` on (N, C) raw val ``logits`` of the task and their (N,)
    ``target`` (:func:`fit_class_offsets`), set it, return it."""
    offsets = fit_class_offsets(logits, target, ignore_index=task.cfg.ignore_index)
    with torch.no_grad():
        task.class_offset.copy_(torch.from_numpy(offsets).to(task.class_offset))
    return offsets


__all__ = [
    "DEFAULT_GRID",
    "fit_class_offsets",
    "macro_f1_of",
    "set_semseg_offsets",
]
