"""The dispatcher's durable wait, in memory: which waiting job of a type goes next.

Excess jobs wait at the dispatcher (HAProxy's queue) rather than overload a host, per job type, so
a type with no eligible host never holds up another. Within a type (Slurm's priorities, then fair
share): the highest `priority` first; among equal priorities, submitters take turns (start-time
fair queueing: each submitter's virtual time counts the jobs served for it, a submitter that
starts waiting joins at the current minimum, and the counts start afresh whenever nobody waits,
so a flood from one submitter delays another's jobs by at most one of the flooder's per turn);
then the oldest first. A job backing off after a
failed attempt (`not_before`) is held aside until it is due and never blocks the others.

Pure and shared by the live dispatcher and the simulator; time is passed in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Waiting:
    """One waiting job as the queue orders it."""

    job_id: str
    priority: int
    submitter: str
    since: float
    deadline_at: float | None = None
    #: Not to be decided before this (backoff after a failed attempt).
    not_before: float | None = None


@dataclass(order=True)
class _Entry:
    sort_key: tuple[float, float, int]
    job: Waiting = field(compare=False)


class Turns:
    """Submitters' turns (start-time fair queueing's virtual times) for one job type, shared
    by every `WaitingQueue` that holds jobs of it in one dispatcher, so that the turns hold
    across a worker's jobs partitions, not only within each."""

    def __init__(self) -> None:
        #: Jobs served per submitter since the type last had nothing waiting.
        self.served: dict[str, int] = {}
        #: Jobs waiting per submitter, over every queue sharing these turns.
        self._waiting: dict[str, int] = {}

    def of(self, submitter: str) -> int:
        return self.served.get(submitter, 0)

    def joined(self, submitter: str) -> None:
        """One more job of `submitter` waits. A submitter that starts waiting joins the turns
        at the minimum of those waiting, so it neither jumps ahead of everyone for its idle
        past nor waits behind it."""
        if not self._waiting.get(submitter):
            floor = min((self.of(s) for s in self._waiting), default=0)
            self.served[submitter] = max(self.of(submitter), floor)
        self._waiting[submitter] = self._waiting.get(submitter, 0) + 1

    def left(self, submitter: str, *, served: bool) -> None:
        """A job of `submitter` left the wait: dispatched (`served`: its turn), or gone."""
        if served:
            self.served[submitter] = self.of(submitter) + 1
        left = self._waiting.get(submitter, 0) - 1
        if left > 0:
            self._waiting[submitter] = left
        else:
            self._waiting.pop(submitter, None)
        if not self._waiting:
            # Nobody waits: the turns start afresh (start-time fair queueing resets its virtual
            # time when idle); a count kept from an earlier busy spell would put a returning
            # submitter behind a newcomer by all its past turns.
            self.served.clear()


class WaitingQueue:
    """The waiting jobs of one job type (of one jobs partition); `turns` shared with the
    dispatcher's other queues of the type (its own by default)."""

    def __init__(self, turns: Turns | None = None) -> None:
        self._seq = itertools.count()
        # submitter -> heap of (-priority, since, seq)
        self._by_submitter: dict[str, list[_Entry]] = {}
        self._jobs: dict[str, Waiting] = {}
        #: Jobs served per submitter (its virtual time), for the turns.
        self.turns = turns if turns is not None else Turns()
        self._delayed: list[tuple[float, int, Waiting]] = []
        self._deadlines: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> Waiting | None:
        return self._jobs.get(job_id)

    def add(self, job: Waiting) -> None:
        if job.job_id in self._jobs:
            self.discard(job.job_id)
        self._jobs[job.job_id] = job
        self.turns.joined(job.submitter)
        if job.deadline_at is not None:
            heapq.heappush(self._deadlines, (job.deadline_at, next(self._seq), job.job_id))
        if job.not_before is not None:
            heapq.heappush(self._delayed, (job.not_before, next(self._seq), job))
            return
        self._enqueue(job)

    def discard(self, job_id: str) -> Waiting | None:
        """Remove a job (dispatched, cancelled, expired); lazily, O(1)."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self.turns.left(job.submitter, served=False)
        self._afresh_if_idle()
        return job

    def clear(self) -> None:
        """Remove every job (its partition moved away): none of them counts as served."""
        for job_id in list(self._jobs):
            self.discard(job_id)

    def head(self, now: float) -> Waiting | None:
        """The job to decide next: highest priority, then the submitter whose turn it is."""
        self._release_due(now)
        best: _Entry | None = None
        best_key: tuple[float, int, float] | None = None
        for submitter, heap in list(self._by_submitter.items()):
            entry = self._top(submitter, heap)
            if entry is None:
                continue
            key = (entry.sort_key[0], self.turns.of(submitter), entry.sort_key[1])
            if best_key is None or key < best_key:
                best, best_key = entry, key
        return best.job if best else None

    def take(self, job_id: str) -> Waiting | None:
        """Remove a job that was dispatched: it counts as its submitter's turn."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self.turns.left(job.submitter, served=True)
        self._afresh_if_idle()
        return job

    def expired(self, now: float) -> list[Waiting]:
        """Pop every job whose deadline has passed, whatever its place in the queue."""
        gone = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, job_id = heapq.heappop(self._deadlines)
            job = self._jobs.get(job_id)
            if job is not None and job.deadline_at is not None and job.deadline_at <= now:
                gone.append(job)
                self.discard(job_id)
        return gone

    def ordered(self, now: float) -> Iterator[Waiting]:
        """Every waiting job in the order they would leave (for `/waiting`; O(n log n))."""
        self._release_due(now)
        ready = sorted(
            (j for j in self._jobs.values() if j.not_before is None or j.not_before <= now),
            key=lambda j: (-j.priority, j.since, j.job_id),
        )
        later = sorted(
            (j for j in self._jobs.values() if j.not_before is not None and j.not_before > now),
            key=lambda j: (j.not_before or 0.0, j.job_id),
        )
        yield from ready
        yield from later

    # --- internals --------------------------------------------------------------------------

    def _enqueue(self, job: Waiting) -> None:
        heap = self._by_submitter.setdefault(job.submitter, [])
        heapq.heappush(heap, _Entry((-job.priority, job.since, next(self._seq)), job))

    def _top(self, submitter: str, heap: list[_Entry]) -> _Entry | None:
        while heap:
            entry = heap[0]
            if self._jobs.get(entry.job.job_id) is entry.job:
                return entry
            heapq.heappop(heap)  # dispatched, cancelled, expired or re-added since
        del self._by_submitter[submitter]
        return None

    def _afresh_if_idle(self) -> None:
        # Nothing waits here: drop the heaps' leftovers (the turns reset in `Turns.left`).
        if not self._jobs:
            self._by_submitter.clear()

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job = heapq.heappop(self._delayed)
            if self._jobs.get(job.job_id) is job:
                self._enqueue(job)
