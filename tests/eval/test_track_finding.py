"""The Hough track-finding baseline and its scores: hand-made cases, ARI against
scikit-learn, and the baseline's efficiency on simulated collider-TPC events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from nufm.cli import main
from nufm.data.tpcpp import write_tpcpp
from nufm.eval.track_finding import evaluate_track_finding, hough_tracks, track_scores
from nufm.sim.collider_tpc import ColliderTPCConfig, generate_collider_events


def test_scores_of_hand_made_partitions() -> None:
    truth = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1])
    assert track_scores(truth.copy(), truth) == (1.0, 1.0, 0.0)
    split = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, -1])  # track 1 cut 3 / 2
    ari, eff, fake = track_scores(split, truth)
    assert ari == pytest.approx(adjusted_rand_score(truth[:10], split[:10]))
    assert (eff, fake) == (1.0, 0.0)  # 3 of 5 hits in one pure track: found
    merged = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # one track of both: 50 % pure
    ari, eff, fake = track_scores(merged, truth)
    assert (eff, fake) == (0.0, 1.0)
    assert ari == pytest.approx(adjusted_rand_score(truth[:10], merged[:10]))


def test_hough_finds_clean_helices() -> None:
    cfg = ColliderTPCConfig(pileup_mean=0.0, n_secondaries=0.0, noise_fraction=0.0)
    scores = evaluate_track_finding(generate_collider_events(20, seed=3, cfg=cfg))
    assert scores["ari"] > 0.9 and scores["efficiency"] > 0.9 and scores["fake_rate"] < 0.05


def test_hough_with_pileup_and_noise() -> None:
    scores = evaluate_track_finding(generate_collider_events(20, seed=3))
    assert scores["ari"] > 0.8 and scores["efficiency"] > 0.8 and scores["fake_rate"] < 0.1
    (ev,) = list(generate_collider_events(1, seed=4))
    labels = hough_tracks(ev.coord)
    assert labels.shape == (len(ev),) and labels.min() >= -1


def test_cli_tracks(tmp_path: Path, capsys) -> None:
    write_tpcpp(tmp_path / "t.npz", generate_collider_events(3, seed=5))
    main(["tracks", str(tmp_path / "t.npz")])
    assert '"efficiency"' in capsys.readouterr().out
