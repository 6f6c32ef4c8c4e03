"""Plots: expected artists, readable axes, PNG output; embed_2d shapes and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from nufm.eval.plots import (
    plot_confusion_matrix,
    plot_embedding_2d,
    plot_label_efficiency,
    plot_loss_curves,
    plot_per_class_f1,
)
from nufm.eval.projection import embed_2d

NAMES = ["shower", "track", "Michel", "delta"]


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_plot(tmp_path: Path) -> None:
    counts = np.array([[90, 10, 0, 0], [5, 95, 0, 0], [1, 1, 8, 0], [0, 0, 0, 0]])
    fig = plot_confusion_matrix(counts, NAMES)
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image[0], [0.9, 0.1, 0.0, 0.0])
    np.testing.assert_allclose(image[3], 0.0)  # empty row stays 0, no NaN
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert len(ax.texts) == 16
    _save(fig, tmp_path / "cm.png")
    with pytest.raises(ValueError, match="4 classes"):
        plot_confusion_matrix(counts, NAMES[:3])


def test_loss_curves_plot(tmp_path: Path) -> None:
    steps = np.arange(100)
    fig = plot_loss_curves(
        {"train": (steps, np.exp(-steps / 30)), "val": (steps[::10], np.exp(-steps[::10] / 25))},
        log_y=True,
    )
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 10
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val"]
    _save(fig, tmp_path / "loss.png")


def test_loss_curves_log_x_for_compute_curves(tmp_path: Path) -> None:
    flops = np.array([1e12, 1e13, 1e14])
    fig = plot_loss_curves({"probe": (flops, [0.3, 0.4, 0.41])}, log_x=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), flops)
    _save(fig, tmp_path / "compute.png")
    with pytest.raises(ValueError, match="must be > 0"):
        plot_loss_curves({"probe": ([0.0, 1.0], [0.3, 0.4])}, log_x=True)


def test_label_efficiency_plot(tmp_path: Path) -> None:
    results = {
        "linear probe": {10: [0.5, 0.55, 0.6], 100: [0.7, 0.72], 1000: [0.8]},
        "fine-tune": {10: [0.4, 0.5], 100: [0.75, 0.8], 1000: [0.9, 0.91]},
    }
    fig = plot_label_efficiency(results)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    line = bars[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [10, 100, 1000])
    np.testing.assert_allclose(line.get_ydata(), [0.55, 0.71, 0.8])
    assert ax.get_xscale() == "log"
    _save(fig, tmp_path / "eff.png")

    def half_lengths(fig: Figure, k: int = 0) -> list[float]:
        bar = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)][k]
        return [(seg[1][1] - seg[0][1]) / 2 for seg in bar.lines[2][0].get_segments()]

    # the seeds' sample std by default, 0 for one seed; given errors replace it cell by cell
    np.testing.assert_allclose(half_lengths(fig), [0.05, np.std([0.7, 0.72], ddof=1), 0.0])
    given = plot_label_efficiency(
        results, errors={"linear probe": {10: 0.02, 1000: 0.03}}, error_note="bars: bootstrap"
    )
    np.testing.assert_allclose(half_lengths(given), [0.02, np.std([0.7, 0.72], ddof=1), 0.03])
    np.testing.assert_allclose(half_lengths(given, 1), half_lengths(fig, 1))
    assert given.axes[0].get_xlabel() == "labelled training events\nbars: bootstrap"


def test_embedding_plot_and_embed_2d(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    x = rng.normal(size=(90, 20)) + 6.0 * np.eye(20)[labels]
    xy = embed_2d(x, method="pca", seed=0)
    assert xy.shape == (90, 2) and xy.dtype == np.float32
    kwargs = dict(method="tsne", seed=0, pca_dims=10, perplexity=10, max_iter=250)
    ts = embed_2d(x, **kwargs)
    np.testing.assert_array_equal(ts, embed_2d(x, **kwargs))
    # well separated clusters stay separated: each point's nearest neighbour shares its label
    d = np.linalg.norm(ts[:, None] - ts[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    labels_with_unlabelled = labels.copy()
    labels_with_unlabelled[:5] = -1
    fig = plot_embedding_2d(ts, labels_with_unlabelled, ["shower", "track", "Michel"])
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(s.get_offsets()) for s in scatters] == [5, 25, 30, 30]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "unlabelled",
        "shower",
        "track",
        "Michel",
    ]
    _save(fig, tmp_path / "emb.png")
    with pytest.raises(ValueError, match="UMAP"):
        embed_2d(x, method="umap")


def test_per_class_f1_plot(tmp_path: Path) -> None:
    f1 = {
        "PoLAr-MAE": np.array([0.98, 0.99, 0.5, np.nan]),
        "ours": np.array([0.97, 0.99, 0.6, 0.4]),
    }
    fig = plot_per_class_f1(f1, NAMES)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [len(b) for b in bars] == [3, 4]  # NaN (absent class) draws no bar
    np.testing.assert_allclose([p.get_height() for p in bars[1]], [0.97, 0.99, 0.6, 0.4])
    _save(fig, tmp_path / "f1.png")
