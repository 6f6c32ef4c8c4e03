"""Every ``nufm`` command fails on bad input with a short message, exit status 2 and no
traceback; ``--debug`` / ``NUFM_DEBUG=1`` shows the traceback; a bug keeps its traceback.

Commands run in-process through :func:`nufm.cli.main` (fast); two cases run ``python -m
nufm.cli`` in a subprocess to check what a person sees on the terminal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.configs import tiny_mae_run
from nufm.cli import COMMANDS, is_user_error, main
from nufm.errors import ConfigError, InputError, UserError

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Bad (and a few good) inputs, created once per module in a temporary directory."""

    root: Path
    ok: Path  # 8 synthetic events
    missing: Path
    truncated: Path  # ok.h5 cut in half
    text: Path  # a text file named .h5
    empty: Path  # a valid file with no events
    run: Path  # a 2-step pretraining run
    no_ckpt: Path  # a run directory with config.yaml and an empty checkpoints/
    corrupt: Path  # a run whose checkpoint is garbage (with a matching marker)
    finetuned: Path  # a 2-step fine-tuning run
    corrupt_ft: Path  # that run with a garbage checkpoint
    embeddings: Path  # embeddings of ok.h5


def _corrupt_checkpoint(run: Path) -> None:
    """Replace the run's checkpoint by garbage and re-sign its marker, so the checksum passes
    and ``torch.load`` is what fails."""
    (ckpt,) = sorted((run / "checkpoints").glob("step_*.pt"))
    data = b"not a torch checkpoint " * 40
    ckpt.write_bytes(data)
    marker = ckpt.with_name(ckpt.stem + ".complete.json")
    meta = json.loads(marker.read_text())
    meta.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    marker.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from nufm.config import save_config
    from nufm.data.pilarnet import write_events
    from nufm.data.synthetic import synthetic_events
    from nufm.train.run import run_pretrain
    from nufm.workflows.embed import Embeddings, write_embeddings

    root = tmp_path_factory.mktemp("cli_errors")
    ok = root / "ok.h5"
    write_events(ok, synthetic_events(8, seed=1))
    raw = ok.read_bytes()
    truncated = root / "truncated.h5"
    truncated.write_bytes(raw[: len(raw) // 2])
    text = root / "text.h5"
    text.write_text("these are not events\n")
    empty = root / "empty.h5"
    write_events(empty, [])

    cfg = tiny_mae_run(ok)
    run = root / "run"
    run_pretrain(cfg, run)
    no_ckpt = root / "no_ckpt"
    (no_ckpt / "checkpoints").mkdir(parents=True)
    save_config(cfg, no_ckpt / "config.yaml")
    corrupt = root / "corrupt"
    shutil.copytree(run, corrupt)
    _corrupt_checkpoint(corrupt)

    finetuned = root / "finetuned"
    main(
        [
            "finetune",
            "--run-dir",
            str(finetuned),
            "--preset",
            "semseg-linear",
            "--finetune.pretrained",
            str(run),
            "--finetune.data",
            str(ok),
            "--train.max-steps",
            "2",
            "--optim.warmup-steps",
            "1",
            "--logging.no-progress",
            "--train.no-bf16",
        ]
    )
    corrupt_ft = root / "corrupt_ft"
    shutil.copytree(finetuned, corrupt_ft)
    _corrupt_checkpoint(corrupt_ft)

    embeddings = root / "emb.h5"
    rng = np.random.default_rng(0)
    write_embeddings(
        embeddings,
        Embeddings(event=rng.normal(size=(8, 4)).astype(np.float32), event_id=np.arange(8)),
        {"data_file": str(ok)},
    )
    return Inputs(
        root=root,
        ok=ok,
        missing=root / "missing.h5",
        truncated=truncated,
        text=text,
        empty=empty,
        run=run,
        no_ckpt=no_ckpt,
        corrupt=corrupt,
        finetuned=finetuned,
        corrupt_ft=corrupt_ft,
        embeddings=embeddings,
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``nufm ARGS`` in-process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    code = exc.value.code
    assert isinstance(code, int), code
    return code, out, err


def assert_user_error(args: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``nufm ARGS`` exits 2, names ``names`` and shows no traceback; returns stderr."""
    code, out, err = run_cli(args, capsys)
    assert code == 2, (args, out, err)
    assert "Traceback" not in out + err, err
    assert names in out + err, (names, err)
    return err


# ------------------------------------------------------------------------------- bad files

BAD_FILES = {
    "missing": ("missing", "no such"),
    "truncated": ("truncated", "not a readable HDF5 file"),
    "text": ("text", "not a readable HDF5 file"),
    "empty": ("empty", ""),
}
"""Inputs attribute -> (same, a phrase the message must hold besides the file name)."""


def _file_commands(x: Inputs, bad: Path, tmp: Path) -> dict[str, list[str]]:
    """Each command that reads an event file, pointed at ``bad``."""
    common_ft = [
        "--train.max-steps",
        "2",
        "--optim.warmup-steps",
        "1",
        "--logging.no-progress",
        "--train.no-bf16",
    ]
    return {
        "info": ["info", str(bad)],
        "convert": ["convert", str(bad), str(tmp / "c.h5"), "--no-progress"],
        "tracks": ["tracks", str(bad)],
        "wc-fit": ["wc-fit", str(bad)],
        "display": ["display", str(bad), "--out", str(tmp / "d.png")],
        "embed": ["embed", str(x.run), str(bad), "--out", str(tmp / "e.h5")],
        "search": ["search", str(x.embeddings), str(bad), "--out", str(tmp / "s.png")],
        "pretrain": [
            "pretrain",
            "--preset",
            "mae-tiny",
            "--run-dir",
            str(tmp / "p"),
            "--data.source",
            "file",
            "--data.path",
            str(bad),
            "--train.max-steps",
            "1",
            "--optim.warmup-steps",
            "1",
        ],
        "finetune": [
            "finetune",
            "--run-dir",
            str(tmp / "f"),
            "--preset",
            "semseg-linear",
            "--finetune.pretrained",
            str(x.run),
            "--finetune.data",
            str(bad),
            *common_ft,
        ],
        "evaluate": ["evaluate", str(x.finetuned), "--data", str(bad)],
        "study": ["study", "--pretrained", str(x.run), "--data", str(bad), "--out", str(tmp)],
    }


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize(
    "command",
    [
        "info",
        "convert",
        "tracks",
        "wc-fit",
        "display",
        "embed",
        "search",
        "pretrain",
        "finetune",
        "evaluate",
        "study",
    ],
)
def test_bad_event_file(
    inputs: Inputs, kind: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = getattr(inputs, BAD_FILES[kind][0])
    args = _file_commands(inputs, bad, tmp_path)[command]
    err = assert_user_error(args, bad.name, capsys)
    assert BAD_FILES[kind][1] in err
    assert f"nufm {command}: error: " in err
    assert "--debug" in err
    assert len([line for line in err.splitlines() if line.startswith("nufm")]) == 2


# ------------------------------------------------------------------------------- bad models


@pytest.mark.parametrize("kind", ["missing", "no_ckpt", "corrupt"])
@pytest.mark.parametrize("command", ["embed", "export", "anomaly", "study", "finetune"])
def test_bad_pretrained_model(
    inputs: Inputs, kind: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = inputs.root / "no_such_run" if kind == "missing" else getattr(inputs, kind)
    args = {
        "embed": ["embed", str(model), str(inputs.ok), "--out", str(tmp_path / "e.h5")],
        "export": ["export", str(model), str(tmp_path / "exported")],
        "anomaly": ["anomaly", str(model), "--out", str(tmp_path / "a.png")],
        "study": [
            "study",
            "--pretrained",
            str(model),
            "--data",
            str(inputs.ok),
            "--out",
            str(tmp_path),
        ],
        "finetune": [
            "finetune",
            "--run-dir",
            str(tmp_path / "f"),
            "--preset",
            "semseg-linear",
            "--finetune.pretrained",
            str(model),
            "--finetune.data",
            str(inputs.ok),
        ],
    }[command]
    expected = {
        "missing": "no_such_run",
        "no_ckpt": "no complete checkpoint",
        "corrupt": "cannot be read by torch.load",
    }[kind]
    err = assert_user_error(args, model.name, capsys)
    assert expected in err
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("kind", ["missing", "no_ckpt", "pretraining", "corrupt_ft"])
def test_evaluate_bad_run_dir(
    inputs: Inputs, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = {
        "missing": inputs.root / "no_such_run",
        "no_ckpt": inputs.no_ckpt,
        "pretraining": inputs.run,  # a pretraining run, not a fine-tuned task
        "corrupt_ft": inputs.corrupt_ft,
    }[kind]
    err = assert_user_error(["evaluate", str(run), "--data", str(inputs.ok)], run.name, capsys)
    expected = {
        "missing": "no such run directory",
        "no_ckpt": "no complete checkpoint",
        "pretraining": "not a fine-tuned task",
        "corrupt_ft": "cannot be read by torch.load",
    }[kind]
    assert expected in err


@pytest.mark.parametrize("broken", ["model.safetensors", "config.json"])
@pytest.mark.parametrize("command", ["embed", "anomaly"])
def test_corrupt_exported_model(
    inputs: Inputs, broken: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "exported"
    main(["export", str(inputs.run), str(exported)])
    (exported / broken).write_bytes(b"garbage" * 10)
    args = {
        "embed": ["embed", str(exported), str(inputs.ok), "--out", str(tmp_path / "e.h5")],
        "anomaly": ["anomaly", str(exported), "--out", str(tmp_path / "a.png")],
    }[command]
    err = assert_user_error(args, str(exported / broken), capsys)
    assert "not readable" in err


def test_pretrain_resume_from_corrupt_checkpoint(
    inputs: Inputs, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pretrain", "--config-file", str(inputs.corrupt / "config.yaml")]
    args += ["--run-dir", str(inputs.corrupt), "--resume", "--train.max-steps", "3"]
    err = assert_user_error(args, "step_00000002.pt", capsys)
    assert "cannot be read by torch.load" in err


# ------------------------------------------------------------------------------- bad options


def test_bad_options(inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, t = inputs, tmp_path
    mix = ["pretrain", "--preset", "mae-mix-cpu", "--run-dir", str(t / "mix"), "--data.source"]
    mix += ["mixture"]
    cc = ["simulate", "--detector", "water-cherenkov", "--gun", "numu-cc"]
    garbage = t / "garbage.npy"
    garbage.write_bytes(b"not numpy" * 10)
    cases: list[tuple[list[str], str]] = [
        (["simulate", "--events", "0", "--out", str(t / "s.h5")], "--events"),
        (["simulate", "--events", "1", "--out", str(t / "no" / "dir" / "s.h5")], "no/dir"),
        (["display", str(x.ok), "--event", "99", "--out", str(t / "d.png")], "event 99"),
        (["display", str(x.ok), "--color", "ghost", "--out", str(t / "d.png")], "ghost"),
        (["simulate", "--detector", "fasercal", "--out", str(t / "f.npz")], "f.npz"),
        (["fasercal-study", "--data", str(t / "none.h5"), "--out", str(t / "fs")], "none.h5"),
        (["fasercal-study", "--preset", "huge", "--out", str(t / "fs")], "huge"),
        (["cross-study", "--preset", "huge", "--out", str(t / "xs")], "huge"),
        (["wc-fit", str(x.ok)], "not water Cherenkov"),
        (["wc-fit", str(t / "none.h5")], "none.h5"),
        (["wc-fit", str(x.ok), "--train-events", "1"], "--train-events"),
        ([*cc, "--energy", "50", "500", "--out", str(t / "cc.h5")], "110.2 MeV"),
        (["cross-study", "--detectors", "fasercal", "--out", str(t / "xs")], "fasercal"),
        ([*mix, "--data.mixture", f"{x.ok}:0"], "weight"),
        ([*mix, "--data.mixture", str(t / "none.npz")], "none.npz"),
        (["search", str(x.embeddings), str(x.ok), "--event", "99"], "event 99"),
        (["search", str(x.embeddings), str(x.ok), "--k", "0"], "k=0"),
        (["search", str(x.root / "none.h5"), str(x.ok)], "none.h5"),
        (["search", str(x.text), str(x.ok)], "text.h5"),
        (["embed", str(x.run), str(x.ok), "--batch-points", "0"], "batch_points"),
        (["anomaly", str(x.run), "--n-reference", "2", "--k", "3"], "n_reference=2"),
        (["evaluate", str(x.finetuned), "--data", str(x.ok), "--n-events", "999"], "999"),
        (["compare", str(x.finetuned)], "at least two run directories"),
        (["compare", str(x.finetuned), str(x.run)], f"{x.run} has no test_event_confusion.npy"),
        (["compare", str(x.finetuned), str(x.text)], "text.h5"),
        (["compare", str(x.finetuned), str(garbage)], f"{garbage}: not a readable .npy file"),
        (["compare", str(x.finetuned), str(x.finetuned), "--level", "95"], "level"),
        (["pretrain", "--preset", "no-such-preset", "--run-dir", str(t)], "no-such-preset"),
        (["pretrain", "--config-file", str(t / "none.yaml"), "--run-dir", str(t)], "none.yaml"),
        (["pretrain", "--config-file", str(x.text), "--run-dir", str(t)], "text.h5"),
        (["pretrain", "--preset", "mae-tiny", "--run-dir", str(t), "--optim.lr", "-1"], "lr"),
        (["pretrain", "--preset", "mae-tiny"], "--run-dir"),
        (["submit", "--preset", "no-such-preset", "--run-dir", str(t)], "no-such-preset"),
        (["submit", "--config-file", str(t / "none.yaml"), "--run-dir", str(t)], "none.yaml"),
        (["finetune", "--run-dir", str(t / "f"), "--preset", "no-such-task"], "no-such-task"),
        (["study", "--pretrained", str(x.run), "--data", str(x.ok), "--preset", "nope"], "nope"),
        (["demo", "--events", "0", "--out", str(t / "demo")], "events"),
        (["demo", "--pretrain-steps", "0", "--out", str(t / "demo")], "pretrain_steps"),
        (["bench", "--suites", "no-such-suite"], "no-such-suite"),
        (["presets", "no-such-preset"], "no-such-preset"),
        (["info", str(x.ok), "--no-such-option"], "--no-such-option"),
    ]
    for args, names in cases:
        assert_user_error(args, names, capsys)
    assert not (t / "demo").exists()  # options are checked before any work starts
    assert not (t / "xs").exists() and not (t / "mix" / "checkpoints").exists()


def test_every_command_is_covered() -> None:
    """A new command must be added to the bad-input tests above."""
    covered = {
        "simulate",
        "info",
        "convert",
        "tracks",
        "wc-fit",
        "display",
        "pretrain",
        "submit",
        "export",
        "finetune",
        "evaluate",
        "compare",
        "study",
        "fasercal-study",
        "cross-study",
        "embed",
        "search",
        "anomaly",
        "demo",
        "presets",
        "bench",
    }
    assert set(COMMANDS) == covered


# ------------------------------------------------------------------------------- debug, bugs


def test_debug_flag_and_env_show_the_traceback(
    inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nufm.data.pilarnet import DataError

    for args in (["--debug", "info", str(inputs.text)], ["info", str(inputs.text), "--debug"]):
        with pytest.raises(DataError, match=r"text\.h5: not a readable HDF5 file"):
            main(args)
    monkeypatch.setenv("NUFM_DEBUG", "1")
    with pytest.raises(DataError, match=r"text\.h5"):
        main(["info", str(inputs.text)])


def test_an_internal_error_keeps_its_traceback(
    inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nufm.data.summary

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(nufm.data.summary, "summarize", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["info", str(inputs.ok)])


def test_is_user_error_follows_the_cause() -> None:
    from nufm.data.pilarnet import DataError
    from nufm.train.checkpoint import CheckpointError
    from nufm.train.data import EventStreamError

    def wrapped(inner: Exception) -> Exception:
        try:
            try:
                raise inner
            except Exception as e:
                raise EventStreamError(f"reading row 3 failed: {e}") from e
        except EventStreamError as outer:
            return outer

    assert is_user_error(wrapped(DataError("f.h5 event 3: empty event")))
    assert not is_user_error(wrapped(IndexError("a bug in a transform")))
    assert is_user_error(FileNotFoundError(2, "No such file or directory", "x.h5"))
    assert not is_user_error(FileNotFoundError("no file named"))
    assert not is_user_error(ValueError("a bug"))
    for cls in (ConfigError, InputError, CheckpointError, DataError):
        assert issubclass(cls, UserError)
    assert issubclass(ConfigError, ValueError) and issubclass(CheckpointError, RuntimeError)


# ------------------------------------------------------------------------------- terminal


def _nufm(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "NUFM_DEBUG"}
    environ.update(PYTHONPATH=str(REPO / "src"), **env)
    return subprocess.run(
        [sys.executable, "-m", "nufm.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def test_terminal_shows_two_lines_and_exit_2(inputs: Inputs) -> None:
    result = _nufm(["info", str(inputs.truncated)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"nufm info: error: {inputs.truncated}: not a readable HDF5 file")
    assert lines[1] == "nufm info: (add --debug for the traceback)"
    assert result.stdout == ""


def test_terminal_debug_env_shows_traceback(inputs: Inputs) -> None:
    result = _nufm(["info", str(inputs.truncated)], NUFM_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "nufm.data.pilarnet.DataError" in result.stderr
