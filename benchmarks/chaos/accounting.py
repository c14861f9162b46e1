"""What one chaos run did, counted from the records its topics hold. Pure: records in, counts out.

Every submitted job (a `JobSubmission` on `jobs`) lands in exactly one bucket, by its latest
`job-status` record after the drain:

- completed: the latest record is `succeeded`;
- dead-lettered: it ended otherwise (`failed`, `expired`, `dead-lettered`; `cancelled` apart);
- stranded: it did not end and the dispatcher still holds it (latest `waiting` or `retrying`);
- lost: it did not end and nothing holds it: no status record at all, or its latest record says
  `dispatched`/`running` on a VM that never ended it (the drain waited until nothing changed).

Defects, also counted from the records (each job at most once per column):

- ran on two VMs: guest `running`/`succeeded`/`failed` records of one attempt from two VMs. A
  job the dispatcher moved off a VM (a `waiting` record with reason `moving: ...`, and a revoke)
  counts as moved instead, unless both VMs reported it succeeded;
- end published twice: more than one guest `succeeded` record (a guest re-ran a redelivered
  job, or re-sent its report); the dispatcher accepts the first and refuses the rest;
- completion forwarded twice: more than one `JobCompletion` on `completions` (what the vm_stats
  agent counts as load);
- queued without decision: a `QueuedJob` whose (job, attempt, VM) has no `dispatched` decision.

Times, per fault (`Fault.at` when it was injected, `Fault.until` when the harness had undone it:
the moment of a kill-and-restart, or when a stopped broker served clients again):

- first dispatch: from `until` to the next `dispatched` decision's `decided_at` in the jobs
  partitions the fault hit (a killed worker's partitions; every partition otherwise);
- backlog recovery: a job is *backlog* at time t from `submitted_at + BACKLOG_GRACE_S` until it
  was first dispatched (or ended without a dispatch). The backlog just before the fault is its
  baseline; recovery is the time from `until` to the first instant t >= until +
  BACKLOG_GRACE_S at which the backlog is back at or below the baseline (None: never);
- delivering again (broker faults): per Dom0, from `until` to its first `io-samples` record
  the broker appended after it; per guest that had a job to run after `until` (queued to it,
  not ended by then), from when it had one (`until`, or the job's `dispatched_at` if later) to
  its first `job-status` record appended after that. The slowest of each (None: one never
  delivered). Append times are record timestamps: the harness creates its topics with
  `message.timestamp.type=LogAppendTime`.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.events import (
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    JobCompletion,
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
)

#: A job submitted less than this long ago is in flight, not backlog.
BACKLOG_GRACE_S = 2.0
#: Job ids shown per defect, with the evidence.
EVIDENCE_IDS = 10

_HELD = (JobState.WAITING, JobState.RETRYING)
_OTHER_END = (JobState.FAILED, JobState.EXPIRED, JobState.DEAD_LETTERED)


@dataclass(frozen=True)
class StatusRecord:
    status: JobStatus
    partition: int
    #: The record's timestamp: when the broker appended it (LogAppendTime).
    appended_at: float


@dataclass(frozen=True)
class DecisionRecord:
    decision: DispatchDecision
    partition: int


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float
    until: float
    target: str
    #: The jobs partitions it hit (a killed worker's); None: every partition.
    partitions: frozenset[int] | None = None
    note: str | None = None


@dataclass
class Observed:
    """Everything read back from one run's topics, to their end offsets."""

    submitted: list[JobSubmission]
    #: In each partition's order (the order the topic keeps).
    statuses: list[StatusRecord]
    decisions: list[DecisionRecord]
    queued: list[QueuedJob]
    completions: list[JobCompletion]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: (host_id, appended_at) of every io-samples record.
    samples: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class FaultTimes:
    kind: str
    target: str
    at: float
    until: float
    first_dispatch_s: float | None
    backlog_recovery_s: float | None
    #: Jobs not yet dispatched (or ended) at `until`: with none, there was nothing to dispatch
    #: after the fault and its first dispatch does not apply.
    left_to_dispatch: int
    dom0s_back_s: float | None = None
    guests_back_s: float | None = None
    #: Guests that had a job to run after `until`: with none, `guests_back_s` does not apply
    #: (a replicated cluster served every job before the killed node came back).
    guests_with_work: int = 0
    note: str | None = None


