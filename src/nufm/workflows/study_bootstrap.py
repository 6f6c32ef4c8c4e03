"""The test-event bootstrap of a study's rows: error bars and paired comparisons.

Every run of a study of a classification (the network rows of a point, particle or event
classification; the LArTPC probes and trees) writes its per-event confusion matrices on the
study's test events (:data:`nufm.eval.bootstrap.EVENT_CONFUSION_FILE`); the classical rows of
the other detectors do not yet, and are left out. From them, with the same draws of the test
events for every row (:mod:`nufm.eval.bootstrap`):

* each cell (mode, labelled events) gets the standard error of its seed-mean score from the
  finite test set, and its 95 % percentile interval;
* its error bar in the figure is that standard error combined with the seeds' own (sample std
  over seeds / sqrt(seeds), none for one seed): :attr:`CellUncertainty.total`;
* the comparisons the study exists for get the paired difference of their seed means on each
  draw: its 95 % interval, and the share of draws in which the first row is above. At the
  same size (:data:`COMPARISONS`): the fine-tune against scratch, the probe against the
  random encoder and the classical rows; across sizes (:data:`TEN_TIMES`): the fine-tune at
  n labelled events against scratch at 10 n.

Seeds and test events are two sources of spread: the bootstrap holds the trained models
fixed, the seeds hold the test events fixed. A cell of one seed has only the first.

Owns :class:`CellUncertainty`, :class:`Comparison`, :func:`study_bootstrap`,
:func:`bootstrap_markdown`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nufm.eval.bootstrap import (
    bootstrap_macro_f1,
    bootstrap_weights,
    check_same_events,
    load_event_confusion,
    paired_difference,
    percentile_interval,
)

log = logging.getLogger(__name__)

N_DRAWS = 2000
"""Draws of the test events (the spread of a standard error is about 1/sqrt(2 N_DRAWS), 2 %)."""
DRAW_SEED = 0
"""Seed of the draws: the same in every study, so a study's intervals can be recomputed."""

COMPARISONS: tuple[tuple[str, str], ...] = (
    ("full-fused", "scratch-fused"),
    ("head-fused", "scratch-fused"),
    ("full", "scratch"),
    ("head", "scratch"),
    ("probe", "probe-random"),
    ("probe", "probe-geometry"),
    ("probe", "gbt-geometry"),
    ("full-fused", "gbt-geometry"),
)
"""(row, row it is compared with) pairs at the same labelled-set size, where a study has
both: the claims a study tests."""
TEN_TIMES: tuple[tuple[str, str], ...] = (
    ("full-fused", "scratch-fused"),
    ("head-fused", "scratch-fused"),
    ("full", "scratch"),
    ("head", "scratch"),
)
"""(pretrained row at n, scratch row at 10 n) pairs: the claim of PoLAr-MAE and Panda that a
pretrained encoder reaches with 10x fewer labels what scratch needs."""


class Row(Protocol):
    """What the bootstrap reads of a study row (:class:`nufm.workflows.study.StudyRow`)."""

    mode: str
    n_train: int
    seed: int
    score: float
    run_dir: str


@dataclass(frozen=True)
class CellUncertainty:
    """The spread of one cell's (mode, labelled events) seed-mean score."""

    mean: float
    """Mean over seeds of the score on the test events (the table's number)."""
    boot_se: float
    """Standard error from the test events: std of the seed mean over the draws."""
    low: float
    high: float
    """95 % percentile interval of the seed mean over the draws."""
    seeds: int
    seed_se: float
    """Sample std over seeds / sqrt(seeds); NaN for one seed."""

    @property
    def total(self) -> float:
        """The error bar: the two standard errors added in quadrature (the bootstrap's alone
        for one seed)."""
        seed = 0.0 if math.isnan(self.seed_se) else self.seed_se
        return math.hypot(self.boot_se, seed)


@dataclass(frozen=True)
class Comparison:
    """Row ``a`` at ``n_train`` labelled events against row ``b`` at ``n_other``, paired on
    the same draws."""

    a: str
    b: str
    n_train: int
    n_other: int
    diff: float
    """Seed mean of a minus that of b on the test events."""
    low: float
    high: float
    """95 % percentile interval of the difference over the draws."""
    above: float
    """Share of the draws in which a's seed mean is above b's."""


@dataclass(frozen=True)
class StudyBootstrap:
    """What :func:`study_bootstrap` found: every cell's spread, the comparisons in the order
    of :data:`COMPARISONS` then :data:`TEN_TIMES` at each size, the test events and draws."""

    cells: dict[tuple[str, int], CellUncertainty]
    """(mode, labelled events) -> its spread."""
    comparisons: list[Comparison]
    num_events: int
    draws: int


