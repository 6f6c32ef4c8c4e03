"""The study's test-event bootstrap over rows: cells over seeds, paired comparisons, and what
it refuses."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nufm.eval.bootstrap import (
    bootstrap_macro_f1,
    bootstrap_weights,
    macro_f1_of_counts,
    save_event_confusion,
)
from nufm.workflows.study import MODE_LABELS
from nufm.workflows.study_bootstrap import (
    COMPARISONS,
    bootstrap_markdown,
    study_bootstrap,
)


@dataclass
class Row:
    mode: str
    n_train: int
    seed: int
    score: float
    run_dir: str


def _row(tmp: Path, mode: str, n: int, seed: int, counts: np.ndarray) -> Row:
    run_dir = tmp / f"{mode}-n{n}-s{seed}"
    run_dir.mkdir()
    save_event_confusion(run_dir, counts)
    return Row(mode, n, seed, float(macro_f1_of_counts(counts.sum(0))), str(run_dir))


def _noisy(rng: np.random.Generator, targets: np.ndarray, right: float) -> np.ndarray:
    """(E, 3, 3) counts of a classifier right about ``right`` of the time on the points of
    ``targets`` (E, points)."""
    out = np.zeros((len(targets), 3, 3), np.int64)
    for e, t in enumerate(targets):
        p = np.where(rng.random(t.size) < right, t, rng.integers(0, 3, t.size))
        np.add.at(out[e], (t, p), 1)
    return out


def test_cells_and_paired_comparisons(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    E = 40
    targets = rng.integers(0, 3, (E, 30))  # the test events' points, the same for every row
    scratch = _noisy(rng, targets, 0.5)
    support = scratch.sum(2)  # (E, 3) the true classes of each event's points
    perfect = np.zeros_like(scratch)
    for c in range(3):
        perfect[:, c, c] = support[:, c]  # the same points, every one right
    tuned = [_noisy(rng, targets, 0.8), _noisy(rng, targets, 0.7)]
    rows = [
        _row(tmp_path, "scratch-fused", 10, 0, scratch),
        _row(tmp_path, "full-fused", 10, 0, tuned[0]),
        _row(tmp_path, "full-fused", 10, 1, tuned[1]),
        _row(tmp_path, "probe", 10, 0, perfect),
        _row(tmp_path, "probe-random", 10, 0, perfect),
        _row(tmp_path, "scratch-fused", 100, 0, perfect),  # scratch with 10x the labels
    ]
    boot = study_bootstrap(rows, draws=400, seed=1)
    assert boot is not None and boot.num_events == E and boot.draws == 400

    # a cell of two seeds: the mean of their scores, the seeds' standard error, and the
    # bootstrap's of their mean on the same draws
    cell = boot.cells[("full-fused", 10)]
    scores = [rows[1].score, rows[2].score]
    assert cell.seeds == 2 and cell.mean == pytest.approx(np.mean(scores))
    assert cell.seed_se == pytest.approx(np.std(scores, ddof=1) / math.sqrt(2))
    draws = bootstrap_macro_f1(tuned, bootstrap_weights(E, 400, 1)).mean(1)  # (B,)
    assert cell.boot_se == pytest.approx(np.std(draws, ddof=1))
    assert (cell.low, cell.high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert cell.total == pytest.approx(math.hypot(cell.boot_se, cell.seed_se))
    # one seed: no seed term; every point right on every draw: no spread at all
    one = boot.cells[("scratch-fused", 10)]
    assert one.seeds == 1 and math.isnan(one.seed_se) and one.total == one.boot_se > 0
    assert boot.cells[("probe", 10)].boot_se == 0 and boot.cells[("probe", 10)].mean == 1

    got = {(c.a, c.n_train, c.b, c.n_other): c for c in boot.comparisons}
    assert list(got) == [  # at the same size in the order of COMPARISONS, then against 10x
        ("full-fused", 10, "scratch-fused", 10),
        ("probe", 10, "probe-random", 10),
        ("full-fused", 10, "scratch-fused", 100),
    ]
    assert COMPARISONS.index(("full-fused", "scratch-fused")) < COMPARISONS.index(
        ("probe", "probe-random")
    )
    below = got[("full-fused", 10, "scratch-fused", 100)]  # below the perfect one on every draw
    assert below.above == 0.0 and below.high < 0 and below.diff == pytest.approx(cell.mean - 1)
    better = got[("full-fused", 10, "scratch-fused", 10)]
    assert better.diff == pytest.approx(cell.mean - one.mean)
    assert better.above == 1.0 and 0 < better.low <= better.diff <= better.high
    same = got[("probe", 10, "probe-random", 10)]
    assert (same.diff, same.low, same.high, same.above) == (0, 0, 0, 0)

    md = bootstrap_markdown(boot, MODE_LABELS)
    assert f"{cell.mean:.3f} [{cell.low:.3f}, {cell.high:.3f}] +- {cell.total:.3f} |" in md
    assert "(1 seed)" in md and f"| {MODE_LABELS['full-fused']} | 10 | " in md
    assert f"| {MODE_LABELS['scratch-fused']} | 100 | " in md
    assert "100.0 % |" in md


def test_no_bootstrap_without_counts_or_with_other_test_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(2)
    assert study_bootstrap([Row("scratch", 4, 0, 0.5, str(tmp_path / "none"))]) is None
    targets = rng.integers(0, 3, (10, 30))
    rows = [
        _row(tmp_path, "scratch", 4, 0, _noisy(rng, targets, 0.5)),
        _row(tmp_path, "full", 4, 0, _noisy(rng, targets[:9], 0.5)),
    ]
    with caplog.at_level(logging.WARNING):
        assert study_bootstrap(rows) is None
    assert "cover [9, 10] test events" in caplog.text
    # as many events, but one point of event 6 is of another class: other points
    moved = targets.copy()
    moved[6, 0] = (moved[6, 0] + 1) % 3
    rows[1] = _row(tmp_path, "full", 8, 0, _noisy(rng, moved, 0.5))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert study_bootstrap(rows) is None
    assert "full-n8-s0 was scored on other test events or points than" in caplog.text
    assert "test event 6 has true-class counts" in caplog.text
