"""Set and distribution losses of the pretraining objectives.

Owns :func:`masked_chamfer` (Chamfer distance between padded point sets with per-set valid
slots, as used by Point-MAE arXiv:2203.06604 and PoLAr-MAE arXiv:2502.02558 through pytorch3d's
``chamfer_distance`` with per-cloud lengths), :func:`masked_mse`, and the soft cross-entropy,
Sinkhorn-Knopp and entropy helpers of self-distillation (DINO arXiv:2104.14294, SwAV
arXiv:2006.09882, Sonata arXiv:2503.16429).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nufm.geometry.set_nearest import set_nearest


def masked_chamfer(
    pred: Tensor, pred_valid: Tensor, target: Tensor, target_valid: Tensor
) -> Tensor:
    """Symmetric Chamfer distance of Q pairs of padded point sets.

    ``cd = mean_{x in X} min_{y in Y} d(x, y) + mean_{y in Y} min_{x in X} d(x, y)`` with X the
    valid predicted points and Y the valid target points; ``d`` is the squared Euclidean
    distance (pytorch3d default). Padding slots of either set never contribute. Pairs where
    either set is empty give 0.

    The nearest points are chosen without autograd by :func:`nufm.geometry.set_nearest.set_nearest`
    (fp32 coordinate differences, also under bf16 autocast; a numba loop on the CPU), and the
    distances recomputed on the chosen pairs, so the backward pass gathers (Q, K, F) values
    instead of going through a (Q, K1, K2, F) difference. Value and gradient are those of the
    min (the gradient of a min flows to its argmin; of tied candidates the first).

    Args:
        pred: (Q, K1, F) float predicted points.
        pred_valid: (Q, K1) bool, True = real predicted point.
        target: (Q, K2, F) float target points.
        target_valid: (Q, K2) bool, True = real target point.

    Returns:
        (Q,) float Chamfer distance per pair.
    """
    if pred.shape[0] != target.shape[0] or pred.shape[-1] != target.shape[-1]:
        raise ValueError(
            f"masked_chamfer: pred {tuple(pred.shape)} and target "
            f"{tuple(target.shape)} must share Q and F"
        )
    # which point is nearest: no gradient flows through the choice
    near_t, near_p = set_nearest(pred, pred_valid, target, target_valid)  # (Q, K1), (Q, K2)
    F = pred.shape[-1]
    p2t = (pred - target.gather(1, near_t[..., None].expand(-1, -1, F))).square().sum(-1)
    t2p = (target - pred.gather(1, near_p[..., None].expand(-1, -1, F))).square().sum(-1)
    nonempty = pred_valid.any(1) & target_valid.any(1)  # (Q,)
    p2t = p2t.masked_fill(~(pred_valid & nonempty[:, None]), 0.0)  # (Q, K1)
    t2p = t2p.masked_fill(~(target_valid & nonempty[:, None]), 0.0)  # (Q, K2)
    n_p = pred_valid.sum(1).clamp(min=1).to(p2t.dtype)  # (Q,)
    n_t = target_valid.sum(1).clamp(min=1).to(p2t.dtype)
    cd = p2t.sum(1) / n_p + t2p.sum(1) / n_t  # (Q,)
    return torch.where(nonempty, cd, torch.zeros_like(cd))


def masked_mse(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over the valid entries only (0 when none is valid).

    Args:
        pred: (...,) float predictions.
        target: (...,) float targets, same shape.
        valid: (...,) bool, True = entry counts.

    Returns:
        () float.
    """
    w = valid.to(pred.dtype)
    return ((pred - target).square() * w).sum() / w.sum().clamp(min=1.0)


def soft_cross_entropy(student_logits: Tensor, target: Tensor, temperature: float) -> Tensor:
    """``-sum_p target_p log softmax(student / temperature)_p`` per row.

    Args:
        student_logits: (M, P) float logits.
        target: (M, P) float target distributions (rows sum to 1), no gradient.
        temperature: student temperature.

    Returns:
        (M,) float cross-entropy per row.
    """
    return -(target * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1)


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temperature: float, n_iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp targets (SwAV arXiv:2006.09882; the Sonata teacher, arXiv:2503.16429).

    Alternately normalises ``exp(logits / temperature)`` so that every prototype gets the same
    total mass and every sample a distribution. Under ``torch.distributed`` the sums (and the
    sample count and max logit) are all-reduced, so the marginals hold over all ranks.

    Args:
        logits: (M, P) float teacher logits (M samples on this rank, P prototypes).
        temperature: teacher temperature.
        n_iters: normalisation rounds (Sonata: 3).

    Returns:
        (M, P) float32 targets; each row sums to 1, each column to about M_total / P.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    x = logits.float()
    top = x.max().reshape(1) if x.numel() else x.new_zeros(1)
    n = torch.tensor([float(x.shape[0])], device=x.device)
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        dist.all_reduce(n)
    q = torch.exp((x - top) / temperature).t()  # (P, M)
    P = q.shape[0]
    total = q.sum().reshape(1)
    if distributed:
        dist.all_reduce(total)
    q = q / total
    for _ in range(n_iters):
        per_proto = q.sum(dim=1, keepdim=True)  # (P, 1)
        if distributed:
            dist.all_reduce(per_proto)
        q = q / per_proto.clamp(min=1e-30) / P
        q = q / q.sum(dim=0, keepdim=True).clamp(min=1e-30) / n  # samples are local
    return (q * n).t()  # (M, P)


def entropy(p: Tensor) -> Tensor:
    """Shannon entropy (nats) of each row of a (..., P) distribution -> (...,)."""
    return -(p * torch.log(p.clamp(min=1e-12))).sum(-1)


__all__ = ["entropy", "masked_chamfer", "masked_mse", "sinkhorn_knopp", "soft_cross_entropy"]
