"""atomic_output: the destination appears only complete, and a failure leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nufm.atomic import atomic_output


def test_success_replaces_and_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "f.txt"
    out.write_text("old")
    with atomic_output(out) as tmp:
        Path(tmp).write_text("new")
        assert out.read_text() == "old"  # not visible before the end
    assert out.read_text() == "new"
    with pytest.raises(RuntimeError, match="boom"), atomic_output(tmp_path / "g.txt") as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_the_output_gets_the_usual_file_mode(tmp_path: Path) -> None:
    """Not mkstemp's 0600: a data file written for a group is readable like any other."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "f.h5") as tmp:
            Path(tmp).write_text("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "f.h5").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644
