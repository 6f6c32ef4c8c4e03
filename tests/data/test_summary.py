import numpy as np

from nufm.data.event import Event
from nufm.data.summary import summarize


def test_summary_hand_computed() -> None:
    a = Event(
        coord=np.zeros((4, 3), np.float32),
        energy=np.array([1, 2, 3, 4], np.float32),
        segment=np.array([0, 0, 1, -1]),
        pid=np.array([1, 1, 2, 5]),
        instance=np.array([0, 0, 1, -1]),
        interaction=np.array([0, 0, 0, -1]),
    )
    b = Event(
        coord=np.zeros((2, 3), np.float32),
        energy=np.array([0.5, 0.5], np.float32),
        segment=np.array([1, 4]),
        pid=np.array([2, 5]),
        instance=np.array([0, 1]),
        interaction=np.array([0, 1]),
    )
    s = summarize([a, b])
    assert s.n_events == 2
    assert s.points_per_event.tolist() == [4, 2]
    assert s.segment_fraction["shower"] == 2 / 5
    assert s.segment_fraction["track"] == 2 / 5
    assert s.segment_fraction["low_energy"] == 1 / 5
    assert s.energy_per_event.tolist() == [10.0, 1.0]
    assert s.interactions_per_event.tolist() == [1, 2]
    assert s.particles_per_event.tolist() == [2, 2]
    assert "events: 2" in s.format()
