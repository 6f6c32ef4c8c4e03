"""The study's frozen-feature modes: features computed once per event and source, reused by
every size, seed and mode; the four modes run end to end through run_study."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers.configs import one_step_mae_run
from nufm.batch import PointBatch
from nufm.config import (
    ProbeStudyConfig,
)
from nufm.data.lartpc import SEGMENT_NAMES
from nufm.data.pilarnet import write_events
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import Preprocess
from nufm.models.geometric import LocalGeometryConfig
from nufm.presets import PRESETS, STUDY_PRESETS
from nufm.sim import generate_events
from nufm.tasks.backbone import TaskBackbone
from nufm.tasks.build import build_task
from nufm.tasks.semseg import SemsegConfig
from nufm.train.loop import seed_everything
from nufm.train.run import run_pretrain
from nufm.workflows import study
from nufm.workflows.load import Pretrained
from nufm.workflows.probe_study import FeatureCache, _feature_source
from nufm.workflows.study import parse_study_args, run_study


class _Counting(nn.Module):
    """Per-point features (coord, feat); counts calls and events seen."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.events = 0

    def forward(self, batch: PointBatch) -> torch.Tensor:
        self.calls += 1
        self.events += batch.num_events
        return torch.cat([batch.coord, batch.feat], dim=1)  # (N, 7)


def _cache(batch_points: int = 100_000, cap: int | None = 50) -> FeatureCache:
    raw = [synthetic_event(i) for i in range(14)]
    return FeatureCache(
        {"train": raw[:8], "val": raw[8:11], "test": raw[11:]},
        Preprocess(energy_threshold=0.0).transforms(),
        batch_points=batch_points,
        train_points_per_event=cap,
    )


def test_feature_cache_encodes_each_event_once_per_source() -> None:
    cache = _cache()
    encoders: list[_Counting] = []

    def build() -> nn.Module:
        encoders.append(_Counting())
        return encoders[-1]

    x4, y4 = cache.get("a", build, "train", 4)
    x8, y8 = cache.get("a", build, "train", 8)  # sizes 4 then 8: 4 more events
    again, _ = cache.get("a", build, "train", 4)
    val1, _ = cache.get("a", build, "val")
    val2, _ = cache.get("a", build, "val")
    assert len(encoders) == 1 and encoders[0].events == 8 + 3
    assert cache.encoded_events == {"a": 11}
    np.testing.assert_array_equal(x8[: len(x4)], x4)  # nested subsets share features
    np.testing.assert_array_equal(y8[: len(y4)], y4)
    np.testing.assert_array_equal(again, x4)
    np.testing.assert_array_equal(val1, val2)
    cache.get("b", build, "train", 2)  # another source: its own encoder
    assert len(encoders) == 2 and cache.encoded_events == {"a": 11, "b": 2}
    with pytest.raises(ValueError, match="9 train events asked, 8 held"):
        cache.get("a", build, "train", 9)


def test_feature_cache_subsamples_train_points_only_and_is_batch_independent() -> None:
    pre = Preprocess(energy_threshold=0.0).transforms()
    raw = [synthetic_event(i) for i in range(14)]
    sizes = [len(pre(e, np.random.default_rng(0))) for e in raw]
    assert max(sizes[:8]) > 50  # the cap bites
    geometry = lambda: TaskBackbone(  # noqa: E731
        SemsegConfig(mode="linear", encoder=LocalGeometryConfig())
    )
    one, many = _cache(batch_points=1), _cache()  # one event per batch vs all together
    x1, y1 = one.get("g", geometry, "train", 8)
    xm, ym = many.get("g", geometry, "train", 8)
    assert len(y1) == sum(min(s, 50) for s in sizes[:8])
    torch.testing.assert_close(torch.as_tensor(x1), torch.as_tensor(xm))
    np.testing.assert_array_equal(y1, ym)
    xv, _ = one.get("g", geometry, "val")
    assert len(xv) == sum(sizes[8:11])  # val and test keep every point
    x_all, _ = _cache(cap=None).get("g", geometry, "train", 1)
    assert len(x_all) == sizes[0]


