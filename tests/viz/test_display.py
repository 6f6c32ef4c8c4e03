"""Tests of nufm.viz.display: panel layout, legends, zoom, files written, errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib import colors as mcolors

from nufm.data.event import Event
from nufm.viz import (
    COLOR_OPTIONS,
    display_event,
    display_event_html,
    display_events_grid,
    save_figure,
)
from nufm.viz.colors import SEGMENT_COLORS, UNKNOWN_COLOR, energy_norm, make_coloring


def tiny_event(
    seed: int = 0,
    offset: tuple[float, float, float] = (300.0, 380.0, 200.0),
    source: str = "tiny.npz",
) -> Event:
    """A track (10 pts), a shower blob (8 pts), low-energy deposits (3) and unlabelled (2),
    at integer voxel positions.

    Extent: x in [ox, ox + 40], y in [oy, oy + 20], z in [oz, oz + 10] (voxels).
    """
    rng = np.random.default_rng(seed)
    ox, oy, oz = offset
    t = np.linspace(0.0, 1.0, 10)
    track = np.stack([ox + 40 * t, oy + 20 * t, oz + 10 * t], 1)  # (10, 3)
    shower = np.array([ox + 30, oy + 5, oz + 5]) + rng.uniform(-3, 3, (8, 3))  # (8, 3)
    led = np.array([[ox + 5, oy + 15, oz + 2], [ox + 6, oy + 16, oz + 3], [ox + 7, oy + 2, oz]])
    unl = np.array([[ox + 20, oy + 1, oz + 8], [ox + 21, oy + 2, oz + 9]])
    coord = np.round(np.concatenate([track, shower, led, unl])).astype(np.float32)  # (23, 3)
    n = [10, 8, 3, 2]
    rep = lambda vals: np.repeat(np.array(vals, np.int64), n)  # noqa: E731
    return Event(
        coord=coord,
        energy=rng.uniform(0.2, 3.0, 23).astype(np.float32),
        segment=rep([1, 0, 4, -1]),
        pid=rep([2, 1, 5, -1]),
        instance=rep([0, 7, -1, -1]),
        interaction=rep([0, 0, -1, -1]),
        source=source,
        event_id=3,
    )


def display_axes(fig) -> list:
    return [a for a in fig.axes if a.get_label() != "<colorbar>"]


def legend_texts(fig) -> list[list[str]]:
    """Legend lines of each row (subfigure), top to bottom."""
    return [[t.get_text() for t in lg.get_texts()] for sf in fig.subfigs for lg in sf.legends]


def test_four_panels_and_legend_per_class() -> None:
    ev = tiny_event()
    fig = display_event(ev, "segment")
    axes = display_axes(fig)
    assert len(axes) == 4
    assert [a.name for a in axes] == ["rectilinear"] * 3 + ["3d"]
    assert [a.get_xlabel() for a in axes[:3]] == ["x [voxel]", "x [voxel]", "y [voxel]"]
    assert [a.get_ylabel() for a in axes[:3]] == ["y [voxel]", "z [voxel]", "z [voxel]"]
    # Classes present, in code order, unknown last, with their point counts.
    assert legend_texts(fig) == [["shower (8)", "track (10)", "low_energy (3)", "none/unknown (2)"]]
    assert "23 points" in fig._suptitle.get_text()
    assert f"{float(ev.energy.sum()):.1f} MeV" in fig._suptitle.get_text()


def test_pid_legend_merges_none_and_unknown() -> None:
    fig = display_event(tiny_event(), "pid")
    assert legend_texts(fig) == [["electron (8)", "muon (10)", "none/unknown (5)"]]


def test_instance_legend_gives_id_count_not_one_entry_per_id() -> None:
    fig = display_event(tiny_event(), "instance")
    assert legend_texts(fig) == [["2 particle ids (18)", "none/unknown (5)"]]
    fig = display_event(tiny_event(), "interaction")
    assert legend_texts(fig) == [["1 interaction id (18)", "none/unknown (5)"]]


def test_id_colours_distinct_and_never_the_unknown_grey() -> None:
    n_ids = 18  # the palette size: every id gets its own colour
    ids = np.repeat(np.arange(n_ids) * 5 + 100, 2)  # (36,) arbitrary, non-contiguous ids
    ids[:2] = -1
    ev = Event(
        coord=np.arange(108, dtype=np.float32).reshape(36, 3),
        energy=np.ones(36, np.float32),
        instance=ids,
    )
    col = make_coloring(ev, "instance")
    grey = np.asarray(mcolors.to_rgba(UNKNOWN_COLOR))
    is_grey = np.all(np.isclose(col.rgba, grey), axis=1)
    np.testing.assert_array_equal(is_grey, ids < 0)
    known_colours = {tuple(c) for c in col.rgba[ids >= 0].round(6)}
    assert len(known_colours) == n_ids - 1
    assert col.point_names[2] == "105" and col.point_names[0] == "none/unknown"


def test_projection_points_and_colours() -> None:
    ev = tiny_event()
    fig = display_event(ev, "segment")
    xy = display_axes(fig)[0].collections[0]
    offsets = np.asarray(xy.get_offsets())  # (N, 2)
    assert sorted(map(tuple, offsets.round(4))) == sorted(map(tuple, ev.coord[:, :2].round(4)))
    face = np.asarray(xy.get_facecolors())  # (N, 4)
    track_rgba = mcolors.to_rgba(SEGMENT_COLORS[1][1])
    is_track_face = np.all(np.isclose(face, track_rgba), axis=1)
    assert is_track_face.sum() == 10
    # The track points are exactly the first 10 coordinates.
    assert sorted(map(tuple, offsets[is_track_face].round(4))) == sorted(
        map(tuple, ev.coord[:10, :2].round(4))
    )


def test_auto_zoom_square_equal_aspect() -> None:
    fig = display_event(tiny_event(), "segment")
    ax_xy, ax_xz = display_axes(fig)[:2]
    # x in [300, 340] (pad max(0.06 * 40, 4) = 4); y in [380, 400] (pad 4): square half 24.
    np.testing.assert_allclose(ax_xy.get_xlim(), (296.0, 344.0))
    np.testing.assert_allclose(ax_xy.get_ylim(), (390.0 - 24.0, 390.0 + 24.0))
    np.testing.assert_allclose(ax_xz.get_ylim(), (205.0 - 24.0, 205.0 + 24.0))
    assert ax_xy.get_aspect() == 1.0


def test_zoom_stays_inside_detector_near_an_edge() -> None:
    ev = tiny_event(offset=(100.0, 0.0, 200.0))
    coord = ev.coord.copy()
    coord[:, 0] = 100.0 + 3.0 * (coord[:, 0] - 100.0)  # x in [100, 220], y in [0, 20]
    fig = display_event(ev.with_fields(coord=coord), "segment")
    ax_xy = display_axes(fig)[0]
    # Square half width (120 + 2 * 7.2) / 2 = 67.2; centred on y = 10 it would start at -57.2,
    # so it is shifted to start 2 % of the volume (15.36 voxels) below the edge.
    np.testing.assert_allclose(ax_xy.get_xlim(), (92.8, 227.2))
    np.testing.assert_allclose(ax_xy.get_ylim(), (-15.36, -15.36 + 134.4))


def test_energy_uses_log_colorbar_in_mev() -> None:
    ev = tiny_event()
    fig = display_event(ev, "energy")
    assert len(display_axes(fig)) == 4
    cbars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert len(cbars) == 1
    assert "MeV" in cbars[0].get_ylabel()
    norm = energy_norm([ev.energy])
    assert isinstance(norm, mcolors.LogNorm)
    assert norm.vmax == pytest.approx(float(ev.energy.max()))
    assert norm.vmin == pytest.approx(float(np.percentile(ev.energy, 1.0)))


def test_pred_rows_and_error_count() -> None:
    ev = tiny_event()
    pred = ev.segment.copy()
    pred[[0, 1, 12]] = [0, 2, 1]  # 3 wrong among the 21 labelled points
    pred[21] = 3  # an unlabelled truth point is never counted as wrong
    fig = display_event(ev, "segment", pred=pred, title="model A")
    assert len(display_axes(fig)) == 12
    assert legend_texts(fig) == [
        ["shower (8)", "track (10)", "low_energy (3)", "none/unknown (2)"],
        [
            "shower (8)",
            "track (9)",
            "michel (1)",
            "delta (1)",
            "low_energy (3)",
            "none/unknown (1)",
        ],
        ["correct (18)", "wrong (3)", "unlabelled (2)"],
    ]
    assert fig.subfigs[2]._suptitle.get_text().startswith("errors: 3 of 21 labelled points")
    assert fig._suptitle.get_text().startswith("model A")


def test_save_figure_png_atomic(tmp_path: Path) -> None:
    fig = display_event(tiny_event(), "segment")
    out = save_figure(fig, tmp_path / "sub" / "ev.png")
    assert out == tmp_path / "sub" / "ev.png"
    assert out.stat().st_size > 10_000
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[2] == 4 and img.shape[0] > 200 and img.shape[1] > 800
    assert os.listdir(out.parent) == ["ev.png"]  # no temporary file left behind


def test_grid_columns_and_shared_legend(tmp_path: Path) -> None:
    a = tiny_event(0)
    b = tiny_event(1).select(np.arange(10))  # track only
    fig = display_events_grid([a, b], "segment", titles=["query", "hit 1"])
    axes = display_axes(fig)
    assert len(axes) == 4
    assert axes[0].get_title().startswith("query\n23 pts")
    assert axes[1].get_title().startswith("hit 1\n10 pts")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "shower",
        "track",
        "low_energy",
        "none/unknown",
    ]
    fig = display_events_grid([a, b], "energy")
    assert len(display_axes(fig)) == 4
    assert sum(x.get_label() == "<colorbar>" for x in fig.axes) == 1
    png = save_figure(fig, tmp_path / "grid.png")
    assert mpimg.imread(png).shape[2] == 4


def test_html_has_plotly_points_and_hover(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    ev = tiny_event()
    out = display_event_html(ev, "segment", tmp_path / "ev.html", include_plotlyjs="cdn")
    text = out.read_text()
    assert "plotly" in text.lower()
    assert "23 points" in text
    assert text.count('"mode":"markers"') == 4  # one trace per class present
    assert '"name":"track (10)"' in text
    assert "segment: track" in text and "pid: muon" in text and "instance: 7" in text
    assert "E = " in text and " cm" in text
    out = display_event_html(ev, "energy", tmp_path / "ev_e.html", include_plotlyjs="cdn")
    assert out.read_text().count('"mode":"markers"') == 1


def test_html_without_plotly_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r"nufm\[html\]"):
        display_event_html(tiny_event(), "segment", tmp_path / "ev.html")


def test_bad_options_raise_clear_errors() -> None:
    ev = tiny_event()
    with pytest.raises(ValueError, match="unknown color option 'charge'") as err:
        display_event(ev, "charge")
    assert all(opt in str(err.value) for opt in COLOR_OPTIONS)
    with pytest.raises(ValueError, match=r"tiny\.npz event 3.*'pid'"):
        display_event(ev.with_fields(pid=None), "pid")
    with pytest.raises(ValueError, match=r"tiny\.npz event 3.*'instance'"):
        display_events_grid([ev, ev.with_fields(instance=None)], "instance")
    with pytest.raises(ValueError, match=r"tiny\.npz event 3.*'segment'"):
        display_event_html(ev.with_fields(segment=None), "segment", "unused.html")
    with pytest.raises(ValueError, match=r"shape \(23,\)"):
        display_event(ev, "segment", pred=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="color must be one of segment, pid"):
        display_event(ev, "energy", pred=np.zeros(23, np.int64))
    bad = ev.segment.copy()
    bad[0] = 9
    with pytest.raises(ValueError, match=r"tiny\.npz event 3.*codes \[9\]"):
        display_event(ev.with_fields(segment=bad), "segment")
    with pytest.raises(ValueError, match="no points"):
        display_event(ev.select(np.zeros(23, bool)), "segment")
    with pytest.raises(ValueError, match="2 titles for 1 events"):
        display_events_grid([ev], "segment", titles=["a", "b"])


def _read_real(path: Path) -> Event:
    try:
        from nufm.data.field_formats import read_mlreco_npz
    except ImportError:  # the reader is optional for this test
        d = np.load(path)
        a = np.concatenate([d[k] for k in d.files])  # (N, 10)
        return Event(
            coord=a[:, :3].astype(np.float32),
            energy=a[:, 4].astype(np.float32),
            segment=a[:, 9].astype(np.int64),
            instance=a[:, 6].astype(np.int64),
            interaction=a[:, 7].astype(np.int64),
            source=str(path),
            event_id=0,
        )
    return read_mlreco_npz(path)


@pytest.mark.real_data
def test_real_mlreco_event(tmp_path: Path, real_data: Callable[[str], Path]) -> None:
    ev = _read_real(real_data("mlreco_tutorial_tracks.npz"))
    names, counts = np.unique(ev.segment, return_counts=True)
    expected = [f"{SEGMENT_COLORS[int(c)][0]} ({n})" for c, n in zip(names, counts, strict=False)]
    fig = display_event(ev, "segment")
    assert legend_texts(fig) == [expected]
    assert [e.split(" ")[0] for e in expected] == ["shower", "track", "michel", "low_energy"]
    png = save_figure(fig, tmp_path / "real.png")
    assert mpimg.imread(png).shape[0] > 200
