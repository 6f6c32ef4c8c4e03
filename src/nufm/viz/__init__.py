"""nufm.viz: event displays (matplotlib projections + 3D, side-by-side grids, plotly pages)."""

from __future__ import annotations

from nufm.viz.colors import COLOR_OPTIONS
from nufm.viz.display import (
    DisplayStyle,
    display_event,
    display_event_html,
    display_events_grid,
    save_figure,
)

__all__ = [
    "COLOR_OPTIONS",
    "DisplayStyle",
    "display_event",
    "display_event_html",
    "display_events_grid",
    "save_figure",
]
