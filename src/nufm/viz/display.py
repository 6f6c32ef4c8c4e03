"""Event displays: 2D projections and a 3D view of one LArTPC event, a side-by-side grid, and an
interactive plotly page.

This file owns the drawing; colours, legends and label names come from :mod:`nufm.viz.colors`.
Coordinates are PILArNet-M voxel indices of the 768^3 cube with 3 mm voxels (arXiv:2502.02558;
docs/references.md); every display also states lengths in cm.

Public API:

* :func:`display_event`: x-y, x-z, y-z projections and a 3D view; with ``pred`` three rows
  (truth, prediction, errors).
* :func:`display_events_grid`: one column per event (x-y and x-z), e.g. a search query and its hits.
* :func:`display_event_html`: an interactive plotly 3D page with per-point hover text.
* :func:`save_figure`: atomic PNG write that closes the figure.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType
from mpl_toolkits.mplot3d import Axes3D

from nufm.data.detectors import detector_of
from nufm.data.event import Event
from nufm.data.lartpc import VOLUME_SIZE, VOXEL_SIZE_CM
from nufm.viz.colors import (
    COLOR_OPTIONS,
    ENERGY_CMAP,
    UNKNOWN_COLOR,
    UNKNOWN_NAME,
    Coloring,
    LegendEntry,
    energy_norm,
    make_coloring,
    merged_legend,
    require_field,
)

log = logging.getLogger(__name__)

PROJECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
"""Coordinate index pairs of the three 2D panels: x-y, x-z, y-z."""
AXIS_NAMES = ("x", "y", "z")
PRED_OPTIONS = ("segment", "pid")
"""Colour options for which a prediction can be compared point by point with the truth."""
ERROR_COLOR = "#e03131"


@dataclass(frozen=True, kw_only=True)
class DisplayStyle:
    """Sizes of the matplotlib displays."""

    panel_inches: float = 3.4
    """Width and height of one projection panel, inches."""
    margin_frac: float = 0.06
    """Margin around the event's extent, as a fraction of the extent."""
    min_margin_voxels: float = 4.0
    """Smallest margin, voxels (keeps single tracks from touching the frame)."""
    voxel_scale: float = 1.4
    """Marker diameter in units of the displayed voxel size."""
    min_marker_pt: float = 0.9
    """Smallest marker diameter, points (keeps 30k-point events visible)."""
    max_marker_pt: float = 4.5
    """Largest marker diameter, points (keeps 1k-point close-ups from turning into blobs)."""


def _check_event(event: Event, color: str) -> None:
    require_field(event, color)
    if len(event) == 0:
        raise ValueError(f"{event.where}: the event has no points to display")


def _limits(coord: np.ndarray, style: DisplayStyle) -> np.ndarray:
    """(3, 2) float64 [lo, hi] per axis: the event extent plus a margin, voxels."""
    lo, hi = coord.min(0).astype(np.float64), coord.max(0).astype(np.float64)  # (3,), (3,)
    pad = np.maximum((hi - lo) * style.margin_frac, style.min_margin_voxels)  # (3,)
    return np.stack([lo - pad, hi + pad], axis=1)


def _marker_pt(lims: np.ndarray, style: DisplayStyle) -> float:
    """Marker diameter in points: about one voxel at the panel's scale, clipped."""
    span = float((lims[:, 1] - lims[:, 0]).max())
    pt_per_voxel = style.panel_inches * 72.0 * 0.8 / span
    diameter = style.voxel_scale * pt_per_voxel
    return float(np.clip(diameter, style.min_marker_pt, style.max_marker_pt))


def _cm_axis(ax: Axes, which: str, name: str) -> None:
    """Secondary axis in cm, grey (top for the horizontal axis, right for the vertical one)."""
    fwd = (lambda v: v * VOXEL_SIZE_CM, lambda c: c / VOXEL_SIZE_CM)
    if which == "x":
        sec = ax.secondary_xaxis("top", functions=fwd)
        sec.set_xlabel(f"{name} [cm]", fontsize=7, color="0.4", labelpad=1)
    else:
        sec = ax.secondary_yaxis("right", functions=fwd)
        sec.set_ylabel(f"{name} [cm]", fontsize=7, color="0.4", labelpad=1)
    sec.tick_params(labelsize=6, colors="0.4", length=2, pad=1)


