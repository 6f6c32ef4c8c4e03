"""metrics_report + versioned atomic JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nufm.eval.metrics import ConfusionMatrix, InstanceMetrics, regression_metrics
from nufm.eval.report import (
    SCHEMA_VERSION,
    metrics_report,
    read_metrics_json,
    write_metrics_json,
)


def test_report_round_trip(tmp_path: Path) -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 1, 0]), np.array([0, 1, 0, -1]))  # class 2 absent from both
    inst = InstanceMetrics()
    inst.update(np.array([1, 1, 2]), np.array([0, 0, 1]))
    reg = {"energy": regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.5]))}
    report = metrics_report(
        semantic=cm,
        class_names=["shower", "track", "michel"],
        instance=inst,
        regression=reg,
        extra={"probe": {"best": "lr=0.1"}},
    )
    path = write_metrics_json(
        tmp_path / "sub" / "metrics.json",
        report,
        model={"name": "tiny", "step": np.int64(5)},
        data={"events": 3},
        preprocess={"grid": 0.001},
        seed=7,
    )
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left
    doc = read_metrics_json(path)
    assert doc["schema_version"] == SCHEMA_VERSION and doc["seed"] == 7
    assert doc["model"] == {"name": "tiny", "step": 5}
    sem = doc["metrics"]["semantic"]
    assert sem["per_class"]["michel"]["f1"] is None  # NaN -> null
    assert sem["macro_f1"] == pytest.approx(cm.compute().macro_f1)
    assert sem["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert doc["metrics"]["instance"]["pq"] == pytest.approx(1.0)
    assert doc["metrics"]["regression"]["energy"]["bias"] == pytest.approx(-0.25)
    assert doc["metrics"]["probe"] == {"best": "lr=0.1"}


def test_schema_checks(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"kind": "nufm.metrics", "schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version 99"):
        read_metrics_json(path)
    with pytest.raises(ValueError, match="clashes"):
        metrics_report(semantic=ConfusionMatrix(2), extra={"semantic": 1})
    with pytest.raises(TypeError, match="cannot write object"):
        write_metrics_json(path, {"x": object()}, model={}, data={}, preprocess={}, seed=0)
    assert json.loads(path.read_text())["schema_version"] == 99  # failed write left it intact
