"""Evaluation plots as pure functions: arrays in, ``matplotlib.figure.Figure`` out.

This file owns the standard figures of a nufm evaluation: confusion matrix, loss curves,
label-efficiency curves (the PoLAr-MAE arXiv:2502.02558 "100 labelled events" style study),
2D embedding maps and per-class F1 bars. No pyplot state is touched: figures are built with
``Figure()`` so they are safe in tests, threads and headless jobs; save with
``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from nufm.eval.metrics import ArrayLike, to_numpy


def _names(class_names: Sequence[str] | None, n: int) -> list[str]:
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"got {len(names)} class names for {n} classes")
    return names


def plot_confusion_matrix(
    counts: ArrayLike,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Figure:
    """Confusion matrix heat map, rows = true class, columns = predicted class.

    Args:
        counts: (C, C) int counts (rows target, columns prediction), e.g.
            ``SemanticMetrics.counts``.
        class_names: C labels for the axes.
        normalize: True = each row divided by its total (rows show recall); empty rows stay 0.
    """
    cm = to_numpy(counts).astype(np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion counts must be (C, C), got {cm.shape}")
    C = cm.shape[0]
    names = _names(class_names, C)
    if normalize:
        rows = cm.sum(1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 2.0 + 0.7 * C
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "points")
    ax.set_xticks(range(C), names, rotation=45, ha="right")
    ax.set_yticks(range(C), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    threshold = 0.5 * (cm.max() if cm.size else 1.0)
    for i in range(C):
        for j in range(C):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    return fig


def plot_loss_curves(
    series: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    log_y: bool = False,
    log_x: bool = False,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str = "Training curves",
) -> Figure:
    """One line per named series.

    Args:
        series: name -> (steps (S,), values (S,)).
        log_y: True = logarithmic y axis.
        log_x: True = logarithmic x axis (e.g. events seen or FLOPs; x values must be > 0).
    """
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, (steps, values) in series.items():
        x, y = to_numpy(steps), to_numpy(values)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"series {name!r}: steps {x.shape} and values {y.shape} differ")
        if log_x and (x <= 0).any():
            raise ValueError(f"series {name!r}: x values must be > 0 on a log axis")
        ax.plot(x, y, marker="o" if x.size < 30 else None, label=name)
    if log_y:
        ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    return fig


def plot_label_efficiency(
    results: Mapping[str, Mapping[int, Sequence[float]]],
    *,
    ylabel: str = "macro F1 (test events)",
    title: str = "Label efficiency",
    errors: Mapping[str, Mapping[int, float]] | None = None,
    error_note: str = "",
) -> Figure:
    """Score vs number of labelled events, one line per mode: the mean over seeds, error bars
    the sample std over seeds, or ``errors`` where given.

    Args:
        results: mode (e.g. "linear probe", "fine-tune", "from scratch") ->
            {number of labelled events: [score of each seed]}.
        errors: mode -> {number of labelled events: error bar (half length)}, e.g. the
            study's test-event bootstrap (:mod:`nufm.workflows.study_bootstrap`); the cells it
            lacks keep the seeds' std.
        error_note: what the error bars are, written under the x label.
    """
    fig = Figure(figsize=(9.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for mode, by_n in results.items():
        ns = np.array(sorted(by_n), dtype=np.float64)
        if (ns <= 0).any():
            raise ValueError(f"mode {mode!r}: numbers of labelled events must be > 0 (log axis)")
        vals = [np.asarray(by_n[int(n)], dtype=np.float64) for n in ns]
        mean = np.array([v.mean() for v in vals])
        given = (errors or {}).get(mode, {})
        err = np.array(
            [
                given[int(n)] if int(n) in given else (v.std(ddof=1) if v.size > 1 else 0.0)
                for n, v in zip(ns, vals, strict=True)
            ]
        )
        ax.errorbar(ns, mean, yerr=err, marker="o", capsize=3, label=mode)
    ax.set_xscale("log")
    sizes = sorted({int(n) for by_n in results.values() for n in by_n})
    if sizes:  # ticks at the labelled-set sizes, written out (no crowded log minor labels)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labelled training events" + (f"\n{error_note}" if error_note else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if results:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def plot_embedding_2d(
    xy: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "Embedding",
    point_size: float = 6.0,
) -> Figure:
    """Scatter of 2D embedded points coloured by class, one legend entry per class present.

    Args:
        xy: (N, 2) float coordinates (e.g. from :func:`nufm.eval.projection.embed_2d`).
        labels: (N,) int class ids in [0, C); -1 points are drawn grey as "unlabelled".
        class_names: C names; default: the ids.
    """
    pts, lab = to_numpy(xy), to_numpy(labels).astype(np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2 or lab.shape != (pts.shape[0],):
        raise ValueError(f"need xy (N, 2) and labels (N,), got {pts.shape} and {lab.shape}")
    n_cls = int(lab.max()) + 1 if lab.size and lab.max() >= 0 else 0
    if class_names is not None:
        if n_cls > len(class_names):
            raise ValueError(f"label {n_cls - 1} has no name among {len(class_names)} names")
        n_cls = len(class_names)
    names = _names(class_names, n_cls)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    if (lab == -1).any():
        sel = lab == -1
        ax.scatter(pts[sel, 0], pts[sel, 1], s=point_size, c="lightgrey", label="unlabelled")
    for c in range(n_cls):
        sel = lab == c
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=point_size, label=names[c], color=f"C{c % 10}")
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_title(title)
    ax.legend(markerscale=2, loc="best")
    return fig


def plot_per_class_f1(
    f1: Mapping[str, ArrayLike],
    class_names: Sequence[str] | None = None,
    *,
    title: str = "Per-class F1",
) -> Figure:
    """Grouped bars: per-class F1 of each model; NaN (class absent) draws no bar.

    Args:
        f1: model name -> (C,) per-class F1 (e.g. ``SemanticMetrics.f1``).
        class_names: C names.
    """
    arrays = {name: to_numpy(v).astype(np.float64) for name, v in f1.items()}
    sizes = {a.shape for a in arrays.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"every F1 array must be (C,) with the same C, got {sizes}")
    C = next(iter(sizes))[0]
    names = _names(class_names, C)
    M = len(arrays)
    width = 0.8 / M
    fig = Figure(figsize=(max(5.0, 0.9 * C * max(1, M) ** 0.5 + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for m, (model, values) in enumerate(arrays.items()):
        xs = np.arange(C) + (m - (M - 1) / 2) * width
        is_defined = np.isfinite(values)  # (C,) False = class absent, no bar
        ax.bar(xs[is_defined], values[is_defined], width=width, label=model, color=f"C{m % 10}")
        for x in xs[~is_defined]:
            ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
    ax.set_xticks(range(C), names)
    ax.set_ylim(0.0, 1.18)
    ax.set_ylabel("F1")
    ax.set_xlabel("class")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper center", ncol=min(M, 4))
    return fig