def _square_window(lo: float, hi: float, half: float) -> tuple[float, float]:
    """Window of width ``2 * half`` centred on [lo, hi], shifted to stay inside the detector
    volume [0, VOLUME_SIZE] (plus a little) when the event lies inside it."""
    center = (lo + hi) / 2.0
    start, end = center - half, center + half
    edge = 0.02 * VOLUME_SIZE
    floor, ceil = min(lo, -edge), max(hi, VOLUME_SIZE + edge)
    if 2 * half <= ceil - floor:
        if start < floor:
            start, end = floor, floor + 2 * half
        elif end > ceil:
            start, end = ceil - 2 * half, ceil
    return start, end


def _set_square_view(ax: Axes, lims: np.ndarray, a: int, b: int) -> None:
    """Equal-aspect square view of axes ``a`` (horizontal) and ``b`` (vertical) that contains
    both extents (``lims`` (3, 2) voxels, margin included)."""
    half = float((lims[[a, b], 1] - lims[[a, b], 0]).max()) / 2.0
    ax.set_xlim(*_square_window(lims[a, 0], lims[a, 1], half))
    ax.set_ylim(*_square_window(lims[b, 0], lims[b, 1], half))
    ax.set_aspect("equal", adjustable="box")


def _draw_projections(
    axes: Sequence[Axes],
    coord: np.ndarray,
    col: Coloring,
    lims: np.ndarray,
    marker_pt: float,
    vertices: np.ndarray | None,
) -> None:
    order = col.draw_order
    for ax, (a, b) in zip(axes, PROJECTIONS, strict=False):
        ax.scatter(
            coord[order, a],
            coord[order, b],
            c=col.rgba[order],
            s=marker_pt**2,
            linewidths=0,
            marker="o",
            rasterized=True,
        )
        if vertices is not None and len(vertices):
            ax.scatter(
                vertices[:, a], vertices[:, b], marker="+", s=60, c="k", linewidths=1.0, zorder=5
            )
        _set_square_view(ax, lims, a, b)
        ax.set_xlabel(f"{AXIS_NAMES[a]} [voxel]", fontsize=8, labelpad=1)
        ax.set_ylabel(f"{AXIS_NAMES[b]} [voxel]", fontsize=8, labelpad=1)
        ax.tick_params(labelsize=7, length=2, pad=1)
        _cm_axis(ax, "x", AXIS_NAMES[a])
        _cm_axis(ax, "y", AXIS_NAMES[b])


def _draw_3d(
    ax: Axes3D, coord: np.ndarray, col: Coloring, lims: np.ndarray, marker_pt: float
) -> None:
    order = col.draw_order
    # mplot3d is unannotated: pyright types its parameters from their int defaults (zs=0, s=20,
    # zoom=1), hence the ignores below.
    ax.scatter(
        coord[order, 0],
        coord[order, 1],
        coord[order, 2],  # pyright: ignore[reportArgumentType]
        c=col.rgba[order],
        s=(0.8 * marker_pt) ** 2,  # pyright: ignore[reportArgumentType]
        linewidths=0,
        depthshade=False,
        rasterized=True,
    )
    center = lims.mean(1)  # (3,)
    half = float((lims[:, 1] - lims[:, 0]).max()) / 2.0
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), center, strict=False):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.1)  # pyright: ignore[reportArgumentType]
    for name, setter in zip(
        AXIS_NAMES, (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), strict=False
    ):
        setter(f"{name} [voxel]", fontsize=7, labelpad=-6)
    ax.tick_params(labelsize=6, pad=-2)
    ax.set_title("3D", fontsize=8, color="0.3")


def _dot(color: ColorType, size: float = 7.0) -> Line2D:
    return Line2D(
        [], [], ls="", marker="o", markersize=size, markerfacecolor=color, markeredgewidth=0
    )


