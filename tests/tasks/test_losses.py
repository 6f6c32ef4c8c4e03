"""Losses, pooling, instance bookkeeping and clustering against loop references and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.configs import tiny_vit
from helpers.events import preprocessed_events
from nufm.data.collate import collate
from nufm.data.lartpc import NORM_SCALE
from nufm.data.synthetic import synthetic_event
from nufm.models.base import PointFeatures
from nufm.models.encoders import build_encoder
from nufm.tasks.cluster import discriminative_loss, greedy_cluster
from nufm.tasks.event_task import AddEventTargets, EventTask, EventTaskConfig
from nufm.tasks.heads import segment_mean_max
from nufm.tasks.pid import instance_keys, instance_labels
from nufm.tasks.semseg import focal_loss, inverse_frequency_weights


def test_focal_with_gamma_zero_equals_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 5, generator=g)
    target = torch.randint(-1, 5, (40,), generator=g)
    w = torch.tensor([1.0, 2.0, 30.0, 10.0, 0.5])
    ours = focal_loss(logits, target, gamma=0.0, weight=w)
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=-1)
    torch.testing.assert_close(ours, ref)


def test_focal_gamma_two_hand_computed() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([0, 2, 1, -1])
    w = [1.0, 4.0, 2.0]
    num = den = 0.0
    for row, y in zip(logits.tolist(), target.tolist(), strict=False):
        if y < 0:
            continue
        p = math.exp(row[y]) / sum(math.exp(v) for v in row)
        num += -w[y] * (1 - p) ** 2 * math.log(p)
        den += w[y]
    ours = focal_loss(logits, target, gamma=2.0, weight=torch.tensor(w))
    assert float(ours) == pytest.approx(num / den, rel=1e-6)
    assert float(focal_loss(logits[3:], target[3:], gamma=2.0)) == 0.0  # all ignored


def test_inverse_frequency_weights_are_sum_over_count() -> None:
    assert inverse_frequency_weights([1, 3, 0, 4]) == (8.0, 8.0 / 3, 0.0, 2.0)


def test_segment_mean_max_matches_loop() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g)
    idx = torch.randint(0, 5, (30,), generator=g)
    idx[idx == 3] = 4  # segment 3 empty
    out = segment_mean_max(x, idx, 6)
    for s in range(6):
        rows = x[idx == s]
        want = torch.cat([rows.mean(0), rows.max(0).values]) if len(rows) else torch.zeros(8)
        torch.testing.assert_close(out[s], want)


def test_instance_keys_and_majority_labels_hand_case() -> None:
    batch_index = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    instance = torch.tensor([3, 3, 0, -1, 3, 3, 3, 7, 7])
    pid = torch.tensor([2, 2, 5, 4, 4, 1, -1, -1, -1])
    idx = instance_keys(batch_index, instance)
    # keys sorted by (event, id): (0,0), (0,3), (1,3), (1,7)
    assert idx.event.tolist() == [0, 0, 1, 1] and idx.instance_id.tolist() == [0, 3, 3, 7]
    assert idx.point_instance.tolist() == [1, 1, 0, -1, 1, 2, 2, 3, 3]
    assert idx.size.tolist() == [1, 3, 2, 2]
    # (0,0): pid none -> -1; (0,3): 2,2,4 -> 2; (1,3): 1 vs unlabelled tie -> 1; (1,7) -> -1
    assert instance_labels(pid, idx).tolist() == [-1, 2, 1, -1]
    big = instance_keys(batch_index, instance, min_points=2)
    assert big.instance_id.tolist() == [3, 3, 7]
    assert big.point_instance.tolist() == [0, 0, -1, -1, 0, 1, 1, 2, 2]


def _disc_loss_reference(
    emb: np.ndarray, ev: np.ndarray, inst: np.ndarray, B: int, dv: float, dd: float
) -> tuple[float, float, float]:
    """Brabandere et al. (arXiv:1708.02551) terms with explicit loops, per event then mean."""
    var_e, dist_e, reg_e = [], [], []
    for b in range(B):
        ids = sorted({int(i) for i in inst[ev == b] if i >= 0})
        if not ids:
            continue
        mus = [emb[(ev == b) & (inst == i)].mean(0) for i in ids]
        var = 0.0
        for i, mu in zip(ids, mus, strict=False):
            pts = emb[(ev == b) & (inst == i)]
            var += np.mean([max(np.linalg.norm(mu - p) - dv, 0.0) ** 2 for p in pts])
        var_e.append(var / len(ids))
        reg_e.append(np.mean([np.linalg.norm(mu) for mu in mus]))
        if len(ids) > 1:
            d = [
                max(2 * dd - np.linalg.norm(mus[a] - mus[c]), 0.0) ** 2
                for a in range(len(ids))
                for c in range(len(ids))
                if a != c
            ]
            dist_e.append(np.sum(d) / (len(ids) * (len(ids) - 1)))
    return float(np.mean(var_e)), float(np.mean(dist_e)) if dist_e else 0.0, float(np.mean(reg_e))


def test_discriminative_loss_matches_loop_reference() -> None:
    rng = np.random.default_rng(0)
    ev = np.array([0] * 12 + [1] * 5 + [2] * 6)  # event 1: one cluster, event 2: none
    inst = np.concatenate([rng.integers(-1, 4, 12), np.full(5, 2), np.full(6, -1)])
    emb = rng.normal(size=(len(ev), 3)) * 0.8
    terms = discriminative_loss(
        torch.tensor(emb),
        torch.tensor(ev),
        torch.tensor(inst),
        3,
        delta_v=0.3,
        delta_d=0.8,
        w_var=1.0,
        w_dist=2.0,
        w_reg=0.1,
    )
    var, dist, reg = _disc_loss_reference(emb, ev, inst, 3, 0.3, 0.8)
    assert float(terms["var"]) == pytest.approx(var, rel=1e-6)
    assert float(terms["dist"]) == pytest.approx(dist, rel=1e-6)
    assert float(terms["reg"]) == pytest.approx(reg, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(var + 2 * dist + 0.1 * reg, rel=1e-6)
    emb_t = torch.tensor(emb, requires_grad=True)
    discriminative_loss(emb_t, torch.tensor(ev), torch.tensor(inst), 3)["loss"].backward()
    assert emb_t.grad is not None and torch.isfinite(emb_t.grad).all()


def test_greedy_cluster_recovers_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    truth = torch.tensor([0] * 10 + [1] * 7 + [2] * 2)
    emb = centres[truth] + 0.2 * torch.randn(len(truth), 2, generator=g)
    perm = torch.randperm(len(truth), generator=g)
    label = greedy_cluster(emb[perm], radius=1.5)
    t = truth[perm]
    # same partition: a bijection between predicted and true ids
    pairs = {(int(a), int(b)) for a, b in zip(label, t, strict=False)}
    assert len(pairs) == 3 == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    small = greedy_cluster(emb[perm], radius=1.5, min_points=3)
    assert bool((small[t == 2] == -1).all()) and bool((small[t != 2] >= 0).all())


def test_point_features_token_level_is_parameter_free_nearest_token_for_k1() -> None:
    torch.manual_seed(0)
    batch = collate(preprocessed_events(2))
    enc = build_encoder(tiny_vit()).eval()
    with torch.no_grad():
        out = enc(batch)
    pf = PointFeatures(k=1)
    assert len(list(pf.parameters())) == 0
    feat = pf(out, batch)  # (N, D)
    assert out.tokens is not None and out.valid is not None
    for b, (s, e) in enumerate(zip([0, int(batch.offset[0])], batch.offset.tolist(), strict=False)):
        centres = out.tokens.center[b][out.valid[b]]  # (G_b, 3)
        d, nearest = torch.cdist(batch.coord[s:e], centres).topk(2, largest=False)  # (n_b, 2)
        is_unique = d[:, 1] - d[:, 0] > 1e-5  # lattice points can tie between two centres
        assert float(is_unique.float().mean()) > 0.9
        torch.testing.assert_close(
            feat[s:e][is_unique], out.feat[b][out.valid[b]][nearest[is_unique, 0]]
        )


def test_add_event_targets_and_class_binning() -> None:
    ev = preprocessed_events(1, n_interactions=3)[0]
    raw = synthetic_event(0, n_interactions=3)
    np.testing.assert_allclose(
        [ev.meta["vertex_x"], ev.meta["vertex_y"], ev.meta["vertex_z"]],
        (raw.vertices[0] - 384.0) / NORM_SCALE,
        rtol=1e-5,
    )
    # visible energy is taken before the log scaling: equals the raw MeV sum (threshold 0)
    assert ev.meta["visible_energy"] == pytest.approx(float(raw.energy.sum()), rel=1e-5)
    with pytest.raises(ValueError, match="synthetic event 0: AddEventTargets"):
        AddEventTargets()(raw.with_fields(vertices=None), np.random.default_rng(0))
    task = EventTask(EventTaskConfig(encoder=tiny_vit(), num_classes=4, class_offset=1))
    b = collate(preprocessed_events(1))
    b.targets["n_interactions"] = torch.tensor([1.0, 2.0, 5.0, 0.0])
    assert task.class_target(b).tolist() == [0, 1, 3, 0]
