"""The top level of ``import nufm``: read, simulate, load, embed, predict, and the README's
"Python" example, run as written against tiny runs made here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nufm
from nufm.errors import ConfigError, InputError, NotFoundError

REPO = Path(__file__).resolve().parents[1]


def readme_python_block() -> str:
    """The first ```python block under the README's '## Python' heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README: no python block under '## Python'"
    return match.group(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/mae`` (2 pretraining steps), ``runs/semseg`` (2 fine-tuning steps) and the data
    file ``sim.h5`` (8 synthetic events) in one directory."""
    from helpers.configs import tiny_mae_run
    from nufm.cli import main
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events
    from nufm.train.run import run_pretrain

    root = tmp_path_factory.mktemp("front_door")
    data = root / "sim.h5"
    write_events(data, synthetic_events(8, seed=1))
    cfg = tiny_mae_run(data)
    run_pretrain(cfg, root / "runs" / "mae")
    main(
        [
            "finetune",
            "--run-dir",
            str(root / "runs" / "semseg"),
            "--preset",
            "semseg-linear",
            "--finetune.pretrained",
            str(root / "runs" / "mae"),
            "--finetune.data",
            str(data),
            "--train.max-steps",
            "2",
            "--optim.warmup-steps",
            "1",
            "--logging.no-progress",
            "--train.no-bf16",
        ]
    )
    return root


def test_readme_python_example_runs(
    runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = readme_python_block()
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(runs)
    namespace: dict[str, object] = {}
    from nufm.workflows.embed import Embeddings

    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    emb, preds, events = namespace["emb"], namespace["preds"], namespace["events"]
    assert isinstance(emb, Embeddings)
    assert emb.event.shape[0] == 4 and out[0] == str(emb.event.shape)
    assert isinstance(preds, list) and isinstance(events, list) and len(preds) == 4
    assert preds[0]["pred"].dtype == np.int64
    assert set(np.unique(preds[0]["pred"])) <= set(range(5))


def test_load_embed_predict_agree_with_the_workflows(runs: Path) -> None:
    from nufm.workflows.embed import embed_events
    from nufm.workflows.load import load_encoder

    events = nufm.read_events(runs / "sim.h5")
    assert len(events) == 8 and isinstance(events[0], nufm.Event)
    encoder = nufm.load(runs / "runs" / "mae")
    assert isinstance(encoder, nufm.Pretrained)
    emb = nufm.embed(encoder, events)
    reference = embed_events(load_encoder(runs / "runs" / "mae"), runs / "sim.h5")
    np.testing.assert_array_equal(emb.event, reference.event)
    np.testing.assert_array_equal(nufm.embed(runs / "runs" / "mae", events).event, emb.event)

    task = nufm.load(runs / "runs" / "semseg")
    assert isinstance(task, nufm.FineTuned) and not task.task.training
    preds = nufm.predict(task, events, batch_points=10_000)  # several batches
    kept = [len(task.preprocess.transforms()(ev, np.random.default_rng(0))) for ev in events]
    assert [len(p["pred"]) for p in preds] == kept
    one_by_one = [nufm.predict(task, [ev])[0] for ev in events[:3]]
    for a, b in zip(one_by_one, preds[:3], strict=True):
        np.testing.assert_array_equal(a["pred"], b["pred"])


def test_read_events_and_simulate_errors(tmp_path: Path) -> None:
    (tmp_path / "events.txt").write_text("x y z\n")
    with pytest.raises(InputError, match=r"events\.txt: unknown event file type '\.txt'"):
        nufm.read_events(tmp_path / "events.txt")
    with pytest.raises(NotFoundError, match=r"none\.h5: no such file"):
        nufm.read_events(tmp_path / "none.h5")
    with pytest.raises(NotFoundError, match="no such run directory"):
        nufm.load(tmp_path / "none")
    with pytest.raises(ConfigError, match="n must be positive"):
        nufm.simulate(0)


def test_simulate_is_the_simulator() -> None:
    from nufm.sim import generate_events

    (a,) = nufm.simulate(1, seed=3)
    (b,) = generate_events(1, 3)
    np.testing.assert_array_equal(a.coord, b.coord)
    np.testing.assert_array_equal(a.segment, b.segment)


def test_top_level_is_small_and_lazy() -> None:
    assert set(nufm.__all__) == {
        "Event",
        "FineTuned",
        "PointBatch",
        "Pretrained",
        "__version__",
        "embed",
        "load",
        "predict",
        "read_events",
        "simulate",
    }
    for name in nufm.__all__:
        assert getattr(nufm, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = nufm.nope  # type: ignore[attr-defined]
    probe = "import sys, nufm; print(sorted(m for m in ('torch', 'h5py') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"