def _legend(
    ax: Axes | Figure | SubFigure,
    entries: Sequence[LegendEntry],
    with_counts: bool,
    **kwargs: Any,
) -> None:
    """Legend with one dot per entry, or a row of dots for an id palette (``swatch``)."""
    handles: list[Artist | tuple[Artist, ...]] = [
        tuple(_dot(c, 4.5) for c in e.swatch) if e.swatch else _dot(e.color) for e in entries
    ]
    labels = [e.label if with_counts else e.name for e in entries]
    handlelength = 3.0 if any(e.swatch for e in entries) else 1.5
    # Figure.legend's stub, unlike Axes.legend's, omits the tuple handles it accepts.
    ax.legend(
        handles,  # pyright: ignore[reportArgumentType]
        labels,
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0.0)},
        handlelength=handlelength,
        **kwargs,
    )


def _add_key(fig: Figure | SubFigure, axes: Sequence[Axes], col: Coloring, title: str) -> None:
    """Legend (categorical, ids) or log colorbar (energy) at the right of a row."""
    if col.kind == "energy":
        sm = ScalarMappable(norm=col.norm, cmap=colormaps[ENERGY_CMAP])
        cb = fig.colorbar(
            sm,
            ax=list(axes),
            fraction=0.02,
            pad=0.04,
            aspect=25,
            extend="min" if col.n_below_norm else "neither",
        )
        cb.set_label("voxel energy [MeV] (log)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        return
    _legend(
        fig,
        col.legend,
        with_counts=True,
        title=title,
        loc="outside right center",
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        handletextpad=0.4,
        alignment="left",
    )


def _extent_text(coord: np.ndarray) -> str:
    span_cm = (coord.max(0) - coord.min(0) + 1) * VOXEL_SIZE_CM  # (3,)
    return "extent {:.1f} x {:.1f} x {:.1f} cm (voxel {:g} mm)".format(*span_cm, VOXEL_SIZE_CM * 10)


def _header(event: Event, title: str | None) -> str:
    head = title if title is not None else event.where
    text = f"{head}\n{len(event)} points, {float(event.energy.sum()):.1f} MeV total"
    if event.vertices is not None and len(event.vertices):
        text += f", {len(event.vertices)} vertices (+)"
    return text


def _draw_row(
    fig: Figure | SubFigure,
    event: Event,
    col: Coloring,
    lims: np.ndarray,
    marker_pt: float,
    key_title: str,
) -> list[Axes]:
    gs = fig.add_gridspec(1, 4, width_ratios=(1, 1, 1, 1.15))
    axes = [fig.add_subplot(gs[0, i]) for i in range(3)]
    ax3d = cast(Axes3D, fig.add_subplot(gs[0, 3], projection="3d"))
    coord = np.asarray(event.coord, dtype=np.float64)
    _draw_projections(axes, coord, col, lims, marker_pt, event.vertices)
    _draw_3d(ax3d, coord, col, lims, marker_pt)
    _add_key(fig, [*axes, ax3d], col, key_title)
    return [*axes, ax3d]


def _error_coloring(truth: np.ndarray, pred: np.ndarray) -> tuple[Coloring, str]:
    """Colouring of the errors row: wrong points red on top, correct ones light grey."""
    is_labelled = truth >= 0  # (N,)
    is_wrong = is_labelled & (pred != truth)  # (N,)
    N = truth.shape[0]
    rgba = np.tile(mcolors.to_rgba("#d0d0d0"), (N, 1))
    rgba[~is_labelled] = mcolors.to_rgba(UNKNOWN_COLOR, alpha=0.4)
    rgba[is_wrong] = mcolors.to_rgba(ERROR_COLOR)
    n_wrong, n_lab = int(is_wrong.sum()), int(is_labelled.sum())
    legend = [
        LegendEntry(name="correct", color="#d0d0d0", count=n_lab - n_wrong),
        LegendEntry(name="wrong", color=ERROR_COLOR, count=n_wrong),
    ]
    if (~is_labelled).any():
        legend.append(
            LegendEntry(name="unlabelled", color=UNKNOWN_COLOR, count=int((~is_labelled).sum()))
        )
    acc = 1.0 - n_wrong / n_lab if n_lab else float("nan")
    names = np.where(is_wrong, "wrong", "correct")
    col = Coloring(
        option="errors",
        kind="categorical",
        rgba=rgba,
        draw_order=np.argsort(is_wrong, kind="stable"),
        legend=tuple(legend),
        point_names=names,
    )
    return col, f"errors: {n_wrong} of {n_lab} labelled points wrong (accuracy {acc:.1%})"


def display_event(
    event: Event,
    color: str = "segment",
    title: str | None = None,
    pred: np.ndarray | None = None,
    style: DisplayStyle = DisplayStyle(),
) -> Figure:
    """Draw one event: x-y, x-z, y-z projections and a 3D view, coloured by ``color``.

    Args:
        event: the event; ``coord`` (N, 3) in voxel units, ``energy`` (N,) MeV.
        color: one of ``segment``, ``pid``, ``instance``, ``interaction``, ``energy``.
        title: first title line; defaults to ``event.where``.
        pred: (N,) int predicted labels for ``color`` (``segment`` or ``pid`` only). Adds a
            prediction row and an errors row (wrong points in red) under the truth row.
        style: marker and panel sizes.

    Returns:
        The figure: 4 display axes per row (1 row, or 3 with ``pred``), plus a colorbar axes
        for ``energy``.

    Raises:
        ValueError: unknown ``color``, the field is missing on the event, the event is empty,
            ``pred`` has the wrong shape or unknown codes, or ``pred`` with a non-class colouring.
    """
    _check_event(event, color)
    if pred is not None and color not in PRED_OPTIONS:
        raise ValueError(
            f"{event.where}: pred is compared point by point with the truth, so "
            f"color must be one of {', '.join(PRED_OPTIONS)}, got {color!r}"
        )
    coord = np.asarray(event.coord)
    lims = _limits(coord, style)
    marker_pt = _marker_pt(lims, style)
    truth_col = make_coloring(event, color)
    n_rows = 1 if pred is None else 3
    # A bare Figure (no pyplot state): nothing leaks if the caller never closes it.
    fig = Figure(
        figsize=(4.15 * style.panel_inches + 2.0, style.panel_inches * n_rows + 0.7),
        layout="constrained",
    )
    rows = fig.subfigures(n_rows, 1, squeeze=False)[:, 0]
    key_title = color if color != "energy" else ""
    _draw_row(rows[0], event, truth_col, lims, marker_pt, key_title=key_title)
    if pred is not None:
        pred = np.asarray(pred)
        pred_col = make_coloring(event, color, values=pred)
        err_col, err_text = _error_coloring(np.asarray(getattr(event, color)), pred)
        rows[0].suptitle("truth", fontsize=10, x=0.02, ha="left")
        rows[1].suptitle("prediction", fontsize=10, x=0.02, ha="left")
        rows[2].suptitle(err_text, fontsize=10, x=0.02, ha="left")
        _draw_row(rows[1], event, pred_col, lims, marker_pt, key_title=key_title)
        _draw_row(rows[2], event, err_col, lims, marker_pt, key_title="errors")
    fig.suptitle(f"{_header(event, title)}, colour: {color}; {_extent_text(coord)}", fontsize=10)
    return fig


def display_events_grid(
    events: Sequence[Event],
    color: str = "segment",
    titles: Sequence[str] | None = None,
    style: DisplayStyle = DisplayStyle(),
) -> Figure:
    """Side-by-side events (e.g. a search query and its hits): one column per event, rows x-y
    and x-z, each column zoomed to its own event, colours shared.

    Args:
        events: E events in their detector's units (LArTPC: voxels; axes and titles follow
            ``nufm.data.detectors``).
        color: one of ``segment``, ``pid``, ``instance``, ``interaction``, ``energy``.
        titles: E column titles; default ``event.where``.
        style: marker and panel sizes.

    Returns:
        The figure with 2 * E display axes (plus one colorbar axes for ``energy``).

    Raises:
        ValueError: no events, wrong number of titles, unknown ``color`` or a missing field.
    """
    if len(events) == 0:
        raise ValueError("display_events_grid: got no events")
    if titles is not None and len(titles) != len(events):
        raise ValueError(f"display_events_grid: {len(titles)} titles for {len(events)} events")
    for ev in events:
        _check_event(ev, color)
    norm = energy_norm([np.asarray(ev.energy) for ev in events]) if color == "energy" else None
    E = len(events)
    fig = Figure(
        figsize=(style.panel_inches * 0.85 * E + 0.6, 2 * style.panel_inches * 0.85 + 1.2),
        layout="constrained",
    )
    axes = fig.subplots(2, E, squeeze=False)  # (2, E)
    colorings: list[Coloring] = []
    for j, ev in enumerate(events):
        coord = np.asarray(ev.coord)
        col = make_coloring(ev, color, norm=norm)
        det = detector_of(ev)
        lartpc = det.name == "lartpc"
        unit = "voxel" if lartpc else det.coord_unit.split(" ")[0]
        lims = _limits(coord, style)
        marker_pt = _marker_pt(lims, style) * 0.85
        for i, (a, b) in enumerate(PROJECTIONS[:2]):
            ax = axes[i, j]
            order = col.draw_order
            ax.scatter(
                coord[order, a],
                coord[order, b],
                c=col.rgba[order],
                s=marker_pt**2,
                linewidths=0,
                rasterized=True,
            )
            _set_square_view(ax, lims, a, b)
            ax.set_xlabel(f"{AXIS_NAMES[a]} [{unit}]", fontsize=7, labelpad=1)
            ax.set_ylabel(f"{AXIS_NAMES[b]} [{unit}]", fontsize=7, labelpad=1)
            ax.tick_params(labelsize=6, length=2, pad=1)
        head = titles[j] if titles is not None else ev.where
        ids_text = f", {col.legend[0].name}" if col.kind == "ids" else ""
        extent = float((coord.max(0) - coord.min(0)).max())
        if lartpc:
            size = f"{float(ev.energy.sum()):.0f} MeV, {(extent + 1) * VOXEL_SIZE_CM:.0f} cm"
        else:  # the detector's own units (docs/detectors.md)
            size = f"energy sum {float(ev.energy.sum()):.4g}, {extent:.3g} {unit}"
        axes[0, j].set_title(f"{head}\n{len(ev)} pts, {size}{ids_text}", fontsize=8)
        colorings.append(col)
    legend = merged_legend(colorings)
    if color == "energy":
        clipped = any(c.n_below_norm for c in colorings)
        cb = fig.colorbar(
            ScalarMappable(norm=norm, cmap=colormaps[ENERGY_CMAP]),
            ax=axes.ravel().tolist(),
            fraction=0.03,
            pad=0.01,
            shrink=0.8,
            aspect=30,
            extend="min" if clipped else "neither",
        )
        cb.set_label(
            "voxel energy [MeV] (log)"
            if all(detector_of(ev).name == "lartpc" for ev in events)
            else "energy (log; the detector's unit)",
            fontsize=8,
        )
        cb.ax.tick_params(labelsize=7)
    elif legend:
        _legend(
            fig,
            legend,
            with_counts=False,
            loc="outside lower center",
            ncols=min(len(legend), 6),
            fontsize=8,
            frameon=False,
            title=color,
            title_fontsize=8,
        )
    units = {detector_of(ev).coord_unit for ev in events}
    axes_text = (
        f"axes in voxels of {VOXEL_SIZE_CM * 10:g} mm"
        if all(detector_of(ev).name == "lartpc" for ev in events)
        else f"axes in {', '.join(sorted(units))}"
    )
    fig.suptitle(f"colour: {color}; {axes_text}", fontsize=9)
    return fig


def _atomic_target(path: str | os.PathLike) -> tuple[Path, str]:
    """The destination and a unique temporary name next to it (same file system, so the final
    ``os.replace`` is atomic; created with the usual umask permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, str(path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"))


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (tight bounding box) atomically and close it.

    The image goes to a temporary file in the same folder and is renamed onto ``path``, so a
    reader never sees a half-written file.

    Returns:
        The path written.
    """
    path, tmp = _atomic_target(path)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote %s", path)
    return path


def display_event_html(
    event: Event, color: str, path: str | os.PathLike, include_plotlyjs: bool | str = True
) -> Path:
    """Write an interactive plotly 3D scatter of ``event`` to ``path`` (atomically).

    Hovering a point shows its coordinate, energy and every label set on the event.

    Args:
        event: the event; ``coord`` (N, 3) voxel units, ``energy`` (N,) MeV.
        color: one of ``segment``, ``pid``, ``instance``, ``interaction``, ``energy``.
        path: output ``.html`` file.
        include_plotlyjs: ``True`` embeds plotly.js (a self-contained, offline page of ~4 MB);
            ``"cdn"`` links it instead (small file, needs internet to view).

    Returns:
        The path written.

    Raises:
        ImportError: plotly is not installed (install the ``nufm[html]`` extra).
        ValueError: unknown ``color``, missing field or empty event.
    """
    try:
        import plotly.graph_objects as go
    except ImportError as err:
        raise ImportError("display_event_html needs plotly: pip install 'nufm[html]'") from err
    _check_event(event, color)
    col = make_coloring(event, color)
    coord = np.asarray(event.coord, dtype=np.float64)
    energy = np.asarray(event.energy, dtype=np.float64)
    hover = _hover_text(event, coord, energy)  # (N,) str
    traces = []
    marker_size = float(np.clip(6.0 - 1.2 * np.log10(max(len(event), 1) / 1000.0), 1.5, 6.0))
    if col.kind == "energy":
        assert col.norm is not None
        vmin, vmax = col.norm.vmin, col.norm.vmax
        if vmin is None or vmax is None:
            raise ValueError("display_event_html: the energy norm needs vmin and vmax set")
        log_e = np.log10(np.clip(energy, vmin, None))
        decades = np.arange(np.floor(np.log10(vmin)), np.ceil(np.log10(vmax)) + 1)
        traces.append(
            go.Scatter3d(
                x=coord[:, 0],
                y=coord[:, 1],
                z=coord[:, 2],
                mode="markers",
                name="energy",
                hovertext=hover,
                hoverinfo="text",
                marker=dict(
                    size=marker_size,
                    color=log_e,
                    colorscale="Viridis",
                    cmin=np.log10(vmin),
                    cmax=np.log10(vmax),
                    colorbar=dict(
                        title="MeV", tickvals=decades, ticktext=[f"{10.0**d:g}" for d in decades]
                    ),
                ),
            )
        )
    else:
        for entry in col.legend:
            is_in = (
                col.point_names == entry.name
                if col.kind == "categorical"
                else ((np.asarray(getattr(event, color)) >= 0) == (entry.name != UNKNOWN_NAME))
            )
            rgb = [mcolors.to_hex(c) for c in col.rgba[is_in]]
            traces.append(
                go.Scatter3d(
                    x=coord[is_in, 0],
                    y=coord[is_in, 1],
                    z=coord[is_in, 2],
                    mode="markers",
                    name=entry.label,
                    hovertext=hover[is_in],
                    hoverinfo="text",
                    marker=dict(size=marker_size, color=rgb, line=dict(width=0)),
                )
            )
    fig = go.Figure(traces)
    fig.update_layout(
        title=f"{event.where}: {len(event)} points, {energy.sum():.1f} MeV total, colour: "
        f"{color}; {_extent_text(coord)}",
        scene=dict(
            aspectmode="data",
            xaxis_title="x [voxel]",
            yaxis_title="y [voxel]",
            zaxis_title="z [voxel]",
        ),
        legend=dict(itemsizing="constant"),
        margin=dict(l=0, r=0, t=50, b=0),
    )
    path, tmp = _atomic_target(path)
    try:
        fig.write_html(tmp, include_plotlyjs=include_plotlyjs, full_html=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote %s", path)
    return path


def _hover_text(event: Event, coord: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """(N,) str hover lines: position in voxels and cm, energy and each label set."""
    pos = [
        f"voxel ({x:.0f}, {y:.0f}, {z:.0f}) = ({x * cm:.1f}, {y * cm:.1f}, {z * cm:.1f}) cm"
        for x, y, z, cm in zip(*coord.T, np.full(len(coord), VOXEL_SIZE_CM), strict=False)
    ]
    text = np.char.add(
        np.char.add(np.char.mod("E = %.3g MeV", energy), "<br>"), np.asarray(pos, dtype=str)
    )
    for option in COLOR_OPTIONS[:4]:
        if getattr(event, option) is None:
            continue
        names = make_coloring(event, option).point_names
        text = np.char.add(np.char.add(text, f"<br>{option}: "), names)
    return text
