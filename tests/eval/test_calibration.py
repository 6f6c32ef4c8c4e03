"""Tests of :mod:`nufm.eval.calibration`: macro F1 against scikit-learn, offsets that recover a
known logit shift, never worse than no offsets on the fitted points."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from nufm.eval.calibration import fit_class_offsets, macro_f1_of


def test_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 4, 300)
        p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))  # class 4 only predicted
        labels = np.union1d(y, p)
        ref = f1_score(y, p, labels=labels, average="macro", zero_division=0)
        assert macro_f1_of(p, y, 5) == pytest.approx(ref, abs=1e-12)


def test_offsets_recover_a_shifted_rare_class() -> None:
    """A rare class whose logits are right up to a constant -3 is never predicted; the fitted
    offset undoes the shift (within the grid step) and its F1 comes back."""
    rng = np.random.default_rng(1)
    n = 20_000
    y = rng.choice(3, n, p=[0.6, 0.39, 0.01])
    logits = rng.normal(0.0, 1.0, (n, 3))
    logits[np.arange(n), y] += 4.0  # separable by argmax
    shifted = logits.copy()
    shifted[:, 2] -= 6.0  # class 2 (1 % of the points) is now hardly ever the argmax
    f1_before = f1_score(y, shifted.argmax(1), average=None, labels=[0, 1, 2])
    assert f1_before[2] < 0.1
    b = fit_class_offsets(shifted, y)
    assert b[0] == 0.0
    f1_after = f1_score(y, (shifted + b).argmax(1), average=None, labels=[0, 1, 2])
    assert f1_after[2] > 0.9
    assert 4.0 <= b[2] - b[1] <= 8.0  # about the removed 6, minus what the tail allows


def test_offsets_never_lower_the_fitted_score_and_skip_ignored() -> None:
    rng = np.random.default_rng(2)
    n = 5_000
    y = rng.integers(0, 4, n)
    logits = rng.normal(0.0, 1.0, (n, 4)) + 0.8 * np.eye(4)[y]
    y_ign = y.copy()
    y_ign[:100] = -1
    b = fit_class_offsets(logits, y_ign)
    kept = y_ign != -1
    before = macro_f1_of(logits[kept].argmax(1), y[kept], 4)
    after = macro_f1_of((logits[kept] + b).argmax(1), y[kept], 4)
    assert after >= before
    # balanced, symmetric classes: nothing to gain beyond noise, offsets stay small
    assert np.abs(b).max() <= 1.0


def test_bad_shapes_and_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="logits"):
        fit_class_offsets(np.zeros((4, 3)), np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="contain 0"):
        fit_class_offsets(np.zeros((4, 3)), np.zeros(4, dtype=np.int64), grid=np.array([1.0]))
