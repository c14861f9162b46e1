"""In-memory indexes of the dispatcher's durable tables, per jobs partition.

- `WaitingIndex` orders waiting jobs per partition and per job type, so a type with no eligible
  host never holds up another type, and a retry tick skips the jobs behind a blocked one without
  reading the table (each entry carries its deadline, so those still expire).
- `DedupeHorizon` says when each remembered dispatched job id may be forgotten, oldest first, so
  old `dispatched` rows are deleted without scanning the table on every tick.

Both are rebuilt from their table for a partition the first time its retry tick runs after a
rebalance. A partition is *built* only by `build()`: a job added to a partition before its
rebuild is kept, and merged with what the table holds when the rebuild comes (a job added first
must never make the restored ones look indexed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from pipeline.dispatch.rows import DispatchedRow, WaitingRow


class WaitingJob(NamedTuple):
    """One waiting job as the retry agent walks them: no table read unless it may go."""

    job_id: str
    waiting_since: float
    deadline_at: float | None


class WaitingIndex:
    """Waiting jobs per partition, per job type, oldest first (memory; the table is durable)."""

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, dict[str, WaitingJob]]] = {}
        self._built: set[int] = set()

    def built(self, partition: int) -> bool:
        return partition in self._built

    def build(self, partition: int, rows: Iterable[tuple[str, WaitingRow]]) -> None:
        """Index the partition's rows of the table, keeping jobs added before the rebuild."""
        found = {
            (job.waiting_since, job.job_id, job_type, job.deadline_at)
            for job_type, jobs in self._by_partition.get(partition, {}).items()
            for job in jobs.values()
        }
        found.update(
            (row.waiting_since, job_id, row.job.job_type, row.deadline_at)
            for job_id, row in rows
            if row.partition == partition
        )
        types: dict[str, dict[str, WaitingJob]] = {}
        for waiting_since, job_id, job_type, deadline_at in sorted(found, key=_order):
            types.setdefault(job_type, {})[job_id] = WaitingJob(job_id, waiting_since, deadline_at)
        self._by_partition[partition] = types
        self._built.add(partition)

    def add(
        self,
        partition: int,
        job_type: str,
        job_id: str,
        waiting_since: float,
        deadline_at: float | None = None,
    ) -> None:
        jobs = self._by_partition.setdefault(partition, {}).setdefault(job_type, {})
        newest = next(reversed(jobs.values()), None)
        jobs[job_id] = WaitingJob(job_id, waiting_since, deadline_at)
        if newest is not None and (waiting_since, job_id) < (newest.waiting_since, newest.job_id):
            # Out of order (a rebuild, a clock step back): re-sort this type once.
            ordered = sorted(jobs.values(), key=lambda job: (job.waiting_since, job.job_id))
            jobs.clear()
            jobs.update((job.job_id, job) for job in ordered)

    def remove(self, partition: int, job_type: str, job_id: str) -> None:
        types = self._by_partition.get(partition, {})
        jobs = types.get(job_type, {})
        jobs.pop(job_id, None)
        if not jobs:
            types.pop(job_type, None)

    def by_type(self, partition: int) -> dict[str, list[WaitingJob]]:
        """Each waiting job type of a partition with its jobs, oldest first (a copy)."""
        return {
            job_type: list(jobs.values())
            for job_type, jobs in self._by_partition.get(partition, {}).items()
        }

    def count(self) -> int:
        return sum(len(jobs) for types in self._by_partition.values() for jobs in types.values())

    def partitions(self) -> set[int]:
        return set(self._by_partition) | self._built

    def clear(self) -> None:
        self._by_partition.clear()
        self._built.clear()


class DedupeHorizon:
    """When each remembered dispatched job id may be forgotten, per partition (memory)."""

    def __init__(self) -> None:
        self._by_partition: dict[int, deque[tuple[float, str]]] = {}

    def add(self, partition: int, job_id: str, at: float) -> None:
        self._by_partition.setdefault(partition, deque()).append((at, job_id))

    def rebuild(self, partition: int, rows: Iterable[tuple[str, DispatchedRow]]) -> None:
        """The partition's rows of the table, merged with ids added before the rebuild."""
        found = {(row.at, job_id) for job_id, row in rows if row.partition == partition}
        found.update(self._by_partition.get(partition, ()))
        self._by_partition[partition] = deque(sorted(found))

    def expired(self, partition: int, before: float) -> list[str]:
        """Pop and return the job ids of this partition remembered since before `before`."""
        queue = self._by_partition.get(partition)
        gone: list[str] = []
        while queue and queue[0][0] < before:
            gone.append(queue.popleft()[1])
        return gone

    def clear(self) -> None:
        self._by_partition.clear()


def _order(entry: tuple[float, str, str, float | None]) -> tuple[float, str]:
    return entry[0], entry[1]
