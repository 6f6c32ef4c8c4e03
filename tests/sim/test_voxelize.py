"""Voxelization by hand-computed cases; plots and the benchmark return what they claim."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nufm.sim import simulate_event
from nufm.sim.generator import event_seed
from nufm.sim.voxelize import voxelize_deposits


def test_voxelize_sums_energy_and_picks_dominant_label() -> None:
    # columns: x, y, z (cm), energy (MeV), label row, half-step vector (0 = point deposit);
    # voxel pitch 0.3 cm
    pts = np.array(
        [
            [0.05, 0.05, 0.05, 1.0, 0],  # voxel (0,0,0): label 0 gets 1.0 + 0.5 = 1.5
            [0.25, 0.10, 0.20, 0.5, 0],
            [0.15, 0.15, 0.15, 1.2, 1],  # label 1 gets 1.2 < 1.5 -> label 0 dominates
            [0.35, 0.05, 0.05, 0.1, 0],  # voxel (1,0,0): label 2 dominates with 0.3
            [0.40, 0.10, 0.10, 0.3, 2],
            [-0.01, 0.1, 0.1, 5.0, 1],  # outside the cube: not voxelized, counted
            [0.1, 0.1, 2.41, 0.2, 1],  # z index 8 is outside a 8-voxel cube
        ]
    )
    dep = np.concatenate([pts, np.zeros((len(pts), 3))], axis=1)
    index, energy, label, n_outside = voxelize_deposits(dep, len(dep), 3, 0.3, 8)
    np.testing.assert_array_equal(index, [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(energy, [2.7, 0.4])
    np.testing.assert_array_equal(label, [0, 2])
    assert n_outside == 2


def test_voxelize_shares_a_step_by_chord_length() -> None:
    # a 1 mm step along x from 0.25 to 0.35 cm: half in voxel 0, half in voxel 1
    # a step from (0.28, 0.28, 0.1) to (0.32, 0.36, 0.1): crosses x = 0.3 at t = 0.5 and
    # y = 0.3 at t = 0.25 -> pieces 0.25 in (0,0), 0.25 in (0,1), 0.5 in (1,1)
    dep = np.array(
        [
            [0.30, 0.10, 0.10, 1.0, 0, 0.05, 0.0, 0.0],
            [0.30, 0.32, 0.10, 2.0, 1, 0.02, 0.04, 0.0],
        ]
    )
    index, energy, label, n_outside = voxelize_deposits(dep, len(dep), 2, 0.3, 8)
    got = {tuple(i): (e, lab) for i, e, lab in zip(index.tolist(), energy, label, strict=False)}
    assert set(got) == {(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)}
    assert got[(0, 0, 0)][0] == pytest.approx(0.5 + 0.5)  # step 1 half + step 2 quarter
    assert got[(0, 0, 0)][1] in (0, 1)
    assert got[(1, 0, 0)] == (pytest.approx(0.5), 0)
    assert got[(0, 1, 0)] == (pytest.approx(0.5), 1)
    assert got[(1, 1, 0)] == (pytest.approx(1.0), 1)
    assert energy.sum() == pytest.approx(3.0) and n_outside == 0


def test_event_energy_equals_deposits_inside() -> None:
    ev = simulate_event(4)
    # every voxel is a distinct cell and energies are positive sums
    assert ev.meta["total_energy"] == pytest.approx(
        float(ev.energy.astype(np.float64).sum()), rel=1e-5
    )
    assert ev.meta["n_outside_deposits"] >= 0


def test_plot_event_draws_every_voxel_in_each_projection() -> None:
    from nufm.sim.plots import plot_event

    ev = simulate_event(2)
    fig = plot_event(ev)
    axes = fig.get_axes()
    assert len(axes) == 3
    for ax in axes:
        n_drawn = sum(len(c.get_offsets()) for c in ax.collections)
        assert n_drawn == len(ev)


def test_plot_class_fractions_bars_match_counts() -> None:
    from nufm.sim.plots import event_stats, plot_class_fractions

    events = [simulate_event(s) for s in range(3)]
    stats = event_stats(events)
    fig = plot_class_fractions(stats)
    heights = [p.get_height() for p in fig.get_axes()[0].patches[:5]]
    seg = np.concatenate([e.segment for e in events])
    np.testing.assert_allclose(heights, np.bincount(seg, minlength=5) / len(seg))


def test_bench_simulator_reports_points_per_event() -> None:
    from nufm.benchmarks.sim import bench_simulator

    rows = bench_simulator(n_events=3, repeats=1, seed=9)
    assert [r["name"] for r in rows] == [
        "default",
        "no_cosmics",
        "collider_tpc",
        "water_cherenkov_mu_500MeV",
        "water_cherenkov_e_500MeV",
        "water_cherenkov_numu_cc",
        "fasercal",
    ]
    expected = np.mean([len(simulate_event(event_seed(9, i))) for i in range(3)])
    assert rows[0]["points_per_event"] == pytest.approx(expected)
    assert rows[0]["events_per_s"] > 0 and rows[0]["ms_per_event"] > 0
    with pytest.raises(ValueError, match="n_events"):
        bench_simulator(n_events=0)


def test_event_stats_names_events_without_segment_labels() -> None:
    from dataclasses import replace

    from nufm.sim.plots import event_stats

    events = [simulate_event(0), replace(simulate_event(1), segment=None)]
    with pytest.raises(ValueError, match=re.escape("1 of 2 events have no segment labels")):
        event_stats(events)
