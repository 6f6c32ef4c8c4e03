"""Event display of a collider TPC (cylindrical layers around the beam along z): the x-y view
(looking down the beam) and the r-z view, coloured by particle class, track, collision / noise
or charge. Pure function returning a matplotlib ``Figure``.

Owns :func:`display_tpc_event`. Class names come from the detector description
(:mod:`nufm.data.detectors`).
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nufm.data.detectors import detector_of
from nufm.data.event import Event

TPC_COLOR_OPTIONS = ("segment", "instance", "interaction", "energy")
_CLASS_COLORS = ("#a0a0a0", "#1c5fc9", "#12a323", "#7048e8", "#d6336c")  # other pi K p e


def _colours(event: Event, color: str) -> tuple[np.ndarray, list[Line2D], str]:
    """(N, 4) RGBA, legend handles, legend title."""
    n = len(event)
    if color == "energy":
        e = np.maximum(event.energy.astype(float), 1e-3)
        norm = mcolors.LogNorm(vmin=np.percentile(e, 1), vmax=e.max())
        return colormaps["viridis"](norm(e)), [], "charge (keV, log scale)"
    field = getattr(event, color)
    if field is None:
        raise ValueError(f"{event.where}: no '{color}' labels to colour by")
    det = detector_of(event)
    if color == "segment":
        rgba = np.array([mcolors.to_rgba(_CLASS_COLORS[c % len(_CLASS_COLORS)]) for c in field])
        handles = [
            Line2D([], [], ls="", marker="o", color=_CLASS_COLORS[c], label=f"{name} ({k})")
            for c, name in enumerate(det.segment_names)
            if (k := int((field == c).sum()))
        ]
        return rgba, handles, "particle class"
    ids = np.unique(field[field >= 0])
    palette = colormaps["tab20"](np.arange(20))
    rank = np.searchsorted(ids, field)
    rgba = np.where((field >= 0)[:, None], palette[rank % 20], mcolors.to_rgba("#a0a0a0"))
    noise = int((field < 0).sum())
    handles = [Line2D([], [], ls="", marker="o", color="#a0a0a0", label=f"noise ({noise})")]
    what = "tracks" if color == "instance" else "collisions"
    handles.insert(
        0, Line2D([], [], ls="", marker="o", color=palette[0], label=f"{len(ids)} {what}")
    )
    return rgba.reshape(n, 4), handles, color


def display_tpc_event(event: Event, color: str = "segment", title: str | None = None) -> Figure:
    """x-y and r-z views of a collider-TPC event (coordinates in cm)."""
    if color not in TPC_COLOR_OPTIONS:
        raise ValueError(
            f"display_tpc_event: color must be one of {TPC_COLOR_OPTIONS}, got {color!r}"
        )
    det = detector_of(event)
    rgba, handles, legend_title = _colours(event, color)
    x, y, z = event.coord[:, 0], event.coord[:, 1], event.coord[:, 2]
    r = np.hypot(x, y)
    fig = Figure(figsize=(13, 5.6), layout="constrained")
    ax_xy, ax_rz = fig.subplots(1, 2, width_ratios=(1, 1.6))
    size = 4 if len(event) < 3000 else 2
    ax_xy.scatter(x, y, c=rgba, s=size, lw=0)
    ax_rz.scatter(z, r, c=rgba, s=size, lw=0)
    for rad in (30.0, 78.0):  # field cages
        t = np.linspace(0, 2 * np.pi, 200)
        ax_xy.plot(rad * np.cos(t), rad * np.sin(t), color="0.8", lw=0.8, zorder=0)
        ax_rz.axhline(rad, color="0.8", lw=0.8, zorder=0)
    ax_xy.set(xlabel="x [cm]", ylabel="y [cm]", aspect="equal", xlim=(-85, 85), ylim=(-85, 85))
    ax_xy.set_title("x-y (along the beam)")
    ax_rz.set(xlabel="z [cm]", ylabel="r [cm]", xlim=(-110, 110), ylim=(0, 85))
    ax_rz.set_title("r-z")
    if event.vertices is not None and len(event.vertices):
        ax_rz.plot(event.vertices[:, 2], np.zeros(len(event.vertices)), "k+", ms=10, clip_on=False)
    if handles:
        ax_rz.legend(handles=handles, title=legend_title, loc="upper right", fontsize=8)
    head = title or f"{event.where}: {len(event)} hits, {det.title}"
    fig.suptitle(f"{head}\ncolour: {legend_title}", fontsize=10)
    return fig
