import pytest
import torch

from nufm.geometry.segment_max import segment_max


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_segment_max_hand_case_and_gradient(backend: str) -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, -5.0], [-1.0, -4.0], [0.5, 7.0]], requires_grad=True)
    lengths = torch.tensor([2, 0, 1, 1])  # an empty segment gives zeros
    got = segment_max(x, lengths, backend=backend)
    assert got.tolist() == [[3.0, -2.0], [0.0, 0.0], [-1.0, -4.0], [0.5, 7.0]]
    got.sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_segment_max_ties_share_the_gradient_whatever_its_sign(backend: str) -> None:
    # three rows tie at 2 in column 0, two at -1 in column 1: each gets its share of the
    # segment's gradient, negative ones too (PyTorch's segment_reduce divides only positive ones)
    x = torch.tensor([[2.0, -1.0], [2.0, -3.0], [2.0, -1.0]], requires_grad=True)
    got = segment_max(x, torch.tensor([3]), backend=backend)
    (got * torch.tensor([[-3.0, 4.0]])).sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [[-1.0, 2.0], [-1.0, 0.0], [-1.0, 2.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_segment_max_numba_equals_the_reference_values_and_gradients(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 17, (300,), generator=gen)
    # rounded to quarters so that ties are frequent (as in bf16 activations)
    x = (torch.randn(int(lengths.sum()), 24, generator=gen) * 4).round() / 4
    grad = torch.randn(300, 24, generator=gen).to(dtype)
    results = []
    for backend in ("torch", "numba"):
        leaf = x.to(dtype).requires_grad_()
        out = segment_max(leaf, lengths, backend=backend)
        (out * grad).sum().backward()
        assert out.dtype == dtype and leaf.grad is not None and leaf.grad.dtype == dtype
        results.append((out.detach(), leaf.grad))
    (ref, ref_grad), (fast, fast_grad) = results
    assert torch.equal(ref, fast)
    assert torch.equal(ref_grad, fast_grad)


def test_segment_max_rejects_lengths_that_do_not_cover_the_rows() -> None:
    with pytest.raises(ValueError, match="sum to the 4 rows"):
        segment_max(torch.zeros(4, 2), torch.tensor([2, 1]), backend="numba")
    with pytest.raises(ValueError, match="lengths must be >= 0"):  # sums right, one negative
        segment_max(torch.zeros(4, 2), torch.tensor([3, -1, 2]), backend="numba")
    with pytest.raises(ValueError, match=r"\(P, F\)"):
        segment_max(torch.zeros(4), torch.tensor([4]))
