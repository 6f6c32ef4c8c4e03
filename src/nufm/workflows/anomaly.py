"""Anomaly scores from event embeddings, and a planted-anomaly study that measures them.

Two scores, higher = more unusual:

* ``event``: mean distance of a query's pooled ``[mean, max]`` embedding to its k nearest
  *reference* (normal) embeddings, the kNN-distance detector (Ramaswamy et al., SIGMOD 2000;
  Angiulli & Pizzuti 2002), as used on frozen self-supervised features by e.g. Sehwag et al.,
  arXiv:2103.12051 (SSD). Sees whole-event changes; a local pathology is averaged away.
* ``token``: every token of the query gets the distance to its nearest token in a memory bank
  of reference tokens; the event score is the mean of its largest ``top_fraction`` token
  distances (PatchCore, Roth et al., arXiv:2106.08265, with point-cloud tokens as patches).
  Sees local pathologies such as a noise burst (measured in docs/using_the_encoder.md), and
  tells which tokens are odd.

Planted-anomaly study: simulate normal events (:mod:`nufm.sim`), corrupt a subset with a
detector pathology, embed everything with the pretrained encoder and report the ROC AUC of the
score for "corrupted vs not". The pathologies are explicit functions on :class:`Event` that
keep every per-point field aligned:

* :func:`remove_slab` ("dead_region"): every point inside a slab (default 30 cm thick, through
  the event's energy-weighted centre, perpendicular to a random axis) is removed, as a dead
  or unpowered detector region would.
* :func:`add_noise_burst` ("noise_burst"): ``n`` low-energy hits uniformly in a cube (default
  30 cm) around a random point of the event, labelled as noise (segment -1, pid 5 "none",
  instance -1, interaction -1).

This file owns :class:`CorruptionConfig`, :class:`AnomalyResult`, :func:`remove_slab`,
:func:`add_noise_burst`, :func:`corrupt`, :func:`anomaly_scores`, :func:`token_anomaly_scores`,
:class:`PlantedEvents`, :func:`plant_and_embed`, :func:`score_planted`,
:func:`planted_anomaly_study`, :func:`anomaly_figure` and :func:`corruption_figure`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nufm.data.event import Event
from nufm.data.lartpc import PID_NAMES, VOLUME_SIZE, VOXEL_SIZE_CM
from nufm.errors import ConfigError
from nufm.eval.retrieval import knn_anomaly_score, roc_auc
from nufm.workflows.embed import Embeddings, embed_events
from nufm.workflows.load import Pretrained

log = logging.getLogger(__name__)

AnomalyKind = Literal["dead_region", "noise_burst"]
"""The planted detector pathologies."""
ScoreKind = Literal["event", "token"]
"""Which anomaly score (module docstring)."""
NOISE_PID = PID_NAMES.index("none")
"""pid of noise hits (5, "none")."""


@dataclass(frozen=True, kw_only=True)
class CorruptionConfig:
    """Sizes of the planted anomalies."""

    slab_width_cm: float = 30.0
    """dead_region: thickness of the removed slab, cm."""
    noise_points: int = 2000
    """noise_burst: hits added per event."""
    noise_box_cm: float = 30.0
    """noise_burst: side of the cube the hits are drawn in, cm."""
    noise_energy_mev: tuple[float, float] = (0.2, 1.0)
    """noise_burst: hit energies are uniform in this range, MeV (keep the low end above the
    preprocessing energy threshold, 0.13 MeV by default, or the hits are dropped)."""

    def __post_init__(self) -> None:
        if self.slab_width_cm <= 0 or self.noise_box_cm <= 0:
            raise ConfigError(
                f"CorruptionConfig: slab_width_cm and noise_box_cm must be > 0, got "
                f"{self.slab_width_cm}, {self.noise_box_cm}"
            )
        if self.noise_points < 1:
            raise ConfigError(
                f"CorruptionConfig.noise_points must be >= 1, got {self.noise_points}"
            )
        lo, hi = self.noise_energy_mev
        if not 0 <= lo <= hi:
            raise ConfigError(
                f"CorruptionConfig.noise_energy_mev must be 0 <= lo <= hi, got "
                f"{self.noise_energy_mev}"
            )


@dataclass
class AnomalyResult:
    """Outcome of :func:`planted_anomaly_study`.

    Attributes:
        scores: (Q,) float64 anomaly score of each query event (higher = more unusual).
        is_anomaly: (Q,) bool, True = the event was corrupted.
        auc: ROC AUC of ``scores`` for ``is_anomaly`` (0.5 = chance, 1 = perfect).
        kind: the pathology planted.
        k: neighbours averaged by the event score.
        score: "event" or "token" (module docstring).
        n_reference: reference (normal) events embedded.
        model_source: the pretrained model.
        examples: (original, corrupted) raw event pairs, for :func:`corruption_figure`.
    """

    scores: np.ndarray
    is_anomaly: np.ndarray
    auc: float
    kind: AnomalyKind
    k: int
    n_reference: int
    model_source: str
    score: ScoreKind = "event"
    examples: list[tuple[Event, Event]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# corruptions
# --------------------------------------------------------------------------------------------


def energy_centre(event: Event) -> np.ndarray:
    """(3,) float64 energy-weighted mean coordinate of ``event`` (its units)."""
    w = np.clip(event.energy.astype(np.float64), 0.0, None)
    if w.sum() <= 0:
        return event.coord.astype(np.float64).mean(0)
    return (event.coord.astype(np.float64) * w[:, None]).sum(0) / w.sum()


def remove_slab(event: Event, axis: int, center: float, width: float) -> Event:
    """Remove every point with ``|coord[:, axis] - center| < width / 2`` (a dead region).

    Args:
        event: raw event.
        axis: 0, 1 or 2 (x, y, z).
        center: slab centre along ``axis``, units of ``event.coord`` (voxels for raw events).
        width: slab thickness, same units.

    Returns:
        The event without those points (all per-point fields indexed together).
    """
    if axis not in (0, 1, 2) or width <= 0:
        raise ValueError(f"remove_slab: need axis in 0..2 and width > 0, got {axis}, {width}")
    is_inside = np.abs(event.coord[:, axis].astype(np.float64) - center) < width / 2  # (N,)
    return event.select(~is_inside)


def add_noise_burst(
    event: Event,
    n_points: int,
    center: np.ndarray,
    size: float,
    rng: np.random.Generator,
    energy_range: tuple[float, float] = (0.2, 1.0),
) -> Event:
    """Append ``n_points`` noise hits uniformly in the cube ``center +- size / 2``.

    Coordinates are whole voxels clipped to the detector volume [0, 768); energies uniform in
    ``energy_range`` MeV; labels segment -1, pid 5 ("none"), instance -1, interaction -1.

    Args:
        event: raw event (voxel coordinates, MeV), without model features.
        n_points: hits added.
        center: (3,) cube centre, voxels.
        size: cube side, voxels.
        rng: random generator (positions and energies).
        energy_range: (low, high) MeV.

    Returns:
        A new event: the original N points first, then the n noise points.
    """
    if event.feat is not None:
        raise ValueError(
            f"{event.where}: add_noise_burst works on raw events (feat must be "
            "None, i.e. before preprocessing)"
        )
    if n_points < 1 or size <= 0:
        raise ValueError(
            f"add_noise_burst: need n_points >= 1 and size > 0, got {n_points}, {size}"
        )
    c = np.asarray(center, np.float64).reshape(3)
    lo = np.clip(c - size / 2, 0, VOLUME_SIZE - 1)  # (3,)
    hi = np.clip(c + size / 2, 0, VOLUME_SIZE - 1)  # (3,)
    coord = np.floor(rng.uniform(lo, hi, size=(n_points, 3))).astype(event.coord.dtype)
    coord = np.clip(coord, np.ceil(lo), np.floor(hi))  # (n, 3), whole voxels inside the cube
    energy = rng.uniform(*energy_range, size=n_points).astype(event.energy.dtype)  # (n,)
    noise_label = {"segment": -1, "pid": NOISE_PID, "instance": -1, "interaction": -1}
    updates: dict[str, np.ndarray] = {
        "coord": np.concatenate([event.coord, coord]),
        "energy": np.concatenate([event.energy, energy]),
    }
    for name, value in noise_label.items():
        arr = getattr(event, name)
        if arr is not None:
            updates[name] = np.concatenate([arr, np.full(n_points, value, arr.dtype)])
    if event.stream is not None:
        updates["stream"] = np.concatenate([event.stream, np.zeros(n_points, event.stream.dtype)])
    return event.with_fields(**updates)


def corrupt(
    event: Event,
    kind: AnomalyKind,
    rng: np.random.Generator,
    cfg: CorruptionConfig = CorruptionConfig(),
) -> Event:
    """Plant one pathology on a raw event (voxel coordinates), placement drawn from ``rng``.

    ``dead_region``: a ``cfg.slab_width_cm`` slab through the energy-weighted centre,
    perpendicular to a random axis. ``noise_burst``: ``cfg.noise_points`` hits in a
    ``cfg.noise_box_cm`` cube centred on a random point of the event.
    """
    match kind:
        case "dead_region":
            axis = int(rng.integers(3))
            return remove_slab(
                event, axis, float(energy_centre(event)[axis]), cfg.slab_width_cm / VOXEL_SIZE_CM
            )
        case "noise_burst":
            centre = event.coord[int(rng.integers(len(event)))]
            return add_noise_burst(
                event,
                cfg.noise_points,
                centre,
                cfg.noise_box_cm / VOXEL_SIZE_CM,
                rng,
                cfg.noise_energy_mev,
            )
        case _:
            raise ValueError(f"corrupt: kind must be 'dead_region' or 'noise_burst', got {kind!r}")


# --------------------------------------------------------------------------------------------
# scores and the study
# --------------------------------------------------------------------------------------------


def anomaly_scores(
    reference_emb: np.ndarray, query_emb: np.ndarray, k: int = 5, standardize: bool = True
) -> np.ndarray:
    """kNN anomaly score of each query: mean Euclidean distance to its ``k`` nearest reference
    embeddings.

    Args:
        reference_emb: (R, D) embeddings of normal events.
        query_emb: (Q, D) embeddings to score.
        k: neighbours averaged, at most R.
        standardize: True = z-score every dimension with the reference mean and standard
            deviation first (pooled features have very different scales per dimension);
            False = use L2-normalised embeddings.

    Returns:
        (Q,) float64 scores, higher = more unusual.
    """
    ref = np.asarray(reference_emb, np.float64)  # (R, D)
    qry = np.asarray(query_emb, np.float64)  # (Q, D)
    if ref.ndim != 2 or qry.ndim != 2 or ref.shape[1] != qry.shape[1]:
        raise ValueError(
            f"anomaly_scores: need (R, D) and (Q, D) embeddings, got {ref.shape} and {qry.shape}"
        )
    if not standardize:
        return knn_anomaly_score(ref, qry, k, normalize=True, metric="euclidean")
    mean, std = ref.mean(0), ref.std(0) + 1e-6  # (D,)
    return knn_anomaly_score(
        (ref - mean) / std, (qry - mean) / std, k, normalize=False, metric="euclidean"
    )


def token_anomaly_scores(
    reference_tokens: np.ndarray,
    query_tokens: np.ndarray,
    query_offset: np.ndarray,
    top_fraction: float = 0.1,
    bank_size: int = 30_000,
    seed: int = 0,
) -> np.ndarray:
    """PatchCore-style event scores from token features (module docstring).

    Args:
        reference_tokens: (R, D) token features of normal events (all events packed).
        query_tokens: (T, D) token features of the query events, packed in event order.
        query_offset: (Q,) int64 exclusive end row of each query event in ``query_tokens``.
        top_fraction: fraction of each event's tokens (at least one) whose nearest-neighbour
            distances are averaged.
        bank_size: reference tokens kept in the memory bank (random subset when R is larger).
        seed: seed of that subset.

    Returns:
        (Q,) float64 scores (0 for an event without tokens); features are z-scored with the
        reference tokens' mean and std.
    """
    ref = np.asarray(reference_tokens, np.float64)  # (R, D)
    qry = np.asarray(query_tokens, np.float64)  # (T, D)
    ends = np.asarray(query_offset, np.int64)  # (Q,)
    if ref.ndim != 2 or qry.ndim != 2 or ref.shape[1] != qry.shape[1] or len(ref) == 0:
        raise ValueError(
            f"token_anomaly_scores: need (R>0, D) and (T, D) token features, got "
            f"{ref.shape} and {qry.shape}"
        )
    if ends.size and (np.any(np.diff(ends) < 0) or ends[-1] != len(qry) or ends[0] < 0):
        raise ValueError(
            f"token_anomaly_scores: query_offset must rise to {len(qry)}, got {ends[:5]}..."
        )
    if not 0.0 < top_fraction <= 1.0 or bank_size < 1:
        raise ValueError(
            f"token_anomaly_scores: need 0 < top_fraction <= 1 and bank_size >= 1,"
            f" got {top_fraction}, {bank_size}"
        )
    mean, std = ref.mean(0), ref.std(0) + 1e-6  # (D,)
    if len(ref) > bank_size:
        ref = ref[np.random.default_rng(seed).choice(len(ref), bank_size, replace=False)]
    dist = nearest_distance((qry - mean) / std, (ref - mean) / std)  # (T,)
    starts = np.concatenate([[0], ends[:-1]])
    scores = np.zeros(len(ends), np.float64)
    for i, (a, b) in enumerate(zip(starts, ends, strict=False)):
        if b > a:
            d = np.sort(dist[a:b])
            scores[i] = d[-max(1, int(np.ceil(top_fraction * (b - a)))) :].mean()
    return scores


def nearest_distance(query: np.ndarray, bank: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance of every query row to its nearest bank row, exact (float64).

    Brute force by matrix products in chunks of ``chunk`` queries: in the tens to hundreds of
    dimensions of token features a k-d tree visits nearly every leaf and was minutes slower.

    Args:
        query: (T, D) float; bank: (R, D) float, R >= 1.

    Returns:
        (T,) float64 distances.
    """
    q = torch.as_tensor(np.asarray(query, np.float64))  # (T, D)
    r = torch.as_tensor(np.asarray(bank, np.float64))  # (R, D)
    r2 = r.square().sum(1)  # (R,)
    out = torch.empty(q.shape[0], dtype=torch.float64)
    for start in range(0, q.shape[0], chunk):
        qc = q[start : start + chunk]  # (c, D)
        d2 = qc.square().sum(1, keepdim=True) + r2 - 2.0 * qc @ r.T  # (c, R)
        out[start : start + chunk] = d2.min(1).values.clamp(min=0).sqrt()
    return out.numpy()


