"""`nufm finetune` + `nufm evaluate` on a non-semseg task (the task name is no preset prefix)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.configs import tiny_finetune_run, tiny_task_vit
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.eval.bootstrap import EVENT_CONFUSION_FILE, save_event_confusion
from nufm.workflows.finetune import evaluate_run, run_finetune


def test_cluster_scratch_run_is_evaluated_again_from_its_run_dir(tmp_path: Path) -> None:
    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    encoder = tiny_task_vit()
    cfg = tiny_finetune_run("cluster-particle-scratch", data, steps=2)
    (tmp_path / "run").mkdir()  # a classification's counts left in the folder ...
    save_event_confusion(tmp_path / "run", np.zeros((2, 3, 3), np.int64))
    result = run_finetune(cfg, tmp_path / "run", encoder_config=encoder)
    # ... are removed: a clustering has none, and nufm compare must not read stale ones
    assert result.event_confusion is None
    assert not (tmp_path / "run" / EVENT_CONFUSION_FILE).exists()
    again = evaluate_run(
        tmp_path / "run", (data,), "test", n_events=2, split_fractions=(0.6, 0.2, 0.2)
    )
    # same events, same weights: identical scores (NaN where a score is undefined)
    assert again["instance"] == pytest.approx(result.metrics["instance"], nan_ok=True)
    saved = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert saved["data"]["n_events"] == 2
    assert not (tmp_path / "run" / "eval_test_event_confusion.npy").exists()
    # without a split given, the run's own split (0.6 / 0.2 / 0.2, seed 0) is evaluated
    own = evaluate_run(tmp_path / "run", (data,), "test", n_events=2, out=tmp_path / "own.json")
    assert own["instance"] == pytest.approx(result.metrics["instance"], nan_ok=True)
    recorded = json.loads((tmp_path / "own.json").read_text())["data"]
    assert recorded["split_fractions"] == [0.6, 0.2, 0.2] and recorded["split_seed"] == 0


def test_early_stopping_tests_the_weights_with_the_best_val_score(tmp_path: Path) -> None:
    """finetune.n_val: the task is scored on val events every monitor_every steps and at the
    end (not at step 0); the best-scoring weights are the ones tested, and metrics.json says
    which step they come from. Val and test passes run in the run's precision (bf16 here,
    where native), and ``nufm evaluate`` reads the run in it too."""
    import dataclasses

    import torch

    from nufm.data.transforms import Preprocess
    from nufm.eval.tasks import evaluate_task
    from nufm.tasks.build import build_task
    from nufm.workflows.finetune import BestWeights, load_split_events, val_score

    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    base = tiny_finetune_run("semseg-scratch", data, steps=4)
    cfg = dataclasses.replace(
        base,
        train=dataclasses.replace(base.train, monitor_every=3, bf16=True),
        finetune=dataclasses.replace(base.finetune, n_val=2),
    )
    result = run_finetune(cfg, tmp_path / "run", encoder_config=tiny_task_vit())
    model = json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]
    # the untrained head (step 0) is no candidate: steps 3 and the last are scored
    assert model["scored_steps"] == [3, 4] and model["n_val"] == 2
    assert model["selected_step"] in (3, 4)
    # the selector on hand-made scores: the best one wins, ties keep the first
    pre = Preprocess()
    val = load_split_events((data,), pre, "val", 2, split_fractions=(0.6, 0.2, 0.2))
    task = build_task(dataclasses.replace(cfg.objective, encoder=tiny_task_vit()))
    sel = BestWeights(val, pre, 100_000, seed=0)
    first = sel(task, 0)["val_score"]
    with torch.no_grad():
        for p in task.parameters():
            p.add_(1.0)
    second = sel(task, 1)["val_score"]
    with torch.no_grad():
        direct = val_score(evaluate_task(task, val, transform=pre.transforms(), seed=0))
    assert second == direct and sel.scored_steps == [0, 1]
    assert sel.best_score == max(first, second)
    assert sel.best_step == (1 if second > first else 0)
    # the selected weights, with the decision offsets fitted on the val events, are saved in
    # best.safetensors, and every reader of the run uses them: evaluating the run again
    # scores exactly what the run reported, whichever step was selected
    from nufm.workflows.load import load_task

    assert (tmp_path / "run" / "best.safetensors").is_file()
    loaded = load_task(tmp_path / "run")
    assert loaded.step == model["selected_step"]
    offsets = model["class_offsets"]
    assert len(offsets) == cfg.objective.num_classes and offsets[0] == 0.0
    assert loaded.task.class_offset.tolist() == pytest.approx(offsets)
    # ... fitted on the kept logits of the selected step's val pass: the same offsets as a
    # fresh pass of the selected weights over the val events gives
    from nufm.eval.calibration import fit_class_offsets
    from nufm.eval.tasks import iter_predictions
    from nufm.train.precision import native_bf16

    dtype = torch.bfloat16 if native_bf16(torch.device("cpu")) else None
    fresh = list(
        iter_predictions(
            loaded.task, val, 100_000, transform=pre.transforms(), autocast_dtype=dtype
        )
    )
    logits = np.concatenate([p["logits"].numpy() for _, p in fresh])
    target = np.concatenate([p["target"].numpy() for _, p in fresh])
    assert fit_class_offsets(logits, target).tolist() == offsets
    again = evaluate_run(tmp_path / "run", (data,), "test", n_events=2)
    for key in ("macro_f1", "accuracy", "confusion_matrix"):
        assert again["semantic"][key] == result.metrics["semantic"][key], key
    # ... event by event too: the per-event counts the run and nufm evaluate write (for nufm
    # compare) are the same
    from nufm.eval.bootstrap import load_event_confusion

    assert result.n_test == 2 and result.event_confusion is not None
    run_counts = load_event_confusion(tmp_path / "run")
    evaluated = load_event_confusion(tmp_path / "run" / "eval_test_event_confusion.npy")
    assert run_counts is not None and evaluated is not None
    assert run_counts.shape == (2, cfg.objective.num_classes, cfg.objective.num_classes)
    np.testing.assert_array_equal(run_counts, result.event_confusion)
    np.testing.assert_array_equal(evaluated, run_counts)
    assert evaluated.sum(0).tolist() == again["semantic"]["confusion_matrix"]


def test_calibration_can_be_turned_off_and_old_states_load(tmp_path: Path) -> None:
    """finetune.calibrate false: zero offsets (plain argmax); a state dict saved before the
    offsets existed loads with zero offsets."""
    import dataclasses

    from nufm.tasks.build import build_task
    from nufm.workflows.load import load_task

    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    base = tiny_finetune_run("semseg-scratch", data, steps=2)
    cfg = dataclasses.replace(
        base, finetune=dataclasses.replace(base.finetune, n_val=2, calibrate=False)
    )
    run_finetune(cfg, tmp_path / "run", encoder_config=tiny_task_vit())
    model = json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]
    assert "class_offsets" not in model
    task = load_task(tmp_path / "run").task
    assert task.class_offset.tolist() == [0.0] * cfg.objective.num_classes
    state = {k: v for k, v in task.state_dict().items() if k != "class_offset"}
    fresh = build_task(dataclasses.replace(cfg.objective, encoder=tiny_task_vit()))
    fresh.class_offset.fill_(3.0)
    fresh.load_state_dict(state, strict=True)
    assert fresh.class_offset.tolist() == [0.0] * cfg.objective.num_classes


def test_val_score_of_each_task_kind() -> None:
    from nufm.workflows.finetune import val_score

    assert val_score({"semantic": {"macro_f1": 0.5}}) == 0.5
    assert val_score({"instance": {"ari_mean": 0.25}}) == 0.25
    assert val_score({"regression": {"a": {"rms": 1.0}, "b": {"rms": 3.0}}}) == -2.0
    assert val_score({"semantic": {"macro_f1": float("nan")}}) == float("-inf")
