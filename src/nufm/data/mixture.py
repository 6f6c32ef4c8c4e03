"""Events of several detectors in one pretraining run (cross-experiment pretraining, the next
step Panda arXiv:2512.01324 and FM4NPP arXiv:2508.14087 name; issue 13).

Owns :func:`parse_mixture_entry`, :class:`MixtureEvents` and :class:`ByDetector`:

* a mixture source is written ``PATH`` or ``PATH:WEIGHT`` (``nufm pretrain --data.source
  mixture --data.mixture lartpc.h5:2 wc.h5 tpc.npz``); the weight is the relative share of
  batches drawn from it;
* :class:`MixtureEvents` concatenates the sources' event datasets, tags every event with its
  detector (``Event.meta['detector']``) and tells the sampler which source each event comes
  from (:class:`nufm.data.collate.MixtureBudgetSampler` makes every batch one source's);
* :class:`ByDetector` applies each detector's own per-event pipeline (its preprocessing and
  the token grouping of its input embedding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nufm.data.collate import EventSource, points_per_event
from nufm.data.event import Event
from nufm.errors import ConfigError


def parse_mixture_entry(entry: str) -> tuple[Path, float]:
    """``"PATH"`` or ``"PATH:WEIGHT"`` -> (path, weight); weight 1 when not given.

    Raises:
        ConfigError: the weight is not a positive number.
    """
    path, sep, weight = entry.rpartition(":")
    if not sep or not weight or "/" in weight:
        return Path(entry), 1.0
    try:
        value = float(weight)
    except ValueError:
        return Path(entry), 1.0  # a ':' that belongs to the path
    if not value > 0 or not np.isfinite(value):
        raise ConfigError(f"data.mixture {entry!r}: the weight must be a positive number")
    return Path(path), value


class MixtureEvents:
    """The events of several sources, one after another; event i of the whole is event
    ``i - start[s]`` of source s, tagged with source s's detector.

    Attributes:
        detectors: (S,) detector name of every source.
        mixture_weights: (S,) relative share of batches of every source.
        mixture_source: (len,) int64 source of every event (read by the sampler).
    """

    def __init__(
        self,
        sources: Sequence[EventSource],
        detectors: Sequence[str],
        weights: Sequence[float],
        names: Sequence[str],
    ) -> None:
        if not (len(sources) == len(detectors) == len(weights) == len(names)) or not sources:
            raise ValueError("MixtureEvents: one detector, weight and name per source")
        self.sources = list(sources)
        self.detectors = tuple(detectors)
        self.names = tuple(names)
        self.mixture_weights = np.asarray(weights, dtype=np.float64)
        lengths = np.array([len(s) for s in self.sources], dtype=np.int64)
        self.start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (S + 1,)
        self.mixture_source = np.repeat(np.arange(len(self.sources)), lengths)  # (len,)

    def __len__(self) -> int:
        return int(self.start[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"MixtureEvents: index {index} out of range ({len(self)} events)")
        s = int(self.mixture_source[index])
        return s, index - int(self.start[s])

    def __getitem__(self, index: int) -> Event:
        s, row = self._locate(index)
        event = self.sources[s][row]
        return event.with_fields(meta={**event.meta, "detector": self.detectors[s]})

    def where(self, index: int) -> str:
        """The file and row of event ``index`` (for error messages)."""
        s, row = self._locate(index)
        where = getattr(self.sources[s], "where", None)
        return str(where(row)) if callable(where) else f"{self.names[s]} event {row}"

    def points_per_event(self) -> np.ndarray:
        """(len,) int64 points of every event (from the sources, without reading events
        where they know it: :func:`nufm.data.collate.points_per_event`)."""
        return np.concatenate([points_per_event(s) for s in self.sources])

    def set_epoch(self, epoch: int) -> None:
        for s in self.sources:
            set_epoch = getattr(s, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)


class ByDetector:
    """A seeded per-event transform chosen by the event's detector (``meta['detector']``,
    the LArTPC when unset)."""

    def __init__(self, transforms: Mapping[str, object]) -> None:
        self.transforms = dict(transforms)

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        name = event.meta.get("detector", "lartpc")
        transform = self.transforms.get(name)
        if transform is None:
            raise ConfigError(
                f"{event.where}: a {name} event, but this run's pipeline knows only "
                f"{', '.join(self.transforms)}"
            )
        return transform(event, rng)  # type: ignore[operator]