@dataclass
class PlantedEvents:
    """Simulated reference and query events of a planted-anomaly study, embedded once.

    Attributes:
        reference: embeddings of the normal reference events.
        queries: embeddings of the query events (those that could be embedded).
        is_anomaly: (Q',) bool per embedded query, True = corrupted.
        kind: the pathology planted.
        seed: the study's seed (also seeds the token bank subset).
        model_source: the pretrained model.
        examples: (original, corrupted) raw event pairs, for :func:`corruption_figure`.
    """

    reference: Embeddings
    queries: Embeddings
    is_anomaly: np.ndarray
    kind: AnomalyKind
    seed: int
    model_source: str
    examples: list[tuple[Event, Event]] = field(default_factory=list)


def plant_and_embed(
    pretrained: Pretrained,
    n_reference: int = 200,
    n_normal: int = 100,
    n_anomalous: int = 100,
    kind: AnomalyKind = "noise_burst",
    seed: int = 0,
    *,
    per_token: bool = True,
    cfg: CorruptionConfig = CorruptionConfig(),
    batch_points: int = 200_000,
    device: str = "cpu",
) -> PlantedEvents:
    """Simulate, corrupt and embed the events of a planted-anomaly study (no scoring).

    Reference events are simulator stream ``seed``; query events are stream ``seed + 1``,
    of which the last ``n_anomalous`` are corrupted with :func:`corrupt` (generator seeded by
    ``seed``). Queries the encoder cannot embed (no point above threshold left) are dropped.
    ``per_token`` keeps the token features the token score needs (token encoders).
    """
    from nufm.sim import generate_events

    if min(n_reference, n_normal, n_anomalous) < 1:
        raise ValueError(
            f"plant_and_embed: need >= 1 event of each kind, got {n_reference}, "
            f"{n_normal}, {n_anomalous}"
        )
    reference = list(generate_events(n_reference, seed))
    queries = list(generate_events(n_normal + n_anomalous, seed + 1))
    rng = np.random.default_rng(seed)
    originals = queries[n_normal:]
    queries[n_normal:] = [corrupt(ev, kind, rng, cfg) for ev in originals]
    is_anomaly = np.arange(len(queries)) >= n_normal  # (Q,)
    ref_emb = embed_events(
        pretrained, reference, batch_points=batch_points, device=device, per_token=per_token
    )
    query_emb = embed_events(
        pretrained, queries, batch_points=batch_points, device=device, per_token=per_token
    )
    examples = [(originals[i], queries[n_normal + i]) for i in range(min(2, n_anomalous))]
    return PlantedEvents(
        reference=ref_emb,
        queries=query_emb,
        is_anomaly=is_anomaly[query_emb.event_id],
        kind=kind,
        seed=seed,
        model_source=pretrained.source,
        examples=examples,
    )


