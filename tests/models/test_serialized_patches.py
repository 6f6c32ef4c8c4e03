"""SerializedPatchEncoder: FM4NPP's radial-cell order by hand (events contiguous, batch
independent), patches along it on a simulated collider-TPC event, the token output through
PointFeatures and a fine-tuning task, the encoder dispatch and the config round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from helpers.events import preprocessed_batch
from nufm.batch import PointBatch
from nufm.config import config_to_dict, objective_config_from_dict
from nufm.data.collate import collate
from nufm.data.detectors import DETECTORS
from nufm.geometry.serialize import radial_cell_order, radial_cells
from nufm.models.base import PointFeatures
from nufm.models.encoders import (
    build_encoder,
    core_prefixes,
    input_width,
    with_detector_inputs,
    with_input_width,
)
from nufm.models.serialized_patches import (
    TPC_RADIUS_RANGE,
    SerializedPatchConfig,
    SerializedPatchEncoder,
)
from nufm.models.tokenizers import Tokens
from nufm.sim.collider_tpc import generate_collider_events
from nufm.tasks.build import build_task
from nufm.tasks.semseg import SemsegConfig

BINS = (2, 2, 2)
ETA = (-1.0, 1.0)
RADIUS = (0.2, 0.6)

# (eta, phi, R) of the hand event; with BINS, ETA, RADIUS the cells are
# eta [-1, 0) | [0, 1), phi [-pi, 0) | [0, pi), R [0.2, 0.4) | [0.4, 0.6), id (e * 2 + p) * 2 + r
HAND = [
    (0.5, 1.0, 0.45),  # 0: cell (1, 1, 1) = 7
    (-0.5, -1.0, 0.30),  # 1: (0, 0, 0) = 0
    (0.5, 1.0, 0.25),  # 2: (1, 1, 0) = 6
    (-0.5, 2.0, 0.35),  # 3: (0, 1, 0) = 2
    (-0.5, -1.0, 0.25),  # 4: (0, 0, 0) = 0, inside the cell before row 1 (smaller R)
    (0.5, -2.0, 0.50),  # 5: (1, 0, 1) = 5, after rows 3 and 8: eta is swept before phi
    (-3.0, -1.0, 0.10),  # 6: eta and R below their ranges -> edge cell (0, 0, 0) = 0
    (0.5, 1.0, 0.55),  # 7: (1, 1, 1) = 7, after row 0
    (-0.5, 2.0, 0.90),  # 8: R above its range -> (0, 1, 1) = 3
]
HAND_CELLS = [7, 0, 6, 2, 0, 5, 0, 7, 3]
HAND_ORDER = [6, 4, 1, 3, 8, 5, 2, 0, 7]
RR = TPC_RADIUS_RANGE


def _hits(eta_phi_r: list[tuple[float, float, float]]) -> torch.Tensor:
    """(N, 3) float32 xyz of hits at (eta, phi, R), the beam along z."""
    a = torch.tensor(eta_phi_r, dtype=torch.float64)
    eta, phi, r = a.unbind(1)
    return torch.stack([r * phi.cos(), r * phi.sin(), r * eta.sinh()], 1).float()


def _batch(coords: list[torch.Tensor]) -> PointBatch:
    coord = torch.cat(coords)
    offset = torch.cumsum(torch.tensor([len(c) for c in coords]), 0)
    return PointBatch(coord=coord, feat=torch.cat([coord, coord[:, :1]], 1), offset=offset)


def _other_event(n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    eta = torch.rand(n, generator=g) * 3 - 1.5
    phi = torch.rand(n, generator=g) * 2 * math.pi - math.pi
    r = torch.rand(n, generator=g) * 0.5 + 0.15
    return _hits(list(zip(eta.tolist(), phi.tolist(), r.tolist(), strict=True)))


def test_radial_cell_order_by_hand() -> None:
    coord = _hits(HAND)
    assert radial_cells(coord, BINS, ETA, RADIUS).tolist() == HAND_CELLS
    offset = torch.tensor([len(HAND)])
    assert radial_cell_order(coord, offset, BINS, ETA, RADIUS).tolist() == HAND_ORDER
    # the default cells: eta 0.3 -> bin 4 of 8, phi 0.5 -> 4 of 8, R 0.3 -> 1 of 6
    one = _hits([(0.3, 0.5, 0.3)])
    assert radial_cells(one, (8, 8, 6), (-2.0, 2.0), TPC_RADIUS_RANGE).tolist() == [
        (4 * 8 + 4) * 6 + 1
    ]


def test_radial_cell_order_keeps_events_contiguous_and_independent() -> None:
    hand, other = _hits(HAND), _other_event()
    n_h, n_o = len(hand), len(other)
    other_alone = radial_cell_order(other, torch.tensor([n_o]), BINS, ETA, RADIUS)
    b = _batch([hand, other])
    order = radial_cell_order(b.coord, b.offset, BINS, ETA, RADIUS)
    assert order[:n_h].tolist() == HAND_ORDER  # event 0 first, all of it
    assert torch.equal(order[n_h:] - n_h, other_alone)
    b = _batch([other, hand])
    order = radial_cell_order(b.coord, b.offset, BINS, ETA, RADIUS)
    assert torch.equal(order[:n_o], other_alone)
    assert (order[n_o:] - n_o).tolist() == HAND_ORDER


def _tpc_encoder(**kw: object) -> SerializedPatchConfig:
    base = SerializedPatchConfig(
        patch_points=16,
        order="radial-cells",
        target_scale=0.1,
        embed_dim=16,
        depth=2,
        num_heads=2,
        pointnet_dims=(16, 16, 16),
    )
    return dataclasses.replace(base, **kw)


def _tpc_batch(n: int = 2) -> PointBatch:
    pipeline = DETECTORS["collider-tpc"].preprocess.transforms()
    events = generate_collider_events(n, seed=3)
    return collate([pipeline(e, np.random.default_rng(i)) for i, e in enumerate(events)])


def test_radial_patches_on_a_collider_event_keep_radius_order_inside_a_cell() -> None:
    batch = _tpc_batch()
    cfg = _tpc_encoder()
    enc = SerializedPatchEncoder(cfg)
    patches = enc.patchify(batch)
    order = enc.order(batch)
    assert cfg.cell_bins == (8, 8, 6) and cfg.eta_range == (-2.0, 2.0)  # FM4NPP's cells
    expected = radial_cell_order(batch.coord, batch.offset, (8, 8, 6), (-2.0, 2.0), RR)
    assert torch.equal(order, expected)
    flat = patches.idx.reshape(-1)
    assert torch.equal(flat[flat >= 0], order)  # patches cut the order, every hit once
    radius = torch.hypot(batch.coord[:, 0], batch.coord[:, 1])
    cells = radial_cells(batch.coord, cfg.cell_bins, cfg.eta_range, cfg.radius_range)
    one_cell = 0
    for rows in patches.idx[patches.valid]:
        rows = rows[rows >= 0]
        if len(rows) > 2 and bool((cells[rows] == cells[rows[0]]).all()):
            one_cell += 1
            assert bool((radius[rows].diff() >= 0).all()), radius[rows]
    assert one_cell >= 5
    # the cells matter: the order is not the plain radius order of each event
    start = int(batch.offset[0])
    assert not bool((radius[order[:start]].diff() >= 0).all())


def test_tokens_reach_the_points() -> None:
    torch.manual_seed(0)
    batch = _tpc_batch()
    enc = SerializedPatchEncoder(_tpc_encoder()).eval()
    with torch.no_grad():
        out = enc(batch)
        patches = enc.patchify(batch)
    assert out.level == "token" and isinstance(out.tokens, Tokens) and out.valid is not None
    B, _T, D = out.feat.shape
    assert (B, D) == (2, 16) and torch.equal(out.valid, patches.valid)
    assert torch.equal(out.tokens.group_idx, patches.idx)
    assert torch.equal(out.tokens.center, patches.center)
    assert torch.equal(out.tokens.feat, out.feat) and not out.tokens.pos.any()
    assert out.tokens.n_dropped.shape == (B,)
    feat = PointFeatures()(out, batch)
    assert feat.shape == (batch.num_points, D) and bool(torch.isfinite(feat).all())


@pytest.mark.parametrize("order", ["radial-cells", "hilbert"])
def test_semseg_task_on_the_forecasting_encoder_trains_every_parameter(order: str) -> None:
    torch.manual_seed(0)
    cfg = SemsegConfig(encoder=_tpc_encoder(order=order), mode="full", loss="ce")
    task = build_task(cfg)
    assert task.backbone.neck is not None  # token features: the propagation neck is built
    batch = _tpc_batch() if order == "radial-cells" else preprocessed_batch(2)
    out = task(batch)
    assert out.loss.ndim == 0 and bool(torch.isfinite(out.loss))
    out.loss.backward()
    trainable = [(n, p) for n, p in task.named_parameters() if p.requires_grad]
    assert any(n.startswith("backbone.encoder.blocks.") for n, _ in trainable)
    for name, p in trainable:
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


def test_encoder_dispatch() -> None:
    lar = SerializedPatchConfig(embed_dim=32, depth=3, num_heads=4, pointnet_dims=(16, 16, 16))
    tpc = _tpc_encoder(in_channels=5)
    assert isinstance(build_encoder(lar), SerializedPatchEncoder)
    assert input_width(lar) == 4 and input_width(with_input_width(lar, 5)) == 5
    carried = with_detector_inputs(lar, tpc)
    assert isinstance(carried, SerializedPatchConfig)
    assert (carried.embed_dim, carried.depth, carried.num_heads) == (32, 3, 4)
    assert carried.order == "radial-cells" and carried.in_channels == 5
    assert carried.patch_points == tpc.patch_points and carried.pointnet_dims == (16, 16, 16)
    keys = build_encoder(lar).state_dict()
    core = {k for k in keys if k.startswith(core_prefixes(lar))}
    assert core == {k for k in keys if k.startswith(("blocks.", "norm."))}
    assert all(k.startswith(("pointnet.", "pos_embed.")) for k in set(keys) - core)
    with pytest.raises(ValueError, match="cannot take the inputs"):
        with_detector_inputs(lar, SemsegConfig().encoder)  # a PTv3


def test_task_config_with_the_encoder_round_trips() -> None:
    cfg = SemsegConfig(encoder=_tpc_encoder(), mode="linear")
    assert objective_config_from_dict(config_to_dict(cfg)) == cfg


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="cell_bins"):
        SerializedPatchConfig(cell_bins=(8, 0, 6))
    with pytest.raises(ValueError, match="radius_range"):
        SerializedPatchConfig(radius_range=(0.6, 0.2))
    with pytest.raises(ValueError, match="eta_range"):
        SerializedPatchConfig(eta_range=(1.0, 1.0))
