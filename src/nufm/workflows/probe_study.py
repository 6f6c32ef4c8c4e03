"""The frozen-feature modes of the label-efficiency study (:mod:`nufm.workflows.study`).

``probe`` (pretrained encoder), ``probe-random`` (random encoder, initialised with the run's
seed) and ``probe-geometry`` (local-shape descriptors, :mod:`nufm.models.geometric`) follow the
linear-probe protocol of Panda (arXiv:2512.01324) and PoLAr-MAE (arXiv:2502.02558): per-point
features of the frozen encoder are computed once per event (:class:`FeatureCache`, shared by
every size, seed and mode on the same source), a bag of class-balanced logistic-regression
heads over a grid of learning rates trains on the labelled events
(:func:`nufm.eval.probes.run_probe_on_sets`), the head with the best macro F1 on the val events
is selected and scored on the study's test events. ``gbt-geometry`` fits gradient-boosted trees
on the descriptors (:func:`nufm.eval.boosted_trees.run_gbt_probe`), its number of iterations
selected on the val events. ``probe-fused`` and ``gbt-fused`` read the pretrained encoder's
features and the descriptors side by side (the trees the first ``probe.fused_pca_dims``
principal components of the encoder's features): they ask whether the encoder knows anything
the classical features do not. Settings: :class:`nufm.config.ProbeStudyConfig`.

Owns :class:`FeatureCache`, :func:`encode_ahead` and :func:`run_probe_mode`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nufm.config import PROBE_MODES, StudyConfig, config_to_dict
from nufm.data.collate import budget_batches, collate
from nufm.data.event import Event
from nufm.data.lartpc import SEGMENT_NAMES
from nufm.data.transforms import Transform
from nufm.errors import ConfigError
from nufm.eval.boosted_trees import GBTProbeConfig, run_gbt_probe
from nufm.eval.bootstrap import event_confusions, save_event_confusion
from nufm.eval.probes import LinearProbeConfig, ProbeResult, run_probe_on_sets
from nufm.eval.report import metrics_report, write_metrics_json
from nufm.eval.tasks import inference_autocast
from nufm.models.geometric import LocalGeometryConfig
from nufm.tasks.backbone import TaskBackbone
from nufm.tasks.build import build_task
from nufm.tasks.semseg import SemsegConfig
from nufm.train.loop import seed_everything
from nufm.train.precision import inference_dtype
from nufm.workflows.load import Pretrained

log = logging.getLogger(__name__)


class FeatureCache:
    """Per-point features of a study's events, computed once per feature source and event.

    Each set (``train``: the pool of labelled events, whose first n are the size-n subset;
    ``val``; ``test``) is encoded in order and only as far as a request needs, so the nested
    labelled subsets of growing size reuse the features of the smaller ones, and every seed
    and mode on the same source reuses them too. Events are preprocessed with ``transform``
    and packed into batches of at most ``batch_points`` points; the encoder runs in eval mode
    without gradients, so an event's features do not depend on its batch.

    A train event keeps at most ``train_points_per_event`` of its points (a random subset
    seeded by the event's index, the same for every source; the features are computed on the
    whole event). Val and test events keep all points. ``autocast_dtype`` (the study's bf16
    where native) runs the encoders under autocast, as its networks train and are tested;
    the features are kept in float32.
    """

    def __init__(
        self,
        events: dict[str, list[Event]],
        transform: Transform,
        *,
        batch_points: int,
        train_points_per_event: int | None,
        device: torch.device | str = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.events = events
        self.autocast_dtype = autocast_dtype
        self.transform = transform
        self.batch_points = batch_points
        self.train_points_per_event = train_points_per_event
        self.device = torch.device(device)
        self._backbones: dict[str, nn.Module] = {}
        self._feat: dict[tuple[str, str], list[np.ndarray]] = {}
        self._label: dict[tuple[str, str], list[np.ndarray]] = {}
        self.encoded_events: dict[str, int] = {}
        """Source -> events encoded so far (each event of each set once)."""
        self.seconds: dict[str, float] = {}
        """Source -> seconds spent building its encoder and encoding."""

    def get(
        self, source: str, build: Callable[[], nn.Module], split: str, n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the first ``n`` events (all when None) of ``split``.

        Args:
            source: name of the feature source (the cache key), e.g. ``pretrained``.
            build: makes the source's per-point feature module (``batch -> (N, D)``) on its
                first use.
            split: ``train``, ``val`` or ``test``.
            n: events wanted.

        Returns:
            (features (M, D) float32, segment labels (M,) int64) of the points of those
            events, event after event.
        """
        n = self.encode(source, build, split, n)
        feats, labels = self._feat[(source, split)], self._label[(source, split)]
        return np.concatenate(feats[:n]), np.concatenate(labels[:n])

    def encode(
        self, source: str, build: Callable[[], nn.Module], split: str, n: int | None = None
    ) -> int:
        """Encode the first ``n`` events of ``split`` (all when None) with ``source`` where
        not done yet, without reading them out (arguments as :meth:`get`); returns n."""
        events = self.events[split]
        n = len(events) if n is None else n
        if n > len(events):
            raise ValueError(f"FeatureCache: {n} {split} events asked, {len(events)} held")
        feats = self._feat.setdefault((source, split), [])
        labels = self._label.setdefault((source, split), [])
        have = len(feats)
        if have < n:
            t0 = time.perf_counter()
            if source not in self._backbones:
                self._backbones[source] = build().to(self.device).eval()
            self._encode(self._backbones[source], split, have, n, feats, labels)
            self.encoded_events[source] = self.encoded_events.get(source, 0) + n - have
            self.seconds[source] = self.seconds.get(source, 0.0) + time.perf_counter() - t0
        return n

    def event_sizes(self, split: str) -> np.ndarray:
        """(E,) points kept of each event of ``split`` encoded so far (the most any source
        has encoded; the kept points of an event are the same for every source)."""
        lists = [labels for (_, s), labels in self._label.items() if s == split]
        longest = max(lists, key=len, default=[])
        return np.array([len(y) for y in longest], dtype=np.int64)

    @torch.no_grad()
    def _encode(
        self,
        backbone: nn.Module,
        split: str,
        start: int,
        stop: int,
        feats: list[np.ndarray],
        labels: list[np.ndarray],
    ) -> None:
        """Append the features and labels of events ``start..stop-1`` of ``split``."""
        prepared = (
            (i, self.transform(self.events[split][i], np.random.default_rng((0, i))))
            for i in range(start, stop)
        )
        for chunk in budget_batches(prepared, self.batch_points, size=lambda item: len(item[1])):
            batch = collate([ev for _, ev in chunk]).to(self.device)
            if batch.segment is None:
                raise ValueError("study probe: the events need semantic labels (segment)")
            with inference_autocast(self.device, self.autocast_dtype):
                x = backbone(batch).float().cpu().numpy()  # (N, D)
            y = batch.segment.cpu().numpy()  # (N,)
            ends = batch.offset.cpu().numpy()
            for (i, _), s, e in zip(chunk, np.concatenate([[0], ends[:-1]]), ends, strict=True):
                keep = np.arange(s, e)
                cap = self.train_points_per_event
                if split == "train" and cap is not None and e - s > cap:
                    rng = np.random.default_rng((11, i))
                    keep = s + np.sort(rng.choice(e - s, cap, replace=False))
                feats.append(x[keep])
                labels.append(y[keep].astype(np.int64))


