"""Particle- or interaction-instance clustering with learned per-point embeddings.

Training uses the discriminative loss of De Brabandere, Neven and Van Gool (arXiv:1708.02551):
per event with C true instances (points with instance id -1 are left out),

* variance (pull): ``1/C sum_c 1/N_c sum_{i in c} [||mu_c - x_i|| - delta_v]_+^2``,
* distance (push): ``1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2`` (C >= 2),
* regulariser: ``1/C sum_c ||mu_c||``,

each averaged over the events that have instances (distance: at least two), and combined as
``w_var L_var + w_dist L_dist + w_reg L_reg`` (paper weights 1, 1, 0.001). At inference the
embeddings of each event are grouped greedily (seed = first unassigned point, one mean-shift
step inside ``cluster_radius``, take every unassigned point within the radius of that mean) or
with scikit-learn DBSCAN. With training converged, every point lies within delta_v of its mean
and means are 2 delta_d apart, so any radius in [delta_v, 2 delta_d - delta_v] separates them.
Scored by ARI and panoptic quality (:mod:`nufm.eval.metrics`).

Owns :class:`ClusterConfig`, :class:`InstanceClustering`, :func:`discriminative_loss`,
:func:`greedy_cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nufm.batch import PointBatch
from nufm.geometry.offsets import offset_to_starts
from nufm.step import StepOutput
from nufm.tasks.backbone import TaskBackbone, TaskBaseConfig, TaskModule
from nufm.tasks.heads import mlp
from nufm.tasks.pid import instance_keys

_EPS = 1e-12


def _norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis with a finite gradient at 0."""
    return (x.pow(2).sum(-1) + _EPS).sqrt()


def discriminative_loss(
    emb: Tensor,
    batch_index: Tensor,
    instance: Tensor,
    num_events: int,
    *,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    w_var: float = 1.0,
    w_dist: float = 1.0,
    w_reg: float = 0.001,
) -> dict[str, Tensor]:
    """De Brabandere et al. discriminative loss over a packed batch.

    Args:
        emb: (N, E) float per-point embeddings.
        batch_index: (N,) int64 event of each point.
        instance: (N,) int64 instance id within the event, -1 = not clustered (left out).
        num_events: B.
        delta_v: pull margin.
        delta_d: push margin (cluster means are pushed 2 delta_d apart).
        w_var, w_dist, w_reg: term weights.

    Returns:
        ``loss``, ``var``, ``dist``, ``reg``: () tensors (0 when no point has an instance).
    """
    B = num_events
    index = instance_keys(batch_index, instance)
    is_in = index.point_instance >= 0  # (N,)
    K = index.num_instances
    zero = emb.sum() * 0.0
    if K == 0:
        return {"loss": zero, "var": zero, "dist": zero, "reg": zero}
    e, c = emb[is_in], index.point_instance[is_in]  # (P, E), (P,)
    size = index.size.to(emb.dtype)  # (K,)
    mu = emb.new_zeros(K, emb.shape[1]).index_add_(0, c, e) / size[:, None]  # (K, E)
    pull = F.relu(_norm(e - mu[c]) - delta_v).pow(2)  # (P,)
    var_cluster = emb.new_zeros(K).index_add_(0, c, pull) / size  # (K,)
    n_c = torch.bincount(index.event, minlength=B)  # (B,) clusters per event
    has_any = n_c > 0
    var_event = emb.new_zeros(B).index_add_(0, index.event, var_cluster) / n_c.clamp(min=1)
    reg_event = emb.new_zeros(B).index_add_(0, index.event, _norm(mu)) / n_c.clamp(min=1)
    # ordered pairs of clusters within each event (clusters of an event are contiguous rows)
    starts = torch.cumsum(n_c, 0) - n_c  # (B,)
    pairs = n_c * n_c  # (B,)
    pair_event = torch.repeat_interleave(torch.arange(B, device=emb.device), pairs)  # (Q,)
    local = torch.arange(int(pairs.sum()), device=emb.device) - torch.repeat_interleave(
        torch.cumsum(pairs, 0) - pairs, pairs
    )  # (Q,)
    a = starts[pair_event] + local // n_c[pair_event]  # (Q,)
    b = starts[pair_event] + local % n_c[pair_event]  # (Q,)
    is_other = a != b
    push = F.relu(2 * delta_d - _norm(mu[a[is_other]] - mu[b[is_other]])).pow(2)  # (Q',)
    dist_event = emb.new_zeros(B).index_add_(0, pair_event[is_other], push) / (
        n_c * (n_c - 1)
    ).clamp(min=1)
    has_pairs = n_c > 1
    L_var = var_event[has_any].mean()
    L_reg = reg_event[has_any].mean()
    L_dist = dist_event[has_pairs].mean() if bool(has_pairs.any()) else zero
    loss = w_var * L_var + w_dist * L_dist + w_reg * L_reg
    return {"loss": loss, "var": L_var, "dist": L_dist, "reg": L_reg}


