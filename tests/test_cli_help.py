"""``nufm --help`` and ``nufm COMMAND --help`` of every command exit 0 and print a usage."""

from __future__ import annotations

import pytest

from nufm.cli import _LAUNCHERS, COMMANDS, main


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    assert "Traceback" not in out + err
    return out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["--help"], capsys)
    assert out.startswith("usage: nufm ")
    for name in COMMANDS:
        assert name in out
    assert "--debug" in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _help([command, "--help"], capsys)
    assert out.startswith("usage: nufm ")
    if command in _LAUNCHERS:  # launcher flags, then the RunConfig overrides
        assert "--preset" in out and "optim.lr" in out
    else:
        assert out.startswith(f"usage: nufm {command} ")
        summary = (COMMANDS[command].__doc__ or "").split()[:3]  # the docstring's first words
        assert " ".join(summary) in " ".join(out.split())


def test_help_ignores_debug_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(["info", "--help", "--debug"], capsys).startswith("usage: nufm info ")