def feature_dtype(cfg: StudyConfig, device: torch.device) -> torch.dtype | None:
    """bf16 when the study's runs train in it (``run.train.bf16``) and ``device`` has native
    bf16 products, else None (full precision)."""
    return inference_dtype(cfg.run.train.bf16, device)


def feature_device(cfg: StudyConfig) -> torch.device:
    """Where the study encodes features: ``cfg.run.train.device`` (``auto``: CUDA if any)."""
    kind = cfg.run.train.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(kind)


def _feature_source(
    cfg: StudyConfig, mode: str, seed: int, pretrained: Pretrained
) -> tuple[str, Callable[[], nn.Module]]:
    """(cache key, builder of the per-point feature module) of a frozen-feature mode: the
    backbone of the task in linear mode, so the features are the ones a ``linear`` run's
    layer sees."""
    task = cfg.run.objective
    assert isinstance(task, SemsegConfig)
    linear = dataclasses.replace(task, mode="linear")
    match mode:
        case "probe":
            enc = pretrained.encoder_config
            if enc is None:
                raise ConfigError(f"study: {pretrained.source} has no task encoder to probe")
            return (
                "pretrained",
                lambda: (
                    build_task(dataclasses.replace(linear, encoder=enc), pretrained.state).backbone
                ),
            )
        case "probe-random":
            enc = pretrained.encoder_config
            if enc is None:
                raise ConfigError(f"study: {pretrained.source} has no task encoder to probe")

            init = cfg.probe.random_encoder_for(seed)

            def random_backbone() -> nn.Module:
                # the encoder a linear-random run of seed `init` starts from: run_finetune
                # seeds, then the task builds its backbone first
                seed_everything(init)
                return TaskBackbone(dataclasses.replace(linear, encoder=enc))

            return f"random-s{init}", random_backbone
        case "probe-geometry" | "gbt-geometry":
            geo = LocalGeometryConfig(ks=cfg.probe.geometry_ks)
            return "geometry", lambda: TaskBackbone(dataclasses.replace(linear, encoder=geo))
        case _:
            raise ValueError(f"study: {mode!r} is not a frozen-feature mode {PROBE_MODES}")


