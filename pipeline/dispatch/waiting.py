"""The dispatcher's durable wait, in memory: which waiting job of a type goes next.

Excess jobs wait at the dispatcher (HAProxy's queue) rather than overload a host, per job type, so
a type with no eligible host never holds up another. Within a type (Slurm's priorities, then fair
share): the highest `priority` first; among equal priorities, submitters take turns (start-time
fair queueing: each submitter's virtual time counts the jobs served for it, a submitter that
starts waiting joins at the current minimum, and the counts start afresh whenever nobody waits,
so a flood from one submitter delays another's jobs by at most one of the flooder's per turn);
then the oldest first. A job backing off after a
failed attempt (`not_before`) is held aside until it is due and never blocks the others.

Pure and shared by the live dispatcher and the simulator; time is passed in. Inside, a queue
holds each job as a plain tuple of atoms (and its heap entries as tuples of those), which
CPython's cyclic collector stops following once it has seen them: the thousands of jobs a
loaded dispatcher may hold waiting add nothing to what each full collection visits
(docs/evaluation.md, "Objects per unfinished job"). A `Waiting` is made when one is asked for.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass


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


#: A waiting job as a queue holds it: `Waiting`'s fields, in their order, as a plain tuple
#: (one the collector untracks; a tuple subclass it never does).
_Held = tuple[str, int, str, float, float | None, float | None]
#: A heap entry: (-priority, since, a unique sequence number, the job): entries compare by the
#: first three, never by the job.
_Entry = tuple[int, float, int, _Held]
_ID, _PRIORITY, _SUBMITTER, _SINCE, _DEADLINE_AT = range(5)


def _held(job: Waiting) -> _Held:
    return (job.job_id, job.priority, job.submitter, job.since, job.deadline_at, job.not_before)


def _waiting(held: _Held | None) -> Waiting | None:
    return None if held is None else Waiting(*held)


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
        # submitter -> heap of (-priority, since, seq, job)
        self._by_submitter: dict[str, list[_Entry]] = {}
        self._jobs: dict[str, _Held] = {}
        #: Jobs served per submitter (its virtual time), for the turns.
        self.turns = turns if turns is not None else Turns()
        self._delayed: list[tuple[float, int, _Held]] = []
        self._deadlines: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> Waiting | None:
        return _waiting(self._jobs.get(job_id))

    def add(self, job: Waiting) -> None:
        if job.job_id in self._jobs:
            self.discard(job.job_id)
        held = _held(job)
        self._jobs[job.job_id] = held
        self.turns.joined(job.submitter)
        if job.deadline_at is not None:
            heapq.heappush(self._deadlines, (job.deadline_at, next(self._seq), job.job_id))
        if job.not_before is not None:
            heapq.heappush(self._delayed, (job.not_before, next(self._seq), held))
            return
        self._enqueue(held)

    def discard(self, job_id: str) -> Waiting | None:
        """Remove a job (dispatched, cancelled, expired); lazily, O(1)."""
        held = self._jobs.pop(job_id, None)
        if held is not None:
            self.turns.left(held[_SUBMITTER], served=False)
        self._afresh_if_idle()
        return _waiting(held)

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
            key = (entry[0], self.turns.of(submitter), entry[1])
            if best_key is None or key < best_key:
                best, best_key = entry, key
        return _waiting(best[3]) if best else None

    def take(self, job_id: str) -> Waiting | None:
        """Remove a job that was dispatched: it counts as its submitter's turn."""
        held = self._jobs.pop(job_id, None)
        if held is not None:
            self.turns.left(held[_SUBMITTER], served=True)
        self._afresh_if_idle()
        return _waiting(held)

    def expired(self, now: float) -> list[Waiting]:
        """Pop every job whose deadline has passed, whatever its place in the queue."""
        gone = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, job_id = heapq.heappop(self._deadlines)
            held = self._jobs.get(job_id)
            deadline_at = held[_DEADLINE_AT] if held is not None else None
            if held is not None and deadline_at is not None and deadline_at <= now:
                gone.append(Waiting(*held))
                self.discard(job_id)
        return gone

    def ordered(self, now: float) -> Iterator[Waiting]:
        """Every waiting job in the order they would leave (for `/waiting`; O(n log n))."""
        self._release_due(now)
        jobs = [Waiting(*held) for held in self._jobs.values()]
        ready = sorted(
            (j for j in jobs if j.not_before is None or j.not_before <= now),
            key=lambda j: (-j.priority, j.since, j.job_id),
        )
        later = sorted(
            (j for j in jobs if j.not_before is not None and j.not_before > now),
            key=lambda j: (j.not_before or 0.0, j.job_id),
        )
        yield from ready
        yield from later

    # --- internals --------------------------------------------------------------------------

    def _enqueue(self, held: _Held) -> None:
        heap = self._by_submitter.setdefault(held[_SUBMITTER], [])
        heapq.heappush(heap, (-held[_PRIORITY], held[_SINCE], next(self._seq), held))

    def _top(self, submitter: str, heap: list[_Entry]) -> _Entry | None:
        while heap:
            entry = heap[0]
            held = entry[3]
            if self._jobs.get(held[_ID]) is held:
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
            _, _, held = heapq.heappop(self._delayed)
            if self._jobs.get(held[_ID]) is held:
                self._enqueue(held)
