"""The study's regression, clustering and noise-tagging rows: the classical row equals its
algorithm run directly on the study's events (and, for noise tagging, scikit-learn's F1), the
headline is the field's number, and a classical mode is refused on a task it does not answer."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from nufm.config import ConfigError, StudyConfig
from nufm.data.detectors import DETECTORS
from nufm.data.tpcpp import write_tpcpp
from nufm.data.watchmal import write_watchmal
from nufm.eval.track_finding import evaluate_track_finding, hough_tracks
from nufm.eval.wc_fit import fit_direction, fit_energy_calibration, fit_vertex, true_direction
from nufm.presets import STUDY_PRESETS
from nufm.sim.collider_tpc import generate_collider_events
from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
from nufm.workflows.finetune import Split, finetune_split
from nufm.workflows.study import run_study


def _small(name: str, sizes: tuple[int, ...], n_test: int) -> StudyConfig:
    """Study preset ``name`` cut to seconds: 2 steps per size, no TensorBoard."""
    base = STUDY_PRESETS[name]
    assert base.run.finetune is not None
    return dataclasses.replace(
        base,
        run=dataclasses.replace(
            base.run,
            finetune=dataclasses.replace(base.run.finetune, n_test=n_test),
            logging=dataclasses.replace(base.run.logging, tensorboard=False),
        ),
        sizes=sizes,
        steps=(2,) * len(sizes),
        seeds=(0,),
    )


def _split(cfg: StudyConfig, data: Path, detector: str, part: Split, n: int) -> list:
    assert cfg.run.finetune is not None
    ft = dataclasses.replace(cfg.run.finetune, data=(data,))
    return finetune_split(ft, DETECTORS[detector].preprocess, part, n)


@pytest.fixture(scope="module")
def wc_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wc = WaterCherenkovConfig()
    path = tmp_path_factory.mktemp("wc") / "wc.h5"
    guns = generate_wc_events(60, 3, ("e-", "mu-"), (300.0, 600.0), wc, one_of=True)
    write_watchmal(path, guns, pmt_positions(wc).position)
    return path


def test_water_cherenkov_regression_studies_have_the_point_fit(
    wc_file: Path, tmp_path: Path
) -> None:
    """wc-vertex / wc-direction / wc-energy: the wc-fit row is the point fit of the same test
    events (vertex and direction at the 68 % quantile, energy line fitted on the labelled
    events), resolutions within what the fit reaches on 300-600 MeV e and mu; the network
    row is scored in the same units; lower-is-better is said in the table."""
    scores = {}
    for task in ("vertex", "direction", "energy"):
        cfg = _small(f"wc-{task}", (12,), 6)
        if task != "vertex":  # one network row is enough to check the units
            cfg = dataclasses.replace(cfg, modes=("wc-fit",))
        rows = run_study(cfg, None, (wc_file,), tmp_path / task)
        assert [r.mode for r in rows] == list(cfg.modes) and rows[0].n_train == 12
        assert all(np.isfinite(r.score) for r in rows)
        scores[task] = rows
        train = _split(cfg, wc_file, "water-cherenkov", "train", 12)
        test = _split(cfg, wc_file, "water-cherenkov", "test", 6)
        fits = [fit_vertex(e) for e in test]
        match task:
            case "vertex":
                dist = [
                    np.linalg.norm(v - e.vertices[0]) for e, (v, _) in zip(test, fits, strict=True)
                ]
                direct = np.quantile(dist, 0.68)
                assert direct < 1.5  # metres; the fit's median is about 0.6 m
                assert rows[1].score < 50.0  # the network's distance is in metres too
            case "direction":
                angle = [
                    np.degrees(
                        np.arccos(np.clip(fit_direction(e, v, t0) @ true_direction(e), -1, 1))
                    )
                    for e, (v, t0) in zip(test, fits, strict=True)
                ]
                direct = np.quantile(angle, 0.68)
                assert direct < 15.0
            case _:
                line = fit_energy_calibration(train)
                rel = [
                    (line.predict(e) - e.meta["primary_energy"]) / e.meta["primary_energy"]
                    for e in test
                ]
                lo, hi = np.percentile(rel, [15.865525393145708, 84.1344746068543])
                direct = (hi - lo) / 2
        assert rows[0].score == pytest.approx(direct, rel=1e-6)
        md = (tmp_path / task / "results.md").read_text()
        assert "lower is better" in md and "point fit" in md
    with (tmp_path / "vertex" / "results.csv").open() as f:
        header = next(csv.reader(f))
    assert header[:5] == ["mode", "n_train", "seed", "vertex_q68", "vertex_median"]


def test_water_cherenkov_hit_study_has_the_hit_fit_trees(wc_file: Path, tmp_path: Path) -> None:
    """wc-hits: the gbt-hitfit row equals hit_category_block on the study's own events, and
    its classes are the detector's four categories."""
    from nufm.eval.wc_hits import hit_category_block

    cfg = _small("wc-hits", (12,), 6)
    rows = run_study(cfg, None, (wc_file,), tmp_path / "hits")
    assert [r.mode for r in rows] == ["gbt-hitfit", "scratch"]
    names = DETECTORS["water-cherenkov"].segment_names
    train = _split(cfg, wc_file, "water-cherenkov", "train", 12)
    test = _split(cfg, wc_file, "water-cherenkov", "test", 6)
    direct = hit_category_block(train, test, names, seed=0)
    assert rows[0].score == pytest.approx(direct["macro_f1"], nan_ok=True)
    assert list(rows[0].per_class_f1) == list(names) == list(rows[1].per_class_f1)


