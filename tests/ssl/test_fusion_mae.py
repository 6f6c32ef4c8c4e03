"""Tests of the FASERCal masked-patch objective (nufm.ssl.fusion_mae) on simulated FASERCal
events and on hand-made batches whose voxel slots are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers.configs import small_fusion_encoder
from nufm.batch import PointBatch
from nufm.data.collate import collate
from nufm.data.detectors import get_detector
from nufm.models.stream_fusion import StreamFusionConfig
from nufm.models.stream_tokenizers import PatchTokens
from nufm.sim.fasercal import generate_fasercal_events
from nufm.ssl.build import (
    build_ssl_objective,
    objective_input_width,
    with_feature_width,
)
from nufm.ssl.fusion_mae import (
    FusionMAE,
    FusionMAEConfig,
    hide_patches,
    patch_mean,
    voxel_targets,
)

D = 32
S = 1440  # 12 x 12 x 10 slots per patch


def _encoder() -> StreamFusionConfig:
    return small_fusion_encoder(D)


def _objective(seed: int = 0, **kw: float) -> FusionMAE:
    torch.manual_seed(seed)
    obj = build_ssl_objective(FusionMAEConfig(encoder=_encoder(), **kw))  # type: ignore[arg-type]
    assert isinstance(obj, FusionMAE)
    return obj


def _sim_batch(seed: int = 5) -> PointBatch:
    """Three simulated FASERCal events, preprocessed; seed 5 has hits in all four streams."""
    transform = get_detector("fasercal").preprocess.transforms()
    rng = np.random.default_rng(0)
    return collate([transform(e, rng) for e in generate_fasercal_events(3, seed=seed)])


def _cm(x: float, y: float, z: float) -> list[float]:
    return [x / 100, y / 100, z / 100]


# Hand-made batch: rows, the voxel of every scintillator point, its patch and slot by hand.
# voxel = floor((x + 24, y + 24, z + 100) / 1 cm); patch p = voxel // (12, 12, 10), flat
# (p_x * 4 + p_y) * 20 + p_z; slot u = voxel % (12, 12, 10), flat (u_x * 12 + u_y) * 10 + u_z.
_POINTS = [
    # event 0
    (_cm(-23.5, -23.5, -99.5), 0, (1, 0, -1, 0, 0, 0)),  # 0: voxel (0,0,0): patch 0, slot 0
    (_cm(0.5, -12.5, 5.5), 0, (0, 2, 2, 0, 0, 1)),  # 1: voxel (24,11,105): p 170, slot 115
    (_cm(-22.5, -23.5, -98.5), 0, (0, 1, 1, 0.2, 0.8, 0)),  # 2: voxel (1,0,1): p 0, slot 121
    (_cm(0.0, 0.0, 124.0), 1, (-1,) * 6),  # 3: ECAL
    (_cm(10.0, 0.0, 160.0), 2, (-1,) * 6),  # 4: HCAL
    # event 1
    (_cm(23.5, 23.5, 99.5), 0, (0, 1, 0, 1, 0, 0)),  # 5: voxel (47,47,199): p 319, slot 1439
    (_cm(-11.5, -23.5, -79.5), 0, (0, 2, 2, 0, 0.5, 0.5)),  # 6: voxel (12,0,20): p 82, slot 0
    (_cm(12.5, 23.5, 99.5), 0, (1, 0, -1, 0, 0, 0)),  # 7: voxel (36,47,199): p 319, slot 119
    (_cm(5.0, 0.0, 285.0), 3, (-1,) * 6),  # 8: muon
]
_COUNTS = (5, 4)
_PATCHES = {  # (event, patch) -> {slot: row}
    (0, 0): {0: 0, 121: 2},
    (0, 170): {115: 1},
    (1, 319): {1439: 5, 119: 7},
    (1, 82): {0: 6},
}


def _hand_batch() -> PointBatch:
    coord = torch.tensor([p[0] for p in _POINTS])
    energy = torch.linspace(-0.9, 0.7, len(_POINTS))[:, None]
    return PointBatch(
        coord=coord,
        feat=torch.cat([coord, energy], 1),
        offset=torch.cumsum(torch.tensor(_COUNTS), 0),
        stream=torch.tensor([p[1] for p in _POINTS]),
        labels=torch.tensor([p[2] for p in _POINTS], dtype=torch.float32),
    )


def _patches_of(tok: PatchTokens, selected: torch.Tensor) -> list[tuple[int, int]]:
    """(event, patch index) of the selected tokens, in row-major order."""
    b, g = torch.nonzero(selected, as_tuple=True)
    return [(int(i), int(tok.patch_index[i, j])) for i, j in zip(b, g, strict=True)]


# --- (a) forward and backward ----------------------------------------------------------------


@pytest.mark.parametrize("relational_weight", [0.0, 0.5])
def test_forward_backward_reaches_every_parameter(relational_weight: float) -> None:
    obj = _objective(relational_weight=relational_weight)
    batch = _sim_batch()
    assert batch.stream is not None and bool((torch.bincount(batch.stream) > 0).all())
    out = obj(batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient"
    assert all(torch.isfinite(v) and not v.requires_grad for v in out.metrics.values())


# --- (b) mask size --------------------------------------------------------------------------


def test_hidden_patches_per_event() -> None:
    obj = _objective()
    torch.manual_seed(1)
    enc = obj.encode_visible(_sim_batch())
    tok = enc.streams[0].tokens
    assert isinstance(tok, PatchTokens)
    n = tok.valid.sum(1).tolist()
    assert min(n) >= 4
    assert enc.is_masked.sum(1).tolist() == [round(0.75 * k) for k in n]
    assert not (enc.is_masked & ~tok.valid).any()
    # the encoder saw exactly the kept patches
    assert torch.equal(enc.fused.streams[0].valid, tok.valid & ~enc.is_masked)


def test_hide_patches_clamps_small_events() -> None:
    valid = torch.arange(6)[None] < torch.tensor([0, 1, 2, 3, 4, 6])[:, None]  # (6, 6)
    is_masked = hide_patches(valid, 0.75)
    # round(0.75 n) = 0, 1, 2 (half to even), 2, 3, 4 -> clamped to 1 .. n-1
    assert is_masked.sum(1).tolist() == [0, 0, 1, 2, 3, 4]
    assert not (is_masked & ~valid).any()


# --- (c) targets by hand ---------------------------------------------------------------------


def test_voxel_targets_by_hand() -> None:
    obj = _objective()
    batch = _hand_batch()
    torch.manual_seed(0)
    enc = obj.encode_visible(batch)
    stream = enc.streams[0]
    tok = stream.tokens
    assert isinstance(tok, PatchTokens)
    assert tok.valid.sum(1).tolist() == [2, 2]
    assert enc.is_masked.sum(1).tolist() == [1, 1]  # round(1.5) = 2, clamped to n - 1
    for selected in (enc.is_masked, tok.valid & ~enc.is_masked, tok.valid):
        t = voxel_targets(batch, stream, selected, S, energy_channel=3)
        patches = _patches_of(tok, selected)
        assert t.occupied.shape == (len(patches), S)
        for q, key in enumerate(patches):
            expected = _PATCHES[key]
            assert torch.nonzero(t.occupied[q])[:, 0].tolist() == sorted(expected)
            at_q = t.patch == q
            got = dict(zip(t.slot[at_q].tolist(), t.rows[at_q].tolist(), strict=True))
            assert got == expected
        assert torch.equal(t.charge, batch.feat[t.rows, 3])
        assert t.labels is not None and torch.equal(t.labels, batch.labels[t.rows])  # type: ignore[index]


def test_patch_mean_by_hand() -> None:
    values = torch.tensor([1.0, 3.0, 10.0, 100.0])
    patch = torch.tensor([0, 0, 1, 2])
    counts = torch.tensor([True, True, True, False])
    # patch 0: mean(1, 3) = 2; patch 1: 10; patch 2 counts nothing
    assert patch_mean(values, patch, counts, 3).item() == pytest.approx(6.0)


# --- (d) hidden patches never reach the encoder --------------------------------------------


def test_hidden_patches_do_not_reach_the_encoder() -> None:
    obj = _objective().eval()
    batch = _sim_batch(seed=0)
    torch.manual_seed(3)
    enc = obj.encode_visible(batch)
    hidden = voxel_targets(batch, enc.streams[0], enc.is_masked, S, energy_channel=3)
    changed = PointBatch(
        coord=batch.coord,
        feat=batch.feat.clone(),
        offset=batch.offset,
        stream=batch.stream,
        labels=batch.labels,
    )
    changed.feat[hidden.rows, 3] = -changed.feat[hidden.rows, 3] + 0.5
    torch.manual_seed(3)
    enc2 = obj.encode_visible(changed)
    assert torch.equal(enc.is_masked, enc2.is_masked)
    torch.testing.assert_close(enc.fused.latents, enc2.fused.latents, rtol=0, atol=0)
    with torch.no_grad():
        torch.manual_seed(3)
        a = obj(batch)
        torch.manual_seed(3)
        b = obj(changed)
    assert not torch.allclose(a.metrics["charge"], b.metrics["charge"])
    assert a.metrics["occupancy"] == b.metrics["occupancy"]


# --- (e) phase 2 ----------------------------------------------------------------------------


def test_relational_terms_only_when_weighted() -> None:
    batch = _sim_batch()
    rel_keys = {"relational", "ghost", "hierarchy", "category", "ghost_acc", "hierarchy_acc"}
    off = _objective(relational_weight=0.0)
    assert off.rel_head is None
    with torch.no_grad():
        out = off(batch)
    assert not rel_keys & set(out.metrics)
    expected = out.metrics["occupancy"] + out.metrics["charge"]
    torch.testing.assert_close(out.loss, expected)

    on = _objective(relational_weight=0.5, mask_ratio=0.25, charge_weight=2.0)
    with torch.no_grad():
        out = on(batch)
    assert rel_keys <= set(out.metrics)
    m = out.metrics
    torch.testing.assert_close(m["relational"], m["ghost"] + m["hierarchy"] + m["category"])
    torch.testing.assert_close(out.loss, m["occupancy"] + 2.0 * m["charge"] + 0.5 * m["relational"])


def test_relational_losses_by_hand() -> None:
    """Constant logits per slot (head weights 0): ghost logit 1, hierarchy logits (0, 1, 2),
    uniform category logits; the loss over the kept patches' labelled points by hand."""
    eps = 0.02
    obj = _objective(relational_weight=1.0, label_smoothing=eps)
    assert obj.rel_head is not None
    with torch.no_grad():
        obj.rel_head.weight.zero_()
        bias = obj.rel_head.bias.view(S, 7)
        bias[:] = torch.tensor([1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0])
    batch = _hand_batch()
    torch.manual_seed(0)
    enc = obj.encode_visible(batch)
    tok = enc.streams[0].tokens
    assert isinstance(tok, PatchTokens)
    kept = _patches_of(tok, tok.valid & ~enc.is_masked)
    assert len(kept) == 2

    logp = [h - math.log(1 + math.e + math.e**2) for h in (0.0, 1.0, 2.0)]
    ghost, hier, cat = [], [], []
    for key in kept:
        labels = [_POINTS[row][2] for row in _PATCHES[key].values()]
        ghost.append(np.mean([math.log1p(math.e) - y[0] for y in labels]))
        hier.append(np.mean([-(1 - eps) * logp[int(y[1])] - eps / 3 * sum(logp) for y in labels]))
        if any(y[0] == 0 for y in labels):
            cat.append(math.log(3))
    torch.manual_seed(0)
    with torch.no_grad():
        m = obj(batch).metrics
    assert m["ghost"].item() == pytest.approx(np.mean(ghost), rel=1e-5)
    assert m["hierarchy"].item() == pytest.approx(np.mean(hier), rel=1e-5)
    assert m["category"].item() == pytest.approx(np.mean(cat) if cat else 0.0, rel=1e-5)
    assert m["n_kept"].item() == 2