def test_feature_cache_encodes_under_the_given_autocast() -> None:
    """``autocast_dtype`` bf16: the encoder's products run in bf16 (features as a bf16
    forward gives them, kept in float32), within bf16 rounding of the full-precision ones."""
    torch.manual_seed(0)
    linear = nn.Linear(7, 16)

    class Projected(nn.Module):
        def forward(self, batch: PointBatch) -> torch.Tensor:
            return linear(torch.cat([batch.coord, batch.feat], dim=1))  # (N, 16)

    full = _cache()
    half = _cache()
    half.autocast_dtype = torch.bfloat16
    x32, _ = full.get("p", Projected, "val")
    x16, _ = half.get("p", Projected, "val")
    assert x16.dtype == np.float32
    inputs, _ = full.get("raw", _Counting, "val")  # (N, 7) the projection's inputs
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = linear(torch.as_tensor(inputs)).float()
    np.testing.assert_array_equal(x16, expected.numpy())
    assert not np.array_equal(x16, x32)
    np.testing.assert_allclose(x16, x32, rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("probe_study")
    run_dir = tmp / "pretrain"
    run_pretrain(
        one_step_mae_run(),
        run_dir,
    )
    data = tmp / "events.h5"
    write_events(data, list(generate_events(60, 7)))  # 48 / 6 / 6 events
    return run_dir, data


def test_probe_modes_run_end_to_end_and_share_features(
    tiny_study: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caches: list[FeatureCache] = []

    class Recording(FeatureCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            caches.append(self)

    monkeypatch.setattr(study, "FeatureCache", Recording)
    modes = ("probe", "probe-random", "probe-geometry", "gbt-geometry", "probe-fused", "gbt-fused")
    cfg = dataclasses.replace(
        STUDY_PRESETS["smoke"],
        sizes=(8, 4),
        modes=modes,
        seeds=(0, 1),
        probe=ProbeStudyConfig(
            min_steps=20, gbt_max_iter=5, train_points_per_event=200, fused_pca_dims=3
        ),
    )
    rows = run_study(cfg, tiny_study[0], (tiny_study[1],), tmp_path)
    assert [(r.mode, r.n_train, r.seed) for r in rows] == [
        (m, n, s) for n in (4, 8) for m in modes for s in (0, 1)
    ]
    (cache,) = caches
    # every event of every set once per source (4 train + 4 more, 4 val, 4 test); the random
    # encoder is one per seed, the descriptors serve probe-geometry and gbt-geometry, and the
    # fused modes reuse both the pretrained features and the descriptors
    assert cache.encoded_events == {
        "pretrained": 16,
        "random-s0": 16,
        "random-s1": 16,
        "geometry": 16,
    }
    for r in rows:
        assert list(r.per_class_f1) == list(SEGMENT_NAMES) and 0 <= r.score <= 1
        doc = json.loads((Path(r.run_dir) / "metrics.json").read_text())
        assert doc["metrics"]["semantic"]["macro_f1"] == pytest.approx(r.score)
        assert doc["metrics"]["selection"]["best"] in doc["metrics"]["selection"]["val_macro_f1"]
        assert doc["data"]["n_train"] == r.n_train and doc["data"]["n_val"] == 4
    model = {
        r.mode: json.loads((Path(r.run_dir) / "metrics.json").read_text())["model"] for r in rows
    }
    assert model["probe"]["pretrained"] is not None and model["probe-random"]["random_encoder"]
    assert model["probe-geometry"]["encoder"] == model["gbt-geometry"]["encoder"]
    assert model["gbt-geometry"]["probe"] == "gradient-boosted trees"
    d_enc, d_geo = model["probe"]["feature_dim"], model["probe-geometry"]["feature_dim"]
    assert d_enc > 3 and model["probe-fused"]["feature_dim"] == d_enc + d_geo
    assert model["gbt-fused"]["feature_dim"] == 3 + d_geo  # 3 principal components
    assert model["gbt-fused"]["probe"] == "gradient-boosted trees"
    assert model["gbt-fused"]["pretrained"] == model["probe"]["pretrained"] is not None
    assert model["gbt-fused"]["descriptors"] and not model["probe"]["descriptors"]
    table = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [t["mode"] for t in table] == [r.mode for r in rows]
    assert {f"f1_{c}" for c in SEGMENT_NAMES} <= set(table[0])
    md = (tmp_path / "results.md").read_text()
    assert "boosted trees, val-selected" in md and "Val-selected modes" in md
    assert "linear-probe bag, val-selected (pretrained, frozen)" in md


def test_probe_preset_and_cli_overrides() -> None:
    probe, quick = STUDY_PRESETS["probe"], STUDY_PRESETS["quick"]
    assert probe.modes == ("probe-random", "probe-geometry", "gbt-geometry", "probe")
    assert (probe.sizes, probe.seeds, probe.run) == ((10, 100, 1000), (0, 1, 2), quick.run)
    assert probe.probe == ProbeStudyConfig()
    cfg, out = parse_study_args(
        ["--preset", "probe", "--out", "x", "--probe.gbt-max-iter", "7", "--modes", "probe"]
    )
    assert (cfg.probe.gbt_max_iter, cfg.modes, out) == (7, ("probe",), Path("x"))
    with pytest.raises(SystemExit):
        parse_study_args(["--preset", "probe", "--modes", "probe-nonsense"])


def test_probe_random_starts_from_the_encoder_of_linear_random() -> None:
    enc = PRESETS["mae-tiny"].objective.encoder  # type: ignore[union-attr]
    pretrained = Pretrained(
        objective_config=PRESETS["mae-tiny"].objective,
        encoder=nn.Identity(),
        encoder_config=enc,
        state={},
        preprocess=Preprocess(),
        source="stub",
    )
    cfg = STUDY_PRESETS["smoke"]
    key, build = _feature_source(cfg, "probe-random", 3, pretrained)
    ours = build().state_dict()
    run = study.study_run(cfg, "linear-random", 4, 3)  # what run_finetune builds
    seed_everything(run.train.seed)
    task = build_task(dataclasses.replace(run.objective, encoder=enc), None)  # type: ignore[arg-type]
    theirs = task.backbone.state_dict()
    assert key == "random-s3" and ours.keys() == theirs.keys()
    for name, value in ours.items():
        torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)
    # with probe.random_encoder_seed every seed reads that one random encoder
    one = dataclasses.replace(cfg, probe=dataclasses.replace(cfg.probe, random_encoder_seed=3))
    for seed in (0, 1):
        key, build = _feature_source(one, "probe-random", seed, pretrained)
        assert key == "random-s3"
        for name, value in build().state_dict().items():
            torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)
    assert _feature_source(cfg, "gbt-geometry", 0, pretrained)[0] == "geometry"
    assert _feature_source(cfg, "probe-geometry", 1, pretrained)[0] == "geometry"
