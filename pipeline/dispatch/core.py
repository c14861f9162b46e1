"""The dispatcher's logic, as state transitions: what to write for each input (no Kafka, no clock).

Inputs, from `pipeline.dispatch.service` (which does the I/O):

- a job message (`on_job`): new, a redelivery, a resubmission, a cancelled id, or bad bytes;
- a live record of `job-status` from a guest (`on_status`): running, succeeded, failed,
  cancelled; checked against the dispatcher's own record (that VM, that attempt, not ended)
  before it counts, and forwarded to `completions` (for the vm_stats agent) once accepted;
- a `job-control` request (`on_control`): cancel;
- the clock (`tick`): retry waiting jobs (per type, in `WaitingQueue` order), expire deadlines,
  move jobs off VMs that stopped, went silent past their lease, or whose host drains past its
  deadline, retry failed attempts after their backoff, forget ended jobs past the horizon,
  publish this dispatcher's in-flight counts (`dispatch-load`);
- a rebalance (`assign` / `replay` / `recovered` / `revoke`).

Outputs go to an `Outbox` in three phases: `decisions` (the intent), `first` (status records,
dead letters, completions, control records, loads) and `then` (the queued jobs). The service
produces each phase and waits for the broker's acknowledgement of all of it before the next,
then commits the consumed jobs' offsets: a status record that says "this job went to VM X" is
durable only after its decision, the job can be seen in X's queue only after both, and a job's
offset is committed only after all three. (With decisions and status records in one phase, a
crash after the broker took the status but before it took the decision left a queued job
without its decision: `vmlb bench chaos --scenario broker-outage-long`.) A crash anywhere
replays from the status log: a job recorded as dispatched is sent again to the same VM (the guest
recognises it by id and attempt), never decided again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.dispatch.book import PartitionBook
from pipeline.dispatch.decide import Dispatcher, DispatchResult, normalize, queued_job
from pipeline.dispatch.tracked import Tracked
from pipeline.dispatch.waiting import Turns, Waiting, WaitingQueue
from pipeline.edge.metrics import PipelineMetrics
from pipeline.errors import EventError
from pipeline.events import (
    ControlAction,
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    DispatchLoad,
    JobCompletion,
    JobControl,
    JobOutcome,
    JobState,
    JobStatus,
    JobSubmission,
    StatusWriter,
    VmStatus,
    trusted,
)
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.settings import PipelineSettings
from pipeline.topics import Topics

log = logging.getLogger(__name__)

STAGE = "dispatcher"


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: a partition of None lets the key choose."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


@dataclass
class Outbox:
    decisions: list[Record] = field(default_factory=list)
    first: list[Record] = field(default_factory=list)
    then: list[Record] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.decisions or self.first or self.then)


@dataclass
class Counts:
    """What the core did, for /status and (through `metrics`) Prometheus."""

    metrics: PipelineMetrics | None = None
    by_outcome: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected_status: int = 0
    moved: int = 0
    retried: int = 0

    def outcome(self, name: str) -> None:
        self.by_outcome[name] = self.by_outcome.get(name, 0) + 1
        if self.metrics is not None:
            if name == "dead_letters":
                self.metrics.dead_lettered(STAGE)
            else:
                self.metrics.decided(name)


class DispatchCore:
    def __init__(
        self,
        dispatcher: Dispatcher,
        view: FleetView,
        topics: Topics,
        settings: PipelineSettings,
        clock: Callable[[], float],
        ready: Callable[[], bool] = lambda: True,
        rng: random.Random | None = None,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.snapshots: SnapshotSource = dispatcher.snapshots
        self.view = view
        self.topics = topics
        self.settings = settings
        self.clock = clock
        self.ready = ready
        self.rng = rng or random.Random()
        self.books: dict[int, PartitionBook] = {}
        #: Cancel requests seen (every dispatcher reads all of job-control), by job id.
        self.cancels: dict[str, float] = {}
        self.out = Outbox()
        self.counts = Counts(metrics)
        self.metrics = metrics
        #: The newest decisions, as made (turned into JSON only when /decisions asks).
        self.recent: list[DispatchDecision] = []
        #: The status last parsed from a job's record (`_status_of`), with that record.
        self._parsed: tuple[bytes, JobStatus] | None = None
        #: When the dispatcher last heard from the fleet (see `_heard_s`), and its last tick.
        self._heard_at = clock()
        self._view_version = view.version
        self._ticked_at = self._heard_at
        self._names = {
            name: topics.name(name)
            for name in ("jobs", "job-status", "decisions", "completions", "dead-letters")
        }
        self._control_topic = topics.name("job-control")
        self._load_topic = topics.name("dispatch-load")
        #: Per job type, the submitters' turns over every owned partition's wait.
        self._turns: dict[str, Turns] = {}
        self._published_load: dict[int, dict[str, int]] = {}
        self._load_published_at = 0.0
        #: Per partition in replay: guest reports refused and not yet followed by a later
        #: record of the same job (job id -> offset, key, value, reason), judged at `recovered`.
        self._refused_in_replay: dict[
            int, dict[str, tuple[int | None, bytes | None, bytes, str]]
        ] = {}

    # --- ownership --------------------------------------------------------------------------

    def assign(self, partition: int) -> PartitionBook:
        """Start a partition's book (before its status log is replayed into it)."""
        book = self.books.get(partition)
        if book is None:
            book = self.books[partition] = PartitionBook(
                partition, self.snapshots, turns=self._turns
            )
        return book

    def replay(
        self, partition: int, value: bytes | None, key: bytes | None, offset: int | None = None
    ) -> None:
        """One record of the partition's status log, in log order (recovery)."""
        book = self.books[partition]
        refused = self._refused_in_replay.setdefault(partition, {})
        if value is None:  # a tombstone: the job was forgotten
            if key is not None:
                job_id = key.decode(errors="replace")
                book.finished.pop(job_id, None)
                refused.pop(job_id, None)
            return
        try:
            status = JobStatus.from_bytes(value)
        except EventError as exc:
            log.warning("job-status[%d]: unreadable record skipped in replay: %s", partition, exc)
            return
        tracked = book.get(status.job_id)
        if status.writer is StatusWriter.GUEST and not self._matches(tracked, status):
            # Refused. If its dispatcher saw it live, it dead-lettered it and re-asserted the
            # true record after it; if not (written while no one owned the partition, or the
            # owner crashed in between), this report is still the job's latest: see `recovered`.
            refused[status.job_id] = (offset, key, value, self._mismatch(book, tracked, status))
            return
        refused.pop(status.job_id, None)
        book.adopt(status, self.clock(), value)

    def recovered(self, partition: int) -> None:
        """The partition's log is replayed: judge the refused reports still standing as a job's
        latest record, and re-send the jobs recorded as dispatched and not yet started (a crash
        may have come between the record and the queued job)."""
        book = self.books[partition]
        for job_id, (offset, key, value, why) in self._refused_in_replay.pop(partition, {}).items():
            self._refuse(book, job_id, offset, key, value, why)
        for tracked in list(book.jobs.values()):
            if tracked.state is JobState.DISPATCHED:
                self._send_queued(book, tracked)
        self.view.own_partitions(self.books)

    def revoke(self, partition: int) -> None:
        """The partition moved to another worker: forget its book."""
        book = self.books.pop(partition, None)
        self._refused_in_replay.pop(partition, None)
        if book is not None:
            book.release_all()
        self.view.own_partitions(self.books)

    # --- jobs -------------------------------------------------------------------------------

    def on_job(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_s: float,
    ) -> None:
        book = self.books.get(partition)
        if book is None:
            return  # not (or no longer) ours; its owner decides it
        topic = self._names["jobs"]
        now = self.clock()
        self._heard_at = now
        try:
            job = JobSubmission.from_bytes(value)
            if key is not None and job.job_id is not None and key != job.job_id.encode():
                raise EventError(
                    f"JobSubmission: the message key {key[:100]!r} is not its job_id; "
                    "key a job by its job_id (or leave the key out)"
                )
            job = normalize(job, topic, partition, offset, timestamp_s)
            assert job.submitted_at is not None and job.job_id is not None
            ahead_s = job.submitted_at - now
            if ahead_s > self.settings.max_clock_skew_s:
                raise EventError(
                    f"JobSubmission: submitted_at is {ahead_s:.0f}s in the future "
                    f"(more than VMLB_MAX_CLOCK_SKEW_S={self.settings.max_clock_skew_s:g})"
                )
        except EventError as exc:
            self._dead_letter(topic, partition, offset, key, value, str(exc))
            return
        job_id = job.job_id
        tracked = book.get(job_id)
        if tracked is not None or job_id in book.finished:
            # A redelivery (a crash before the offset was committed) or a resubmission of the
            # same id: the job is not decided again. One recorded as dispatched and not started
            # is sent again to the same VM, in case the crash came before its queued job.
            self.counts.duplicates += 1
            if tracked is not None and tracked.state is JobState.DISPATCHED:
                self._send_queued(book, tracked)
            return
        if job_id in self.cancels:
            self._end(book, self._status(job, JobState.CANCELLED, now, reason="cancelled"))
            self.counts.outcome("cancelled")
            return
        if book.waiting_count() >= self.settings.max_waiting_per_partition:
            self._end(
                book,
                self._status(
                    job,
                    JobState.DEAD_LETTERED,
                    now,
                    reason=f"queue full: {book.waiting_count()} jobs already wait in partition "
                    f"{partition} (VMLB_MAX_WAITING_PER_PARTITION)",
                ),
                dead_letter=(topic, offset, key, value),
            )
            return
        if self.ready() and self.head(job.job_type, now) is not None:
            # Jobs of its type wait already: they go first (any room freed is theirs, not the
            # newest arrival's); if some still wait, it joins them and leaves in its turn.
            self._retry(now, job_types={job.job_type})
            head = self.head(job.job_type, now)
            if head is not None:
                self._wait(book, job, self.dispatcher.behind(job, now, self._status_of(head)), now)
                return
        self._decide(book, job, attempt=1, now=now, message=(topic, offset, key, value))

    def head(self, job_type: str, now: float) -> Tracked | None:
        """The waiting job of `job_type` to be decided next, over the owned partitions."""
        best: tuple[Waiting, Tracked] | None = None
        for book in self.books.values():
            queue = book.waiting.get(job_type)
            head = queue.head(now) if queue else None
            tracked = book.get(head.job_id) if head is not None else None
            if head and tracked and (best is None or _before(head, best[0], queue.turns)):
                best = (head, tracked)
        return best[1] if best else None

    # --- guests' status records ---------------------------------------------------------------

    def on_status(
        self, partition: int, key: bytes | None, value: bytes | None, offset: int
    ) -> None:
        """A live record of the partition's status log. The dispatcher's own are skipped."""
        book = self.books.get(partition)
        if book is None or value is None:
            return
        topic = self._names["job-status"]
        try:
            status = JobStatus.from_bytes(value)
            if key != status.job_id.encode():
                raise EventError(f"JobStatus: the message key {key!r} is not its job_id")
        except EventError as exc:
            self._dead_letter(topic, partition, offset, key, value, str(exc))
            return
        if status.writer is StatusWriter.DISPATCHER:
            return  # its own (or its predecessor's, already replayed)
        now = self.clock()
        self._heard_at = now
        tracked = book.get(status.job_id)
        if not self._matches(tracked, status):
            why = self._mismatch(book, tracked, status)
            self._refuse(book, status.job_id, offset, key, value, why)
            return
        assert tracked is not None and status.vm_id is not None
        book.guest_silent_s[status.vm_id] = 0.0
        if status.state is JobState.RUNNING:
            book.adopt(status, now, value)
            return
        failed = status.state in (JobState.FAILED, JobState.RETRYING)  # the run failed
        if status.state is JobState.SUCCEEDED or failed:
            self._forward_completion(status)  # a run (a skipped, cancelled job is none)
        cancelled = tracked.cancel_requested or status.job_id in self.cancels
        if status.state is JobState.SUCCEEDED:
            # The guest is the one that knows whether a cancel reached it before the job
            # finished: it reports `cancelled` if so, and a later cancel changes nothing.
            book.adopt(status, now, value)
            self.counts.outcome("succeeded")
            return
        if failed and not cancelled:
            self._failed(book, tracked, status, now)
            return
        # Cancelled (the guest skipped it, or it finished after the cancel): never succeeded.
        self._end(
            book,
            self._status(
                tracked.status.job,
                JobState.CANCELLED,
                now,
                reason="cancelled",
                attempt=status.attempt,
                vm_id=status.vm_id,
                host_id=status.host_id,
                result=status.result,
            ),
        )
        self.counts.outcome("cancelled")

    # --- control ------------------------------------------------------------------------------

    def on_control(
        self, key: bytes | None, value: bytes | None, offset: int, partition: int
    ) -> None:
        if value is None:
            return
        try:
            control = JobControl.from_bytes(value)
            if key != control.job_id.encode():
                raise EventError(f"JobControl: the message key {key!r} is not its job_id")
        except EventError as exc:
            self._dead_letter(self._control_topic, partition, offset, key, value, str(exc))
            return
        if control.action is not ControlAction.CANCEL:
            return  # revokes are for guests
        now = self.clock()
        self.cancels[control.job_id] = now
        for book in self.books.values():
            tracked = book.get(control.job_id)
            if tracked is None:
                continue
            reason = control.reason or "cancelled"
            if tracked.state in (JobState.WAITING, JobState.RETRYING):
                current = tracked.status
                self._end(
                    book,
                    current.model_copy(
                        update={
                            "state": JobState.CANCELLED,
                            "at": now,
                            "reason": reason,
                            "writer": StatusWriter.DISPATCHER,
                            "funnel": [],
                        }
                    ),
                )
                self._decision(
                    book,
                    self.dispatcher.refuse(
                        current.job,
                        now,
                        DecisionOutcome.CANCELLED,
                        reason,
                        current.attempt,
                    ).decision,
                )
                self.counts.outcome("cancelled")
            elif not tracked.cancel_requested:
                # Dispatched or running: its guest skips it (not started) or reports it
                # cancel-requested; either way it ends as cancelled, never succeeded.
                self._write(
                    book,
                    tracked.status.model_copy(
                        update={
                            "cancel_requested": True,
                            "at": now,
                            "writer": StatusWriter.DISPATCHER,
                        }
                    ),
                )

    # --- the clock ------------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        heard_s = self._heard_s(now)
        for book in list(self.books.values()):
            self._expire(book, now)
            self._move_stranded(book, now, heard_s)
            for job_id in book.forget_finished(now - self.settings.dedupe_horizon_s):
                self.out.first.append(
                    Record(self._names["job-status"], job_id.encode(), None, book.partition)
                )
        if self.ready():
            self._retry(now)
        self._forget_cancels(now)
        self._publish_load(now)

    # --- queries (for the web views) -----------------------------------------------------------

    def waiting(self) -> Iterator[tuple[int, Tracked]]:
        now = self.clock()
        for partition, book in sorted(self.books.items()):
            for queue in book.waiting.values():
                for entry in queue.ordered(now):
                    tracked = book.get(entry.job_id)
                    if tracked is not None:
                        yield partition, tracked

    def in_flight_by_vm(self, now: float) -> Iterator[tuple[str, int, float]]:
        """(vm_id, jobs in flight on it, when the oldest of them was dispatched)."""
        counts: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for book in self.books.values():
            for vm_id, job_ids in book.on_vm.items():
                for job_id in job_ids:
                    tracked = book.get(job_id)
                    if tracked is None:
                        continue
                    at = tracked.dispatched_at or tracked.at
                    counts[vm_id] = counts.get(vm_id, 0) + 1
                    oldest[vm_id] = min(oldest.get(vm_id, at), at)
        for vm_id in sorted(counts):
            yield vm_id, counts[vm_id], oldest.get(vm_id, now)

    def find(self, job_id: str) -> JobStatus | None:
        for book in self.books.values():
            tracked = book.get(job_id)
            if tracked is not None:
                return tracked.status
        return None

    def take(self) -> Outbox:
        out, self.out = self.out, Outbox()
        return out

    def _status_of(self, tracked: Tracked) -> JobStatus:
        """`tracked.status`, parsed once for as long as it is the latest parsed: the head of a
        blocked type is decided again, and quoted by each job that joins behind it, on every
        arrival. Read only (the model is frozen; its lists are copied, never changed here)."""
        parsed = self._parsed
        if parsed is not None and parsed[0] is tracked.record:
            return parsed[1]
        status = tracked.status
        self._parsed = (tracked.record, status)
        return status

    # --- deciding -------------------------------------------------------------------------------

    def _decide(
        self,
        book: PartitionBook,
        job: JobSubmission,
        *,
        attempt: int,
        now: float,
        message: tuple[str, int | None, bytes | None, bytes | None] | None = None,
        tracked: Tracked | None = None,
    ) -> bool:
        """Decide one job; True if it left the wait (dispatched or ended)."""
        assert job.job_id is not None
        count = (tracked.decisions if tracked else 0) + 1
        if not self.ready():
            result = self.dispatcher.not_ready(job, now)
        else:
            result = self.dispatcher.decide(
                job,
                now,
                attempt=attempt,
                decision_count=count,
                partition=book.partition,
                avoid=tracked.avoid if tracked else frozenset(),
                errors=list(tracked.errors) if tracked else None,
            )
        outcome = result.outcome
        if outcome is DecisionOutcome.DISPATCHED:
            assert result.queued is not None and result.queue_topic is not None
            queued = result.queued
            if tracked is not None:
                book.taken(job.job_id)
            self._write(
                book,
                self._status(
                    job,
                    JobState.DISPATCHED,
                    now,
                    attempt=attempt,
                    vm_id=queued.vm_id,
                    host_id=queued.host_id,
                    dispatched_at=now,
                    reason=result.decision.reason,
                    errors=list(tracked.errors) if tracked else None,
                ),
            )
            self._decision(book, result.decision)
            self.out.then.append(Record(result.queue_topic, queued.key(), queued.to_bytes()))
            self.counts.outcome("dispatched")
            if self.metrics is not None:
                self.metrics.job_waited(job.job_type, now - (job.submitted_at or now))
            return True
        if outcome is DecisionOutcome.WAITING:
            self._wait(book, job, result, now, attempt=attempt, tracked=tracked, count=count)
            return False
        # Refused: expired, or no VM serves the type.
        state = JobState.EXPIRED if outcome is DecisionOutcome.EXPIRED else JobState.DEAD_LETTERED
        self._decision(book, result.decision)
        self._end(
            book,
            self._status(job, state, now, attempt=attempt, reason=result.dead_letter_reason),
            dead_letter=message or (self._names["jobs"], None, job.key(), job.to_bytes()),
        )
        self.counts.outcome(outcome.value)
        return True

    def _wait(
        self,
        book: PartitionBook,
        job: JobSubmission,
        result: DispatchResult,
        now: float,
        *,
        attempt: int = 1,
        tracked: Tracked | None = None,
        count: int = 1,
    ) -> None:
        """The job waits (for the reason in `result`): recorded when it starts waiting or its
        reason changes (now and then), indexed in its partition's wait."""
        assert job.job_id is not None
        if self.metrics is not None:
            self.metrics.still_waiting(result.decision)
        status = self._status(
            job,
            JobState.WAITING,
            now,
            attempt=attempt,
            reason=result.decision.reason,
            funnel=list(result.funnel),
            errors=list(tracked.errors) if tracked else None,
        )
        written = False
        if tracked is None or tracked.state is not JobState.WAITING:
            # It starts waiting (new, retrying, moved): record it, and its decision.
            self._write(book, status)
            written = True
            self._decision(book, result.decision)
            self.counts.outcome("waiting")
        elif (
            status.reason != tracked.reason
            and now - (tracked.waiting_written_at or 0.0) >= self.settings.waiting_rewrite_s
        ):
            # Still waiting, for a new reason: rewritten now and then, not on every retry.
            self._write(book, status)
            written = True
        waiting = book.get(job.job_id)
        if waiting is not None:
            waiting.decisions = count
            if waiting.waiting_written_at is None or written:
                waiting.waiting_written_at = now

    def _retry(self, now: float, job_types: set[str] | None = None) -> None:
        """Decide waiting jobs again (of `job_types`, default every type), per job type across
        the owned partitions: the best head (priority, then its submitter's turn, then age)
        first, until one still waits, which blocks its type (later ones would wait too) but
        not the other types."""
        heads: dict[str, list[tuple[PartitionBook, WaitingQueue]]] = {}
        for book in self.books.values():
            for job_type, queue in list(book.waiting.items()):
                if job_types is not None and job_type not in job_types:
                    continue
                if not queue:
                    book.waiting.pop(job_type, None)
                    continue
                heads.setdefault(job_type, []).append((book, queue))
        for queues in heads.values():
            while True:
                best = None
                for book, queue in queues:
                    head = queue.head(now)
                    if head is not None and (best is None or _before(head, best[2], queue.turns)):
                        best = (book, queue, head)
                if best is None:
                    break
                book, queue, head = best
                tracked = book.get(head.job_id)
                if tracked is None:
                    queue.discard(head.job_id)
                    continue
                status = self._status_of(tracked)
                decided_at = self.clock()  # each decision at its own time, in order
                if not self._decide(
                    book, status.job, attempt=status.attempt, now=decided_at, tracked=tracked
                ):
                    break  # this type waits; later jobs of it would too, other types go on

    def _expire(self, book: PartitionBook, now: float) -> None:
        """Waiting jobs whose deadline passed, wherever they are in their queue."""
        for queue in list(book.waiting.values()):
            for entry in queue.expired(now):
                tracked = book.get(entry.job_id)
                if tracked is None:
                    continue
                status = tracked.status
                deadline_at = status.job.deadline_at or now
                reason = (
                    f"deadline passed: {now - deadline_at:.1f}s after submitted_at + deadline_s"
                )
                refused = self.dispatcher.refuse(
                    status.job,
                    now,
                    DecisionOutcome.EXPIRED,
                    reason,
                    status.attempt,
                    tracked.decisions + 1,
                )
                self._decision(book, refused.decision)
                self._end(
                    book,
                    self._status(
                        status.job,
                        JobState.EXPIRED,
                        now,
                        attempt=status.attempt,
                        reason=reason,
                        errors=list(status.errors) or None,
                    ),
                    dead_letter=(
                        self._names["jobs"],
                        None,
                        status.job.key(),
                        status.job.to_bytes(),
                    ),
                )
                self.counts.outcome("expired")

    def _failed(self, book: PartitionBook, tracked: Tracked, status: JobStatus, now: float) -> None:
        job = tracked.status.job  # the dispatcher's copy is authoritative, not the report's
        errors = [*tracked.errors, status.error or "failed"][-job.max_attempts :]
        if status.attempt < job.max_attempts:
            retry_at = now + self._backoff_s(status.attempt)
            retrying = self._status(
                job,
                JobState.RETRYING,
                now,
                attempt=status.attempt + 1,
                error=status.error,
                errors=errors,
                retry_at=retry_at,
                vm_id=status.vm_id,
                host_id=status.host_id,
                reason=f"attempt {status.attempt} of {job.max_attempts} failed on "
                f"{status.vm_id}; retrying at {retry_at:.3f} (preferring another VM)",
            )
            self._write(book, retrying)
            again = book.get(job.job_id or "")
            if again is not None and status.vm_id is not None:
                again.avoid = frozenset({status.vm_id})
            self.counts.retried += 1
            return
        reason = f"failed after {status.attempt} attempt(s): " + " | ".join(errors)
        self._end(
            book,
            self._status(
                job,
                JobState.FAILED,
                now,
                attempt=status.attempt,
                error=status.error,
                errors=errors,
                vm_id=status.vm_id,
                host_id=status.host_id,
                reason=reason[:2000],
            ),
            dead_letter=(self._names["jobs"], None, job.key(), job.to_bytes()),
        )
        self.counts.outcome("failed")

    def _backoff_s(self, attempt: int) -> float:
        """Exponential backoff with full jitter (Celery's retry_backoff and retry_jitter)."""
        ceiling = min(
            self.settings.retry_backoff_max_s, self.settings.retry_backoff_s * 2 ** (attempt - 1)
        )
        return self.rng.uniform(0.0, ceiling)

    def _heard_s(self, now: float) -> float:
        """The time since the last tick in which the dispatcher heard from the fleet: all of
        it while something reached the fleet view, a job or a status within `lag_limit_s`
        (the window after which the policy counts every host stale), none after. A lease
        counts only this time: while the broker is out of reach, the guests' silence is no
        evidence against them, and a job they ran then is not moved and run again."""
        if self.view.version != self._view_version:
            self._view_version = self.view.version
            self._heard_at = now
        last, self._ticked_at = self._ticked_at, now
        if now - self._heard_at > self.settings.lag_limit_s:
            return 0.0
        return min(max(now - last, 0.0), self.settings.lag_limit_s)

    def _move_stranded(self, book: PartitionBook, now: float, heard_s: float) -> None:
        """Jobs on a VM that stopped, left, went silent past its lease, or whose host drains
        past its deadline, go elsewhere (a late report from the VM is then refused).

        Silence and queueing time count only time in which the dispatcher heard from the
        fleet (`_heard_s`); after a restart they start again from zero, so a recovered job
        gets a whole lease before it is moved for silence."""
        lease = self.settings.lease_s
        book.heard_clock_s += heard_s
        silent_s = {vm_id: book.guest_silent_s.get(vm_id, 0.0) + heard_s for vm_id in book.on_vm}
        for vm_id, job_ids in list(book.on_vm.items()):
            registration = self.view.vms.get(vm_id)
            host = self.view.hosts.get(registration.host_id) if registration else None
            admin = self.view.host_mode(registration.host_id) if registration else None
            gone = (
                registration is None
                or registration.status is not VmStatus.RUNNING
                or (host is not None and host.status.value == "down")
            )
            draining = (
                admin is not None
                and admin.mode.value == "draining"
                and (admin.deadline_at is None or now >= admin.deadline_at)
            )
            silent = silent_s[vm_id] > lease
            if not (gone or draining or silent):
                continue  # the common case: nothing to look at job by job
            for job_id in list(job_ids):
                tracked = book.get(job_id)
                if tracked is None:
                    continue
                unstarted = tracked.state is JobState.DISPATCHED
                if gone:
                    why = "stopped" if registration is not None else "left the fleet"
                    self._move(book, tracked, f"VM {vm_id} {why}", now)
                elif unstarted and draining:
                    self._move(book, tracked, f"host of VM {vm_id} is draining", now)
                elif unstarted and self._queued_s(book, tracked, vm_id) > lease:
                    self._move(book, tracked, f"VM {vm_id} has not taken jobs for {lease:g}s", now)
        book.guest_silent_s = silent_s

    @staticmethod
    def _queued_s(book: PartitionBook, tracked: Tracked, vm_id: str) -> float:
        """How long an unstarted job has been in `vm_id`'s queue, in heard-from time."""
        queued = book.queued_at.get(tracked.job_id)
        if queued is None or queued[:2] != (vm_id, tracked.attempt):
            return 0.0
        return book.heard_clock_s - queued[2]

    def _move(self, book: PartitionBook, tracked: Tracked, why: str, now: float) -> None:
        status = tracked.status
        vm_id = status.vm_id
        assert vm_id is not None
        control = JobControl(
            job_id=status.job_id,
            action=ControlAction.REVOKE,
            requested_at=now,
            vm_id=vm_id,
            reason=why,
        )
        self.out.first.append(Record(self._control_topic, control.key(), control.to_bytes()))
        waiting = self._status(
            status.job,
            JobState.WAITING,
            now,
            attempt=status.attempt,
            reason=f"moving: {why}",
            errors=list(status.errors),
        )
        self._write(book, waiting)
        moved = book.get(status.job_id)
        if moved is not None:
            moved.avoid = frozenset({vm_id})
            moved.waiting_written_at = now
        self.counts.moved += 1
        log.info("job %s: %s; moving it", status.job_id, why)

    # --- writing ----------------------------------------------------------------------------------

    def _status(self, job: JobSubmission, state: JobState, now: float, **fields: Any) -> JobStatus:
        """A status record of the dispatcher's own, built without validating it again: its
        job was validated on the way in and every other field is the dispatcher's (a status
        with an impossible combination is a bug the unit tests catch: they read every record
        back through `JobStatus.from_bytes`)."""
        assert job.job_id is not None
        given = {k: v for k, v in fields.items() if v is not None}
        return trusted(
            JobStatus,
            schema_version=1,
            job_id=job.job_id,
            state=state,
            at=now,
            writer=StatusWriter.DISPATCHER,
            job=job,
            **given,
        )

    def _write(self, book: PartitionBook, status: JobStatus) -> None:
        """Adopt a status and produce it to the partition's status log (phase one)."""
        record = status.to_bytes()
        book.adopt(status, self.clock(), record)
        self.out.first.append(
            Record(self._names["job-status"], status.key(), record, book.partition)
        )

    def _end(
        self,
        book: PartitionBook,
        status: JobStatus,
        dead_letter: tuple[str, int | None, bytes | None, bytes | None] | None = None,
    ) -> None:
        self._write(book, status)
        if dead_letter is not None and status.state is not JobState.CANCELLED:
            topic, offset, key, value = dead_letter
            self._dead_letter(
                topic, book.partition, offset, key, value, status.reason or "", job_id=status.job_id
            )

    def _refuse(
        self,
        book: PartitionBook,
        job_id: str,
        offset: int | None,
        key: bytes | None,
        value: bytes,
        why: str,
    ) -> None:
        """A guest's report that does not count: dead-letter it and make the job's latest
        record the true one again (its current status; none, for a job never seen here). A job
        that already ended keeps the report as its latest record until it is forgotten: its
        final record is not kept in memory."""
        self.counts.rejected_status += 1
        topic = self._names["job-status"]
        self._dead_letter(topic, book.partition, offset, key, value, why, job_id=job_id)
        tracked = book.get(job_id)
        if tracked is not None:
            self._write(book, tracked.status)
        elif job_id not in book.finished:
            self.out.first.append(Record(topic, job_id.encode(), None, book.partition))

    def _decision(self, book: PartitionBook, decision: DispatchDecision) -> None:
        if self.metrics is not None:
            self.metrics.refused_by(decision)
        self.recent.append(decision)
        if len(self.recent) > self.settings.recent_decisions:
            del self.recent[: len(self.recent) - self.settings.recent_decisions]
        self.out.decisions.append(
            Record(self._names["decisions"], decision.key(), decision.to_bytes(), book.partition)
        )

    def _send_queued(self, book: PartitionBook, tracked: Tracked) -> None:
        status = tracked.status
        vm_id = status.vm_id
        registration = self.view.vms.get(vm_id or "")
        if vm_id is None or status.host_id is None or registration is None:
            return  # the VM left: the stranded check moves it
        queued = queued_job(
            status.job,
            vm_id,
            status.host_id,
            status.dispatched_at or status.at,
            self.dispatcher.policy.name,
            status.attempt,
            book.partition,
            list(status.errors),
        )
        self.out.then.append(Record(registration.queue_topic, queued.key(), queued.to_bytes()))

    def _forward_completion(self, status: JobStatus) -> None:
        """A checked run, for the vm_stats agent (load, io_per_job)."""
        if status.vm_id is None or status.host_id is None or status.finished_at is None:
            return
        job = status.job
        assert job.submitted_at is not None
        succeeded = status.state is JobState.SUCCEEDED
        # Every field is one of the guest's record, validated when it was read (the same
        # types and bounds): only the completion's own rule, its timeline, is left to check.
        completion = trusted(
            JobCompletion,
            schema_version=1,
            job_id=status.job_id,
            job_type=job.job_type,
            vm_id=status.vm_id,
            host_id=status.host_id,
            submitted_at=job.submitted_at,
            dispatched_at=status.dispatched_at or job.submitted_at,
            started_at=status.started_at or status.finished_at,
            finished_at=status.finished_at,
            outcome=JobOutcome.SUCCEEDED if succeeded else JobOutcome.FAILED,
            error=None if succeeded else (status.error or "failed"),
            attempt=status.attempt,
        )
        try:
            completion._timeline_in_order()
        except ValueError as exc:
            log.warning("job %s: no completion forwarded: %s", status.job_id, exc)
            return
        self.out.first.append(
            Record(self._names["completions"], completion.key(), completion.to_bytes())
        )

    def _dead_letter(
        self,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        job_id: str | None = None,
    ) -> None:
        letter = DeadLetter.of(
            topic,
            partition,
            offset,
            key,
            value,
            reason=reason,
            stage=STAGE,
            at=self.clock(),
            job_id=job_id,
        )
        log.warning("dead letter from %s[%s]@%s: %s", topic, partition, offset, reason)
        self.counts.outcome("dead_letters")
        self.out.first.append(Record(self._names["dead-letters"], letter.key(), letter.to_bytes()))

    def _publish_load(self, now: float) -> None:
        if now - self._load_published_at < self.settings.load_interval_s:
            return
        self._load_published_at = now
        for partition, book in self.books.items():
            counts = dict(book.in_flight())
            if counts == self._published_load.get(partition, {}):
                continue
            self._published_load[partition] = counts
            load = DispatchLoad(partition=partition, in_flight=counts, at=now)
            self.out.first.append(Record(self._load_topic, load.key(), load.to_bytes()))

    def _forget_cancels(self, now: float) -> None:
        horizon = now - self.settings.dedupe_horizon_s
        if len(self.cancels) > 10_000 or (self.cancels and min(self.cancels.values()) < horizon):
            self.cancels = {job_id: at for job_id, at in self.cancels.items() if at >= horizon}

    # --- checks -------------------------------------------------------------------------------------

    @staticmethod
    def _matches(tracked: Tracked | None, status: JobStatus) -> bool:
        """A guest's report counts only for the job's current VM and attempt, while in flight."""
        return (
            tracked is not None
            and tracked.state in (JobState.DISPATCHED, JobState.RUNNING)
            and tracked.vm_id == status.vm_id
            and tracked.attempt == status.attempt
            and status.state
            in (
                JobState.RUNNING,
                JobState.SUCCEEDED,
                JobState.FAILED,
                JobState.RETRYING,
                JobState.CANCELLED,
            )
        )

    @staticmethod
    def _mismatch(book: PartitionBook, tracked: Tracked | None, status: JobStatus) -> str:
        said = f"{status.state} from VM {status.vm_id} (attempt {status.attempt})"
        if tracked is None:
            ended = "already ended" if status.job_id in book.finished else "unknown here"
            return f"JobStatus: {said} for job {status.job_id}, which is {ended}"
        current = tracked
        return f"JobStatus: {said}, but job {status.job_id} is {current.state}" + (
            f" on VM {current.vm_id} (attempt {current.attempt})" if current.vm_id else ""
        )


__all__ = ["DispatchCore", "DispatchResult", "Outbox", "Record"]


def _before(a: Waiting, b: Waiting, turns: Turns) -> bool:
    """Whether waiting job `a` goes before `b` (heads of two partitions' queues of one type):
    priority, then whose turn it is (the type's turns are shared by the partitions), then age."""
    return (-a.priority, turns.of(a.submitter), a.since, a.job_id) < (
        -b.priority,
        turns.of(b.submitter),
        b.since,
        b.job_id,
    )
