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

Runs of different test events or points are refused, not compared: the true classes of
every event's points must agree (:func:`~nufm.eval.bootstrap.check_same_events`). Seeds are
not resampled: a difference is what these test events can tell about these two trained
models.

Owns :class:`RunScore`, :class:`RunComparison`, :class:`CompareReport`,
:func:`compare_runs` and :func:`comparison_markdown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    macro_f1: float
    """On the test events, as the run's metrics.json has it."""
    low: float
    high: float
    """The ``level`` percentile interval over the draws."""
    se: float
    """Standard deviation over the draws."""


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
    run_dirs: Sequence[str | Path], draws: int = 2000, seed: int = 0, level: float = 0.95
) -> CompareReport:
    """Score and pair the runs (module docstring).

    Raises:
        InputError: fewer than two runs, a run without per-event counts, or runs scored on
            other test events or points, named.
    """
    if len(run_dirs) < 2:
        raise InputError(f"compare: give at least two run directories, got {len(run_dirs)}")
    if draws < 1 or not 0 < level < 1:
        raise InputError(f"compare: need draws >= 1 and 0 < level < 1, got {draws}, {level}")
    names = [str(d) for d in run_dirs]
    confusions = []
    for d in run_dirs:
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
        check_same_events(confusions, names)
    except ValueError as err:
        raise InputError(f"compare: {err}") from err
    num_events = confusions[0].shape[0]
    plain = bootstrap_macro_f1(confusions, np.ones((1, num_events), np.int64))[0]  # (R,)
    scores = bootstrap_macro_f1(confusions, bootstrap_weights(num_events, draws, seed))  # (B, R)
    runs = []
    for j, name in enumerate(names):
        low, high = percentile_interval(scores[:, j], level)
        runs.append(RunScore(name, float(plain[j]), low, high, float(np.nanstd(scores[:, j]))))
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
        f"{report.draws} draws of the test events with replacement:",
        "",
        f"| run | macro F1 | {pct} interval | standard error |",
        "|---|---|---|---|",
        *[
            f"| {s.run} | {s.macro_f1:.4f} | [{s.low:.4f}, {s.high:.4f}] | {s.se:.4f} |"
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