def study_bootstrap(
    rows: Sequence[Row], draws: int = N_DRAWS, seed: int = DRAW_SEED
) -> StudyBootstrap | None:
    """The bootstrap of every row that wrote per-event counts (module docstring); None when
    none did (a study of another task) or their test events or points differ
    (:func:`~nufm.eval.bootstrap.check_same_events`; then it says so in the log)."""
    found = [(r, c) for r in rows if (c := load_event_confusion(r.run_dir)) is not None]
    if not found:
        return None
    sizes = {c.shape[0] for _, c in found}
    if len(sizes) != 1:
        log.warning(
            "study: no test-event bootstrap: the runs' per-event counts cover %s test events, "
            "not one number (runs of different studies?)",
            sorted(sizes),
        )
        return None
    num_events = sizes.pop()
    try:
        check_same_events([c for _, c in found], [r.run_dir for r, _ in found])
    except ValueError as err:
        log.warning("study: no test-event bootstrap: %s", err)
        return None
    weights = bootstrap_weights(num_events, draws, seed)  # (B, E) the same draws for all
    scores = bootstrap_macro_f1([c for _, c in found], weights)  # (B, R)
    by_cell: dict[tuple[str, int], list[int]] = {}
    for j, (r, _) in enumerate(found):
        by_cell.setdefault((r.mode, r.n_train), []).append(j)
    seed_mean = {key: scores[:, cols].mean(1) for key, cols in by_cell.items()}  # key -> (B,)
    cells = {}
    for key, cols in by_cell.items():
        values = [found[j][0].score for j in cols]
        low, high = percentile_interval(seed_mean[key])
        cells[key] = CellUncertainty(
            mean=float(np.mean(values)),
            boot_se=float(np.nanstd(seed_mean[key], ddof=1)),
            low=low,
            high=high,
            seeds=len(values),
            seed_se=float(np.std(values, ddof=1) / math.sqrt(len(values)))
            if len(values) > 1
            else math.nan,
        )
    pairs = [
        ((a, n), (b, m))
        for n in sorted({n for _, n in by_cell})
        for (a, b), m in [*((p, n) for p in COMPARISONS), *((p, 10 * n) for p in TEN_TIMES)]
        if (a, n) in cells and (b, m) in cells
    ]
    comparisons = []
    for a, b in pairs:
        low, high, above = paired_difference(seed_mean[a], seed_mean[b])  # the same draws
        comparisons.append(
            Comparison(
                a=a[0],
                b=b[0],
                n_train=a[1],
                n_other=b[1],
                diff=cells[a].mean - cells[b].mean,
                low=low,
                high=high,
                above=above,
            )
        )
    return StudyBootstrap(cells, comparisons, num_events, draws)


def bootstrap_markdown(boot: StudyBootstrap, labels: dict[str, str]) -> str:
    """The intervals of every cell and the paired comparisons, as Markdown (``labels``: mode
    -> its row label)."""
    sizes = sorted({n for _, n in boot.cells})
    modes = list(dict.fromkeys(m for m, _ in boot.cells))
    lines = [
        f"Test-event bootstrap ({boot.draws} draws of the {boot.num_events} test events with "
        "replacement, the same draws for every row): the 95 % interval of each cell's seed "
        "mean, and the error bar of the figure (+- the bootstrap's standard error combined "
        "with the seeds' std / sqrt(seeds); a cell of one seed has no seed term).",
        "",
        "| mode | " + " | ".join(f"{n} events" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for mode in modes:
        cells = []
        for n in sizes:
            c = boot.cells.get((mode, n))
            cells.append(
                ""
                if c is None
                else f"{c.mean:.3f} [{c.low:.3f}, {c.high:.3f}] +- {c.total:.3f}"
                + ("" if c.seeds > 1 else " (1 seed)")
            )
        lines.append(f"| {labels.get(mode, mode)} | " + " | ".join(cells) + " |")
    if boot.comparisons:
        lines += [
            "",
            "Paired comparisons (the difference of the seed means on each draw; seeds are not "
            "resampled):",
            "",
            "| row | labelled events | compared with | labelled events | difference | 95 % "
            "interval | draws with the row above |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in boot.comparisons:
            lines.append(
                f"| {labels.get(c.a, c.a)} | {c.n_train} | {labels.get(c.b, c.b)} | "
                f"{c.n_other} | {c.diff:+.3f} | [{c.low:+.3f}, {c.high:+.3f}] | "
                f"{100 * c.above:.1f} % |"
            )
    return "\n".join(lines) + "\n"
