"""Loading pretrained encoder weights into tasks: prefixes, reports, errors, files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from helpers.configs import tiny_ptv3, tiny_vit
from nufm.hub import save_pretrained
from nufm.models.encoders import build_encoder
from nufm.tasks import (
    SemsegConfig,
    build_task,
    extract_encoder_state,
    load_encoder_state,
)
from nufm.workflows.load import read_state_dict


def _pretrained(seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_encoder(tiny_vit()).state_dict()


def _assert_loaded(task: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for k, v in task.backbone.encoder.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("prefix", ["", "encoder.", "module.backbone.encoder."])
def test_encoder_weights_load_under_any_prefix(prefix: str) -> None:
    state = _pretrained()
    wrapped = {f"{prefix}{k}": v for k, v in state.items()}
    wrapped["decoder.head.weight"] = torch.zeros(3, 3)  # another part of the objective
    task = build_task(SemsegConfig(encoder=tiny_vit(), mode="linear"), wrapped)
    report = task.encoder_load_report
    assert report is not None and len(report.loaded) == len(state)
    assert not report.missing and not report.mismatched
    # keys outside the detected prefix are another module's and not reported
    assert report.unexpected == (["decoder.head.weight"] if prefix == "" else [])
    _assert_loaded(task, state)


def test_student_prefix_wins_a_tie_and_prefix_can_be_chosen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    student, teacher = _pretrained(1), _pretrained(2)
    state = {
        **{f"encoder.{k}": v for k, v in student.items()},
        **{f"teacher_encoder.{k}": v for k, v in teacher.items()},
    }
    enc = build_encoder(tiny_vit())
    with caplog.at_level(logging.WARNING):
        sub, used = extract_encoder_state(state, enc)
    assert used == "encoder." and "several prefixes" in caplog.text
    assert all(torch.equal(sub[k], v) for k, v in student.items())
    load_encoder_state(enc, state, prefix="teacher_encoder.")
    assert all(torch.equal(enc.state_dict()[k], v) for k, v in teacher.items())


def test_partial_load_reports_missing_unexpected_and_mismatched() -> None:
    state = dict(_pretrained())
    dropped = sorted(state)[0]
    del state[dropped]
    bad_shape = next(k for k, v in state.items() if v.ndim == 2)
    state[bad_shape] = torch.zeros(1, 1)
    state["vit.extra_weight"] = torch.zeros(2)
    enc = build_encoder(tiny_vit())
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    report = load_encoder_state(enc, state)
    assert report.missing == [dropped]
    assert report.unexpected == ["vit.extra_weight"]
    assert [k for k, _, _ in report.mismatched] == [bad_shape]
    assert torch.equal(enc.state_dict()[bad_shape], before[bad_shape])  # skipped, not partial
    assert len(report.loaded) == len(before) - 2
    with pytest.raises(ValueError, match="not exact"):
        load_encoder_state(build_encoder(tiny_vit()), state, strict=True)


def test_nothing_loads_is_an_error() -> None:
    ptv3_state = build_encoder(tiny_ptv3()).state_dict()
    with pytest.raises(ValueError, match="no tensor fits the TokenViTEncoder"):
        build_task(SemsegConfig(encoder=tiny_vit(), mode="full"), ptv3_state)
    with pytest.raises(ValueError, match="no tensor fits"):
        load_encoder_state(build_encoder(tiny_vit()), {"a.b": torch.zeros(1)})


def test_scratch_refuses_weights() -> None:
    with pytest.raises(ValueError, match="mode='scratch'"):
        build_task(SemsegConfig(encoder=tiny_vit(), mode="scratch"), _pretrained())


def test_read_state_dict_from_pretrained_directory(tmp_path: Path) -> None:
    state = _pretrained()
    objective_like = {f"encoder.{k}": v for k, v in state.items()}
    save_pretrained(objective_like, tmp_path / "pre", config={"name": "mae"}, preprocess={})
    loaded = read_state_dict(tmp_path / "pre")
    task = build_task(SemsegConfig(encoder=tiny_vit(), mode="head"), loaded)
    _assert_loaded(task, state)
    with pytest.raises(FileNotFoundError, match="no such weights"):
        read_state_dict(tmp_path / "missing")
