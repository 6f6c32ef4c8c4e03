"""Augmentations selected by DataConfig: ``augment=True`` alone is today's random rotation; the
other transforms of nufm.data.transforms are reachable by typed fields."""

from __future__ import annotations

import numpy as np
import pytest

from nufm.config import DataConfig
from nufm.data.synthetic import synthetic_event
from nufm.data.transforms import (
    Compose,
    EnergySmear,
    Jitter,
    Preprocess,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomScale,
)
from nufm.train.components import build_augmentations, build_transform


def test_augment_alone_is_the_random_rotation() -> None:
    assert build_augmentations(DataConfig(augment=True)) == [RandomRotation()]
    assert build_augmentations(DataConfig(augment=False, flip_p=0.5)) == []
    event = synthetic_event(seed=2)
    transform = build_transform(DataConfig(augment=True))
    assert transform is not None
    got = transform(event, np.random.default_rng(4))
    want = Preprocess().transforms(augment=[RandomRotation()])(event, np.random.default_rng(4))
    np.testing.assert_array_equal(got.feat, want.feat)
    assert build_transform(DataConfig(source="toy")) is None
    toy = build_transform(DataConfig(source="toy", augment=True))
    assert toy == Compose([RandomRotation(center=(384.0, 384.0, 384.0))])


def test_every_augmentation_is_selectable_in_order() -> None:
    cfg = DataConfig(
        augment=True,
        crop=(0.6, 0.9),
        flip_p=0.5,
        scale=(0.8, 1.2),
        jitter=(0.002, 0.01),
        energy_smear=0.1,
    )
    assert build_augmentations(cfg) == [
        RandomCrop(min_fraction=0.6, max_fraction=0.9),
        RandomRotation(),
        RandomFlip(p=0.5),
        RandomScale(low=0.8, high=1.2),
        Jitter(sigma=0.002, clip=0.01),
        EnergySmear(sigma=0.1),
    ]
    no_rotation = build_augmentations(DataConfig(augment=True, rotate=False, flip_p=1.0))
    assert no_rotation == [RandomFlip(p=1.0)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"flip_p": 1.5}, "data.flip_p"),
        ({"scale": (1.2, 0.8)}, "data.scale"),
        ({"crop": (0.5, 1.5)}, "data.crop"),
        ({"jitter": (-1.0, 0.1)}, "data.jitter"),
        ({"energy_smear": -0.1}, "data.energy_smear"),
    ],
)
def test_bad_augmentation_settings_name_the_option(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DataConfig(**kwargs)


def test_streamed_simulation_batches_fresh_grouped_events_by_count() -> None:
    """data.stream: events simulated on read, batches of max_events, groups attached once per
    event by the pipeline (no cache: each event is seen about once)."""
    from nufm.presets import PRESETS
    from nufm.sim import SimulatedEvents
    from nufm.train.checkpoint import DataCursor
    from nufm.train.components import build_dataset, build_objective
    from nufm.train.data import EventStream

    data = DataConfig(source="sim", num_events=1000, stream=True, max_events=3, augment=True)
    ds = build_dataset(data)
    assert isinstance(ds, SimulatedEvents) and len(ds) == 1000
    mae = build_objective(PRESETS["mae-tiny"].objective)
    transform = build_transform(data, objective=mae)
    stream = EventStream(
        ds,
        max_points=data.max_points,
        max_events=data.max_events,
        shuffle=True,
        seed=0,
        num_workers=0,
        transform=transform,
        start=DataCursor(0, 0),
    )
    batch, cursor = next(stream)
    assert batch.num_events == 3 and cursor == DataCursor(0, 1)
    assert batch.groups is not None and int(batch.groups.center_offset[-1]) > 0
    (grouper,) = [t for t in transform.transforms if type(t).__name__ == "EventGrouper"]  # type: ignore[union-attr]
    assert not grouper.cache
    assert float(mae(batch).loss.detach()) > 0


def test_build_transform_attaches_the_descriptors_an_objective_reads() -> None:
    """An MAE with the descriptor term gets them once per event, before the augmentations
    (cached) or after a crop (recomputed), equal to the descriptors of the event it sees."""
    import dataclasses

    import torch

    from nufm.data.collate import collate
    from nufm.models.geometric import descriptor_key, point_shape_descriptors
    from nufm.presets import PRESETS
    from nufm.train.components import build_objective

    cfg = dataclasses.replace(
        PRESETS["mae-tiny"].objective, descriptor_weight=1.0, descriptor_ks=(4, 16)
    )
    mae = build_objective(cfg)
    names = lambda pipe: [type(t).__name__ for t in pipe.transforms]  # noqa: E731
    pipe = build_transform(DataConfig(augment=True), objective=mae)
    assert names(pipe).index("EventDescriptors") < names(pipe).index("RandomRotation")
    assert pipe.transforms[names(pipe).index("EventDescriptors")].memo.enabled
    cropped = build_transform(DataConfig(augment=True, crop=(0.5, 1.0)), objective=mae)
    assert names(cropped).index("EventDescriptors") > names(cropped).index("RandomCrop")
    assert not cropped.transforms[names(cropped).index("EventDescriptors")].memo.enabled
    plain = build_transform(DataConfig(augment=False), objective=mae)
    batch = collate([plain(synthetic_event(3), np.random.default_rng(0))])
    assert batch.descriptor_key == descriptor_key((4, 16))
    torch.testing.assert_close(batch.descriptors, point_shape_descriptors(batch, (4, 16)))
    off = build_transform(
        DataConfig(augment=True), objective=build_objective(PRESETS["mae-tiny"].objective)
    )
    assert "EventDescriptors" not in names(off)


def test_descriptors_computed_in_the_step_give_the_pipeline_s_loss() -> None:
    """data.cache_descriptors false: no descriptor step in the pipeline; the MAE computes the
    descriptors in its step, the same values on a CPU, so the same loss."""
    import dataclasses

    import torch

    from nufm.data.collate import collate
    from nufm.presets import PRESETS
    from nufm.sim import generate_events
    from nufm.train.components import build_objective

    cfg = dataclasses.replace(
        PRESETS["mae-tiny"].objective, descriptor_weight=1.0, descriptor_ks=(4, 16)
    )
    mae = build_objective(cfg)
    cached = build_transform(DataConfig(source="sim", augment=False), objective=mae)
    in_step = build_transform(
        DataConfig(source="sim", augment=False, cache_descriptors=False), objective=mae
    )
    assert "EventDescriptors" in [type(t).__name__ for t in cached.transforms]  # type: ignore[union-attr]
    assert "EventDescriptors" not in [type(t).__name__ for t in in_step.transforms]  # type: ignore[union-attr]
    events = list(generate_events(3, 4))
    losses = []
    for pipe in (cached, in_step):
        batch = collate([pipe(e, np.random.default_rng(0)) for e in events])  # type: ignore[misc]
        assert (batch.descriptors is None) == (pipe is in_step)
        torch.manual_seed(0)
        losses.append(mae(batch))
    assert float(losses[1].metrics["descriptor"]) > 0
    torch.testing.assert_close(losses[0].loss, losses[1].loss, rtol=1e-6, atol=1e-6)
