"""The water Cherenkov PID baseline: the features, and e / mu separation on simulated events."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nufm.eval.wc_pid import FEATURE_NAMES, hit_pattern_features, pid_baseline
from nufm.sim.water_cherenkov import generate_wc_events


def test_features_of_an_event() -> None:
    (ev,) = list(generate_wc_events(1, seed=1, particle="mu-", energy=(500.0, 500.0)))
    f = hit_pattern_features(ev)
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()
    assert f[0] == pytest.approx(float(ev.energy.sum()), rel=1e-6) and f[1] == len(ev)
    with pytest.raises(ValueError, match="need hit times"):
        hit_pattern_features(dataclasses.replace(ev, time=None))


def test_electrons_and_muons_separate() -> None:
    e = list(generate_wc_events(40, seed=1, particle="e-", energy=(300.0, 700.0)))
    mu = list(generate_wc_events(40, seed=2, particle="mu-", energy=(400.0, 800.0)))
    label = np.r_[np.ones(40, int), np.zeros(40, int)]
    events = e + mu
    train, test = np.r_[0:30, 40:70], np.r_[30:40, 70:80]
    out = pid_baseline(
        [events[i] for i in train],
        label[train],
        [events[i] for i in test],
        label[test],
        signal=1,
        rejection=0.9,
    )
    assert out["auc"] > 0.8 and out["n_test"] == 20
