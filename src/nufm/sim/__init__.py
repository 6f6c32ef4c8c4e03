"""nufm.sim: the built-in LArTPC event simulator (PILArNet-like images, arXiv:2006.01993).

Public API:

- :class:`SimConfig`: every knob, with defaults.
- :func:`simulate_event`: one fully labelled :class:`nufm.data.event.Event` from a seed.
- :func:`generate_events`: an ordered, worker-count-independent stream of events;
  :class:`SimulatedEvents`: the same events as a data set that simulates on read.

See ``docs/simulator.md`` for the physics and the validation numbers.
"""

from __future__ import annotations

from nufm.sim.config import SimConfig
from nufm.sim.generator import SimulatedEvents, event_seed, generate_events, simulate_event

__all__ = ["SimConfig", "SimulatedEvents", "event_seed", "generate_events", "simulate_event"]
