"""AdamW with weight decay only on weight matrices (Loshchilov & Hutter, arXiv:1711.05101).

Biases, normalisation gains and learned tokens / positional embeddings are excluded from weight
decay, as in MAE (arXiv:2111.06377) and DINO (arXiv:2104.14294). Parameters that do not require
gradients (EMA teachers) are left out of the optimizer entirely.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

NO_DECAY_NAME_PARTS = ("token", "pos_embed", "pos_emb", "relative_position")
"""A parameter whose last name component contains one of these is never decayed."""


def is_decayed(name: str, param: nn.Parameter) -> bool:
    """True = the parameter gets weight decay.

    A parameter is excluded when it has at most one dimension (biases, LayerNorm/BatchNorm
    gains) or when its last name component names a learned token or positional embedding
    (``mask_token``, ``cls_token``, ``pos_embed``).
    """
    leaf = name.rsplit(".", 1)[-1]
    if param.ndim <= 1 or leaf == "bias":
        return False
    return not any(part in leaf for part in NO_DECAY_NAME_PARTS)


def param_groups(model: nn.Module) -> list[dict]:
    """Split the trainable parameters of ``model`` into a decayed and an undecayed group.

    Returns:
        Two optimizer groups, ``[{"params", "names", "is_decayed": True},
        {"params", "names", "is_decayed": False}]``. The loop sets ``weight_decay`` of the
        first group from the schedule at every step; the second always has 0.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    decay_names: list[str] = []
    no_decay_names: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if is_decayed(name, p):
            decay.append(p)
            decay_names.append(name)
        else:
            no_decay.append(p)
            no_decay_names.append(name)
    if not decay and not no_decay:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    log.debug("weight decay on %d tensors, none on %d", len(decay), len(no_decay))
    return [
        {"params": decay, "names": decay_names, "is_decayed": True, "weight_decay": 0.0},
        {"params": no_decay, "names": no_decay_names, "is_decayed": False, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, *, lr: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; lr and weight decay are set by the loop every step."""
    return torch.optim.AdamW(param_groups(model), lr=lr, betas=betas, eps=eps,
                             weight_decay=0.0)


def set_step_hyperparams(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Apply this step's schedule values: ``lr`` to every group, ``weight_decay`` to the
    decayed group only."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = weight_decay if group.get("is_decayed", True) else 0.0
