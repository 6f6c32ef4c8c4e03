"""How much a classification score moves with the test events: the test-event bootstrap.

A study scores every row on the same held-out events (the demo: 100). A difference of 0.01
macro F1 between two rows can come from which events happened to be drawn as test events as
much as from the rows themselves. The bootstrap (Efron 1979) measures that: draw the test
events again with replacement, many times, and score every row on each draw from its own
per-event confusion matrices. Points of one event are not independent (one event's shower
is one decision of the network), so the unit resampled is the event, never the point.

Two uses:

* **The error of a score.** The spread of a row's score over the draws is its standard error
  from the finite test set (:func:`bootstrap_macro_f1`, std over the draws).
* **A paired comparison.** Every row is scored on the *same* draw, so the difference of two
  rows on a draw cancels what the draw does to both (hard events are hard for every row).
  The percentile interval of the differences says whether one row is above the other beyond
  what the test events can tell (:func:`percentile_interval`).

The macro rule is :mod:`nufm.eval.metrics`'s, applied to each draw's summed counts: a class
takes part iff it occurs in the targets or the predictions of the draw. Without resampling
(every event once) the score is exactly that of
:class:`~nufm.eval.metrics.ConfusionMatrix` on the same points.

Owns :func:`event_confusions`, :func:`confusions_by_event`, :func:`macro_f1_of_counts`,
:func:`check_same_events`, :func:`bootstrap_weights`, :func:`bootstrap_macro_f1`,
:func:`percentile_interval`, :func:`paired_difference` and the per-event counts file of a run
(:func:`event_confusion_path`, :func:`save_event_confusion`, :func:`write_event_confusion`,
:func:`load_event_confusion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nufm.atomic import atomic_output
from nufm.eval.metrics import ArrayLike, to_numpy

EVENT_CONFUSION_FILE = "test_event_confusion.npy"
"""A study run's per-event confusion matrices on its test events, ``(E, C, C)`` int64, rows
target, columns prediction, events in the study's test order."""


def event_confusion_path(where: str | Path) -> Path:
    """The per-event counts file of ``where``: itself if it ends in ``.npy``, else the
    directory's :data:`EVENT_CONFUSION_FILE`."""
    where = Path(where)
    return where if where.suffix == ".npy" else where / EVENT_CONFUSION_FILE


def save_event_confusion(where: str | Path, confusion: np.ndarray) -> Path:
    """Write ``confusion`` (E, C, C) to :func:`event_confusion_path` of ``where`` (a run
    directory, or a ``.npy`` path), atomically; returns the path."""
    arr = np.asarray(confusion)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.dtype.kind not in "iu":
        raise ValueError(f"save_event_confusion: want (E, C, C) integer counts, got {arr.shape}")
    path = event_confusion_path(where)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr.astype(np.int64))
    return path


def write_event_confusion(where: str | Path, per_event: Sequence[np.ndarray]) -> np.ndarray | None:
    """Save the per-event counts gathered batch by batch (``per_event``: arrays (events, C,
    C), from :func:`nufm.eval.tasks.evaluate_task`) at ``where``, or, when there are none (a
    regression or clustering), remove any left there by an earlier run, so that no reader
    takes stale counts for this run's. Returns the counts (E, C, C), or None."""
    if not per_event:
        event_confusion_path(where).unlink(missing_ok=True)
        return None
    counts = np.concatenate(per_event)
    save_event_confusion(where, counts)
    return counts


def load_event_confusion(where: str | Path) -> np.ndarray | None:
    """The per-event counts at :func:`event_confusion_path` of ``where``
    (:func:`save_event_confusion`), None if there are none."""
    path = event_confusion_path(where)
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy file ({err})") from err
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"{path}: want (E, C, C) per-event counts, found shape {arr.shape}")
    return arr


def event_confusions(
    pred: ArrayLike,
    target: ArrayLike,
    sizes: ArrayLike,
    num_classes: int,
    *,
    ignore_index: int = -1,
) -> np.ndarray:
    """One confusion matrix per event, of items (points, particles) stored event after event.

    Args:
        pred: (N,) int predicted class of every item, events one after another.
        target: (N,) int true class; ``ignore_index`` items are not counted.
        sizes: (E,) items of each event (sum N); an event may have none.
        num_classes: C.
        ignore_index: target value of the items left out.

    Returns:
        (E, C, C) int64 counts, rows target, columns prediction.

    Raises:
        ValueError: the sizes do not add up to the items, or a class id outside [0, C).
    """
    n = to_numpy(sizes).astype(np.int64).ravel()
    size = to_numpy(pred).size
    if (n < 0).any() or int(n.sum()) != size:
        raise ValueError(
            f"event_confusions: the event sizes add up to {int(n.sum())}, the points are {size}"
        )
    event = np.repeat(np.arange(n.size), n)  # (N,) the event of each item
    return confusions_by_event(pred, target, event, n.size, num_classes, ignore_index=ignore_index)


