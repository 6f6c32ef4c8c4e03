"""Colour schemes for event displays: per-point RGBA, legend entries and hover labels.

This file owns the mapping from an event's per-point field (``segment``, ``pid``, ``instance``,
``interaction`` or ``energy``) to colours. It is shared by the matplotlib displays and the plotly
page in :mod:`nufm.viz.display`, so both show the same colour for the same class. Label codes are
the PILArNet-M ones (arXiv:2502.02558; docs/references.md), named in
:mod:`nufm.data.lartpc`.

Three kinds of colouring:

* categorical (``segment``, ``pid``): a fixed colour per class, legend naming each class present;
  code -1 (and pid 5, "none") is grey "none/unknown".
* ids (``instance``, ``interaction``): a qualitative palette cycled over the distinct ids of the
  event (rank order, so ids 0..N and arbitrary ids look the same); -1 is grey. The legend gives the
  number of ids, not one entry per id.
* energy: a logarithmic colour scale in MeV, with a colorbar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.colors import ListedColormap
from matplotlib.typing import ColorType

from nufm.data.detectors import detector_of
from nufm.data.event import Event
from nufm.data.lartpc import PID_NAMES, PID_NONE, SEGMENT_NAMES

COLOR_OPTIONS = ("segment", "pid", "instance", "interaction", "energy")
"""Allowed values of the ``color`` argument of every display function."""

UNKNOWN_NAME = "none/unknown"
"""Legend name of code -1 (and of pid 'none')."""
UNKNOWN_COLOR = "#a0a0a0"
"""Grey used for unlabelled points in every colouring."""

SEGMENT_COLORS: dict[int, tuple[str, str]] = {
    0: (SEGMENT_NAMES[0], "#e8590c"),  # shower: orange-red
    1: (SEGMENT_NAMES[1], "#1c5fc9"),  # track: blue
    2: (SEGMENT_NAMES[2], "#12a323"),  # michel: green
    3: (SEGMENT_NAMES[3], "#c2188f"),  # delta: magenta
    4: (SEGMENT_NAMES[4], "#c9a227"),  # low_energy: ochre
    -1: (UNKNOWN_NAME, UNKNOWN_COLOR),
}
"""Semantic code -> (name, colour)."""

PID_COLORS: dict[int, tuple[str, str]] = {
    0: (PID_NAMES[0], "#f08c00"),  # photon: orange
    1: (PID_NAMES[1], "#d6336c"),  # electron: crimson
    2: (PID_NAMES[2], "#1c5fc9"),  # muon: blue
    3: (PID_NAMES[3], "#0ca5b0"),  # pion: teal
    4: (PID_NAMES[4], "#7048e8"),  # proton: violet
    PID_NONE: (UNKNOWN_NAME, UNKNOWN_COLOR),
    -1: (UNKNOWN_NAME, UNKNOWN_COLOR),
}
"""Particle-type code -> (name, colour); 'none' and -1 share the grey unknown entry."""

# tab20 without its two greys (reserved for unlabelled points), dark shades first so
# consecutive ids get clearly different colours.
_ID_PALETTE = np.asarray(cast(ListedColormap, colormaps["tab20"]).colors)[
    [i for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
]  # (18, 3)

ENERGY_CMAP = "viridis"
"""Colormap of the energy colouring (log scale)."""

DRAW_PRIORITY: dict[str, tuple[int, ...]] = {
    "segment": (-1, 4, 0, 1, 3, 2),
    "pid": (-1, PID_NONE, 0, 1, 2, 4, 3),
}
"""Drawing order of categorical codes: rare, small classes (Michel, delta) are drawn last so the
large shower/track classes do not hide them."""


@dataclass(frozen=True, kw_only=True)
class LegendEntry:
    """One legend line of a colouring."""

    name: str
    """Class name ("track") or a summary ("12 particle ids")."""
    color: ColorType
    """Matplotlib colour."""
    count: int
    """Number of points in this entry."""
    swatch: tuple[str, ...] = ()
    """Several colours drawn side by side instead of ``color`` (id palettes)."""

    @property
    def label(self) -> str:
        """Legend text: name and point count."""
        return f"{self.name} ({self.count})"


@dataclass(frozen=True, kw_only=True)
class Coloring:
    """Per-point colours of one event for one colour option."""

    option: str
    """One of :data:`COLOR_OPTIONS`."""
    kind: Literal["categorical", "ids", "energy"]
    """How the colours were made (see the module docstring)."""
    rgba: np.ndarray
    """(N, 4) float64 colours in [0, 1]."""
    draw_order: np.ndarray
    """(N,) int64 permutation: draw points in this order (last on top)."""
    legend: tuple[LegendEntry, ...]
    """Legend lines (empty for energy, which uses a colorbar)."""
    point_names: np.ndarray
    """(N,) str per-point label for hover text ("track", "3" for id 3, "0.52 MeV")."""
    norm: mcolors.LogNorm | None = None
    """Energy colouring only: the log normalisation, MeV."""
    n_below_norm: int = 0
    """Energy colouring only: points below ``norm.vmin``, drawn in the lowest colour."""


def require_field(event: Event, option: str) -> np.ndarray:
    """Return the per-point array ``option`` of ``event`` or raise a clear error.

    Raises:
        ValueError: ``option`` is not in :data:`COLOR_OPTIONS`, or the field is not set.
    """
    if option not in COLOR_OPTIONS:
        raise ValueError(f"unknown color option {option!r}; allowed: {', '.join(COLOR_OPTIONS)}")
    values = getattr(event, option)
    if values is None:
        raise ValueError(
            f"{event.where}: cannot color by {option!r}, the event has no "
            f"'{option}' field (it is None)"
        )
    return np.asarray(values)


def energy_norm(energies: list[np.ndarray], low_percentile: float = 1.0) -> mcolors.LogNorm:
    """Log normalisation from the ``low_percentile``-th percentile of the positive energies of
    all arrays to their maximum (MeV), so a few tiny deposits do not stretch the scale.

    Lower energies (and non-positive ones) are drawn in the lowest colour.
    """
    positive = np.concatenate([e[e > 0] for e in energies]) if energies else np.zeros(0)
    if positive.size == 0:
        return mcolors.LogNorm(vmin=1e-2, vmax=1.0, clip=True)
    vmin, vmax = float(np.percentile(positive, low_percentile)), float(positive.max())
    if vmax <= vmin * 1.01:
        vmin, vmax = vmin / 2.0, vmax * 2.0
    return mcolors.LogNorm(vmin=vmin, vmax=vmax, clip=True)


def _class_table(names: tuple[str, ...]) -> dict[int, tuple[str, str]]:
    """Code -> (name, colour) for another detector's segment classes, in the LArTPC's colour
    order (then the ids palette), -1 unknown."""
    base = [color for code, (_, color) in sorted(SEGMENT_COLORS.items()) if code >= 0]
    extra = [mcolors.to_hex(c) for c in _ID_PALETTE]
    colors = base + [c for c in extra if c not in base]
    table = {k: (name, colors[k % len(colors)]) for k, name in enumerate(names)}
    table[-1] = (UNKNOWN_NAME, UNKNOWN_COLOR)
    return table


def _categorical(
    option: str, codes: np.ndarray, where: str, class_names: tuple[str, ...] | None = None
) -> Coloring:
    if class_names is not None and option == "segment" and class_names != SEGMENT_NAMES:
        table = _class_table(class_names)
    else:
        table = SEGMENT_COLORS if option == "segment" else PID_COLORS
    codes = codes.astype(np.int64)
    present = np.unique(codes)
    unknown_codes = [int(c) for c in present if int(c) not in table]
    if unknown_codes:
        allowed = sorted(c for c in table)
        raise ValueError(
            f"{where}: field '{option}' has codes {unknown_codes} outside the known codes {allowed}"
        )
    N = codes.shape[0]
    rgba = np.zeros((N, 4))
    names = np.empty(N, dtype=object)
    counts: dict[str, int] = {}
    color_of: dict[str, str] = {}
    for code in present:
        name, color = table[int(code)]
        is_code = codes == code  # (N,)
        rgba[is_code] = mcolors.to_rgba(color)
        names[is_code] = name
        counts[name] = counts.get(name, 0) + int(is_code.sum())
        color_of[name] = color
    # Legend in code order, unknown last.
    ordered = [table[c][0] for c in sorted(table) if c >= 0] + [UNKNOWN_NAME]
    legend = tuple(
        LegendEntry(name=n, color=color_of[n], count=counts[n])
        for n in dict.fromkeys(ordered)
        if n in counts
    )
    priority = {c: i for i, c in enumerate(DRAW_PRIORITY[option])}
    rank = np.array([priority.get(int(c), 0) for c in range(-1, max(table) + 1)])
    draw_order = np.argsort(rank[codes + 1], kind="stable")
    return Coloring(
        option=option,
        kind="categorical",
        rgba=rgba,
        draw_order=draw_order,
        legend=legend,
        point_names=names.astype(str),
    )


def _ids(option: str, ids: np.ndarray) -> Coloring:
    ids = ids.astype(np.int64)
    N = ids.shape[0]
    is_known = ids >= 0  # (N,)
    uniq, rank = np.unique(ids[is_known], return_inverse=True)
    rgba = np.tile(mcolors.to_rgba(UNKNOWN_COLOR), (N, 1))
    rgba[is_known, :3] = _ID_PALETTE[rank % len(_ID_PALETTE)]
    noun = "particle" if option == "instance" else "interaction"
    names = np.where(is_known, ids.astype(str), UNKNOWN_NAME)
    n_shown = int(min(max(uniq.size, 1), 4))
    legend = [
        LegendEntry(
            name=f"{uniq.size} {noun} id{'s' if uniq.size != 1 else ''}",
            color=mcolors.to_hex(_ID_PALETTE[0]),
            count=int(is_known.sum()),
            swatch=tuple(mcolors.to_hex(c) for c in _ID_PALETTE[:n_shown]),
        )
    ]
    if (~is_known).any():
        legend.append(
            LegendEntry(name=UNKNOWN_NAME, color=UNKNOWN_COLOR, count=int((~is_known).sum()))
        )
    draw_order = np.argsort(is_known, kind="stable")  # unknown first, under the ids
    return Coloring(
        option=option,
        kind="ids",
        rgba=rgba,
        draw_order=draw_order,
        legend=tuple(legend),
        point_names=names.astype(str),
    )


def _energy(energy: np.ndarray, norm: mcolors.LogNorm | None) -> Coloring:
    energy = energy.astype(np.float64)
    norm = norm if norm is not None else energy_norm([energy])
    rgba = colormaps[ENERGY_CMAP](norm(np.clip(energy, norm.vmin, None)))
    names = np.char.add(np.char.mod("%.3g", energy), " MeV")
    draw_order = np.argsort(energy, kind="stable")  # high energy on top
    return Coloring(
        option="energy",
        kind="energy",
        rgba=np.asarray(rgba),
        draw_order=draw_order,
        legend=(),
        point_names=names.astype(str),
        norm=norm,
        n_below_norm=int((energy < norm.vmin).sum()),
    )


def merged_legend(colorings: list[Coloring]) -> tuple[LegendEntry, ...]:
    """Legend entries of several categorical colourings: the union of their classes in code
    order (unknown last), counts summed. Non-categorical colourings add only 'none/unknown'."""
    merged: dict[str, LegendEntry] = {}
    for col in colorings:
        for e in col.legend:
            if col.kind != "categorical" and e.name != UNKNOWN_NAME:
                continue
            old = merged.get(e.name)
            merged[e.name] = LegendEntry(
                name=e.name, color=e.color, count=e.count + (old.count if old else 0)
            )
    if not colorings or colorings[0].option not in DRAW_PRIORITY:
        return tuple(merged.values())
    table = SEGMENT_COLORS if colorings[0].option == "segment" else PID_COLORS
    order = [table[c][0] for c in sorted(table) if c >= 0] + [UNKNOWN_NAME]
    # another detector's classes (not in the LArTPC table) keep their first-seen order
    order += [n for n in merged if n not in order]
    return tuple(merged[n] for n in dict.fromkeys(order) if n in merged)


def make_coloring(
    event: Event, option: str, values: np.ndarray | None = None, norm: mcolors.LogNorm | None = None
) -> Coloring:
    """Colour the points of ``event`` by ``option``.

    Args:
        event: the event; used for the field and for error messages.
        option: one of :data:`COLOR_OPTIONS`.
        values: (N,) labels to colour instead of the event's own field (e.g. predictions);
            interpreted with the same class table as ``option``.
        norm: energy only: a shared log normalisation (MeV) so several events compare.

    Raises:
        ValueError: unknown option, missing field, wrong ``values`` shape or unknown codes.
    """
    if option not in COLOR_OPTIONS:
        raise ValueError(f"unknown color option {option!r}; allowed: {', '.join(COLOR_OPTIONS)}")
    if values is None:
        field_values = require_field(event, option)
        where = event.where
    else:
        field_values = np.asarray(values)
        where = f"{event.where} (prediction)"
        if field_values.shape != (len(event),):
            raise ValueError(
                f"{where}: labels must have shape ({len(event)},), got {field_values.shape}"
            )
    match option:
        case "segment" | "pid":
            classes = detector_of(event).segment_names if option == "segment" else None
            return _categorical(option, field_values, where, classes)
        case "instance" | "interaction":
            return _ids(option, field_values)
        case "energy":
            return _energy(field_values, norm)
        case _:
            raise ValueError(
                f"unknown color option {option!r}; allowed: {', '.join(COLOR_OPTIONS)}"
            )
