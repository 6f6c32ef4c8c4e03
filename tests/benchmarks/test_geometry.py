"""Geometry benchmark: both paths agree on every case and size, and the table lists each row."""

from __future__ import annotations

from nufm.benchmarks.geometry import bench_geometry, format_table


def test_bench_geometry_rows_and_table() -> None:
    rows = bench_geometry(n_points=(300, 500), repeats=1)
    cases = ["pipeline_fps", "pipeline_all", "fps", "knn", "descriptors"]
    assert [(r["case"], r["n_points"]) for r in rows] == [(c, n) for n in (300, 500) for c in cases]
    assert all(r["agree"] is True for r in rows)
    assert all(r["reference_s"] > 0 and r["fast_s"] > 0 for r in rows)
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["case", "n", "reference", "s", "fast", "s", "speed-up", "agree"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [r["case"], str(r["n_points"])] for r in rows
    ]
    assert lines[1].endswith("True")
