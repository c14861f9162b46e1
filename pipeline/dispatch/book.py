"""The dispatcher's state of one jobs partition: every job it owns, by its latest status.

The durable copy is the partition's log in `job-status` (compacted, key job_id): a book is
rebuilt from it after a rebalance or a restart, record by record in log order, and kept current
by the dispatcher's own writes and its guests' records. It indexes what dispatching needs:

- `jobs`: every unfinished job (waiting, dispatched, running, retrying) and its latest status,
  held lean (`pipeline.dispatch.tracked`: the record's bytes and a few fields);
- `waiting`: the waiting ones per job type, in the order they leave (`WaitingQueue`);
- `on_vm`: the in-flight ones (dispatched or running) per VM, which are also counted in the
  snapshots' `InFlight` (through the `Placements` given), and per VM when its guest last spoke;
- `finished`: the ids of jobs that ended, until the finished horizon, so that a redelivered or
  resubmitted job is not run again (then a tombstone forgets it).

Pure: no Kafka, no clock (times come in).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.dispatch.tracked import NO_VMS, Tracked, tracked
from pipeline.dispatch.waiting import Turns, Waiting, WaitingQueue
from pipeline.events import JobState, JobStatus

#: Whose jobs have no submitter: they share one turn in the fair queue.
ANONYMOUS = "-"
_WAITING = (JobState.WAITING, JobState.RETRYING)


class Placements(Protocol):
    """Where a book reports jobs entering and leaving a VM (the snapshots' `InFlight`)."""

    def placed(self, vm_id: str) -> None: ...

    def released(self, vm_id: str) -> None: ...


@dataclass
class PartitionBook:
    partition: int
    placements: Placements
    jobs: dict[str, Tracked] = field(default_factory=dict)
    waiting: dict[str, WaitingQueue] = field(default_factory=dict)
    on_vm: dict[str, set[str]] = field(default_factory=dict)
    #: Per VM with jobs here: the time its guest has said nothing, counted only while the
    #: dispatcher heard from the fleet (a broker outage is nobody's silence).
    guest_silent_s: dict[str, float] = field(default_factory=dict)
    #: Seconds this book has heard from the fleet (the clock silence and queueing are told by).
    heard_clock_s: float = 0.0
    #: Per unstarted job: the VM and attempt it is queued for, and `heard_clock_s` then. A tick
    #: costs O(VMs) this way: only a silent VM's jobs are looked at.
    queued_at: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    #: Per job type, the submitters' turns, shared with the dispatcher's other partitions.
    turns: dict[str, Turns] = field(default_factory=dict)
    _finished_order: deque[tuple[float, str]] = field(default_factory=deque)

    # --- lookups ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Tracked | None:
        return self.jobs.get(job_id)

    def knows(self, job_id: str) -> bool:
        return job_id in self.jobs or job_id in self.finished

    def waiting_count(self) -> int:
        return sum(len(queue) for queue in self.waiting.values())

    def in_flight(self) -> Iterator[tuple[str, int]]:
        """(vm_id, jobs of this partition in flight on it)."""
        for vm_id, jobs in self.on_vm.items():
            if jobs:
                yield vm_id, len(jobs)

    # --- changes ----------------------------------------------------------------------------

    def adopt(self, status: JobStatus, now: float, record: bytes | None = None) -> Tracked | None:
        """Make `status` the job's latest; index it. `record` is its bytes, if at hand (the
        record as written or read). Returns the job (None once it ended)."""
        job_id = status.job_id
        known = self.jobs.get(job_id)
        old_vm = known.in_flight_on if known else None
        was_waiting = known is not None and known.state in _WAITING
        if known is not None:
            self._unindex(known)
        if status.state is JobState.DISPATCHED and status.vm_id is not None:
            queued = self.queued_at.get(job_id)
            if queued is None or queued[:2] != (status.vm_id, status.attempt):
                self.queued_at[job_id] = (status.vm_id, status.attempt, self.heard_clock_s)
        else:
            self.queued_at.pop(job_id, None)
        if status.terminal:
            self.jobs.pop(job_id, None)
            if old_vm is not None:
                self._leave(old_vm, job_id)
            self._finish(job_id, now)
            return None
        self.finished.pop(job_id, None)
        decisions = 0 if known is None or known.attempt != status.attempt else known.decisions
        waits = status.state in _WAITING
        since = None
        if waits:
            kept = known.waiting_since if known is not None and was_waiting else None
            since = kept if kept is not None else status.at
        held = tracked(
            status,
            record,
            decisions=decisions,
            avoid=known.avoid if known else NO_VMS,
            waiting_written_at=known.waiting_written_at if known else None,
            waiting_since=since,
        )
        self.jobs[job_id] = held
        new_vm = held.in_flight_on
        if old_vm != new_vm:
            if old_vm is not None:
                self._leave(old_vm, job_id)
            if new_vm is not None:
                self.on_vm.setdefault(new_vm, set()).add(job_id)
                self.placements.placed(new_vm)
        if waits:
            job = status.job
            queue = self.waiting.get(job.job_type)
            if queue is None:
                turns = self.turns.setdefault(job.job_type, Turns())
                queue = self.waiting[job.job_type] = WaitingQueue(turns)
            queue.add(
                Waiting(
                    job_id=job_id,
                    priority=job.priority,
                    submitter=job.submitter or ANONYMOUS,
                    since=since if since is not None else status.at,
                    deadline_at=job.deadline_at,
                    not_before=status.retry_at,
                )
            )
        return held

    def taken(self, job_id: str) -> None:
        """A waiting job was dispatched: its submitter had its turn."""
        known = self.jobs.get(job_id)
        if known is not None:
            queue = self.waiting.get(known.job_type)
            if queue is not None:
                queue.take(job_id)

    def forget_finished(self, before: float) -> list[str]:
        """The ids of jobs that ended before `before`, forgotten now (to be tombstoned)."""
        gone = []
        while self._finished_order and self._finished_order[0][0] < before:
            at, job_id = self._finished_order.popleft()
            if self.finished.get(job_id) == at:
                del self.finished[job_id]
                gone.append(job_id)
        return gone

    def release_all(self) -> None:
        """The partition moves away: count its in-flight jobs out of this worker's snapshots,
        and its waiting jobs out of the turns it shares with the other partitions."""
        for vm_id, jobs in self.on_vm.items():
            for _ in jobs:
                self.placements.released(vm_id)
        self.on_vm.clear()
        for queue in self.waiting.values():
            queue.clear()
        self.waiting.clear()
        self.queued_at.clear()

    # --- internals --------------------------------------------------------------------------

    def _unindex(self, known: Tracked) -> None:
        if known.state in _WAITING:
            queue = self.waiting.get(known.job_type)
            if queue is not None:
                queue.discard(known.job_id)
                if not queue:
                    del self.waiting[known.job_type]

    def _leave(self, vm_id: str, job_id: str) -> None:
        jobs = self.on_vm.get(vm_id)
        if jobs is not None and job_id in jobs:
            jobs.discard(job_id)
            if not jobs:
                del self.on_vm[vm_id]
            self.placements.released(vm_id)

    def _finish(self, job_id: str, at: float) -> None:
        self.finished[job_id] = at
        self._finished_order.append((at, job_id))
