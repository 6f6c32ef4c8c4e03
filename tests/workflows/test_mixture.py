"""Cross-experiment pretraining: one MAE run over LArTPC, water Cherenkov and collider-TPC
files with one tokenizer per detector and a shared ViT (issue 13, section 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nufm.cli import main
from nufm.config import DataConfig, load_config
from nufm.data.collate import MixtureBudgetSampler, PointBudgetSampler, collate
from nufm.data.detectors import get_detector
from nufm.data.event import Event
from nufm.data.formats import read_any
from nufm.data.mixture import ByDetector, MixtureEvents, parse_mixture_entry
from nufm.data.pilarnet import write_events
from nufm.data.tpcpp import write_tpcpp
from nufm.data.watchmal import write_watchmal
from nufm.errors import ConfigError, InputError
from nufm.models.encoders import (
    DetectorTokenizer,
    TokenViTConfig,
    TokenViTEncoder,
    select_detector,
    select_detector_state,
)
from nufm.models.tokenizers import PointMAETokenizerConfig
from nufm.models.vit import ViTConfig
from nufm.presets import get_preset
from nufm.sim import generate_events
from nufm.sim.collider_tpc import generate_collider_events
from nufm.sim.water_cherenkov import WaterCherenkovConfig, generate_wc_events, pmt_positions
from nufm.ssl.build import with_detectors
from nufm.train.components import build_dataset, build_objective
from nufm.train.data import points_per_event
from nufm.train.loop import seed_everything
from nufm.workflows.load import for_detector, load_encoder

# ------------------------------------------------------------------------------ data layer


def test_mixture_entries_parse_path_and_weight() -> None:
    assert parse_mixture_entry("a.h5") == (Path("a.h5"), 1.0)
    assert parse_mixture_entry("runs/a.h5:2.5") == (Path("runs/a.h5"), 2.5)
    assert parse_mixture_entry("c:/x/a.h5") == (Path("c:/x/a.h5"), 1.0)  # ':' of the path
    for bad in ("a.h5:0", "a.h5:-1", "a.h5:nan"):
        with pytest.raises(ConfigError, match="positive"):
            parse_mixture_entry(bad)
    with pytest.raises(ConfigError, match="mixture"):
        DataConfig(source="mixture")
    with pytest.raises(ConfigError, match="mixture"):
        DataConfig(source="sim", mixture=("a.h5",))
    with pytest.raises(ConfigError, match="positive"):
        DataConfig(source="mixture", mixture=("a.h5:0",))


def _sampler(seed: int = 0, world_size: int = 1, rank: int = 0) -> MixtureBudgetSampler:
    sizes = np.tile([10, 30, 20, 40], 50)  # 200 events, 4 per point budget of 100 at most
    source = np.repeat([0, 1], 100)
    return MixtureBudgetSampler(
        sizes, source, [3.0, 1.0], 100, 4, seed=seed, rank=rank, world_size=world_size
    )


def test_every_mixture_batch_is_one_sources_and_shares_follow_the_weights() -> None:
    s = _sampler()
    src = s.source
    drawn = []
    for epoch in range(5):
        s.set_epoch(epoch)
        for batch in s:
            assert len({int(src[i]) for i in batch}) == 1
            assert sum(int(s.sizes[i]) for i in batch) <= 100 and len(batch) <= 4
            drawn.append(int(src[batch[0]]))
    share = np.mean(np.array(drawn) == 0)  # weight 3 of 4; about 300 draws
    assert abs(share - 0.75) < 0.06, share
    # the same batches for one (seed, epoch), others for another epoch or seed
    s.set_epoch(2)
    again = _sampler()
    again.set_epoch(2)
    assert list(s) == list(again)
    again.set_epoch(3)
    assert list(s) != list(again)
    other = _sampler(seed=1)
    other.set_epoch(2)
    assert list(s) != list(other)


def test_mixture_batches_shard_across_ranks() -> None:
    full = _sampler()
    ranks = [_sampler(world_size=2, rank=r) for r in (0, 1)]
    assert len(list(ranks[0])) == len(list(ranks[1])) == len(full) // 2
    together = [b for pair in zip(*(list(r) for r in ranks), strict=True) for b in pair]
    assert together == list(full)[: len(together)]


def test_an_equal_weight_mixture_of_one_source_is_the_plain_sampler() -> None:
    sizes = np.tile([10, 30, 20, 40], 25)
    plain = PointBudgetSampler(sizes, 100, 4, seed=5)
    mixed = MixtureBudgetSampler(sizes, np.zeros(100, np.int64), [1.0], 100, 4, seed=5)
    # one source: its own (seed, epoch, 0) shuffle, the same budget rule
    assert sorted(i for b in mixed for i in b) == list(range(100))
    assert len(list(mixed)) == len(list(plain))


def _event(n: int, detector: str | None, row: int) -> Event:
    rng = np.random.default_rng(row)
    meta = {} if detector is None else {"detector": detector}
    return Event(
        coord=rng.random((n, 3)).astype(np.float32),
        energy=rng.random(n).astype(np.float32),
        event_id=row,
        meta=meta,
    )


def test_mixture_events_are_tagged_and_located() -> None:
    a = [_event(5, None, i) for i in range(3)]
    b = [_event(7, "collider-tpc", i) for i in range(2)]
    mix = MixtureEvents([a, b], ["lartpc", "collider-tpc"], [1.0, 2.0], ["a.h5", "b.npz"])
    assert len(mix) == 5
    assert mix.mixture_source.tolist() == [0, 0, 0, 1, 1]
    assert mix.points_per_event().tolist() == [5, 5, 5, 7, 7]
    assert mix[1].meta["detector"] == "lartpc" and mix[1].event_id == 1
    assert mix[4].meta["detector"] == "collider-tpc" and mix[4].event_id == 1
    assert mix.where(3) == "b.npz event 0"
    with pytest.raises(IndexError):
        mix[5]
    # one batch is one detector's events; a mixed one is refused by name
    assert collate([mix[3], mix[4]]).detector == "collider-tpc"
    assert collate([a[0], a[1]]).detector is None
    with pytest.raises(ValueError, match="several detectors"):
        collate([mix[0], mix[3]])
    # each detector's own pipeline
    marks = ByDetector(
        {
            "lartpc": lambda e, rng: e.with_fields(meta={**e.meta, "seen": 1}),
            "collider-tpc": lambda e, rng: e.with_fields(meta={**e.meta, "seen": 2}),
        }
    )
    rng = np.random.default_rng(0)
    assert marks(mix[0], rng).meta["seen"] == 1 and marks(mix[4], rng).meta["seen"] == 2
    with pytest.raises(ConfigError, match="water-cherenkov"):
        marks(_event(4, "water-cherenkov", 0), rng)


# ------------------------------------------------------------------------------ the encoder


def _tok(radius: float, channels: int) -> PointMAETokenizerConfig:
    return PointMAETokenizerConfig(
        in_channels=channels,
        embed_dim=32,
        group_radius=radius,
        group_max_points=8,
        group_upscale_points=16,
        context_length=64,
        pointnet_dims=(16, 32, 32),
        pos_hidden=16,
    )


def _mix_config() -> TokenViTConfig:
    return TokenViTConfig(
        tokenizer=_tok(0.05, 4),
        detector="lartpc",
        other_tokenizers=(DetectorTokenizer(detector="water-cherenkov", tokenizer=_tok(0.2, 5)),),
        vit=ViTConfig(embed_dim=32, depth=2, num_heads=2, drop_path=0.0),
    )


def _batch(detector: str | None, channels: int, seed: int = 0) -> object:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(2):
        coord = rng.uniform(-0.5, 0.5, (60, 3)).astype(np.float32)
        feat = np.concatenate([coord, rng.random((60, channels - 3))], 1).astype(np.float32)
        meta = {} if detector is None else {"detector": detector}
        events.append(Event(coord=coord, energy=feat[:, 3], feat=feat, event_id=i, meta=meta))
    return collate(events)


def test_each_detector_has_its_tokenizer_and_all_share_the_vit() -> None:
    torch.manual_seed(0)
    enc = TokenViTEncoder(_mix_config()).eval()
    lar, wc = _batch(None, 4), _batch("water-cherenkov", 5)
    enc(wc).feat.sum().backward()  # type: ignore[arg-type]
    assert enc.other_tokenizers is not None
    assert all(p.grad is not None for p in enc.other_tokenizers.parameters())
    assert all(p.grad is None for p in enc.tokenizer.parameters())
    assert all(p.grad is not None for p in enc.vit.parameters() if p.requires_grad)
    enc.zero_grad(set_to_none=True)
    enc(lar).feat.sum().backward()  # type: ignore[arg-type]
    assert all(p.grad is None for p in enc.other_tokenizers.parameters())
    assert all(p.grad is not None for p in enc.tokenizer.parameters())
    with pytest.raises(InputError, match=r"collider-tpc.*lartpc, water-cherenkov"):
        enc(_batch("collider-tpc", 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="detector"):
        TokenViTConfig(
            tokenizer=_tok(0.05, 4),
            other_tokenizers=_mix_config().other_tokenizers,
            vit=_mix_config().vit,
        )
    with pytest.raises(ValueError, match="one tokenizer per detector"):
        TokenViTConfig(
            tokenizer=_tok(0.05, 4),
            detector="water-cherenkov",
            other_tokenizers=_mix_config().other_tokenizers,
            vit=_mix_config().vit,
        )


@pytest.mark.parametrize(("detector", "channels"), [("lartpc", 4), ("water-cherenkov", 5)])
def test_a_selected_detector_is_a_plain_encoder_with_the_same_outputs(
    detector: str, channels: int
) -> None:
    torch.manual_seed(1)
    cfg = _mix_config()
    enc = TokenViTEncoder(cfg).eval()
    one_cfg = select_detector(cfg, detector)
    assert one_cfg.other_tokenizers == () and one_cfg.detector is None
    assert one_cfg.tokenizer.in_channels == channels
    one = TokenViTEncoder(one_cfg).eval()
    one.load_state_dict(select_detector_state(enc.state_dict(), cfg, detector))  # strict
    batch = _batch(None if detector == "lartpc" else detector, channels, seed=3)
    with torch.no_grad():
        assert torch.equal(enc(batch).feat, one(batch).feat)  # type: ignore[arg-type]


def test_with_detectors_keeps_the_mixtures_tokenizers_in_its_order() -> None:
    mae = get_preset("mae-mix-cpu").objective
    fitted = with_detectors(mae, {"collider-tpc": 4, "lartpc": 4})  # type: ignore[arg-type]
    enc = fitted.encoder  # type: ignore[union-attr]
    assert enc.detectors == ("collider-tpc", "lartpc")
    assert enc.tokenizer.group_radius == 0.03  # mae-tpc-cpu's 3.9 cm groups
    with pytest.raises(ConfigError, match="fasercal"):
        with_detectors(mae, {"lartpc": 4, "fasercal": 4})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="token ViT"):
        with_detectors(get_preset("forecast-tiny").objective, {"lartpc": 4})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixture")
    write_events(root / "lar.h5", list(generate_events(12, 3)))
    write_tpcpp(root / "tpc.npz", generate_collider_events(12, seed=1))
    cfg = WaterCherenkovConfig()
    wc = generate_wc_events(12, seed=1, particle=("mu-",), energy=(200.0, 400.0), cfg=cfg)
    write_watchmal(root / "wc.h5", wc, pmt_positions(cfg).position)
    return {"lartpc": root / "lar.h5", "water-cherenkov": root / "wc.h5", "tpc": root / "tpc.npz"}


def _pretrain(files: dict[str, Path], run: Path, *extra: str) -> None:
    main(
        [
            "pretrain",
            "--preset",
            "mae-mix-cpu",
            "--run-dir",
            str(run),
            "--data.source",
            "mixture",
            "--data.mixture",
            f"{files['lartpc']}:2",
            str(files["water-cherenkov"]),
            str(files["tpc"]),
            "--data.max-events",
            "3",
            "--train.max-steps",
            "6",
            "--train.checkpoint-every",
            "3",
            "--optim.warmup-steps",
            "1",
            "--logging.log-every",
            "1",
            *extra,
        ]
    )


def test_mixture_pretraining_resumes_exactly_and_each_detector_loads(
    files: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "mix"
    _pretrain(files, run)
    cfg = load_config(run / "config.yaml")
    enc_cfg = cfg.objective.encoder  # type: ignore[union-attr]
    assert enc_cfg.detectors == ("lartpc", "water-cherenkov", "collider-tpc")
    assert enc_cfg.tokenizer_for("water-cherenkov").in_channels == 5  # the hit time
    # stopped at step 3 and resumed: the same weights at step 6
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.yaml", again / "config.yaml")
    for f in (run / "checkpoints").glob("step_00000003*"):
        shutil.copy(f, again / "checkpoints" / f.name)
    main(
        ["pretrain", "--config-file", str(run / "config.yaml"), "--run-dir", str(again), "--resume"]
    )
    a = torch.load(run / "checkpoints" / "step_00000006.pt", weights_only=False)["model"]
    b = torch.load(again / "checkpoints" / "step_00000006.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the tokenizers of the detectors whose batches the 6 steps drew trained, the others not
    data = build_dataset(cfg.data)
    sampler = MixtureBudgetSampler(
        points_per_event(data),
        data.mixture_source,  # type: ignore[attr-defined]
        data.mixture_weights,  # type: ignore[attr-defined]
        cfg.data.max_points,
        cfg.data.max_events,
        seed=cfg.train.seed,
    )
    drawn = {data.detectors[data.mixture_source[b[0]]] for b in list(sampler)[:6]}  # type: ignore[attr-defined]
    seed_everything(cfg.train.seed)
    start = build_objective(cfg.objective).state_dict()
    for det in enc_cfg.detectors:
        prefix = "encoder.tokenizer." if det == "lartpc" else f"encoder.other_tokenizers.{det}."
        w = next(k for k in a if k.startswith(prefix) and k.endswith("weight"))
        assert torch.equal(a[w], start[w]) == (det not in drawn), (det, drawn)
    assert len(drawn) >= 2
    # each detector's part: its tokenizer and preprocessing, the shared ViT
    pre = load_encoder(run)
    for det, path in (
        ("water-cherenkov", files["water-cherenkov"]),
        ("collider-tpc", files["tpc"]),
    ):
        one = for_detector(pre, det)
        assert one.preprocess == get_detector(det).preprocess
        t = one.preprocess.transforms()
        events = [t(e, np.random.default_rng(0)) for e in list(read_any(path))[:2]]
        batch = collate(events)
        with torch.no_grad():
            assert torch.equal(pre.encoder(batch).feat, one.encoder(batch).feat)
    with pytest.raises(InputError, match="fasercal"):
        for_detector(pre, "fasercal")


def test_a_mixture_without_a_tokenizer_for_a_file_is_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as e:
        main(
            [
                "pretrain",
                "--preset",
                "mae-cpu",
                "--run-dir",
                str(tmp_path / "r"),
                "--data.source",
                "mixture",
                "--data.mixture",
                str(files["lartpc"]),
                str(files["tpc"]),
            ]
        )
    assert e.value.code != 0
    assert not (tmp_path / "r" / "checkpoints").exists()