def greedy_cluster(emb: Tensor, radius: float, min_points: int = 1) -> Tensor:
    """Greedy seeded grouping of one event's embeddings.

    Repeat until every point is assigned: seed = first unassigned point; centre = mean of the
    unassigned points within ``radius`` of the seed; the new cluster = the unassigned points
    within ``radius`` of the centre (always including the seed). Clusters smaller than
    ``min_points`` become -1.

    Args:
        emb: (n, E) float embeddings of one event.

    Returns:
        (n,) int64 cluster ids 0.. in order of discovery, -1 = unassigned.
    """
    n = emb.shape[0]
    label = torch.full((n,), -1, dtype=torch.int64, device=emb.device)
    is_free = torch.ones(n, dtype=torch.bool, device=emb.device)
    cid = 0
    while bool(is_free.any()):
        seed = int(torch.nonzero(is_free)[0])
        near_seed = is_free & (_norm(emb - emb[seed]) <= radius)  # (n,)
        centre = emb[near_seed].mean(0)
        members = is_free & (_norm(emb - centre) <= radius)
        members[seed] = True
        label[members] = cid
        is_free &= ~members
        cid += 1
    if min_points > 1 and cid > 0:
        sizes = torch.bincount(label, minlength=cid)
        label = torch.where(sizes[label] >= min_points, label, torch.full_like(label, -1))
    return label


