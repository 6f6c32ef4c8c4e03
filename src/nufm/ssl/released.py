"""The pretraining losses of the field's released models, as their reference code computes
them, so that a released model's own objective can be evaluated on any data (for example to
check that the data is preprocessed the way the model was trained).

Owns :func:`polarmae_pretrain_losses` (PoLAr-MAE, Young et al., arXiv:2502.02558): the
Chamfer distance between each hidden group's predicted and true points (squared distances,
each direction averaged over the group's real points, then averaged over the hidden groups:
pytorch3d's ``chamfer_distance`` with per-group lengths, as the reference calls it) and the
mean squared error of the predicted energies over the real points of the hidden groups.
"""

from __future__ import annotations

from torch import Tensor

from nufm.models.released.polarmae_pretrain import PolarMAEReconstruction
from nufm.ssl.losses import masked_chamfer, masked_mse


def polarmae_pretrain_losses(rec: PolarMAEReconstruction) -> dict[str, Tensor]:
    """``{"chamfer": (), "energy": ()}`` of a :class:`PolarMAEReconstruction`.

    The prediction's first ``n`` slots are compared with the ``n`` real points of each true
    group (the reference passes the same lengths for both sets); the Chamfer term uses the
    first ``mae_channels`` channels of the truth (xyz and energy for ``full``). The released
    config weights both terms 1.
    """
    C = rec.points.shape[-1]
    chamfer = masked_chamfer(
        rec.points.float(), rec.point_valid, rec.target[..., :C].float(), rec.point_valid
    )  # (M,)
    energy = masked_mse(rec.energy.float(), rec.target[..., -1].float(), rec.point_valid)
    return {"chamfer": chamfer.mean(), "energy": energy}
