"""``nufm compare``: runs on the same test events scored and paired; anything else refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nufm.cli import main
from nufm.errors import InputError
from nufm.eval.bootstrap import (
    bootstrap_macro_f1,
    bootstrap_weights,
    macro_f1_of_counts,
    save_event_confusion,
)
from nufm.workflows.compare import compare_runs


def _runs(tmp_path: Path) -> tuple[list[Path], list[np.ndarray]]:
    """Three runs on the same 30 events of 3 classes: 50 %, 70 % and 70 % right (the last
    two the same predictions)."""
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, (30, 20))
    counts = []
    for right in (0.5, 0.7):
        c = np.zeros((30, 3, 3), np.int64)
        for e, t in enumerate(targets):
            p = np.where(rng.random(t.size) < right, t, rng.integers(0, 3, t.size))
            np.add.at(c[e], (t, p), 1)
        counts.append(c)
    counts.append(counts[1])
    dirs = []
    for name, c in zip(("base", "better", "same"), counts, strict=True):
        (tmp_path / name).mkdir()
        save_event_confusion(tmp_path / name, c)
        dirs.append(tmp_path / name)
    return dirs, counts


def test_scores_and_paired_differences(tmp_path: Path) -> None:
    dirs, counts = _runs(tmp_path)
    report = compare_runs(dirs, draws=500, seed=3)
    assert report.num_events == 30 and report.draws == 500
    draws = bootstrap_macro_f1(counts, bootstrap_weights(30, 500, 3))  # (500, 3)
    for j, s in enumerate(report.scores):
        assert s.run == str(dirs[j])
        assert s.macro_f1 == pytest.approx(macro_f1_of_counts(counts[j].sum(0)))
        assert (s.low, s.high) == pytest.approx(tuple(np.percentile(draws[:, j], [2.5, 97.5])))
        assert s.se == pytest.approx(np.std(draws[:, j]))
    better, same = report.comparisons
    assert better.reference == str(dirs[0]) and better.run == str(dirs[1])
    assert better.diff == pytest.approx(report.scores[1].macro_f1 - report.scores[0].macro_f1)
    assert better.diff > 0.1 and better.above == 1.0 and better.low > 0
    # a .npy file in place of a run directory (what nufm evaluate writes)
    npy = tmp_path / "eval_test_event_confusion.npy"
    np.save(npy, counts[1])
    assert compare_runs([dirs[0], npy], draws=500, seed=3).comparisons[0].diff == better.diff
    # the same predictions as "better": the same difference to the base on every draw
    assert (same.diff, same.low, same.high, same.above) == (
        better.diff,
        better.low,
        better.high,
        better.above,
    )


def test_groups_of_runs_are_scored_by_their_mean(tmp_path: Path) -> None:
    """Two "recipes" of two seeds each: (base, better) against (better, same)."""
    dirs, counts = _runs(tmp_path)
    report = compare_runs([dirs[:2], [dirs[1], dirs[2]], dirs[0]], draws=400, seed=1)
    each = [macro_f1_of_counts(c.sum(0)) for c in counts]
    first, second, single = report.scores
    assert first.run == f"{dirs[0]},{dirs[1]}" and first.runs == 2 and single.runs == 1
    assert first.macro_f1 == pytest.approx((each[0] + each[1]) / 2)
    assert first.seed_std == pytest.approx(np.std(each[:2], ddof=1))
    assert second.seed_std == 0.0 and np.isnan(single.seed_std)  # "same" = "better"
    draws = bootstrap_macro_f1(counts, bootstrap_weights(30, 400, 1))  # (400, 3)
    mean_a, mean_b = draws[:, :2].mean(1), draws[:, 1:].mean(1)
    assert (first.low, first.high) == pytest.approx(tuple(np.percentile(mean_a, [2.5, 97.5])))
    assert first.se == pytest.approx(np.std(mean_a))
    vs_first = report.comparisons[0]
    assert vs_first.diff == pytest.approx(second.macro_f1 - first.macro_f1)
    diff = mean_b - mean_a
    assert (vs_first.low, vs_first.high) == pytest.approx(tuple(np.percentile(diff, [2.5, 97.5])))
    assert vs_first.above == pytest.approx(np.mean(diff > 0))
    # the single base run against the first group: half of the group is that run
    assert report.comparisons[1].diff == pytest.approx(each[0] - first.macro_f1)
    with pytest.raises(InputError, match="empty run path"):
        compare_runs([dirs[0], [dirs[1], ""]])
    with pytest.raises(InputError, match="empty run path"):
        compare_runs([dirs[0], []])


def test_what_cannot_be_compared_is_refused(tmp_path: Path) -> None:
    dirs, counts = _runs(tmp_path)
    with pytest.raises(InputError, match="at least two"):
        compare_runs(dirs[:1])
    with pytest.raises(
        InputError, match=re.escape(f"{tmp_path / 'none'} has no test_event_confusion")
    ):
        compare_runs([dirs[0], tmp_path / "none"])
    other = counts[0].copy()
    other[4, 0, 0] += 1  # one more point in event 4
    (tmp_path / "other").mkdir()
    save_event_confusion(tmp_path / "other", other)
    with pytest.raises(InputError, match=r"other was scored on other test events .* event 4"):
        compare_runs([dirs[0], tmp_path / "other"])
    with pytest.raises(InputError, match="level"):
        compare_runs(dirs, level=95)


def test_the_command_prints_the_tables_or_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _ = _runs(tmp_path)
    main(["compare", str(dirs[0]), str(dirs[1]), "--draws", "200"])
    out = capsys.readouterr().out
    assert "with the 95 % interval of 200 draws" in out
    assert f"| {dirs[1]} | +" in out and "| 100.0 % |" in out
    main(["compare", f"{dirs[0]},{dirs[1]}", f"{dirs[1]},{dirs[2]}", "--draws", "200"])
    out = capsys.readouterr().out
    assert f"| {dirs[0]},{dirs[1]} | 2 | " in out  # a group of two runs, scored by its mean
    assert f"Against {dirs[0]},{dirs[1]}, paired" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(dirs[0]), str(tmp_path)])
    assert exit_info.value.code == 2
    assert "has no test_event_confusion.npy" in capsys.readouterr().err
