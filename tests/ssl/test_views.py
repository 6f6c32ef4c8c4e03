"""View generation (crop sizes, k-nearest crops, isometric augmentation) and view matching."""

from __future__ import annotations

import torch

from helpers.events import preprocessed_batch
from nufm.geometry.offsets import offset_to_counts
from nufm.ssl.views import ViewConfig, make_views, match_points, select_events


def test_views_are_k_nearest_crops_with_valid_sizes() -> None:
    torch.manual_seed(0)
    batch = preprocessed_batch(3)
    cfg = ViewConfig(num_global=2, num_local=3)
    g, loc = make_views(batch, cfg, augment=False)
    assert g.batch.offset.shape == (6,) and loc.batch.offset.shape == (9,)
    n = batch.counts
    for views, (lo, hi) in ((g, cfg.global_fraction), (loc, cfg.local_fraction)):
        counts = offset_to_counts(views.batch.offset)
        src = n[views.event]
        assert bool((counts >= torch.floor(lo * src)).all()) and bool((counts <= src).all())
        assert bool((counts <= torch.ceil(hi * src)).all())
        torch.testing.assert_close(views.batch.coord, views.origin)  # no augmentation
        torch.testing.assert_close(views.origin, batch.coord[views.rows])
        start = 0
        for r, c in enumerate(counts.tolist()):  # every view = the c nearest points of a centre
            rows = views.rows[start : start + c]
            e = int(views.event[r])
            e0 = 0 if e == 0 else int(batch.offset[e - 1])
            ev = batch.coord[e0 : int(batch.offset[e])]
            d_in = (ev[rows - e0] - views.origin[start]).norm(dim=1).max()
            outside = torch.ones(len(ev), dtype=torch.bool)
            outside[rows - e0] = False
            if outside.any():
                d_out = (ev[outside] - views.origin[start]).norm(dim=1).min()
                assert float(d_in) <= float(d_out) + 1e-6
            assert len(set(rows.tolist())) == c
            start += c


def test_augmentation_is_an_isometry_and_moves_feat_coords() -> None:
    torch.manual_seed(1)
    batch = preprocessed_batch(2)
    cfg = ViewConfig(num_global=2, num_local=2, jitter_sigma=0.0)
    g, _ = make_views(batch, cfg)
    e = int(g.batch.offset[0])
    a, o = g.batch.coord[:e], g.origin[:e]
    mode = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(
        torch.cdist(a, a, compute_mode=mode),
        torch.cdist(o, o, compute_mode=mode),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(g.batch.feat[:e, :3], a, atol=1e-5, rtol=0)  # feat xyz == coord
    torch.testing.assert_close(g.batch.feat[:, 3], batch.feat[g.rows, 3])  # energy untouched
    torch.testing.assert_close(a.mean(0), torch.zeros(3), atol=1e-5, rtol=0)  # centre shift


def test_unaugmented_view_matched_to_itself_gives_identity_pairs() -> None:
    torch.manual_seed(2)
    batch = preprocessed_batch(2)
    g, _ = make_views(batch, ViewConfig(num_global=2, num_local=0), augment=False)
    R = g.batch.offset.shape[0]
    q, s = match_points(
        g.origin, g.batch.offset, g.origin, g.batch.offset, torch.arange(R), max_dist=1e-6
    )
    assert torch.equal(q, torch.arange(g.batch.num_points)) and torch.equal(q, s)


def test_match_points_to_another_view_respects_radius() -> None:
    torch.manual_seed(3)
    batch = preprocessed_batch(2)
    g, loc = make_views(batch, ViewConfig(num_global=2, num_local=2))
    major = loc.event * 2
    q, s = match_points(loc.origin, loc.batch.offset, g.origin, g.batch.offset, major, 0.002)
    assert q.numel() > 0
    assert bool(((loc.origin[q] - g.origin[s]).norm(dim=1) < 0.002).all())
    # matched support rows lie in the major global view of the same event
    view_of_support = torch.repeat_interleave(torch.arange(4), offset_to_counts(g.batch.offset))
    view_of_query = torch.repeat_interleave(torch.arange(4), offset_to_counts(loc.batch.offset))
    assert torch.equal(view_of_support[s], major[view_of_query[q]])
    # points that are in the major view find themselves (distance 0)
    same = (loc.origin[q] - g.origin[s]).norm(dim=1) == 0
    assert float(same.float().mean()) > 0.5


def test_select_events_repeats_and_orders() -> None:
    offset = torch.tensor([2, 5, 6])
    rows, new_offset = select_events(offset, torch.tensor([1, 1, 0, 2]))
    assert rows.tolist() == [2, 3, 4, 2, 3, 4, 0, 1, 5]
    assert new_offset.tolist() == [3, 6, 8, 9]
