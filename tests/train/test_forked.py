"""forked_map: jobs in forked processes give the results of a plain map, in order, and a
failure reaches the caller instead of hanging it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import pytest
import torch

from nufm.errors import ConfigError
from nufm.train import forked
from nufm.train.forked import forked_map, worker_threads


@pytest.fixture
def four_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_results_in_item_order_from_other_processes_with_shared_threads(
    four_threads: None,
) -> None:
    assert worker_threads(2) == 2 and worker_threads(3) == 1 and worker_threads(8) == 1
    offset = 100  # a closure: the workers inherit it, nothing is pickled but the results

    def job(i: int) -> tuple[int, int, int]:
        return i + offset, os.getpid(), torch.get_num_threads()

    got = list(forked_map(job, list(range(7)), workers=2))
    assert [g[0] for g in got] == list(range(100, 107))
    assert all(pid != os.getpid() for _, pid, _ in got)
    assert {threads for _, _, threads in got} == {2}
    # one worker (or one item): a plain map in this process
    assert list(forked_map(job, [5], workers=2)) == [(105, os.getpid(), 4)]
    assert [g[1] for g in forked_map(job, [1, 2], workers=1)] == [os.getpid()] * 2
    assert forked._JOBS is None


def test_an_exception_in_a_job_is_raised_in_the_caller() -> None:
    def job(i: int) -> int:
        if i == 3:
            raise ValueError(f"event {i} is bad")
        return i

    with pytest.raises(ValueError, match="event 3 is bad"):
        list(forked_map(job, list(range(5)), workers=2))
    assert forked._JOBS is None


def test_a_worker_that_dies_breaks_the_pool_instead_of_hanging() -> None:
    def job(i: int) -> int:
        if i == 1:
            os._exit(9)  # as a worker killed for memory
        return i

    with pytest.raises(BrokenProcessPool):
        list(forked_map(job, list(range(4)), workers=2))
    assert forked._JOBS is None


def test_without_fork_more_than_one_worker_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forked.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(ConfigError, match="workers=2"):
        list(forked_map(abs, [1, 2], workers=2))
    assert list(forked_map(abs, [-1, -2], workers=1)) == [1, 2]
