"""The reference (torch) kernels on CUDA agree with the CPU fast paths (opt-in: -m gpu)."""

from __future__ import annotations

import pytest
import torch

from helpers.events import clustered_events
from nufm.geometry.ball_query import ball_query
from nufm.geometry.cnms import centrality_nms
from nufm.geometry.fps import farthest_point_sampling
from nufm.geometry.grid import grid_pool, voxelize
from nufm.geometry.knn import knn
from nufm.geometry.serialize import ORDERS, serialization_order

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_reference_matches_cpu_fast_paths() -> None:
    coord, offset = clustered_events([500, 0, 7, 800], seed=21)
    dev = torch.device("cuda")
    c_d, o_d = coord.to(dev), offset.to(dev)
    fps_cpu = farthest_point_sampling(coord, offset, 64, backend="numba")
    fps_gpu = farthest_point_sampling(c_d, o_d, 64)
    assert torch.equal(fps_cpu[0], fps_gpu[0].cpu())
    for mode in ("first", "nearest"):
        bq_cpu = ball_query(coord, offset, coord, offset, 3.0, 32, mode, backend="numba")
        bq_gpu = ball_query(c_d, o_d, c_d, o_d, 3.0, 32, mode)
        assert torch.equal(bq_cpu[0], bq_gpu[0].cpu())
    nms_cpu = centrality_nms(coord, offset, 4.0, 64, 40, backend="numba")
    nms_gpu = centrality_nms(c_d, o_d, 4.0, 64, 40)
    for a, b in zip(nms_cpu, nms_gpu, strict=False):
        assert torch.equal(a, b.cpu())
    knn_cpu = knn(coord, offset, coord, offset, 8, backend="scipy")
    knn_gpu = knn(c_d, o_d, c_d, o_d, 8)
    torch.testing.assert_close(knn_cpu[1], knn_gpu[1].cpu())
    g = voxelize(coord, offset, 1.0)
    feat = torch.randn(coord.shape[0], 5)
    pool_cpu = grid_pool(feat, g, offset, 2, coord=coord)
    pool_gpu = grid_pool(feat.to(dev), g.to(dev), o_d, 2, coord=c_d)
    torch.testing.assert_close(pool_cpu.feat, pool_gpu.feat.cpu())
    order_cpu, _ = serialization_order(g, offset, None, ORDERS)
    order_gpu, _ = serialization_order(g.to(dev), o_d, None, ORDERS)
    assert torch.equal(order_cpu, order_gpu.cpu())