def score_planted(
    planted: PlantedEvents,
    score: ScoreKind = "token",
    *,
    k: int = 5,
    standardize: bool = True,
    top_fraction: float = 0.1,
) -> AnomalyResult:
    """Score the queries of :func:`plant_and_embed`: the event-level kNN score (``k``,
    ``standardize``) or the token-level score (``top_fraction``; needs ``per_token``)."""
    ref_emb, query_emb = planted.reference, planted.queries
    if not 1 <= k <= len(ref_emb):
        raise ValueError(
            f"score_planted: need 1 <= k <= {len(ref_emb)} reference events, got k={k}"
        )
    match score:
        case "event":
            scores = anomaly_scores(ref_emb.event, query_emb.event, k, standardize)  # (Q',)
        case "token":
            if ref_emb.token is None or query_emb.token is None or query_emb.token_offset is None:
                raise ValueError(
                    f"{planted.model_source}: score='token' needs token features "
                    "(a token encoder, embedded with per_token=True); use "
                    "score='event'"
                )
            scores = token_anomaly_scores(
                ref_emb.token,
                query_emb.token,
                query_emb.token_offset,
                top_fraction,
                seed=planted.seed,
            )
        case _:
            raise ValueError(f"score_planted: score must be 'event' or 'token', got {score!r}")
    labels = planted.is_anomaly
    auc = roc_auc(scores, labels)
    log.info(
        "planted %s: %s-score AUC %.3f (%d normal, %d anomalous queries; %d reference)",
        planted.kind,
        score,
        auc,
        int((~labels).sum()),
        int(labels.sum()),
        len(ref_emb),
    )
    return AnomalyResult(
        scores=scores,
        is_anomaly=labels,
        auc=auc,
        kind=planted.kind,
        k=k,
        n_reference=len(ref_emb),
        model_source=planted.model_source,
        score=score,
        examples=planted.examples,
    )


