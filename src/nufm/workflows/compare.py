"""Is one fine-tuned model better than another? ``nufm compare RUN_A RUN_B ...``.

Every classification run of ``nufm finetune`` and ``nufm study`` writes its per-event
confusion matrices on its test events (:data:`nufm.eval.bootstrap.EVENT_CONFUSION_FILE`), and
``nufm evaluate`` writes them beside its JSON (``eval_<split>_event_confusion.npy``): give
either, a run directory or the ``.npy`` file.
Given runs scored on the same test events, this gives each one's macro F1 with its 95 %
test-event bootstrap interval, and the paired difference of every run against the first on
the same draws of the test events (:mod:`nufm.eval.bootstrap`): the difference, its
interval, and the share of draws in which the run is above the first. Pairing on the same
draws cancels what a draw does to both runs, so it resolves smaller differences than two
separate intervals can.

A run may be a group of runs, such as the training seeds of one recipe: its score is the
mean of theirs, on the whole test set and on each draw (the study's seed mean), so two
recipes are compared by their seed means on the same draws; each group also shows its seeds'
sample standard deviation. The bootstrap does not resample seeds: a difference is what these
test events can tell about these trained models, and the seeds' spread is shown beside it.

Runs of different test events or points are refused, not compared: the true classes of
every event's points must agree (:func:`~nufm.eval.bootstrap.check_same_events`).

Owns :class:`RunScore`, :class:`RunComparison`, :class:`CompareReport`,
:func:`compare_runs` and :func:`comparison_markdown`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from nufm.errors import InputError
from nufm.eval.bootstrap import (
    EVENT_CONFUSION_FILE,
    bootstrap_macro_f1,
    bootstrap_weights,
    check_same_events,
    load_event_confusion,
    paired_difference,
    percentile_interval,
)


@dataclass(frozen=True)
class RunScore:
    run: str
    """The run's path; a group's: its paths joined by commas."""
    macro_f1: float
    """On the test events, as the run's metrics.json has it; a group's: its runs' mean."""
    low: float
    high: float
    """The ``level`` percentile interval over the draws."""
    se: float
    """Standard deviation over the draws."""
    runs: int = 1
    """Runs in the group."""
    seed_std: float = float("nan")
    """Sample standard deviation of the group's runs' macro F1 (NaN for one run)."""


@dataclass(frozen=True)
class RunComparison:
    run: str
    reference: str
    diff: float
    """The run's macro F1 minus the reference's."""
    low: float
    high: float
    above: float
    """Share of the draws in which the run is above the reference."""


@dataclass(frozen=True)
class CompareReport:
    scores: list[RunScore]
    comparisons: list[RunComparison]
    """Every run after the first against the first."""
    num_events: int
    draws: int
    level: float


def compare_runs(
    run_dirs: Sequence[str | Path | Sequence[str | Path]],
    draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> CompareReport:
    """Score and pair the runs (module docstring).

    Args:
        run_dirs: each a run (directory or ``.npy`` file) or a group of runs (a sequence of
            them), scored as their mean.

    Raises:
        InputError: fewer than two runs, an empty group, a run without per-event counts, or
            runs scored on other test events or points, named.
    """
    if len(run_dirs) < 2:
        raise InputError(f"compare: give at least two run directories, got {len(run_dirs)}")
    if draws < 1 or not 0 < level < 1:
        raise InputError(f"compare: need draws >= 1 and 0 < level < 1, got {draws}, {level}")
    groups = [[d] if isinstance(d, str | Path) else list(d) for d in run_dirs]
    if any(not g or any(str(d) == "" for d in g) for g in groups):
        raise InputError(
            f"compare: an empty run path in {[[str(d) for d in g] for g in groups]} (runs of "
            "a group are joined by single commas)"
        )
    names = [",".join(str(d) for d in g) for g in groups]
    members = [d for g in groups for d in g]
    confusions = []
    for d in members:
        try:
            c = load_event_confusion(d)
        except ValueError as err:
            raise InputError(f"compare: {err}") from err
        if c is None:
            raise InputError(
                f"compare: {d} has no {EVENT_CONFUSION_FILE}: give a run directory of a "
                "classification written by nufm finetune or nufm study (each study row is a "
                "folder of the study's runs/), or the eval_<split>_event_confusion.npy of "
                "nufm evaluate"
            )
        confusions.append(c)
    try:
        check_same_events(confusions, [str(d) for d in members])
    except ValueError as err:
        raise InputError(f"compare: {err}") from err
    num_events = confusions[0].shape[0]
    each = bootstrap_macro_f1(confusions, np.ones((1, num_events), np.int64))[0]  # (M,)
    each_drawn = bootstrap_macro_f1(confusions, bootstrap_weights(num_events, draws, seed))
    spans = list(pairwise(np.cumsum([0, *(len(g) for g in groups)])))  # group j: its members
    plain = np.array([each[a:b].mean() for a, b in spans])  # (R,)
    scores = np.stack([each_drawn[:, a:b].mean(1) for a, b in spans], axis=1)  # (B, R)
    runs = []
    for j, name in enumerate(names):
        low, high = percentile_interval(scores[:, j], level)
        n = len(groups[j])
        spread = float(np.std(each[slice(*spans[j])], ddof=1)) if n > 1 else math.nan
        runs.append(
            RunScore(name, float(plain[j]), low, high, float(np.nanstd(scores[:, j])), n, spread)
        )
    comparisons = []
    for j, name in enumerate(names[1:], start=1):
        low, high, above = paired_difference(scores[:, j], scores[:, 0], level)  # same draws
        comparisons.append(
            RunComparison(
                run=name,
                reference=names[0],
                diff=float(plain[j] - plain[0]),
                low=low,
                high=high,
                above=above,
            )
        )
    return CompareReport(runs, comparisons, num_events, draws, level)


def comparison_markdown(report: CompareReport) -> str:
    """The report as two Markdown tables."""
    pct = f"{100 * report.level:g} %"
    lines = [
        f"Macro F1 on the {report.num_events} test events, with the {pct} interval of "
        f"{report.draws} draws of the test events with replacement (a group of runs: their "
        "mean):",
        "",
        f"| run | runs | macro F1 | {pct} interval | standard error | runs' std |",
        "|---|---|---|---|---|---|",
        *[
            f"| {s.run} | {s.runs} | {s.macro_f1:.4f} | [{s.low:.4f}, {s.high:.4f}] | "
            f"{s.se:.4f} | {'' if math.isnan(s.seed_std) else f'{s.seed_std:.4f}'} |"
            for s in report.scores
        ],
        "",
        f"Against {report.scores[0].run}, paired on the same draws:",
        "",
        f"| run | difference | {pct} interval | draws with the run above |",
        "|---|---|---|---|",
        *[
            f"| {c.run} | {c.diff:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] | {100 * c.above:.1f} % |"
            for c in report.comparisons
        ],
    ]
    return "\n".join(lines) + "\n"
