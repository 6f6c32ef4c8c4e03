"""Similarity search over event embeddings: "find events like this one".

Nearest neighbours of a query event among embedded events (exact cosine search,
:class:`nufm.eval.retrieval.EmbeddingIndex`), and a figure with the query and its hits side by
side. Using frozen self-supervised features for retrieval follows the frozen-feature
evaluations of DINOv2 (arXiv:2304.07193) and Sonata (arXiv:2503.16429).

This file owns :func:`search_similar` and :func:`search_figure`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from nufm.data.event import Event
from nufm.errors import ConfigError
from nufm.eval.retrieval import EmbeddingIndex
from nufm.workflows.embed import Embeddings

log = logging.getLogger(__name__)


def search_similar(
    emb: Embeddings, query_event: int, k: int = 5, metric: Literal["cosine", "euclidean"] = "cosine"
) -> list[tuple[int, float]]:
    """The ``k`` embedded events most similar to event ``query_event`` (the query excluded).

    Args:
        emb: event embeddings; the index holds all of them.
        query_event: ``event_id`` of the query (its row in the embedded input).
        k: hits returned, at most ``len(emb) - 1``.
        metric: ``cosine`` (1 - cosine similarity of the raw embeddings) or ``euclidean``
            (of L2-normalised embeddings).

    Returns:
        ``[(event_id, distance), ...]`` nearest first; never the query's own row (an exact
        duplicate of it elsewhere in the index is returned, at distance ~0).

    Raises:
        EventIndexError: ``query_event`` is not among the embedded events (an IndexError).
        ConfigError: ``k`` out of range (a ValueError).
    """
    row = emb.row_of(query_event)
    if not 1 <= k <= len(emb) - 1:
        raise ConfigError(
            f"search_similar: k={k} must be in [1, {len(emb) - 1}] for {len(emb)} embedded events"
        )
    index = EmbeddingIndex(emb.event, normalize=True, metric=metric)
    idx, dist = index.query_rows(np.array([row]), k)  # (1, k)
    hits = [(int(emb.event_id[i]), float(d)) for i, d in zip(idx[0], dist[0], strict=False)]
    log.info("event %d: nearest %s", query_event, ", ".join(f"{e} ({d:.3g})" for e, d in hits))
    return hits


def search_figure(
    events: Sequence[Event] | Mapping[int, Event],
    query: int,
    hits: Sequence[tuple[int, float]],
    color: Literal["segment", "pid", "instance", "interaction", "energy"] = "segment",
) -> Figure:
    """Query and hits side by side (x-y and x-z projections per event).

    Args:
        events: raw events (voxel coordinates, MeV) indexable by event id: the embedded list,
            or a dict ``{event_id: event}`` holding at least the query and the hits.
        query: event id of the query.
        hits: ``(event_id, distance)`` of each hit, nearest first (:func:`search_similar`).
        color: what colours the points (a label field or ``energy``).

    Returns:
        The figure (:func:`nufm.viz.display.display_events_grid`), the query first.
    """
    from nufm.viz.display import display_events_grid

    ids = [query, *(i for i, _ in hits)]
    try:
        shown = [events[i] for i in ids]
    except (IndexError, KeyError) as e:
        raise KeyError(
            f"search_figure: event {e} of query/hits {ids} is not in the events given"
        ) from e
    titles = [f"QUERY: event {query}"]
    titles += [f"#{n + 1}: event {i}, d = {d:.3g}" for n, (i, d) in enumerate(hits)]
    return display_events_grid(shown, color=color, titles=titles)