@dataclass(frozen=True, kw_only=True)
class AnomalyStudyConfig:
    """A planted-anomaly study (``nufm anomaly``): which pathology, how many events, which score."""

    kind: AnomalyKind = "noise_burst"
    """The planted pathology."""
    score: ScoreKind = "token"
    """token (local, PatchCore-style) or event (pooled embedding kNN)."""
    n_reference: int = 200
    """Normal reference events."""
    n_normal: int = 100
    """Normal query events."""
    n_anomalous: int = 100
    """Corrupted query events."""
    k: int = 5
    """event score: nearest reference events averaged."""
    top_fraction: float = 0.1
    """token score: fraction of an event's tokens (largest distances) averaged."""
    seed: int = 0
    """Simulation seed (reference stream seed, queries seed + 1)."""
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    """Sizes of the planted anomalies."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""


def run_anomaly_study(pretrained: Pretrained, cfg: AnomalyStudyConfig) -> AnomalyResult:
    """:func:`planted_anomaly_study` with the settings of ``cfg``."""
    return planted_anomaly_study(
        pretrained,
        cfg.n_reference,
        cfg.n_normal,
        cfg.n_anomalous,
        cfg.kind,
        cfg.seed,
        k=cfg.k,
        score=cfg.score,
        top_fraction=cfg.top_fraction,
        cfg=cfg.corruption,
        device=cfg.device,
    )


def planted_anomaly_study(
    pretrained: Pretrained,
    n_reference: int = 200,
    n_normal: int = 100,
    n_anomalous: int = 100,
    kind: AnomalyKind = "noise_burst",
    seed: int = 0,
    *,
    k: int = 5,
    standardize: bool = True,
    score: ScoreKind = "token",
    top_fraction: float = 0.1,
    cfg: CorruptionConfig = CorruptionConfig(),
    batch_points: int = 200_000,
    device: str = "cpu",
) -> AnomalyResult:
    """Simulate, corrupt, embed and score: the ROC AUC of anomaly scores for planted anomalies
    (:func:`plant_and_embed` then :func:`score_planted`; to compare scores on the same events,
    call those two directly).

    Returns:
        The :class:`AnomalyResult` (scores, labels, AUC, two example pairs).
    """
    if not 1 <= k <= n_reference:
        raise ConfigError(
            f"planted_anomaly_study: need 1 <= k <= n_reference, got k={k}, "
            f"n_reference={n_reference}"
        )
    planted = plant_and_embed(
        pretrained,
        n_reference,
        n_normal,
        n_anomalous,
        kind,
        seed,
        per_token=score == "token",
        cfg=cfg,
        batch_points=batch_points,
        device=device,
    )
    return score_planted(planted, score, k=k, standardize=standardize, top_fraction=top_fraction)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def anomaly_figure(result: AnomalyResult) -> Figure:
    """Score histograms of normal and anomalous queries (AUC in the title) and the ROC curve."""
    from sklearn.metrics import roc_curve

    s, pos = result.scores, result.is_anomaly
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_h, ax_r = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    bins = np.histogram_bin_edges(s, bins=30)
    ax_h.hist(s[~pos], bins=bins, alpha=0.6, color="C0", label=f"normal ({int((~pos).sum())})")
    ax_h.hist(s[pos], bins=bins, alpha=0.6, color="C3", label=f"{result.kind} ({int(pos.sum())})")
    ax_h.set_xlabel(
        f"anomaly score (mean distance to {result.k} nearest reference events)"
        if result.score == "event"
        else "anomaly score (mean of the largest token distances to reference tokens)"
    )
    ax_h.set_ylabel("events")
    ax_h.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_h.legend()
    fpr, tpr, _ = roc_curve(pos, s)
    ax_r.plot(fpr, tpr, color="C3", label=f"AUC = {result.auc:.3f}")
    ax_r.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax_r.set_xlabel("false positive rate (normal flagged)")
    ax_r.set_ylabel("true positive rate (anomaly flagged)")
    ax_r.set_aspect("equal")
    ax_r.legend(loc="lower right")
    fig.suptitle(
        f"Planted {result.kind}, {result.score} score: ROC AUC = {result.auc:.3f} "
        f"({result.n_reference} reference events)"
    )
    return fig


def corruption_figure(result: AnomalyResult, color: str = "segment") -> Figure:
    """The example events of a study before and after corruption, side by side."""
    from nufm.viz.display import display_events_grid

    if not result.examples:
        raise ValueError("corruption_figure: the result holds no example events")
    events, titles = [], []
    for before, after in result.examples:
        events += [before, after]
        titles += [
            f"event {before.event_id}: original",
            f"event {before.event_id}: {result.kind} ({len(after) - len(before):+d} pts)",
        ]
    return display_events_grid(events, color=color, titles=titles)
