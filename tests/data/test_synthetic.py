"""The tiny fake-event maker: deterministic, labels consistent with the truth tables."""

from __future__ import annotations

import numpy as np

from nufm.data.lartpc import LOW_ENERGY, MICHEL, PID_NONE, TRACK, VOLUME_SIZE
from nufm.data.synthetic import synthetic_event, synthetic_events


def test_deterministic_and_seed_dependent() -> None:
    a, b, c = synthetic_event(seed=4), synthetic_event(seed=4), synthetic_event(seed=5)
    np.testing.assert_array_equal(a.coord, b.coord)
    np.testing.assert_array_equal(a.segment, b.segment)
    assert len(a) != len(c) or not np.array_equal(a.coord, c.coord)


def test_labels_consistent_with_truth() -> None:
    for e in synthetic_events(4, seed=0, n_interactions=2):
        n = len(e)
        assert e.coord.shape == (n, 3) and e.coord.dtype == np.float32
        assert e.coord.min() >= 0 and e.coord.max() < VOLUME_SIZE
        assert len(np.unique(e.coord, axis=0)) == n  # one point per voxel
        assert (e.energy > 0).all()
        has_particle = e.instance >= 0
        assert set(e.instance[has_particle].tolist()) <= set(e.particles.id.tolist())
        row = {int(p): r for r, p in enumerate(e.particles.id)}
        part_inter = np.array(
            [e.particles.interaction[row[int(i)]] for i in e.instance[has_particle]]
        )
        np.testing.assert_array_equal(part_inter, e.interaction[has_particle])
        led = e.segment == LOW_ENERGY
        assert led.any() and (e.instance[led] == -1).all() and (e.pid[led] == PID_NONE).all()
        assert (e.segment == TRACK).any() and (e.segment == MICHEL).any()
        assert e.vertices.shape == (2, 3)
        michel_parent = e.particles.parent[~e.particles.is_primary]
        assert (michel_parent >= 0).all()
