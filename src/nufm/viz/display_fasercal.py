"""Event display of the FASERCal-like detector: the scintillator's three 2D views (the
projections its fibres read: x-z, y-z and x-y), the reconstructed 3D voxels, a side view of
the whole detector with the ECAL, HCAL and muon spectrometer, and the ECAL's 5 x 5 matrix.
Voxels are coloured by ghost flag, hierarchy, category, particle or energy. Pure function
returning a matplotlib ``Figure``.

Owns :func:`display_fasercal_event` and :data:`FASERCAL_COLOR_OPTIONS`.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nufm.data import fasercal as fc
from nufm.data.event import Event

FASERCAL_COLOR_OPTIONS = ("ghost", "hierarchy", "category", "instance", "energy")
_PALETTES = {
    "ghost": (("real", "#1c5fc9"), ("ghost", "#f08c00")),
    "hierarchy": tuple(zip(fc.HIERARCHY_NAMES, ("#f08c00", "#d6336c", "#1c5fc9"), strict=True)),
    "category": tuple(zip(fc.CATEGORY_NAMES, ("#12a323", "#7048e8", "#d6336c"), strict=True)),
}
_COLUMN = {"ghost": 0, "hierarchy": 1, "category": 2}
_GHOST_GREY = "#c8c8c8"


def _voxel_colours(event: Event, scint: np.ndarray, color: str):
    """(V, 4) RGBA of the scintillator voxels, legend handles, legend title."""
    if color == "energy":
        e = np.maximum(event.energy[scint].astype(float), 1e-2)
        norm = mcolors.LogNorm(vmin=max(np.percentile(e, 1), 1e-2), vmax=max(e.max(), 0.1))
        return colormaps["viridis"](norm(e)), [], "voxel charge (MeV, log scale)"
    if color == "instance":
        if event.instance is None:
            raise ValueError(f"{event.where}: no particle ids to colour by")
        ids = event.instance[scint]
        palette = colormaps["tab20"](np.arange(20))
        uniq = np.unique(ids[ids >= 0])
        rgba = np.where(
            (ids >= 0)[:, None],
            palette[np.searchsorted(uniq, ids) % 20],
            mcolors.to_rgba(_GHOST_GREY),
        )
        handles = [
            Line2D([], [], ls="", marker="s", color=palette[0], label=f"{len(uniq)} particles"),
            Line2D([], [], ls="", marker="s", color=_GHOST_GREY, label="ghost"),
        ]
        return rgba, handles, "particle"
    if event.labels is None:
        raise ValueError(f"{event.where}: no label channels to colour by {color}")
    codes = event.labels[scint, _COLUMN[color]].astype(np.int64)
    names, cols = zip(*_PALETTES[color], strict=True)
    table = np.array([mcolors.to_rgba(c) for c in cols])
    rgba = np.where((codes >= 0)[:, None], table[np.clip(codes, 0, len(cols) - 1)], 0.0)
    rgba[codes < 0] = mcolors.to_rgba(_GHOST_GREY)
    handles = [
        Line2D([], [], ls="", marker="s", color=c, label=f"{n} ({int((codes == k).sum())})")
        for k, (n, c) in enumerate(zip(names, cols, strict=True))
    ]
    if color == "category" and (codes < 0).any():
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="s",
                color=_GHOST_GREY,
                label=f"ghost ({int((codes < 0).sum())})",
            )
        )
    return rgba, handles, color


def display_fasercal_event(
    event: Event, color: str = "category", title: str | None = None
) -> Figure:
    """The views of one FASERCal event (coordinates in cm)."""
    if color not in FASERCAL_COLOR_OPTIONS:
        raise ValueError(
            f"display_fasercal_event: color must be one of {FASERCAL_COLOR_OPTIONS}, got {color!r}"
        )
    if event.stream is None:
        raise ValueError(f"{event.where}: no stream ids; not a FASERCal event")
    scint = event.stream == fc.SCINT
    rgba, handles, legend_title = _voxel_colours(event, scint, color)
    v = event.coord[scint]
    # draw ghosts first so real voxels stay on top
    order = np.argsort(-(rgba[:, 0] == mcolors.to_rgba(_GHOST_GREY)[0]).astype(int), kind="stable")
    v, rgba = v[order], rgba[order]
    fig = Figure(figsize=(15, 9.5), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=(1, 1, 1.3))
    lo, hi = fc.SCINT_MIN, fc.SCINT_MAX
    size = 3 if len(v) < 5000 else 1.2
    for row, (axis, name) in enumerate(((0, "x"), (1, "y"))):
        ax = fig.add_subplot(grid[row, :2])
        ax.scatter(v[:, 2], v[:, axis], c=rgba, s=size, marker="s", lw=0)
        for k in range(1, fc.N_MODULES):
            ax.axvline(lo[2] + k * fc.MODULE_DEPTH, color="0.85", lw=0.6, zorder=0)
        ax.set(xlim=(lo[2], hi[2]), ylim=(lo[axis], hi[axis]), xlabel="z [cm]")
        ax.set(ylabel=f"{name} [cm]", aspect="equal")
        ax.set_title(f"{name}-z view (modules dashed)", fontsize=9)
    ax_xy = fig.add_subplot(grid[0, 2])
    ax_xy.scatter(v[:, 0], v[:, 1], c=rgba, s=size, marker="s", lw=0)
    ax_xy.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), aspect="equal")
    ax_xy.set(xlabel="x [cm]", ylabel="y [cm]")
    ax_xy.set_title("x-y view (all modules)", fontsize=9)
    ax3 = fig.add_subplot(grid[1, 2], projection="3d")
    ax3.scatter(v[:, 2], v[:, 0], v[:, 1], c=rgba, s=size * 0.6, lw=0)  # type: ignore[call-arg]
    ax3.set(xlabel="z", ylabel="x", zlabel="y")
    ax3.set_title("3D voxels", fontsize=9)
    # side view of the whole detector and the ECAL matrix
    ax_side = fig.add_subplot(grid[2, :2])
    ax_side.scatter(v[:, 2], v[:, 0], c=rgba, s=0.8, marker="s", lw=0)
    energy = event.energy.astype(float)
    for stream, cmap, marker in ((fc.ECAL, "Oranges", "s"), (fc.HCAL, "Reds", "s")):
        sel = event.stream == stream
        if sel.any():
            e = np.maximum(energy[sel], 1.0)
            ax_side.scatter(
                event.coord[sel, 2],
                event.coord[sel, 0],
                c=np.log10(e),
                cmap=cmap,
                s=40,
                marker=marker,
                alpha=0.7,
                lw=0,
            )
    mu = event.stream == fc.MUON
    ax_side.scatter(event.coord[mu, 2], event.coord[mu, 0], c="k", s=12, marker="x")
    for z in fc.MUON_PLANES_Z:
        ax_side.axvline(z, color="0.88", lw=0.6, zorder=0)
    ax_side.axvspan(*fc.ECAL_Z, color="#fff4e6", zorder=0)
    ax_side.axvspan(
        fc.HCAL_MIN[2], fc.HCAL_MIN[2] + fc.HCAL_N_Z * fc.HCAL_CELL_CM, color="#fff0f0", zorder=0
    )
    ax_side.set(xlabel="z [cm]", ylabel="x [cm]", xlim=(lo[2] - 5, fc.MUON_PLANES_Z[-1] + 10))
    ax_side.set_title(
        f"side view: scintillator, ECAL, HCAL ({int((event.stream == fc.HCAL).sum())} cells), "
        f"muon spectrometer ({int(mu.sum())} hits)",
        fontsize=9,
    )
    ax_ecal = fig.add_subplot(grid[2, 2])
    ecal = event.stream == fc.ECAL
    matrix = np.zeros((fc.ECAL_N, fc.ECAL_N))
    half = fc.ECAL_N * fc.ECAL_CELL_CM / 2
    ij = np.floor((event.coord[ecal, :2] + half) / fc.ECAL_CELL_CM).astype(int)
    ij = np.clip(ij, 0, fc.ECAL_N - 1)
    matrix[ij[:, 0], ij[:, 1]] = energy[ecal] / 1000.0
    im = ax_ecal.imshow(matrix.T, origin="lower", cmap="Oranges", extent=(-half, half, -half, half))
    fig.colorbar(im, ax=ax_ecal, label="GeV")
    ax_ecal.set(xlabel="x [cm]", ylabel="y [cm]")
    ax_ecal.set_title(f"ECAL 5 x 5 ({matrix.sum():.1f} GeV)", fontsize=9)
    if handles:
        ax_xy.legend(handles=handles, title=legend_title, fontsize=7, loc="upper right")
    m = event.meta
    truth = ""
    if "flavour" in m and int(m["flavour"]) >= 0:
        truth = (
            f"; {fc.FLAVOUR_NAMES[int(m['flavour'])]}, charm {fc.CHARM_NAMES[int(m['charm'])]}, "
            f"E_nu {m['nu_energy']:.0f} GeV"
        )
    n_ghost = int((event.labels[scint, 0] == 1).sum()) if event.labels is not None else 0
    head = title or f"{event.where}: {int(scint.sum())} voxels ({n_ghost} ghosts){truth}"
    fig.suptitle(f"{head}\ncolour: {legend_title}", fontsize=10)
    return fig
