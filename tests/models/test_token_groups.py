"""Token groups computed once per event in the data pipeline (``EventGrouper``) must give the
very tokens, losses and context targets that grouping inside the step gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers.configs import tiny_vit
from helpers.events import preprocessed_events
from nufm.config import DataConfig
from nufm.data.collate import collate
from nufm.data.transforms import RandomCrop, RandomRotation
from nufm.models.tokenizers import (
    ContextGrouping,
    EventGrouper,
    PointMAETokenizer,
    ball_group,
)
from nufm.presets import PRESETS
from nufm.ssl.mae import MaskedAutoencoder
from nufm.train.components import build_objective, build_transform

CFG = dataclasses.replace(tiny_vit().tokenizer, context_length=48)


def _events(n: int = 3):
    return [
        dataclasses.replace(e, event_id=i, source="mem")
        for i, e in enumerate(preprocessed_events(n, seed=3))
    ]


def test_cached_groups_equal_in_step_groups_with_global_rows() -> None:
    events = _events(3)
    ctx = ContextGrouping(radius=0.02, candidates=32, points=8)
    grouper = EventGrouper(CFG, ctx)
    batch = collate([grouper(e) for e in events])
    assert batch.groups is not None and batch.groups.context_idx is not None
    tok = PointMAETokenizer(CFG).eval()
    center_row, center_offset, idx, n_dropped = tok.group(batch.coord, batch.offset)
    assert torch.equal(batch.groups.center_row, center_row)
    assert torch.equal(batch.groups.center_offset, center_offset)
    assert torch.equal(batch.groups.group_idx, idx)
    assert torch.equal(batch.groups.n_dropped, n_dropped)
    # rows are global: every group point lies in the event of its centre
    event_of_row = batch.batch_index
    member = idx >= 0
    same = event_of_row[idx.clamp(min=0)] == event_of_row[center_row][:, None]
    assert bool(same[member].all())
    want_ctx = ball_group(
        batch.coord[center_row], center_offset, batch.coord, batch.offset, 0.02, 32, 8
    )
    assert torch.equal(batch.groups.context_idx, want_ctx)
    # the tokens a model makes from them are the in-step tokens
    torch.manual_seed(0)
    a = tok(batch.coord, batch.feat, batch.offset)
    b = tok(batch.coord, batch.feat, batch.offset, batch.groups)
    assert torch.equal(a.group_idx, b.group_idx)
    torch.testing.assert_close(a.feat, b.feat)


def test_mae_loss_with_cached_groups_equals_in_step_loss() -> None:
    cfg = PRESETS["mae-tiny"].objective
    cfg = dataclasses.replace(cfg, context_weight=1.0)
    torch.manual_seed(0)
    mae = build_objective(cfg)
    assert isinstance(mae, MaskedAutoencoder)
    events = _events(3)
    plain = collate(events)
    cached = collate([mae.event_grouper()(e) for e in events])
    assert plain.groups is None and cached.groups is not None
    torch.manual_seed(7)
    out_a = mae(plain)
    torch.manual_seed(7)
    out_b = mae(cached)
    torch.testing.assert_close(out_a.loss, out_b.loss)
    torch.testing.assert_close(out_a.metrics["context"], out_b.metrics["context"])


def test_groups_survive_rigid_moves_and_are_dropped_by_selection() -> None:
    ev = _events(1)[0]
    grouped = EventGrouper(CFG)(ev)
    moved = RandomRotation()(grouped, np.random.default_rng(0))
    assert moved.groups is grouped.groups  # same points, same groups
    assert not np.allclose(moved.coord, grouped.coord)
    cropped = RandomCrop(min_fraction=0.5, max_fraction=0.5)(grouped, np.random.default_rng(0))
    assert cropped.groups is None
    # a batch with one ungrouped event is grouped in the step
    assert collate([grouped, cropped]).groups is None


def test_grouper_reuses_an_events_groups_and_tells_events_apart() -> None:
    a, b = _events(2)
    grouper = EventGrouper(CFG)
    first = grouper(a).groups
    assert grouper(a).groups is first  # computed once
    assert grouper(b).groups is not first
    nocache = EventGrouper(CFG, cache=False)
    assert nocache(a).groups is not nocache(a).groups


def test_tokenizer_refuses_groups_made_with_other_settings() -> None:
    ev = _events(1)[0]
    other = dataclasses.replace(CFG, group_radius=CFG.group_radius * 2)
    batch = collate([EventGrouper(other)(ev)])
    assert batch.groups is not None
    with pytest.raises(ValueError, match="made with"):
        PointMAETokenizer(CFG)(batch.coord, batch.feat, batch.offset, batch.groups)


def test_build_transform_groups_before_augmentations_or_after_a_crop() -> None:
    mae = build_objective(PRESETS["mae-tiny"].objective)
    data = DataConfig(augment=True)
    pipe = build_transform(data, objective=mae)
    names = [type(t).__name__ for t in pipe.transforms]  # type: ignore[union-attr]
    assert names.index("EventGrouper") < names.index("RandomRotation")
    assert pipe.transforms[names.index("EventGrouper")].cache  # type: ignore[union-attr]
    cropped = build_transform(dataclasses.replace(data, crop=(0.5, 1.0)), objective=mae)
    names = [type(t).__name__ for t in cropped.transforms]  # type: ignore[union-attr]
    assert names.index("EventGrouper") > names.index("RandomCrop")
    assert not cropped.transforms[names.index("EventGrouper")].cache  # type: ignore[union-attr]
    off = build_transform(dataclasses.replace(data, cache_groups=False), objective=mae)
    assert "EventGrouper" not in [type(t).__name__ for t in off.transforms]  # type: ignore[union-attr]
