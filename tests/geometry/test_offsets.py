import torch

from nufm.geometry.offsets import (
    offset_to_batch_index,
    offset_to_counts,
    offset_to_cu_seqlens,
    pad,
    pad_mask,
    scatter_rows,
    unpad,
)


def test_offset_helpers_hand_computed() -> None:
    offset = torch.tensor([3, 3, 7])
    assert offset_to_counts(offset).tolist() == [3, 0, 4]
    assert offset_to_batch_index(offset).tolist() == [0, 0, 0, 2, 2, 2, 2]
    assert offset_to_cu_seqlens(offset).tolist() == [0, 3, 3, 7]


def test_pad_unpad_round_trip() -> None:
    offset = torch.tensor([2, 5, 6])
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    padded, valid = pad(x, offset, fill=-1.0)
    assert padded.shape == (3, 3, 2)
    assert valid.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    assert padded[0, 2].tolist() == [-1.0, -1.0]
    assert padded[1, 0].tolist() == x[2].tolist()
    torch.testing.assert_close(unpad(padded, valid), x)


def test_scatter_rows_inverts_unpad_for_any_mask() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]], dtype=torch.bool)
    back = scatter_rows(unpad(x, mask), mask)
    assert torch.equal(back[mask], x[mask]) and bool((back[~mask] == 0).all())
    assert back.shape == x.shape


def test_pad_mask_marks_the_real_slots_of_pad() -> None:
    offset = torch.tensor([2, 2, 5])  # counts 2, 0, 3
    assert pad_mask(offset).tolist() == [
        [True, True, False],
        [False, False, False],
        [True, True, True],
    ]
    assert pad_mask(offset, 4).tolist()[2] == [True, True, True, False]
    _, valid = pad(torch.arange(5.0), offset)
    assert torch.equal(valid, pad_mask(offset))