def _mode_sources(
    cfg: StudyConfig, mode: str, seed: int, pretrained: Pretrained
) -> list[tuple[str, Callable[[], nn.Module]]]:
    """The feature sources a frozen-feature mode reads: its own, or for the fused modes the
    pretrained encoder's and the descriptors'."""
    if mode in ("probe-fused", "gbt-fused"):
        return [
            _feature_source(cfg, "probe", seed, pretrained),
            _feature_source(cfg, "probe-geometry", seed, pretrained),
        ]
    return [_feature_source(cfg, mode, seed, pretrained)]


def encode_ahead(
    cfg: StudyConfig,
    jobs: Sequence[tuple[int, str, int]],
    cache: FeatureCache,
    pretrained: Pretrained,
) -> None:
    """Encode in ``cache`` every event the frozen-feature rows among ``jobs`` (size, mode,
    seed) read, so that rows run afterwards in forked processes find all their features in
    the cache they inherit and encode none (the study with ``workers`` > 1)."""
    t0 = time.perf_counter()
    before = dict(cache.encoded_events)
    for n, mode, seed in jobs:
        if mode not in PROBE_MODES:
            continue
        for source, build in _mode_sources(cfg, mode, seed, pretrained):
            for split in ("train", "val", "test"):
                cache.encode(source, build, split, n if split == "train" else None)
    done = {s: k - before.get(s, 0) for s, k in cache.encoded_events.items()}
    if any(done.values()):
        log.info(
            "study: frozen features encoded ahead in %.0f s (events by source: %s)",
            time.perf_counter() - t0,
            ", ".join(f"{s} {k}" for s, k in done.items() if k),
        )


