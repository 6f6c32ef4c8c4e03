"""Piecewise-linear quantile encoding: hand-computed bins, edges against numpy, errors, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nufm.models.numeric import PiecewiseLinearEncoding, quantile_edges


def test_quantile_edges_are_the_column_quantiles() -> None:
    x = np.stack([np.arange(101.0), np.arange(101.0) ** 2], axis=1)  # (101, 2)
    edges = quantile_edges(x, 4)
    assert edges.shape == (2, 5) and edges.dtype == np.float32
    np.testing.assert_array_equal(edges[0], [0, 25, 50, 75, 100])
    np.testing.assert_array_equal(edges[1], [0, 625, 2500, 5625, 10000])


def _encoding(edges: list[list[float]]) -> PiecewiseLinearEncoding:
    e = torch.tensor(edges)
    enc = PiecewiseLinearEncoding(e.shape[0], e.shape[1] - 1)
    enc.edges.copy_(e)
    enc.fitted.fill_(True)
    return enc


def test_bins_by_hand() -> None:
    enc = _encoding([[0.0, 1.0, 2.0, 4.0]])  # one channel, three bins
    x = torch.tensor([[-1.0], [0.5], [1.5], [3.0], [10.0]])
    expected = torch.tensor(
        [[0, 0, 0], [0.5, 0, 0], [1, 0.5, 0], [1, 1, 0.5], [1, 1, 1]], dtype=torch.float32
    )
    torch.testing.assert_close(enc(x), expected)


def test_channels_are_laid_out_channel_major_and_a_repeated_edge_is_a_step() -> None:
    enc = _encoding([[0.0, 2.0, 4.0], [0.0, 0.0, 1.0]])  # channel 1's first bin is empty
    x = torch.tensor([[1.0, 0.5], [3.0, -0.1]])
    expected = torch.tensor([[0.5, 0.0, 1.0, 0.5], [1.0, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(enc(x), expected)


def test_fit_matches_quantile_edges_and_survives_a_state_dict_round_trip() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(1000, 3)).astype(np.float32)
    enc = PiecewiseLinearEncoding(3, 8)
    enc.fit(x)
    np.testing.assert_array_equal(enc.edges.numpy(), quantile_edges(x, 8))
    out = enc(torch.from_numpy(x))  # (1000, 24)
    # every channel's bins sum to its quantile rank times 8: about uniform over the train set
    rank = out.reshape(1000, 3, 8).sum(-1)  # (1000, 3) in [0, 8]
    assert float(rank.min()) == 0.0 and float(rank.max()) == 8.0
    assert abs(float(rank.mean()) - 4.0) < 0.1
    loaded = PiecewiseLinearEncoding(3, 8)
    loaded.load_state_dict(enc.state_dict())
    torch.testing.assert_close(loaded(torch.from_numpy(x)), out)


def test_errors() -> None:
    enc = PiecewiseLinearEncoding(2, 4)
    with pytest.raises(RuntimeError, match="never fitted"):
        enc(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"expected \(M, 2\)"):
        enc.fit(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        quantile_edges(np.array([[0.0], [np.nan]]), 2)
    with pytest.raises(ValueError, match="non-empty"):
        quantile_edges(np.zeros((0, 2)), 2)
    with pytest.raises(ValueError, match="bins >= 1"):
        PiecewiseLinearEncoding(2, 0)
