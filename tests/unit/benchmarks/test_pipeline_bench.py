"""`vmlb bench pipeline --workers N`: when the job partitions count as split among the workers."""

from __future__ import annotations

from typing import Any

from benchmarks.pipeline_bench import WorkerGroup


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
