"""Classical track finding in a collider TPC, the baseline beside the networks: a Hough
transform of circles through the beam line, and the track-finding scores.

Owns :func:`hough_tracks`, :func:`track_scores` and :func:`evaluate_track_finding`.

* **Hough transform**: a helix from a vertex on the beam line projects to a circle through the
  origin, which the conformal map ``(u, v) = (x, y) / (x^2 + y^2)`` turns into the line
  ``u cos(psi) + v sin(psi) = kappa / 2`` (psi: direction of the circle centre, kappa = 1/R).
  Each hit votes for ``kappa = 2 (u cos psi + v sin psi)`` at every psi bin; the highest cell
  with at least ``min_hits`` votes becomes a track with the hits within one bin of it. Its
  hits are removed and the search repeats. Unassigned hits get -1. The transform ignores z,
  so two tracks with the same transverse helix merge.
* **Scores** (per event): the adjusted Rand index (:func:`nufm.eval.metrics.adjusted_rand_index`,
  random noise hits excluded), the track efficiency (true tracks with at least
  ``min_true_hits`` hits whose hits are at least half in one found track that is itself at
  least 75 % theirs) and the fake rate (found tracks with no true track making 75 % of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nufm.data.event import Event
from nufm.eval.metrics import adjusted_rand_index, instance_efficiency


def hough_tracks(
    coord: np.ndarray,
    n_psi: int = 360,
    n_kappa: int = 120,
    max_kappa: float = 1 / 12.0,
    min_hits: int = 8,
    max_tracks: int = 200,
    z_cut: float = 2.0,
) -> np.ndarray:
    """Track label (N,) int64 of every hit, -1 unassigned.

    Args:
        coord: (N, 3) hit positions, cm, beam along z.
        n_psi: bins of the circle-centre direction over [0, 2 pi).
        n_kappa: bins of the signed curvature over [-max_kappa, max_kappa].
        max_kappa: 1/cm, the largest curvature searched (R = 12 cm: pT 0.05 GeV/c at 1.4 T).
        min_hits: votes a cell needs to become a track.
        max_tracks: stop after this many tracks.
        z_cut: cm; a track keeps the cell's hits within this of one straight line in
            (arc length, z), so tracks of the same circle from different vertices split.
    """
    n = len(coord)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    r2 = np.maximum(coord[:, 0] ** 2 + coord[:, 1] ** 2, 1e-6)
    u, v = coord[:, 0] / r2, coord[:, 1] / r2
    psi = (np.arange(n_psi) + 0.5) * 2 * math.pi / n_psi
    kappa = 2 * (u[:, None] * np.cos(psi) + v[:, None] * np.sin(psi))  # (N, n_psi)
    k_bin = np.floor((kappa + max_kappa) / (2 * max_kappa) * n_kappa).astype(np.int64)
    inside = (k_bin >= 0) & (k_bin < n_kappa)
    free = np.ones(n, bool)
    track = 0
    for _ in range(4 * max_tracks):
        if track >= max_tracks:
            break
        votes = np.zeros((n_psi, n_kappa), np.int64)
        rows, cols = np.nonzero(inside & free[:, None])
        np.add.at(votes, (cols, k_bin[rows, cols]), 1)
        best = int(votes.argmax())
        p, k = divmod(best, n_kappa)
        if votes[p, k] < min_hits:
            break
        near = free & inside[:, p] & (np.abs(k_bin[:, p] - k) <= 1)
        near &= _z_consistent(coord, near, (k + 0.5) / n_kappa * 2 * max_kappa - max_kappa, z_cut)
        if near.sum() < min_hits:  # the cell's hits belong to several tracks along z
            inside[near | (inside[:, p] & (np.abs(k_bin[:, p] - k) <= 1) & free), p] = False
            continue
        labels[near] = track
        free &= ~near
        track += 1
    return labels


def _z_consistent(coord: np.ndarray, near: np.ndarray, kappa: float, z_cut: float) -> np.ndarray:
    """(N,) bool: the ``near`` hits within ``z_cut`` of the line z = z0 + t * s fitted to the
    largest consistent subset (s: transverse arc length from the beam line)."""
    idx = np.nonzero(near)[0]
    out = np.zeros(len(coord), bool)
    if len(idx) < 3:
        out[idx] = True
        return out
    r = np.hypot(coord[idx, 0], coord[idx, 1])
    R = 1 / max(abs(kappa), 1e-4)
    s = 2 * R * np.arcsin(np.clip(r / (2 * R), 0, 1))
    z = coord[idx, 2]
    best = np.zeros(len(idx), bool)
    # candidate lines through pairs of hits (inner and outer thirds), keep the best supported
    order = np.argsort(s)
    inner, outer = order[: max(1, len(order) // 3)], order[-max(1, len(order) // 3) :]
    for i in inner[:: max(1, len(inner) // 6)]:
        for j in outer[:: max(1, len(outer) // 6)]:
            if s[j] - s[i] < 1.0:
                continue
            t = (z[j] - z[i]) / (s[j] - s[i])
            ok = np.abs(z - (z[i] + t * (s - s[i]))) < z_cut
            if ok.sum() > best.sum():
                best = ok
    out[idx[best]] = True
    return out


def track_scores(
    pred: np.ndarray, truth: np.ndarray, min_true_hits: int = 5
) -> tuple[float, float, float]:
    """(ARI, efficiency, fake rate) of one event; truth -1 (random noise) is left out of the
    ARI (:func:`nufm.eval.metrics.instance_efficiency` for the other two)."""
    keep = truth >= 0
    ari = adjusted_rand_index(pred[keep], truth[keep])
    efficiency, fake_rate = instance_efficiency(pred, truth, min_true_hits)
    return ari, efficiency, fake_rate


def evaluate_track_finding(events: Iterable[Event], **hough) -> dict[str, float]:
    """Mean ARI, efficiency and fake rate of :func:`hough_tracks` over labelled events."""
    scores = []
    for ev in events:
        if ev.instance is None:
            raise ValueError(f"{ev.where}: track finding needs the true track ids (instance)")
        scores.append(track_scores(hough_tracks(ev.coord, **hough), ev.instance))
    s = np.asarray(scores, float)
    return {
        "ari": float(np.nanmean(s[:, 0])),
        "efficiency": float(np.nanmean(s[:, 1])),
        "fake_rate": float(np.nanmean(s[:, 2])),
        "n_events": len(scores),
    }
