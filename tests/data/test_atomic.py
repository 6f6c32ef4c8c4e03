"""atomic_output: the destination appears only complete, and a failure leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nufm.data.atomic import atomic_output


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
