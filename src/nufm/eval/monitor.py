"""Representation-quality monitor for pretraining: a cheap per-point linear probe.

Every ``train.monitor_every`` steps the loop calls the monitor with the objective. It runs the
objective's online ``encoder`` frozen (eval mode, no gradients) on a fixed small labelled
simulated set, turns its output into per-point features with the parameter-free
:class:`nufm.models.base.PointFeatures`, and fits the bag of linear probes of
:func:`nufm.eval.probes.run_probe` on per-point semantic classes, split **by event** (train /
val / test), as the Panda study recommends (arXiv:2512.01324; pimm's PretrainEvaluator with its
event-leak fix). The labelled events are simulated from a seed the pretraining data never uses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nufm.data.collate import budget_batches, collate
from nufm.data.event import Event
from nufm.data.lartpc import SEGMENT_NAMES
from nufm.data.transforms import Preprocess
from nufm.eval.probes import LinearProbeConfig, run_probe
from nufm.step import online_encoder

log = logging.getLogger(__name__)

MONITOR_SEED = 987_654
"""Simulator seed of the monitor's labelled events (disjoint from training seeds < 1e5)."""


def encoder_point_features(
    encoder: nn.Module, events: list[Event], max_points: int = 60_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen per-point features of preprocessed ``events``.

    Returns:
        (features (N, D) float32, segment labels (N,), event index (N,)), over all events in
        order, batched by a point budget.
    """
    from nufm.models.base import PointFeatures

    to_points = PointFeatures()
    feats, labels, event_ids = [], [], []
    was_training = encoder.training
    encoder.eval()
    start = 0
    with torch.no_grad():
        for chunk in budget_batches(events, max_points):
            batch = collate(chunk)
            device = next(encoder.parameters()).device
            batch = batch.to(device)
            if batch.segment is None:
                raise ValueError("probe monitor: its events need semantic labels (segment)")
            feats.append(to_points(encoder(batch), batch).float().cpu())
            labels.append(batch.segment.cpu())
            event_ids.append(batch.batch_index.cpu() + start)
            start += len(chunk)
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels), torch.cat(event_ids)


def probe_monitor(
    n_events: int = 48,
    seed: int = MONITOR_SEED,
    preprocess: Preprocess | None = None,
    probe: LinearProbeConfig | None = None,
    n_splits: int = 4,
) -> Callable[[nn.Module, int], dict[str, float]]:
    """A ``monitor(objective, step) -> {name: value}`` for :func:`nufm.train.loop.train`.

    With 48 events one event split leaves 12 test events, and the probe score moves by several
    points of macro F1 from split to split (docs/objectives.md), so the monitor averages
    ``n_splits`` event splits (split seeds ``seed + i``) and also reports their standard
    deviation.

    Args:
        n_events: labelled simulated events (split by event 50/25/25 into probe train/val/test).
        seed: simulator seed of those events, and base seed of the splits.
        preprocess: the preprocessing contract of the pretraining run.
        probe: linear-probe settings (learning-rate bag, epochs); its seed is replaced per split.
        n_splits: event splits averaged.
    """
    if n_splits < 1:
        raise ValueError(f"probe_monitor: n_splits must be >= 1, got {n_splits}")
    from nufm.sim import generate_events

    pre = (preprocess or Preprocess()).transforms()
    rng = np.random.default_rng(seed)
    events = [pre(e, rng) for e in generate_events(n_events, seed)]
    probe = probe or LinearProbeConfig(epochs=10, seed=seed)

    def monitor(objective: nn.Module, step: int) -> dict[str, float]:
        x, y, ev = encoder_point_features(online_encoder(objective), events)
        runs = [
            run_probe(
                dataclasses.replace(probe, seed=seed + i), x, y, ev, num_classes=len(SEGMENT_NAMES)
            ).test
            for i in range(n_splits)
        ]
        f1 = np.array([r.macro_f1 for r in runs])
        out = {
            "probe_macro_f1": float(f1.mean()),
            "probe_macro_f1_std": float(f1.std()),
            "probe_miou": float(np.mean([r.miou for r in runs])),
            "probe_accuracy": float(np.mean([r.accuracy for r in runs])),
        }
        log.info(
            "step %d linear probe (per-point semantic, test events): %s",
            step,
            {k: round(v, 4) for k, v in out.items()},
        )
        return out

    return monitor
