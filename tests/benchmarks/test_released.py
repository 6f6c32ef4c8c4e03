"""The released-model benchmark runs at full size and reports the full-size parameter counts."""

from __future__ import annotations

import math

from nufm.benchmarks.released import bench_released


def test_bench_released_rows() -> None:
    rows = bench_released(sizes=(600,), repeats=1, dtypes=("fp32",), threads=1)
    assert [r["bench"] for r in rows] == ["panda_base_encoder", "polarmae_pretrain_encoder"]
    assert math.isclose(rows[0]["params_m"], 90.758832)  # Panda-Base (model card: 90.8 M)
    assert math.isclose(rows[1]["params_m"], 21.837568)  # PoLAr-MAE-Pretrain's encoder
    for r in rows:
        assert r["threads"] == 1 and r["median_s"] > 0 and r["events_per_s"] == 1 / r["median_s"]
    assert rows[1]["n_tokens"] > 0
