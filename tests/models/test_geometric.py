"""LocalGeometryEncoder: descriptors vs a scipy/numpy reference, hand cases, task plumbing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from nufm.batch import PointBatch
from nufm.config import config_to_dict, objective_config_from_dict
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import Preprocess, RandomRotation
from nufm.geometry.knn import knn
from nufm.models.encoders import build_encoder
from nufm.models.geometric import (
    EventDescriptors,
    LocalGeometryConfig,
    LocalGeometryEncoder,
    _moments,
    descriptor_key,
    multiscale_shape_features,
    point_shape_descriptors,
)
from nufm.tasks.build import build_task
from nufm.tasks.semseg import SemsegConfig


def _reference(xyz: np.ndarray, energy: np.ndarray, k: int) -> np.ndarray:
    """Per-point descriptors of one event with cKDTree and numpy eigvalsh."""
    kk = min(k, len(xyz))
    d, idx = cKDTree(xyz).query(xyz, kk)
    d, idx = d.reshape(len(xyz), kk), idx.reshape(len(xyz), kk)
    nb = xyz[idx]
    c = nb - nb.mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", c, c) / kk
    ev = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0, None)
    s = ev.sum(1)
    return np.concatenate(
        [
            ev / (s[:, None] + 1e-8),
            np.log(s + 1e-8)[:, None],
            np.log(d[:, -1] + 1e-8)[:, None],
            energy[idx].mean(1)[:, None],
        ],
        1,
    )


def _batch(events: list[np.ndarray]) -> PointBatch:
    coord = torch.from_numpy(np.concatenate(events)).float()
    energy = torch.rand(len(coord))
    feat = torch.cat([coord, energy[:, None]], 1)
    offset = torch.cumsum(torch.tensor([len(e) for e in events]), 0)
    return PointBatch(coord=coord, feat=feat, offset=offset)


def test_descriptors_match_reference_per_event() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    events = [rng.normal(size=(300, 3)), rng.normal(size=(5, 3)), rng.normal(size=(120, 3))]
    batch = _batch(events)
    out = LocalGeometryEncoder(LocalGeometryConfig(ks=(4, 16)))(batch)
    assert out.level == "point" and out.feat.shape == (425, 4 + 12)
    start = 0
    for e in events:
        rows = slice(start, start + len(e))
        xyz = batch.coord[rows].double().numpy()
        energy = batch.feat[rows, 3].double().numpy()
        want = np.concatenate(
            [batch.feat[rows].numpy(), _reference(xyz, energy, 4), _reference(xyz, energy, 16)], 1
        )
        np.testing.assert_allclose(out.feat[rows].numpy(), want, rtol=1e-4, atol=1e-5)
        start += len(e)


def test_line_is_linear_and_plane_is_planar() -> None:
    t = np.arange(50, dtype=np.float64)
    line = np.stack([t, 2 * t, -t], 1) * 0.01
    gx, gy = np.meshgrid(np.arange(10.0), np.arange(10.0))
    plane = np.stack([gx.ravel(), gy.ravel(), np.zeros(100)], 1) * 0.01
    out = LocalGeometryEncoder(LocalGeometryConfig(ks=(9,)))(_batch([line, plane])).feat
    shape_line, shape_plane = out[:50, 4:7], out[50:, 4:7]
    assert torch.allclose(shape_line[:, 0], torch.ones(50), atol=1e-4)  # all along one axis
    assert float(shape_plane[:, 2].abs().max()) < 1e-4  # no spread out of the plane
    assert float(shape_plane[:, 1].min()) > 0.1  # but spread within it
    # the 9th neighbour of a middle line point (itself included) is 4 steps away
    assert float(out[25, 8]) == pytest.approx(np.log(4 * 0.01 * np.sqrt(6)), abs=1e-5)


def test_semseg_linear_on_descriptors_trains_and_config_round_trips() -> None:
    cfg = SemsegConfig(encoder=LocalGeometryConfig(), mode="linear", loss="ce")
    back = objective_config_from_dict(config_to_dict(cfg))
    assert back == cfg
    task = build_task(cfg)
    assert [n for n, p in task.named_parameters() if p.requires_grad] == [
        "head.weight",
        "head.bias",
    ]
    rng = np.random.default_rng(1)
    batch = _batch([rng.normal(size=(64, 3)), rng.normal(size=(40, 3))])
    batch.segment = torch.randint(0, 5, (104,))
    out = task(batch)
    out.loss.backward()
    assert task.head.weight.grad is not None and torch.isfinite(out.loss)


def test_bad_configs_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="ks"):
        LocalGeometryConfig(ks=(1,))
    enc = build_encoder(LocalGeometryConfig(in_channels=5))
    with pytest.raises(ValueError, match="in_channels=5"):
        enc(_batch([np.zeros((4, 3))]))


@pytest.mark.parametrize("ks", [(4, 16, 64), (64, 4)])
def test_numba_moments_match_the_torch_reference(ks: tuple[int, ...]) -> None:
    """The one-pass numba kernel against the per-scale gather reference, with events smaller
    than the largest k (padded neighbour lists), far from the origin, and unsorted ks."""
    rng = np.random.default_rng(3)
    events = [rng.normal(size=(200, 3)) + 700.0, rng.normal(size=(10, 3)), rng.normal(size=(1, 3))]
    batch = _batch(events)
    idx, dist = knn(batch.coord, batch.offset, batch.coord, batch.offset, max(ks))
    assert bool((idx[200:] < 0).any())  # the small events are padded
    fast = multiscale_shape_features(batch.coord, batch.feat, idx, dist, ks, backend="numba")
    ref = multiscale_shape_features(batch.coord, batch.feat, idx, dist, ks, backend="torch")
    assert fast.shape == (211, 6 * len(ks))
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    # the one-point event: no spread, the log-eps extent and distance
    assert float(fast[210, 3]) == pytest.approx(np.log(1e-8), rel=1e-6)
    with pytest.raises(ValueError, match="neighbours"):
        multiscale_shape_features(batch.coord, batch.feat, idx[:, :8], dist[:, :8], ks)


def test_numba_moments_on_threads_equal_one_thread() -> None:
    """Row ranges on 3 threads (1,000 points, padded neighbour lists in the small event) give
    exactly the one-thread moments, and match the torch reference."""
    rng = np.random.default_rng(4)
    batch = _batch([rng.normal(size=(990, 3)) + 50.0, rng.normal(size=(10, 3))])
    idx, dist = knn(batch.coord, batch.offset, batch.coord, batch.offset, 64)
    args = (
        batch.coord.double().numpy(),
        batch.feat[:, -1].double().numpy(),
        idx.numpy(),
        np.array([8, 64], dtype=np.int64),
    )
    one, three = _moments(*args, threads=1), _moments(*args, threads=3)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = multiscale_shape_features(batch.coord, batch.feat, idx, dist, (8, 64))
    finally:
        torch.set_num_threads(previous)
    ref = multiscale_shape_features(batch.coord, batch.feat, idx, dist, (8, 64), backend="torch")
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def _raw_events(n: int) -> list[Event]:
    """Synthetic events as a file would give them (a source and a row each)."""
    return [
        synthetic_event(i, n_scatter=10).with_fields(source="mem.h5", event_id=i) for i in range(n)
    ]


def test_pipeline_descriptors_equal_the_in_step_ones_and_are_computed_once() -> None:
    ks = (4, 16)
    pre = Preprocess(energy_threshold=0.0)
    step = EventDescriptors(ks, pre)
    raw = _raw_events(3)
    rng = np.random.default_rng(0)
    with_step = collate([pre.transforms(augment=[step])(e, rng) for e in raw])
    without = collate([pre.transforms()(e, rng) for e in raw])
    assert with_step.descriptor_key == descriptor_key(ks) == "shape:4,16"
    assert without.descriptors is None and without.descriptor_key is None
    assert with_step.descriptors is not None
    torch.testing.assert_close(
        with_step.descriptors, point_shape_descriptors(without, ks), rtol=0, atol=0
    )
    # the descriptor encoder reads them from the batch: the same features
    encoder = LocalGeometryEncoder(LocalGeometryConfig(ks=ks))
    assert torch.equal(encoder(with_step).feat, encoder(without).feat)
    # cached per (source, row, size): a second epoch reuses the arrays; a row-less event is
    # computed every time
    assert len(step.memo) == 3
    again = pre.transforms(augment=[step])(raw[1], rng)
    assert again.descriptors is step.memo.get(raw[1], lambda ev: None)  # the cached array
    pre.transforms(augment=[step])(raw[0].with_fields(event_id=-1), rng)
    assert len(step.memo) == 3
    # rotations leave the descriptors unchanged: the values cached before the augmentation
    # equal those of the rotated event up to float rounding, wherever the k-th and (k+1)-th
    # neighbours are not at one distance (on the voxel lattice such ties are common, and a
    # rotation may pick the other of two equidistant points)
    rotated = collate([pre.transforms(augment=[step, RandomRotation()])(e, rng) for e in raw])
    assert rotated.descriptors is not None
    assert not torch.equal(rotated.coord, with_step.coord)
    _, dist = knn(without.coord, without.offset, without.coord, without.offset, max(ks) + 1)
    clear = torch.stack([dist[:, k] - dist[:, k - 1] > 1e-4 for k in ks]).all(0)  # (N,)
    assert clear.float().mean() > 0.5
    torch.testing.assert_close(
        rotated.descriptors[clear], point_shape_descriptors(rotated, ks)[clear], rtol=0, atol=1e-4
    )


def test_collate_packs_descriptors_only_when_every_event_has_the_same_kind() -> None:
    pre = Preprocess(energy_threshold=0.0)
    raw = _raw_events(2)
    rng = np.random.default_rng(0)
    a = pre.transforms(augment=[EventDescriptors((4,), pre)])(raw[0], rng)
    b = pre.transforms(augment=[EventDescriptors((4, 8), pre)])(raw[1], rng)
    plain = pre.transforms()(raw[1], rng)
    assert collate([a, a]).descriptors is not None
    for mixed in ([a, b], [a, plain]):
        batch = collate(mixed)
        assert batch.descriptors is None and batch.descriptor_key is None
    # a subset of the points keeps its rows of the descriptors
    keep = np.arange(0, len(a), 2)
    assert a.descriptors is not None
    np.testing.assert_array_equal(a.select(keep).descriptors, a.descriptors[keep])


def test_on_lattice_events_the_torch_knn_changes_descriptors_only_at_ties() -> None:
    """Simulated events sit on the 3 mm voxel lattice, where many neighbours are equally
    far. The torch kNN and moments (what a GPU computes in the step: data.cache_descriptors
    false) give scipy's and numba's descriptors at every point but those whose k-th and
    (k+1)-th neighbours tie at some scale (tests/train/test_gpu.py holds the GPU to this)."""
    from helpers.ties import descriptor_ties
    from nufm.sim import generate_events

    ks = (8, 32, 128, 512)
    rng = np.random.default_rng(0)
    batch = collate([Preprocess().transforms()(e, rng) for e in generate_events(4, 7)])
    fast = point_shape_descriptors(batch, ks).numpy()
    idx, dist = knn(batch.coord, batch.offset, batch.coord, batch.offset, max(ks), backend="torch")
    ref = multiscale_shape_features(batch.coord, batch.feat, idx, dist, ks, backend="torch")
    tie = descriptor_ties(batch, ks)
    off = ~np.isclose(ref.numpy(), fast, rtol=1e-4, atol=1e-4).all(axis=1)  # (N,)
    assert off.any() and tie.mean() < 0.5  # ties happen, and they are the exception
    assert not (off & ~tie).any()
