"""Event display of a water Cherenkov detector: the cylinder unrolled (the barrel as a
rectangle, azimuth times radius against height, the two end caps as discs above and below),
PMT hits coloured by charge, time or true particle. Pure function returning a ``Figure``.

Owns :func:`display_wc_event`.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nufm.data.detectors import detector_of
from nufm.data.event import Event

WC_COLOR_OPTIONS = ("energy", "time", "segment", "instance", "interaction")
_CAT_COLORS = ("#1c5fc9", "#12a323", "#7048e8", "#e8590c")


def unrolled(coord: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """(N, 2) display coordinates: barrel at (R phi, z); caps as discs centred at
    (0, +-(H + R)), the top seen from above, the bottom from below."""
    x, y, z = coord[:, 0], coord[:, 1], coord[:, 2]
    on_barrel = np.abs(np.abs(z) - half_height) > 1e-3
    phi = np.arctan2(y, x)
    out = np.where(on_barrel[:, None], np.stack([radius * phi, z], 1), 0.0)
    top = ~on_barrel & (z > 0)
    bottom = ~on_barrel & (z < 0)
    out[top] = np.stack([x[top], half_height + radius + y[top]], 1)
    out[bottom] = np.stack([x[bottom], -half_height - radius - y[bottom]], 1)
    return out


def display_wc_event(
    event: Event, color: str = "energy", radius: float = 16.9, half_height: float = 18.1
) -> Figure:
    """The unrolled detector with the event's hits (module docstring)."""
    if color not in WC_COLOR_OPTIONS:
        raise ValueError(
            f"display_wc_event: color must be one of {WC_COLOR_OPTIONS}, got {color!r}"
        )
    det = detector_of(event)
    xy = unrolled(event.coord, radius, half_height)
    fig = Figure(figsize=(9, 9.5), layout="constrained")
    ax = fig.subplots()
    t = np.linspace(0, 2 * math.pi, 200)
    ax.add_patch(
        __import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (-math.pi * radius, -half_height),
            2 * math.pi * radius,
            2 * half_height,
            fill=False,
            ec="0.75",
            lw=0.8,
        )
    )
    for sign in (1, -1):
        ax.plot(
            radius * np.cos(t),
            sign * (half_height + radius) + radius * np.sin(t),
            color="0.75",
            lw=0.8,
        )
    handles: list[Line2D] = []
    if color in ("energy", "time"):
        val = event.energy if color == "energy" else event.time
        if val is None:
            raise ValueError(f"{event.where}: no hit times")
        norm = (
            mcolors.LogNorm(vmin=max(float(val.min()), 0.1), vmax=float(val.max()))
            if color == "energy"
            else mcolors.Normalize(*np.percentile(val, [2, 98]))
        )
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=val, cmap="viridis", norm=norm, s=5, lw=0)
        fig.colorbar(
            sc, ax=ax, shrink=0.6, label="charge [pe]" if color == "energy" else "time [ns]"
        )
        what = "charge" if color == "energy" else "time"
    else:
        field = getattr(event, color)
        if field is None:
            raise ValueError(f"{event.where}: no '{color}' labels to colour by")
        if color == "segment":
            rgba = np.array(
                [
                    mcolors.to_rgba(_CAT_COLORS[c]) if c >= 0 else mcolors.to_rgba("#a0a0a0")
                    for c in field
                ]
            )
            handles = [
                Line2D([], [], ls="", marker="o", color=_CAT_COLORS[c], label=f"{n} ({k})")
                for c, n in enumerate(det.segment_names)
                if (k := int((field == c).sum()))
            ]
        else:
            ids = np.unique(field[field >= 0])
            pal = colormaps["tab10"](np.arange(10))
            rgba = np.where(
                (field >= 0)[:, None],
                pal[np.searchsorted(ids, field) % 10],
                mcolors.to_rgba("#a0a0a0"),
            )
        n_noise = int(((event.instance if event.instance is not None else field) < 0).sum())
        handles.append(
            Line2D([], [], ls="", marker="o", color="#a0a0a0", label=f"dark noise ({n_noise})")
        )
        ax.scatter(xy[:, 0], xy[:, 1], c=rgba, s=5, lw=0)
        ax.legend(handles=handles, loc="upper right", fontsize=8)
        what = color
    ax.set(
        aspect="equal", xlabel="barrel: R phi [m]; caps: x [m]", ylabel="barrel: z [m]; caps: y [m]"
    )
    fig.suptitle(f"{event.where}: {len(event)} hits, {det.title}\ncolour: {what}", fontsize=10)
    return fig