@dataclass
class RunCounts:
    submitted: int
    completed: int
    lost: int
    ran_on_two_vms: int
    moved: int
    #: Jobs that waited at least once (no eligible VM when decided): not a defect.
    waited: int
    #: The commonest first reasons to wait, with their counts.
    wait_reasons: dict[str, int]
    end_published_twice: int
    completion_forwarded_twice: int
    stranded: int
    queued_without_decision: int
    dead_lettered: int
    cancelled: int
    dead_letter_records: int
    p50_response_s: float | None
    p99_response_s: float | None
    #: Where completed jobs spent their time (medians): submitted -> dispatched -> started ->
    #: finished, for reading a run's response times.
    stages_p50_s: dict[str, float | None]
    faults: list[FaultTimes]
    #: Per defect, up to EVIDENCE_IDS jobs with what the topics say of them.
    evidence: dict[str, list[dict[str, Any]]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def account(observed: Observed, faults: Iterable[Fault] = ()) -> RunCounts:
    submitted = {job.job_id: job for job in observed.submitted if job.job_id}
    history: dict[str, list[StatusRecord]] = defaultdict(list)
    for record in observed.statuses:
        if record.status.job_id in submitted:
            history[record.status.job_id].append(record)
    evidence: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def note(defect: str, job_id: str, **detail: Any) -> None:
        if len(evidence[defect]) < EVIDENCE_IDS:
            trail = [_trail(r) for r in history.get(job_id, [])]
            evidence[defect].append({"job_id": job_id, **detail, "status_records": trail})

    buckets: dict[str, int] = defaultdict(int)
    responses: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    for job_id in submitted:
        records = history.get(job_id, [])
        latest = records[-1].status if records else None
        if latest is None:
            buckets["lost"] += 1
            note("lost", job_id, why="no status record")
        elif latest.state is JobState.SUCCEEDED:
            buckets["completed"] += 1
            if latest.finished_at is not None and latest.job.submitted_at is not None:
                responses.append(latest.finished_at - latest.job.submitted_at)
                if latest.dispatched_at is not None and latest.started_at is not None:
                    stages["to_dispatch"].append(latest.dispatched_at - latest.job.submitted_at)
                    stages["in_queue"].append(latest.started_at - latest.dispatched_at)
                    stages["running"].append(latest.finished_at - latest.started_at)
        elif latest.state in _OTHER_END:
            buckets["dead_lettered"] += 1
        elif latest.state is JobState.CANCELLED:
            buckets["cancelled"] += 1
        elif latest.state in _HELD:
            buckets["stranded"] += 1
            note("stranded", job_id, state=latest.state.value, reason=latest.reason)
        else:
            buckets["lost"] += 1
            note("lost", job_id, state=latest.state.value, vm_id=latest.vm_id, at=latest.at)

    two_vms, moved, twice = _runs(history, note)
    reasons: Counter[str] = Counter()
    waited = 0
    for records in history.values():
        first_wait = next((r.status for r in records if r.status.state is JobState.WAITING), None)
        if first_wait is not None:
            waited += 1
            reasons[(first_wait.reason or "")[:80]] += 1
    forwarded: dict[str, int] = defaultdict(int)
    for completion in observed.completions:
        if completion.job_id in submitted:
            forwarded[completion.job_id] += 1
    for job_id, count in forwarded.items():
        if count > 1:
            note("completion_forwarded_twice", job_id, records=count)

    dispatched = {
        (d.decision.job_id, d.decision.attempt, d.decision.vm_id)
        for d in observed.decisions
        if d.decision.outcome is DecisionOutcome.DISPATCHED
    }
    unbacked = {
        (q.job_id, q.attempt, q.vm_id)
        for q in observed.queued
        if q.job_id in submitted and (q.job_id, q.attempt, q.vm_id) not in dispatched
    }
    for job_id, attempt, vm_id in sorted(unbacked)[:EVIDENCE_IDS]:
        note("queued_without_decision", job_id, attempt=attempt, vm_id=vm_id)

    p50, p99 = quantile(responses, 0.5), quantile(responses, 0.99)
    return RunCounts(
        submitted=len(submitted),
        completed=buckets["completed"],
        lost=buckets["lost"],
        ran_on_two_vms=two_vms,
        moved=moved,
        waited=waited,
        wait_reasons=dict(reasons.most_common(5)),
        end_published_twice=twice,
        completion_forwarded_twice=sum(1 for count in forwarded.values() if count > 1),
        stranded=buckets["stranded"],
        queued_without_decision=len(unbacked),
        dead_lettered=buckets["dead_lettered"],
        cancelled=buckets["cancelled"],
        dead_letter_records=sum(1 for d in observed.dead_letters if d.job_id in submitted),
        p50_response_s=_round(p50),
        p99_response_s=_round(p99),
        stages_p50_s={
            name: _round(quantile(stages[name], 0.5))
            for name in ("to_dispatch", "in_queue", "running")
        },
        faults=fault_times(observed, submitted, history, list(faults)),
        evidence=dict(evidence),
    )


def _runs(history: dict[str, list[StatusRecord]], note: Any) -> tuple[int, int, int]:
    """Jobs run on two VMs (a defect), moved (not one), and with their end published twice."""
    two_vms = moved = twice = 0
    for job_id, records in history.items():
        vms_by_attempt: dict[int, set[str]] = defaultdict(set)
        succeeded: list[tuple[str, int]] = []
        was_moved = False
        for record in records:
            status = record.status
            if status.writer is StatusWriter.GUEST and status.vm_id:
                vms_by_attempt[status.attempt].add(status.vm_id)
                if status.state is JobState.SUCCEEDED:
                    succeeded.append((status.vm_id, status.attempt))
            elif status.state is JobState.WAITING and (status.reason or "").startswith("moving"):
                was_moved = True
        moved += was_moved
        if len(succeeded) > 1:
            twice += 1
            note("end_published_twice", job_id, succeeded=succeeded)
        on_two = {attempt: sorted(vms) for attempt, vms in vms_by_attempt.items() if len(vms) > 1}
        if not on_two:
            continue
        succeeded_on = {vm for vm, _ in succeeded}
        if was_moved and len(succeeded_on) < 2:
            continue
        two_vms += 1
        note("ran_on_two_vms", job_id, vms=on_two, succeeded_on=sorted(succeeded_on))
    return two_vms, moved, twice


def fault_times(
    observed: Observed,
    submitted: dict[str, JobSubmission],
    history: dict[str, list[StatusRecord]],
    faults: list[Fault],
) -> list[FaultTimes]:
    if not faults:
        return []
    decided: list[tuple[float, int]] = sorted(
        (d.decision.decided_at, d.partition)
        for d in observed.decisions
        if d.decision.outcome is DecisionOutcome.DISPATCHED and d.decision.job_id in submitted
    )
    backlog = Backlog.of(observed, submitted, history)
    results = []
    for fault in faults:
        first = next(
            (
                at - fault.until
                for at, partition in decided[bisect.bisect_left(decided, (fault.until, -1)) :]
                if fault.partitions is None or partition in fault.partitions
            ),
            None,
        )
        times = FaultTimes(
            kind=fault.kind,
            target=fault.target,
            at=fault.at,
            until=fault.until,
            first_dispatch_s=_round(first),
            backlog_recovery_s=_round(backlog.recovery_s(fault.at, fault.until)),
            left_to_dispatch=backlog.left_after(fault.until),
            note=fault.note,
        )
        if fault.kind.startswith("broker"):
            times.dom0s_back_s = _round(_slowest_back(observed.samples, fault.until))
            slowest, times.guests_with_work = _slowest_guest(observed, fault.until)
            times.guests_back_s = _round(slowest)
        results.append(times)
    return results


def _slowest_guest(observed: Observed, until: float) -> tuple[float | None, int]:
    """The slowest guest to deliver again, among those that had a job to run after `until`:
    from when it had one (and the broker was back) to its first record appended after that
    (None if one never did), and how many guests had a job to run then."""
    ended: dict[tuple[str, str], float] = {}
    appended: dict[str, list[float]] = defaultdict(list)
    for record in observed.statuses:
        status = record.status
        if status.writer is not StatusWriter.GUEST or not status.vm_id:
            continue
        appended[status.vm_id].append(record.appended_at)
        if status.state is not JobState.RUNNING:
            key = (status.job_id, status.vm_id)
            ended[key] = min(ended.get(key, math.inf), record.appended_at)
    work_from: dict[str, float] = {}
    for job in observed.queued:
        if ended.get((job.job_id, job.vm_id), math.inf) >= until:
            available = max(until, job.dispatched_at)
            work_from[job.vm_id] = min(work_from.get(job.vm_id, math.inf), available)
    delays = []
    for vm_id, since in work_from.items():
        after = [at for at in appended.get(vm_id, []) if at >= since]
        if not after:
            return None, len(work_from)
        delays.append(min(after) - since)
    return (max(delays) if delays else None), len(work_from)


@dataclass(frozen=True)
class Backlog:
    """backlog(t) = #{jobs: starts <= t < ends}, from two sorted lists (O(log n) per t)."""

    #: submitted_at + grace per job, sorted.
    starts: list[float]
    #: max(start, handled_at) per job, sorted (inf: never handled).
    ends: list[float]

    @classmethod
    def of(
        cls,
        observed: Observed,
        submitted: dict[str, JobSubmission],
        history: dict[str, list[StatusRecord]],
    ) -> Backlog:
        handled: dict[str, float] = {}
        for record in observed.decisions:
            decision = record.decision
            if decision.outcome is DecisionOutcome.DISPATCHED:
                previous = handled.get(decision.job_id, math.inf)
                handled[decision.job_id] = min(previous, decision.decided_at)
        for job_id, records in history.items():
            ended = [r.status.at for r in records if r.status.terminal]
            if ended and job_id not in handled:
                handled[job_id] = min(ended)
        starts, ends = [], []
        for job_id, job in submitted.items():
            if job.submitted_at is None:
                continue
            start = job.submitted_at + BACKLOG_GRACE_S
            starts.append(start)
            ends.append(max(start, handled.get(job_id, math.inf)))
        return cls(sorted(starts), sorted(ends))

    def left_after(self, t: float) -> int:
        """Jobs not handled by `t` (submitted before or after it)."""
        return len(self.ends) - bisect.bisect_right(self.ends, t)

    def at(self, t: float) -> int:
        return bisect.bisect_right(self.starts, t) - bisect.bisect_right(self.ends, t)

    def recovery_s(self, fault_at: float, until: float) -> float | None:
        baseline = self.at(fault_at)
        earliest = until + BACKLOG_GRACE_S
        if self.at(earliest) <= baseline:
            return earliest - until
        # The backlog only falls when a job is handled: try those instants, in order.
        for end in self.ends[bisect.bisect_right(self.ends, earliest) :]:
            if math.isinf(end):
                return None
            if self.at(end) <= baseline:
                return end - until
        return None


def _slowest_back(records: Iterable[tuple[str, float]], since: float) -> float | None:
    """max over sources of (first record at or after `since` - since); None if one never came
    back (or no source ever delivered)."""
    first_after: dict[str, float | None] = {}
    for source, appended_at in records:
        first_after.setdefault(source, None)
        if appended_at >= since:
            current = first_after[source]
            if current is None or appended_at < current:
                first_after[source] = appended_at
    if not first_after:
        return None
    delays = [None if at is None else at - since for at in first_after.values()]
    if any(delay is None for delay in delays):
        return None
    return max(delay for delay in delays if delay is not None)


def _trail(record: StatusRecord) -> str:
    """One status record as evidence: `<at> <state> by <writer> [on <vm> #<attempt>] [reason]`."""
    status = record.status
    where = f" on {status.vm_id} #{status.attempt}" if status.vm_id else f" #{status.attempt}"
    reason = f": {status.reason[:100]}" if status.reason else ""
    return f"{status.at:.3f} p{record.partition} {status.state.value} by {status.writer.value}{where}{reason}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
