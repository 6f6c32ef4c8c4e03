from __future__ import annotations

import itertools

import pytest
import torch

from nufm.geometry.serialize import (
    ORDERS,
    adaptive_depth,
    decode,
    encode,
    patch_padding,
    serialization_order,
)

POINTS = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 5, 7], [1000, 2000, 1500]])


def test_z_order_published_values() -> None:
    assert encode(POINTS, depth=11, order="z").tolist() == [4, 2, 1, 239, 4160633408]


def test_hilbert_published_values() -> None:
    assert encode(POINTS, depth=11, order="hilbert").tolist() == [3, 1, 7, 293, 2780088566]


def test_z_order_bit_layout_hand_computed() -> None:
    # bit i of x -> 3i+2, of y -> 3i+1, of z -> 3i
    g = torch.tensor([[2, 0, 0], [0, 0, 4], [5, 0, 0]])
    assert encode(g, depth=4, order="z").tolist() == [1 << 5, 1 << 6, (1 << 2) | (1 << 8)]


def test_trans_orders_swap_x_and_y() -> None:
    g = torch.randint(0, 1 << 10, (200, 3))
    swapped = g[:, [1, 0, 2]]
    for base in ("z", "hilbert"):
        torch.testing.assert_close(
            encode(g, depth=10, order=f"{base}-trans"), encode(swapped, depth=10, order=base)
        )


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("depth", [1, 3, 11, 16])
def test_round_trip(order: str, depth: int) -> None:
    gen = torch.Generator().manual_seed(depth)
    g = torch.randint(0, 1 << depth, (500, 3), generator=gen)
    batch = torch.randint(0, 5, (500,), generator=gen)
    code = encode(g, batch, depth=depth, order=order)
    g2, b2 = decode(code, depth=depth, order=order)
    assert torch.equal(g2, g) and torch.equal(b2, batch)


@pytest.mark.parametrize("depth", [2, 4])
def test_hilbert_is_a_continuous_bijection(depth: int) -> None:
    side = 1 << depth
    axes = torch.arange(side)
    g = torch.cartesian_prod(axes, axes, axes)  # every cell once
    code = encode(g, depth=depth, order="hilbert")
    assert torch.equal(torch.sort(code).values, torch.arange(side**3))
    walk = g[torch.argsort(code)]
    steps = (walk[1:] - walk[:-1]).abs().sum(dim=1)
    assert bool((steps == 1).all())  # consecutive codes are face neighbours


def test_batch_prefix_keeps_events_contiguous() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 64, (300, 3), generator=gen)
    offset = torch.tensor([100, 100, 250, 300])
    order, inverse = serialization_order(g, offset, depth=None, orders=ORDERS)
    assert order.shape == inverse.shape == (4, 300)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor([100, 0, 150, 50]))
    for j in range(4):
        assert bool((torch.diff(batch[order[j]]) >= 0).all())
        assert torch.equal(order[j][inverse[j]], torch.arange(300))
        codes = encode(g[order[j]], batch[order[j]], adaptive_depth(g), ORDERS[j])
        assert bool((torch.diff(codes) >= 0).all())


def test_adaptive_depth_and_errors() -> None:
    assert adaptive_depth(torch.tensor([[0, 0, 0]])) == 1
    assert adaptive_depth(torch.tensor([[767, 3, 0]])) == 10  # bit_length(768)
    assert adaptive_depth(torch.tensor([[1023, 3, 0]])) == 11
    with pytest.raises(ValueError, match="outside"):
        encode(torch.tensor([[8, 0, 0]]), depth=3)
    with pytest.raises(ValueError, match="unknown order"):
        encode(POINTS, depth=11, order="peano")


def test_patch_padding_published_case() -> None:
    pp = patch_padding(torch.tensor([300]), 256)
    assert pp.pad_idx.shape == (512,)
    assert torch.equal(pp.pad_idx[:300], torch.arange(300))
    assert torch.equal(pp.pad_idx[300:512], torch.arange(44, 256))
    assert pp.cu_seqlens.tolist() == [0, 256, 512]
    assert torch.equal(pp.pad_idx[pp.unpad_idx], torch.arange(300))


def test_patch_padding_multi_event() -> None:
    counts = [300, 0, 100, 512, 257]
    offset = torch.cumsum(torch.tensor(counts), 0)
    k = 256
    pp = patch_padding(offset, k)
    # padded lengths 512, 0, 100 (one short patch), 512 (exact), 512
    assert pp.pad_idx.shape == (512 + 100 + 512 + 512,)
    assert pp.cu_seqlens.tolist() == [0, 256, 512, 612, 868, 1124, 1380, 1636]
    n = sum(counts)
    assert torch.equal(pp.pad_idx[pp.unpad_idx], torch.arange(n))
    # each padded slot holds a row of its own event, and every patch has distinct rows
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    cu = pp.cu_seqlens.tolist()
    for a, b in itertools.pairwise(cu):
        rows = pp.pad_idx[a:b]
        assert rows.unique().numel() == b - a
        assert batch[rows].unique().numel() == 1
    # last event: 257 points, r = 1 -> slots 257..511 of its padding copy rows 1..255
    last = pp.pad_idx[1124:]
    assert torch.equal(last[257:] - (n - 257), torch.arange(1, 256))
