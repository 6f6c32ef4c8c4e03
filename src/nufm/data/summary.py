"""Summaries of a data set for ``nufm info``: event and point counts, class fractions, energies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from nufm.data.event import Event
from nufm.data.lartpc import PID_NAMES, SEGMENT_NAMES
from nufm.errors import InputError


@dataclass(frozen=True, kw_only=True)
class DatasetSummary:
    """Aggregate statistics of a set of events (every number computed, none estimated)."""

    n_events: int
    points_per_event: np.ndarray
    """(E,) int64 points in each event."""
    segment_fraction: dict[str, float]
    """Share of all points per semantic class (points with segment -1 excluded)."""
    pid_fraction: dict[str, float]
    energy_min: float
    energy_max: float
    energy_per_event: np.ndarray
    """(E,) float64 total deposited energy per event, MeV."""
    interactions_per_event: np.ndarray
    """(E,) int64 distinct interaction ids (>= 0) per event."""
    particles_per_event: np.ndarray
    """(E,) int64 distinct particle ids (>= 0) per event."""
    energy_label: str = "voxel energy [MeV]"
    """What ``energy`` is, for the text (the detector description's)."""
    stream_fraction: dict[str, float] = field(default_factory=dict)
    """Share of all points per sub-detector stream (multi-stream detectors)."""
    label_summary: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per ``Event.labels`` channel: the share of each value for integer channels (e.g.
    ``ghost`` {"0": .., "1": ..}), else {"mean": ..}; points where it is -1 excluded."""
    event_class_fraction: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per class-valued event truth (e.g. ``flavour``): the share of events per class."""

    def format(self) -> str:
        """Human-readable multi-line text."""
        p = self.points_per_event
        lines = [
            f"events: {self.n_events}",
            f"points/event: mean {p.mean():.0f}, median {np.median(p):.0f}, "
            f"min {p.min()}, max {p.max()}, total {p.sum()}",
            f"interactions/event: mean {self.interactions_per_event.mean():.2f} "
            f"+- {self.interactions_per_event.std():.2f}",
            f"particles/event: mean {self.particles_per_event.mean():.2f} "
            f"+- {self.particles_per_event.std():.2f}",
            f"{self.energy_label}: min {self.energy_min:.4g}, max {self.energy_max:.4g}; "
            f"event energy: mean {self.energy_per_event.mean():.1f}, "
            f"max {self.energy_per_event.max():.1f}",
            "segment fractions: "
            + ", ".join(f"{k} {v:.2%}" for k, v in self.segment_fraction.items()),
        ]
        if self.pid_fraction:
            lines.append(
                "pid fractions: " + ", ".join(f"{k} {v:.2%}" for k, v in self.pid_fraction.items())
            )
        if self.stream_fraction:
            lines.append(
                "stream fractions: "
                + ", ".join(f"{k} {v:.2%}" for k, v in self.stream_fraction.items())
            )
        for name, shares in self.label_summary.items():
            text = ", ".join(
                f"{k} {v:.4g}" if k == "mean" else f"{k} {v:.2%}" for k, v in shares.items()
            )
            lines.append(f"label {name}: {text}")
        for name, shares in self.event_class_fraction.items():
            lines.append(f"event {name}: " + ", ".join(f"{k} {v:.2%}" for k, v in shares.items()))
        return "\n".join(lines)


def _fractions(counts: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    total = counts.sum()
    return {n: float(c / total) if total else 0.0 for n, c in zip(names, counts, strict=False)}


def summarize(
    events: Iterable[Event],
    segment_names: tuple[str, ...] = SEGMENT_NAMES,
    pid_names: tuple[str, ...] = PID_NAMES,
    energy_label: str = "voxel energy [MeV]",
    stream_names: tuple[str, ...] = (),
    label_names: tuple[str, ...] = (),
    event_classes: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> DatasetSummary:
    """Compute a :class:`DatasetSummary` in one pass over ``events`` (class names, stream and
    label channel names and the energy's meaning from the detector description; LArTPC by
    default)."""
    SEGMENT_NAMES, PID_NAMES = segment_names, pid_names
    sizes, energies, n_int, n_part = [], [], [], []
    seg_counts = np.zeros(len(SEGMENT_NAMES), np.int64)
    pid_counts = np.zeros(len(PID_NAMES), np.int64)
    e_min, e_max = np.inf, -np.inf
    stream_counts = np.zeros(len(stream_names), np.int64)
    label_values: list[list[np.ndarray]] = [[] for _ in label_names]
    event_values: dict[str, list[int]] = {name: [] for name, _ in event_classes}
    for ev in events:
        if ev.stream is not None and stream_names:
            stream_counts += np.bincount(ev.stream, minlength=len(stream_names))[
                : len(stream_names)
            ]
        if ev.labels is not None:
            for k in range(min(len(label_names), ev.labels.shape[1])):
                col = ev.labels[:, k]
                label_values[k].append(col[col != -1])
        for name, _ in event_classes:
            if name in ev.meta:
                event_values[name].append(int(ev.meta[name]))
        sizes.append(len(ev))
        energies.append(float(ev.energy.sum(dtype=np.float64)))
        if len(ev):
            e_min, e_max = min(e_min, float(ev.energy.min())), max(e_max, float(ev.energy.max()))
        if ev.segment is not None:
            s = ev.segment[ev.segment >= 0]
            seg_counts += np.bincount(s, minlength=len(SEGMENT_NAMES))[: len(SEGMENT_NAMES)]
        if ev.pid is not None:
            p = ev.pid[ev.pid >= 0]
            pid_counts += np.bincount(p, minlength=len(PID_NAMES))[: len(PID_NAMES)]
        n_int.append(
            len(np.unique(ev.interaction[ev.interaction >= 0])) if ev.interaction is not None else 0
        )
        n_part.append(
            len(np.unique(ev.instance[ev.instance >= 0])) if ev.instance is not None else 0
        )
    if not sizes:
        raise InputError("summarize: no events (empty file or data set)")
    label_summary = {}
    for name, parts in zip(label_names, label_values, strict=True):
        v = np.concatenate(parts) if parts else np.zeros(0)
        if len(v) and np.all(v == np.round(v)):
            values, counts = np.unique(v.astype(np.int64), return_counts=True)
            label_summary[name] = {
                str(a): float(c / len(v)) for a, c in zip(values, counts, strict=True)
            }
        elif len(v):
            label_summary[name] = {"mean": float(v.mean())}
    event_class_fraction = {
        name: _fractions(np.bincount(event_values[name], minlength=len(names)), names)
        for name, names in event_classes
        if event_values[name]
    }
    return DatasetSummary(
        n_events=len(sizes),
        points_per_event=np.asarray(sizes, np.int64),
        segment_fraction=_fractions(seg_counts, SEGMENT_NAMES),
        pid_fraction=_fractions(pid_counts, PID_NAMES) if PID_NAMES else {},
        energy_min=e_min,
        energy_max=e_max,
        energy_per_event=np.asarray(energies),
        interactions_per_event=np.asarray(n_int, np.int64),
        particles_per_event=np.asarray(n_part, np.int64),
        energy_label=energy_label,
        stream_fraction=_fractions(stream_counts, stream_names) if stream_names else {},
        label_summary=label_summary,
        event_class_fraction=event_class_fraction,
    )
