"""set_nearest: numba vs the torch reference exactly (ties on a grid, invalid slots, 4-D),
against a hand case, and the inputs it rejects."""

from __future__ import annotations

import pytest
import torch

from nufm.geometry.set_nearest import set_nearest


def _random_sets(seed: int, Q: int, K1: int, K2: int, F: int, grid: bool):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(Q, K1, F, generator=gen)
    b = torch.randn(Q, K2, F, generator=gen)
    if grid:  # integer coordinates: many exactly tied distances
        a, b = torch.round(a * 2), torch.round(b * 2)
    av = torch.rand(Q, K1, generator=gen) < 0.7
    bv = torch.rand(Q, K2, generator=gen) < 0.7
    av[0], bv[1] = False, False  # an empty first set, an empty second set
    return a, av, b, bv


@pytest.mark.parametrize(("F", "grid"), [(3, False), (3, True), (4, False), (4, True)])
def test_numba_equals_torch_reference(F: int, grid: bool) -> None:
    a, av, b, bv = _random_sets(F + 10 * grid, 300, 16, 24, F, grid)
    want = set_nearest(a, av, b, bv, backend="torch")
    got = set_nearest(a, av, b, bv, backend="numba")
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.int64
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_nearest_is_a_valid_minimum_and_first_of_ties() -> None:
    a, av, b, bv = _random_sets(5, 200, 12, 9, 3, grid=True)
    near_b, near_a = set_nearest(a, av, b, bv)
    d = (a[:, :, None] - b[:, None]).square().sum(-1)  # (Q, K1, K2)
    for q in range(a.shape[0]):
        for i in range(a.shape[1]):
            if av[q, i] and bv[q].any():
                j = int(near_b[q, i])
                assert bv[q, j]
                best = d[q, i][bv[q]].min()
                assert d[q, i, j] == best
                assert not any(bv[q, jj] and d[q, i, jj] == best for jj in range(j))
        for j in range(b.shape[1]):
            if bv[q, j] and av[q].any():
                i = int(near_a[q, j])
                assert av[q, i] and d[q, i, j] == d[q, :, j][av[q]].min()


def test_hand_case() -> None:
    a = torch.tensor([[[0.0, 0, 0], [5.0, 0, 0], [9.0, 9, 9]]])
    av = torch.tensor([[True, True, False]])  # the third point is padding
    b = torch.tensor([[[4.0, 0, 0], [1.0, 0, 0], [2.5, 0, 0]]])
    bv = torch.tensor([[True, True, True]])
    for backend in ("torch", "numba"):
        near_b, near_a = set_nearest(a, av, b, bv, backend=backend)
        assert near_b[0, :2].tolist() == [1, 0]
        # 2.5 is 2.5 from both 0 and 5: the first (0) wins
        assert near_a[0].tolist() == [1, 0, 0]


def test_bf16_inputs_are_compared_in_fp32() -> None:
    a, av, b, bv = _random_sets(3, 50, 8, 8, 3, grid=False)
    got = set_nearest(a.bfloat16(), av, b.bfloat16(), bv)
    want = set_nearest(a.bfloat16().float(), av, b.bfloat16().float(), bv, backend="torch")
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_rejects_mismatched_shapes() -> None:
    a, av, b, bv = _random_sets(0, 4, 5, 6, 3, grid=False)
    with pytest.raises(ValueError, match="same Q and F"):
        set_nearest(a, av, b[:, :, :2], bv)
    with pytest.raises(ValueError, match="valid masks"):
        set_nearest(a, av[:, :3], b, bv)
    with pytest.raises(ValueError, match="unknown backend"):
        set_nearest(a, av, b, bv, backend="scipy")