@dataclass(frozen=True, kw_only=True)
class ClusterConfig(TaskBaseConfig):
    """Instance clustering by learned embeddings."""

    name: Literal["cluster"] = "cluster"
    """Discriminator of the task-config union (fixed)."""
    target: Literal["particle", "interaction"] = "particle"
    """Cluster points into particles (``instance``) or interactions (``interaction``)."""
    embed_dim: int = 8
    """E, width of the per-point embedding."""
    delta_v: float = 0.5
    """Pull margin of the discriminative loss (embedding units)."""
    delta_d: float = 1.5
    """Push margin: means are pushed 2 delta_d apart."""
    w_var: float = 1.0
    """Weight of the pull term."""
    w_dist: float = 1.0
    """Weight of the push term."""
    w_reg: float = 0.001
    """Weight of the mean-norm regulariser."""
    method: Literal["greedy", "dbscan"] = "greedy"
    """Inference clustering: greedy seeded grouping or scikit-learn DBSCAN."""
    cluster_radius: float = 1.5
    """Greedy radius in embedding units (between delta_v and 2 delta_d - delta_v)."""
    dbscan_eps: float = 0.5
    """DBSCAN neighbourhood radius in embedding units."""
    min_cluster_points: int = 1
    """Smaller predicted clusters become unassigned (-1); DBSCAN ``min_samples``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("particle", "interaction"):
            raise ValueError(f"ClusterConfig.target={self.target!r} is not particle or interaction")
        if self.method not in ("greedy", "dbscan"):
            raise ValueError(f"ClusterConfig.method={self.method!r} is not greedy or dbscan")
        if self.embed_dim < 1 or self.min_cluster_points < 1:
            raise ValueError(
                f"ClusterConfig: embed_dim and min_cluster_points must be >= 1, "
                f"got {self.embed_dim}, {self.min_cluster_points}"
            )
        if not 0 < self.delta_v < 2 * self.delta_d:
            raise ValueError(
                f"ClusterConfig needs 0 < delta_v < 2 delta_d, got {self.delta_v}, {self.delta_d}"
            )
        if self.cluster_radius <= 0 or self.dbscan_eps <= 0:
            raise ValueError(
                f"ClusterConfig: cluster_radius and dbscan_eps must be > 0, got "
                f"{self.cluster_radius}, {self.dbscan_eps}"
            )


class InstanceClustering(TaskModule[ClusterConfig]):
    """Encoder -> per-point features -> (N, E) embeddings; clustered per event at inference."""

    def __init__(self, cfg: ClusterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = TaskBackbone(cfg)
        D = self.backbone.out_dim
        if cfg.mode == "linear":
            self.head: nn.Module = nn.Linear(D, cfg.embed_dim)
        else:
            self.head = mlp(D, cfg.head_hidden, cfg.embed_dim, cfg.dropout)

    def target_of(self, batch: PointBatch) -> Tensor | None:
        """(N,) the label field being clustered (instance or interaction), or None."""
        match self.cfg.target:
            case "particle":
                return batch.instance
            case "interaction":
                return batch.interaction
            case _:
                raise ValueError(f"ClusterConfig.target={self.cfg.target!r}")

    def embed(self, batch: PointBatch) -> Tensor:
        """(N, E) per-point embeddings."""
        return self.head(self.backbone(batch))

    def forward(self, batch: PointBatch) -> StepOutput:
        target = self.target_of(batch)
        if target is None:
            raise ValueError(f"cluster: the batch has no {self.cfg.target} labels")
        terms = discriminative_loss(
            self.embed(batch),
            batch.batch_index,
            target,
            batch.num_events,
            delta_v=self.cfg.delta_v,
            delta_d=self.cfg.delta_d,
            w_var=self.cfg.w_var,
            w_dist=self.cfg.w_dist,
            w_reg=self.cfg.w_reg,
        )
        return StepOutput(loss=terms["loss"], metrics={k: v.detach() for k, v in terms.items()})

    def cluster(self, emb: Tensor) -> Tensor:
        """(n,) int64 cluster ids of one event's (n, E) embeddings, -1 = unassigned."""
        match self.cfg.method:
            case "greedy":
                return greedy_cluster(emb, self.cfg.cluster_radius, self.cfg.min_cluster_points)
            case "dbscan":
                from sklearn.cluster import DBSCAN

                label = DBSCAN(
                    eps=self.cfg.dbscan_eps, min_samples=self.cfg.min_cluster_points
                ).fit_predict(emb.detach().cpu().double().numpy())
                return torch.from_numpy(np.asarray(label, np.int64)).to(emb.device)
            case _:
                raise ValueError(f"ClusterConfig.method={self.cfg.method!r}")

    @torch.no_grad()
    def predict(self, batch: PointBatch) -> dict[str, Tensor]:
        """``embedding`` (N, E), ``pred`` (N,) int64 cluster ids unique within each event
        (-1 = unassigned), and ``target`` (N,) when the label field exists."""
        emb = self.embed(batch)
        pred = torch.full((batch.num_points,), -1, dtype=torch.int64, device=emb.device)
        starts = offset_to_starts(batch.offset).tolist()
        for s, e in zip(starts, batch.offset.tolist(), strict=False):
            if e > s:
                pred[s:e] = self.cluster(emb[s:e])
        out = {"embedding": emb, "pred": pred}
        target = self.target_of(batch)
        if target is not None:
            out["target"] = target
        return out
