"""Token and grid masking: exact counts per event, padding never masked."""

from __future__ import annotations

import torch

from nufm.ssl.masking import grid_mask, num_to_mask, random_token_mask


def test_num_to_mask_matches_python_int() -> None:
    n = torch.arange(0, 200)
    for ratio in (0.0, 0.3, 0.6, 0.75, 0.9):
        expected = torch.tensor([int(ratio * k) for k in range(200)])
        assert torch.equal(num_to_mask(n, ratio), expected)


def test_random_token_mask_counts_and_padding() -> None:
    torch.manual_seed(0)
    n_valid = torch.tensor([0, 1, 5, 17, 40])
    valid = torch.arange(40) < n_valid[:, None]  # (5, 40)
    for ratio in (0.6, 0.25):
        for _ in range(5):
            is_masked = random_token_mask(valid, ratio)
            assert torch.equal(
                is_masked.sum(1), torch.tensor([int(ratio * int(k)) for k in n_valid])
            )
            assert not bool((is_masked & ~valid).any())


def test_random_token_mask_is_random_over_valid_tokens() -> None:
    torch.manual_seed(1)
    valid = torch.ones(1, 10, dtype=torch.bool)
    hits = torch.stack([random_token_mask(valid, 0.5)[0] for _ in range(2000)]).float().mean(0)
    torch.testing.assert_close(hits, torch.full((10,), 0.5), atol=0.05, rtol=0)


def test_grid_mask_hides_whole_cells_with_exact_count() -> None:
    torch.manual_seed(0)
    coord = torch.rand(300, 3)
    offset = torch.tensor([100, 300])
    cell = 0.25
    is_masked = grid_mask(coord, offset, cell, 0.5)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([100, 200]))
    lo = torch.stack([coord[:100].min(0).values, coord[100:].min(0).values])
    key = torch.floor((coord - lo[batch]) / cell).long()
    for b in range(2):
        rows = batch == b
        cells, inv = torch.unique(key[rows], dim=0, return_inverse=True)
        hidden = torch.zeros(len(cells), dtype=torch.long).index_add_(
            0, inv, is_masked[rows].long()
        )
        sizes = torch.bincount(inv)
        assert bool(((hidden == 0) | (hidden == sizes)).all())  # a cell is all or nothing
        assert int((hidden > 0).sum()) == int(0.5 * len(cells))