def test_collider_tpc_tracks_and_noise_studies_have_the_hough_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tpc-tracks: the hough row's ARI, efficiency and fake rate equal nufm tracks' numbers
    (evaluate_track_finding, a separate code path) on the test events; tpc-noise: the hough
    row's noise F1 equals scikit-learn's on the hits that no Hough track takes."""
    from sklearn.metrics import f1_score

    data = tmp_path / "tpc.npz"
    write_tpcpp(data, generate_collider_events(50, seed=4))
    import nufm.workflows.study_classical as classical

    calls = []
    monkeypatch.setattr(
        classical, "hough_tracks", lambda coord: calls.append(1) or hough_tracks(coord)
    )
    cfg = dataclasses.replace(_small("tpc-tracks", (5, 10), 5), modes=("hough", "scratch"))
    rows = run_study(cfg, None, (data,), tmp_path / "tracks")
    assert len(calls) == 5  # no labels used: one pass over the 5 test events serves both sizes
    monkeypatch.undo()
    assert [(r.mode, r.n_train) for r in rows] == [
        ("hough", 5),
        ("scratch", 5),
        ("hough", 10),
        ("scratch", 10),
    ]
    assert rows[0].score == rows[2].score
    rows = rows[2:]
    test = _split(cfg, data, "collider-tpc", "test", 5)
    direct = evaluate_track_finding(test)
    assert rows[0].score == pytest.approx(direct["ari"])
    assert rows[0].extras["efficiency"] == pytest.approx(direct["efficiency"])
    assert rows[0].extras["fake_rate"] == pytest.approx(direct["fake_rate"])
    assert rows[0].score > 0.6  # Hough on clean pp events; the docs' 60 events: 0.90
    assert "adjusted Rand index" in (tmp_path / "tracks" / "results.md").read_text()

    cfg = _small("tpc-noise", (10,), 5)
    rows = run_study(cfg, None, (data,), tmp_path / "noise")
    pred = np.concatenate([hough_tracks(e.coord) < 0 for e in test]).astype(int)
    true = np.concatenate([e.interaction < 0 for e in test]).astype(int)
    assert rows[0].per_class_f1["noise"] == pytest.approx(f1_score(true, pred))
    assert rows[0].score == pytest.approx(f1_score(true, pred, average="macro"))


def test_a_classical_mode_is_refused_on_a_task_it_does_not_answer(
    wc_file: Path, tmp_path: Path
) -> None:
    """wc-fit on particle ID, hough on the water Cherenkov file, a probe on an event task:
    refused before any run, naming the mode and the task."""
    pid = _small("wc-pid", (8,), 4)
    cases = [
        (dataclasses.replace(pid, modes=("wc-fit",)), "mode wc-fit fits a water Cherenkov"),
        (_small("tpc-tracks", (8,), 4), "mode hough finds collider-TPC tracks.*water-cherenkov"),
        (dataclasses.replace(pid, modes=("probe",)), "probe modes .* classify points"),
    ]
    for cfg, match in cases:
        with pytest.raises(ConfigError, match=match):
            run_study(cfg, tmp_path / "unused", (wc_file,), tmp_path / "bad")
        assert not (tmp_path / "bad" / "runs").exists()