# --- (f) overfit -----------------------------------------------------------------------------


def test_overfits_one_batch() -> None:
    obj = _objective(relational_weight=1.0, mask_ratio=0.25)
    batch = _sim_batch()
    opt = torch.optim.Adam(obj.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(0)  # the same hidden patches every step
        loss = obj(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# --- build dispatch --------------------------------------------------------------------------


def test_build_registration() -> None:
    cfg = FusionMAEConfig(encoder=_encoder())
    assert objective_input_width(cfg) == 4
    wide = with_feature_width(cfg, 5)
    assert isinstance(wide, FusionMAEConfig)
    assert objective_input_width(wide) == 5 and wide.energy_channel == 3
    assert all(c.in_channels == 5 for c in wide.encoder.streams)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="PatchTokenizerConfig"):
        FusionMAEConfig(encoder=_encoder(), patch_stream=1)
    with pytest.raises(ValueError, match="mask_ratio"):
        FusionMAEConfig(encoder=_encoder(), mask_ratio=1.0)
    with pytest.raises(ValueError, match="energy_channel"):
        FusionMAEConfig(encoder=_encoder(), energy_channel=4)


def test_balanced_occupancy_loss_by_hand() -> None:
    """Each side counts half: 1 occupied slot at logit 2, 3 empty at logit 0."""
    from nufm.ssl.fusion_mae import occupancy_loss

    logit = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    occupied = torch.tensor([[True, False, False, False]])
    pos = math.log1p(math.exp(-2.0))  # BCE of an occupied slot at logit 2
    neg = math.log(2.0)  # BCE of an empty slot at logit 0
    assert float(occupancy_loss(logit, occupied, True)) == pytest.approx(0.5 * (pos + neg))
    assert float(occupancy_loss(logit, occupied, False)) == pytest.approx((pos + 3 * neg) / 4)
    # calling every slot empty no longer wins: it pays the occupied side in full
    empty = torch.full((1, 4), -6.0)
    assert float(occupancy_loss(empty, occupied, True)) > 2.9
