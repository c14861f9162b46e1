"""`vmlb bench pipeline`: when the job partitions count as split among the workers
(`--workers N`); the driver's collector paused while it submits."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from benchmarks.pipeline_bench import WorkerGroup, collector_paused


class FakeWorker:
    def __init__(self, partitions: list[int], waiting: int = 0) -> None:
        self.partitions = partitions
        self.waiting = waiting

    def check_alive(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "dead_letters": 0, "job_partitions": self.partitions}


def group(*owned: list[int]) -> WorkerGroup:
    workers = [FakeWorker(p, waiting=1) for p in owned]
    return WorkerGroup(workers=workers, partitions=6)  # type: ignore[arg-type]


def test_split_when_every_worker_owns_some_and_all_are_owned_once():
    assert group([0, 1, 2], [3, 4, 5]).split()
    assert not group([0, 1, 2, 3, 4, 5], []).split()  # the second has not joined yet
    assert not group([0, 1, 2], [2, 3, 4, 5]).split()  # mid-rebalance: 2 owned twice
    assert not group([0, 1], [3, 4, 5]).split()  # 2 not owned by anyone yet
    assert not group([0, 1], [2, 3, 4]).split()  # 5 not owned by anyone yet


def test_status_sums_over_the_workers():
    status = group([0, 1, 2], [3, 4, 5]).status()
    assert (status["waiting"], status["dead_letters"]) == (2, 0)


def test_the_drivers_collector_is_paused_while_it_submits_and_restored_after():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a failed submission")
    assert gc.isenabled()
    gc.disable()  # a caller's choice is its own: left off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
