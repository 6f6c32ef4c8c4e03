"""Run independent jobs side by side in forked worker processes.

Owns :func:`forked_map`. Two users. The study's training-loop rows (``StudyConfig.workers``):
one fine-tuning run of 2 events a step keeps two cores only partly busy, while two runs of one
thread each keep both busy (docs/benchmarks.md). And a run's per-event caches, filled before
its first step (``DataConfig.warm_workers``: :func:`nufm.train.components
.warm_pipeline_caches`). Workers are forked, not spawned, so they start with the parent's
memory: the study's per-event caches (descriptors, token groups), its loaded encoder and its
event lists are computed once, before the fork, and read by every worker. A job's result is the
same as when it runs alone with the same number of torch threads.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

from nufm.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

_JOBS: tuple[Callable, Sequence] | None = None
"""(function, items) of the running :func:`forked_map`: set before the workers are forked,
so they inherit it and only item indices cross the process boundary."""


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_item(index: int) -> object:
    assert _JOBS is not None, "forked_map: a worker started without its jobs"
    fn, items = _JOBS
    return fn(items[index])


def worker_threads(workers: int) -> int:
    """Torch threads of each of ``workers`` processes: this process's threads shared out (at
    least 1)."""
    return max(1, torch.get_num_threads() // max(workers, 1))


def forked_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for every item, in order; with ``workers`` > 1 in that many forked
    processes of :func:`worker_threads` torch threads each, results yielded in item order as
    they complete. ``fn`` and ``items`` are not pickled (the workers inherit them); each result
    is. An exception in a job is raised here; a worker that dies (killed, out of memory)
    raises ``concurrent.futures.process.BrokenProcessPool`` rather than hanging.

    Raises:
        ConfigError: ``workers`` > 1 where the platform cannot fork (Windows).
    """
    global _JOBS
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError(
            f"workers={workers}: side-by-side runs need forked processes, which this platform "
            "does not have; use workers=1"
        )
    if _JOBS is not None:
        raise RuntimeError("forked_map: already running (nested calls are not supported)")
    _JOBS = (fn, items)
    try:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(items)),
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(worker_threads(workers),),
        ) as pool:
            yield from pool.map(_run_item, range(len(items)))  # type: ignore[misc]
    finally:
        _JOBS = None


__all__ = ["forked_map", "worker_threads"]