def _pca_reduce(
    sets: dict[str, tuple[np.ndarray, np.ndarray]], dims: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first ``dims`` principal components of every set's features, fitted on at most
    50,000 of the train points (a seeded subsample; labels are not used); 0 = unchanged."""
    x_train = sets["train"][0]
    if dims == 0 or dims >= x_train.shape[1]:
        return sets
    from sklearn.decomposition import PCA  # deferred: scikit-learn is slow to import

    rng = np.random.default_rng(seed)
    fit_rows = rng.choice(len(x_train), min(len(x_train), 50_000), replace=False)
    pca = PCA(dims, random_state=seed).fit(x_train[np.sort(fit_rows)])
    return {k: (pca.transform(x).astype(np.float32), y) for k, (x, y) in sets.items()}


def _mode_sets(
    cfg: StudyConfig,
    mode: str,
    n_train: int,
    seed: int,
    cache: FeatureCache,
    pretrained: Pretrained,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split -> (features (M, D), labels (M,)) a frozen-feature mode fits, selects and scores
    on: one source's features, or for the fused modes the pretrained encoder's (reduced for
    the trees) beside the descriptors."""

    def of(source: str, build: Callable[[], nn.Module]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            split: cache.get(source, build, split, n_train if split == "train" else None)
            for split in ("train", "val", "test")
        }

    sources = [of(*source) for source in _mode_sources(cfg, mode, seed, pretrained)]
    if len(sources) == 1:
        return sources[0]
    encoder, geometry = sources
    if mode == "gbt-fused":
        encoder = _pca_reduce(encoder, cfg.probe.fused_pca_dims, seed)
    out = {}
    for split, (x, y) in encoder.items():
        xg, yg = geometry[split]
        if not np.array_equal(y, yg):  # same events, same kept points: a cache bug if not
            raise RuntimeError(f"study {mode}: {split} labels of the two sources differ")
        out[split] = (np.hstack([x, xg]), y)  # (M, D_enc + D_geo)
    return out


def run_probe_mode(
    cfg: StudyConfig,
    mode: str,
    n_train: int,
    seed: int,
    cache: FeatureCache,
    pretrained: Pretrained,
    run_dir: Path,
) -> tuple[ProbeResult, dict[str, Any]]:
    """One (frozen-feature mode, size, seed) of a study: features from ``cache``, the probe
    fitted on the first ``n_train`` train events, selected on the val events, scored on the
    test events; writes ``run_dir/metrics.json``.

    Returns:
        (the probe result, its ``semantic`` metrics block in the format of
        :func:`nufm.eval.tasks.evaluate_task`).
    """
    task = cfg.run.objective
    ft = cfg.run.finetune
    if not isinstance(task, SemsegConfig) or ft is None:
        raise ConfigError(
            f"study: mode {mode!r} probes per-point semantic classes; the run's task is "
            f"{type(task).__name__}"
        )
    feature_s0 = sum(cache.seconds.values())
    sets = _mode_sets(cfg, mode, n_train, seed, cache, pretrained)
    p = cfg.probe
    C = task.num_classes
    is_gbt = mode in ("gbt-geometry", "gbt-fused")
    if is_gbt:
        gbt = GBTProbeConfig(
            max_iter=p.gbt_max_iter,
            learning_rate=p.gbt_learning_rate,
            max_leaf_nodes=p.gbt_max_leaf_nodes,
            max_train_points=p.gbt_max_train_points,
            # None: this process's torch threads (every core, or a forked worker's share)
            n_threads=p.gbt_threads if p.gbt_threads is not None else torch.get_num_threads(),
            seed=seed,
            ignore_index=task.ignore_index,
        )
        result = run_gbt_probe(gbt, sets["train"], sets["val"], sets["test"], C)
    else:
        linear = LinearProbeConfig(
            learning_rates=p.learning_rates,
            epochs=p.epochs,
            min_steps=p.min_steps,
            batch_size=p.batch_size,
            weight_decay=p.weight_decay,
            class_balanced=True,
            seed=seed,
            ignore_index=task.ignore_index,
        )
        result = run_probe_on_sets(linear, sets["train"], sets["val"], sets["test"], C)
    sem = metrics_report(semantic=result.test, class_names=list(SEGMENT_NAMES[:C]))["semantic"]
    y_test = sets["test"][1]  # (M,) every kept point of the test events, ignored ones too
    labelled = y_test != task.ignore_index
    pred = np.zeros_like(y_test)
    pred[labelled] = result.test_pred  # the probes predict the labelled points, in order
    run_dir.mkdir(parents=True, exist_ok=True)
    save_event_confusion(
        run_dir,
        event_confusions(
            pred, y_test, cache.event_sizes("test"), C, ignore_index=task.ignore_index
        ),
    )
    is_geometry = mode in ("probe-geometry", "gbt-geometry")
    uses_pretrained = mode in ("probe", "probe-fused", "gbt-fused")
    write_metrics_json(
        run_dir / "metrics.json",
        {
            "task": cfg.run.name,
            "mode": mode,
            "num_events": len(cache.events["test"]),
            "semantic": sem,
            "selection": {
                "best": result.best,
                "val_macro_f1": result.val_macro_f1,
                "num_points": result.num_points,
            },
        },
        model={
            "task": cfg.run.name,
            "mode": mode,
            "probe": "gradient-boosted trees" if is_gbt else "bag of logistic regressions",
            "encoder": "LocalGeometryConfig"
            if is_geometry
            else type(pretrained.encoder_config).__name__,
            "descriptors": mode in ("probe-geometry", "gbt-geometry", "probe-fused", "gbt-fused"),
            "feature_dim": int(sets["train"][0].shape[1]),
            "random_encoder": mode == "probe-random",
            "random_encoder_seed": p.random_encoder_for(seed) if mode == "probe-random" else None,
            "pretrained": pretrained.source if uses_pretrained else None,
            "pretrained_step": pretrained.step if uses_pretrained else None,
            "settings": config_to_dict(p),
            "feature_seconds": sum(cache.seconds.values()) - feature_s0,
        },
        data={
            "files": [str(f) for f in ft.data],
            "split_fractions": ft.split_fractions,
            "split_seed": ft.split_seed,
            "n_train": n_train,
            "n_val": len(cache.events["val"]),
            "n_test": len(cache.events["test"]),
        },
        preprocess=pretrained.preprocess.to_dict(),
        seed=seed,
    )
    return result, sem