def confusions_by_event(
    pred: ArrayLike,
    target: ArrayLike,
    event: ArrayLike,
    num_events: int,
    num_classes: int,
    *,
    ignore_index: int = -1,
) -> np.ndarray:
    """One confusion matrix per event, of items in any order, each with its event index
    (``event`` (N,) in [0, ``num_events``)); otherwise as :func:`event_confusions`."""
    p = to_numpy(pred).astype(np.int64).ravel()
    t = to_numpy(target).astype(np.int64).ravel()
    e = to_numpy(event).astype(np.int64).ravel()
    C = num_classes
    if not p.shape == t.shape == e.shape:
        raise ValueError(
            f"event_confusions: pred {p.shape}, target {t.shape} and events {e.shape} differ"
        )
    if e.size and (e.min() < 0 or e.max() >= num_events):
        raise ValueError(f"event_confusions: event indices outside [0, {num_events})")
    kept = t != ignore_index
    p, t, e = p[kept], t[kept], e[kept]
    for name, v in (("target", t), ("pred", p)):
        if v.size and (v.min() < 0 or v.max() >= C):
            raise ValueError(f"event_confusions: {name} has class ids outside [0, {C})")
    flat = np.bincount((e * C + t) * C + p, minlength=num_events * C * C)
    return flat.reshape(num_events, C, C)


def check_same_events(confusions: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Check that per-event counts come from the same test events and points: the same number
    of events and, event by event, the same true class of every counted item (the rows of
    each (C, C) matrix sum to it). A paired comparison of anything else would be wrong.

    Raises:
        ValueError: the first pair that differs, named by ``names``, and where.
    """
    if len(confusions) != len(names):
        raise ValueError(f"check_same_events: {len(confusions)} arrays, {len(names)} names")
    if not confusions:
        return
    first = np.asarray(confusions[0])
    support = first.sum(-1)  # (E, C) items of each true class in each event
    for c, name in zip(confusions[1:], names[1:], strict=True):
        c = np.asarray(c)
        if c.shape != first.shape:
            raise ValueError(
                f"{name}: per-event counts of shape {c.shape} (events, classes, classes), "
                f"{names[0]} has {first.shape}: not the same test events or classes"
            )
        other = c.sum(-1)
        if not np.array_equal(other, support):
            e = int(np.flatnonzero((other != support).any(-1))[0])
            raise ValueError(
                f"{name} was scored on other test events or points than {names[0]}: test "
                f"event {e} has true-class counts {other[e].tolist()} against "
                f"{support[e].tolist()}"
            )


def macro_f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Macro F1 of confusion matrices ``(..., C, C)`` (rows target), the rule of
    :mod:`nufm.eval.metrics`: the mean over classes present in target or prediction of
    2 TP / (2 TP + FP + FN); NaN where no class is present."""
    counts = np.asarray(counts, dtype=np.float64)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)  # (..., C)
    support, predicted = counts.sum(-1), counts.sum(-2)  # (..., C) each
    den = support + predicted  # = 2 TP + FP + FN
    present = den > 0
    f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=present)
    n_present = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, f1.sum(-1) / n_present, np.nan)


def bootstrap_weights(num_events: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, E) int64: how often each event is drawn in each of ``n_boot`` draws of E events
    with replacement (a multinomial with equal probabilities), seeded."""
    if num_events < 1 or n_boot < 1:
        raise ValueError(f"bootstrap_weights: {num_events} events, {n_boot} draws")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_events, np.full(num_events, 1.0 / num_events), size=n_boot)


def bootstrap_macro_f1(
    confusions: Sequence[np.ndarray] | np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Macro F1 of each row on each draw.

    Args:
        confusions: R arrays (E, C, C) of per-event counts (:func:`event_confusions`), the
            same E test events in the same order for every row.
        weights: (B, E) draws (:func:`bootstrap_weights`); ones for the plain score.

    Returns:
        (B, R) macro F1.
    """
    stack = np.stack([np.asarray(c, dtype=np.float64) for c in confusions])  # (R, E, C, C)
    if stack.ndim != 4 or stack.shape[-1] != stack.shape[-2]:
        raise ValueError(f"bootstrap_macro_f1: confusions must be (E, C, C), got {stack.shape[1:]}")
    if weights.ndim != 2 or weights.shape[1] != stack.shape[1]:
        raise ValueError(
            f"bootstrap_macro_f1: weights {weights.shape} do not match {stack.shape[1]} events"
        )
    R, E, C, _ = stack.shape
    totals = weights.astype(np.float64) @ stack.reshape(R, E, C * C)  # (R, B, C*C)
    return macro_f1_of_counts(totals.reshape(R, -1, C, C)).T  # (B, R)


def paired_difference(
    a: np.ndarray, b: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """(low, high, share above) of ``a - b`` over the same draws: its central ``level``
    interval (:func:`percentile_interval`) and the share of the finite draws with a above b."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)  # (B,)
    low, high = percentile_interval(d, level)
    return low, high, float(np.mean(d[np.isfinite(d)] > 0))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of the finite ``samples`` (percentile bootstrap)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(x, [tail, 100.0 - tail])
    return float(lo), float(hi)
