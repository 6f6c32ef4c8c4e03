"""The descriptor term of the pretraining objectives (this project's addition): features read
out by one linear layer predict multi-scale local-shape descriptors
(:func:`nufm.models.geometric.point_shape_descriptors`), each channel standardised over the
rows of the batch, scored by their MSE. :mod:`nufm.ssl.mae` asks it of tokens (their groups'
mean descriptors), :mod:`nufm.ssl.distill` of points; both build, check and score it here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def check_descriptor_term(owner: str, weight: float, ks: tuple[int, ...]) -> None:
    """Raise ValueError unless ``weight >= 0`` and, when it is > 0, ``ks`` holds sizes >= 2."""
    if weight < 0 or (weight > 0 and (not ks or min(ks) < 2)):
        raise ValueError(
            f"{owner}: need descriptor_weight >= 0 and, when > 0, descriptor_ks of sizes "
            f">= 2; got {weight}, {ks}"
        )


def descriptor_modules(width: int, ks: tuple[int, ...]) -> tuple[nn.Linear, nn.BatchNorm1d]:
    """The read-out (``width`` -> 6 per size in ``ks``) and the targets' standardisation
    (BatchNorm without affine: statistics only, nothing learned)."""
    C = 6 * len(ks)
    return nn.Linear(width, C), nn.BatchNorm1d(C, affine=False)


def descriptor_mse(head: nn.Linear, norm: nn.BatchNorm1d, feat: Tensor, target: Tensor) -> Tensor:
    """MSE of ``head(feat)`` (M, C) against ``target`` (M, C) standardised per channel over
    the M rows (``norm`` in training mode; it also tracks the running statistics)."""
    return F.mse_loss(head(feat).float(), norm(target))
