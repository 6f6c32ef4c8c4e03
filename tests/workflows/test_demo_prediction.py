"""The demo's prediction display rebuilds the study's largest full fine-tune through
:func:`nufm.workflows.load.load_task` (the one loader) and shows that model's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers.configs import tiny_finetune_run, tiny_task_vit
from nufm.data.collate import collate
from nufm.data.event import Event
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_events
from nufm.viz.display import display_event
from nufm.workflows import demo
from nufm.workflows.finetune import load_split_events, run_finetune
from nufm.workflows.load import load_task


def test_prediction_figure_shows_the_loaded_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "events.h5"
    write_events(data, synthetic_events(20, seed=3))
    encoder = tiny_task_vit()
    cfg = tiny_finetune_run("semseg-scratch", data, steps=1)
    study = tmp_path / "study"
    figures = tmp_path / "figures"
    figures.mkdir()
    assert demo._prediction_figure(study, data, figures) is None  # no run yet
    run_finetune(cfg, study / "runs" / "full-n4-s0", encoder_config=encoder)

    shown: dict[str, np.ndarray] = {}

    def recording_display(event: Event, **kwargs: Any) -> Figure:
        shown["pred"] = kwargs["pred"]
        return display_event(event, **kwargs)

    monkeypatch.setattr("nufm.viz.display.display_event", recording_display)
    assert demo._prediction_figure(study, data, figures) == "prediction.png"
    assert (figures / "prediction.png").is_file()

    ft = load_task(study / "runs" / "full-n4-s0")
    event = load_split_events((data,), ft.preprocess, "test", 1, split_fractions=(0.6, 0.2, 0.2))[0]
    with torch.no_grad():
        model_input = ft.preprocess.transforms()(event, np.random.default_rng(0))
        expected = ft.task.predict(collate([model_input]))["pred"]
    np.testing.assert_array_equal(shown["pred"], expected.numpy())
