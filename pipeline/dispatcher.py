"""The dispatcher's logic between Kafka and the policy: no I/O, time passed in.

- `normalize` gives every submission a stable job id and a submission time;
- `SnapshotSource` builds the policy's FleetSnapshot from the FleetView, cached while nothing
  changed, and re-applies this dispatcher's own placements that `vm-state` does not reflect yet
  (a claim, as OpenStack Nova's scheduler makes one): without them a burst between two telemetry
  reports would herd onto the one host that looked free;
- `Dispatcher.decide` calls the policy and turns its `Decision` into the events to produce;
- `WaitingIndex` orders waiting jobs per partition and per job type, so a type with no eligible
  host never holds up another type.

The Faust wiring that consumes and produces lives in `pipeline.app`.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.events import (
    DecisionOutcome,
    DispatchDecision,
    JobSubmission,
    QueuedJob,
    VmRegistration,
)
from pipeline.fleet import FleetView
from pipeline.policy.base import Policy
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig


def normalize(
    job: JobSubmission, topic: str, partition: int, offset: int, timestamp_s: float
) -> JobSubmission:
    """Fill in what a submitter may leave out: a job id stable under redelivery, and a time.

    Without a `job_id`, the id derives from where the message sits in the log, so the same
    message re-delivered after a crash gets the same id (and guests dedupe it).
    """
    updates: dict[str, Any] = {}
    if job.job_id is None:
        updates["job_id"] = f"auto.{topic}.{partition}.{offset}"
    if job.submitted_at is None:
        updates["submitted_at"] = timestamp_s
    return job.model_copy(update=updates) if updates else job


class SnapshotSource:
    """Snapshots of the fleet for the policy, with this dispatcher's unreported placements.

    A snapshot is rebuilt when the view changed, but not sooner than `min_rebuild_s` after the
    last one, nor sooner than the last rebuild's cost divided by `rebuild_share`: rebuilding
    takes at most that share of the dispatcher's time however large the fleet (1,000 VMs cost
    ~1.6 ms here, 10,000 ten times that). In between, the dispatcher's own placements are
    claims on the cached snapshot, and telemetry comes once a second anyway.
    """

    def __init__(
        self,
        view: FleetView,
        config: PolicyConfig,
        min_rebuild_s: float = 0.05,
        max_age_s: float = 0.5,
        rebuild_share: float = 0.1,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.view = view
        self.config = config
        self.min_rebuild_s = min_rebuild_s
        self.max_age_s = max_age_s
        self.rebuild_share = rebuild_share
        self.timer = timer
        #: What the last rebuild took (timer seconds).
        self.rebuild_cost_s = 0.0
        # vm_id -> dispatched_at of own placements, oldest first (decisions are made in time order)
        self._claims: dict[str, deque[float]] = {}
        self._snapshot: FleetSnapshot | None = None
        self._built_version = -1

    def get(self, now: float) -> FleetSnapshot:
        snapshot = self._snapshot
        if snapshot is not None:
            age = now - snapshot.taken_at
            changed = self.view.version != self._built_version
            if age < self.min_interval_s() or (not changed and age < self.max_age_s):
                return snapshot
        return self._rebuild(now)

    def min_interval_s(self) -> float:
        """The least time between two rebuilds, given what the last one cost."""
        return max(self.min_rebuild_s, self.rebuild_cost_s / self.rebuild_share)

    def record_claim(self, vm_id: str, dispatched_at: float) -> None:
        """Remember a placement until the VM's reported state includes it."""
        self._claims.setdefault(vm_id, deque()).append(dispatched_at)

    def pending_claims(self) -> int:
        return sum(len(times) for times in self._claims.values())

    def _rebuild(self, now: float) -> FleetSnapshot:
        started = self.timer()
        expired_before = now - 4 * self.config.stale_after_s
        snapshot = self.view.snapshot(now, self.config)
        for vm_id in list(self._claims):
            claims = self._claims[vm_id]
            state = self.view.vm_states.get(vm_id)
            reported_until = state.last_decision_at if state else None
            # Drop claims the VM's reported outstanding count already includes; claims older
            # than 4 x the stale limit are dropped too, so a silent pipeline cannot pin them
            # forever. Both cut from the old end: each rebuild costs O(VMs with claims).
            cutoff = max(expired_before, reported_until or expired_before)
            while claims and claims[0] <= cutoff:
                claims.popleft()
            if not claims:
                del self._claims[vm_id]
                continue
            try:
                snapshot.claim(vm_id, len(claims))
            except KeyError:  # the VM stopped or left: nothing left to claim against
                del self._claims[vm_id]
        self._snapshot = snapshot
        self._built_version = self.view.version
        self.rebuild_cost_s = self.timer() - started
        return snapshot


@dataclass(frozen=True)
class DispatchResult:
    """What to produce for one decided job."""

    decision: DispatchDecision
    queued: QueuedJob | None = None
    queue_topic: str | None = None
    dead_letter_reason: str | None = None

    @property
    def waiting(self) -> bool:
        return self.decision.outcome is DecisionOutcome.WAITING


class Dispatcher:
    """Decides one job at a time with the configured policy; produces nothing itself."""

    def __init__(
        self, policy: Policy, view: FleetView, snapshots: SnapshotSource, rng: random.Random
    ) -> None:
        self.policy = policy
        self.view = view
        self.snapshots = snapshots
        self.rng = rng

    def decide(self, job: JobSubmission, now: float, attempt: int = 1) -> DispatchResult:
        assert job.job_id is not None and job.submitted_at is not None, "normalize() first"
        deadline_at = job.deadline_at
        if deadline_at is not None and now >= deadline_at:
            return self._refuse(
                job,
                now,
                attempt,
                DecisionOutcome.EXPIRED,
                f"deadline passed: {now - deadline_at:.1f}s after submitted_at + deadline_s",
            )
        snapshot = self.snapshots.get(now)
        decision = self.policy.decide(snapshot, JobRequest(job.job_id, job.job_type), self.rng)
        event = DispatchDecision(
            job_id=job.job_id,
            job_type=job.job_type,
            decided_at=now,
            policy=decision.policy,
            outcome=DecisionOutcome(decision.outcome.value),
            vm_id=decision.vm_id,
            host_id=decision.host_id,
            reason=decision.reason,
            candidates=[candidate.to_view() for candidate in decision.candidates],
            attempt=attempt,
        )
        if decision.outcome is Outcome.REJECTED:
            return DispatchResult(
                event, dead_letter_reason=f"no VM serves job type {job.job_type!r}"
            )
        if decision.outcome is Outcome.WAITING:
            return DispatchResult(event)
        assert decision.vm_id is not None and decision.host_id is not None
        self.snapshots.record_claim(decision.vm_id, now)
        registration = self.view.vms.get(decision.vm_id)
        queued = queued_job(job, decision.vm_id, decision.host_id, now, decision.policy)
        return DispatchResult(event, queued=queued, queue_topic=_queue_topic(registration))

    def not_ready(self, job: JobSubmission, now: float) -> DispatchResult:
        """A job that arrives before the fleet view has caught up waits; it is never rejected."""
        event = DispatchDecision(
            job_id=job.job_id or "",
            job_type=job.job_type,
            decided_at=now,
            policy=self.policy.name,
            outcome=DecisionOutcome.WAITING,
            reason="fleet view not caught up yet",
        )
        return DispatchResult(event)

    def _refuse(
        self, job: JobSubmission, now: float, attempt: int, outcome: DecisionOutcome, reason: str
    ) -> DispatchResult:
        event = DispatchDecision(
            job_id=job.job_id or "",
            job_type=job.job_type,
            decided_at=now,
            policy=self.policy.name,
            outcome=outcome,
            reason=reason,
            attempt=attempt,
        )
        return DispatchResult(event, dead_letter_reason=reason)


def queued_job(job: JobSubmission, vm_id: str, host_id: str, now: float, policy: str) -> QueuedJob:
    assert job.job_id is not None and job.submitted_at is not None
    return QueuedJob(
        job_id=job.job_id,
        job_type=job.job_type,
        payload=job.payload,
        vm_id=vm_id,
        host_id=host_id,
        submitted_at=job.submitted_at,
        dispatched_at=now,
        deadline_at=job.deadline_at,
        policy=policy,
    )


def _queue_topic(registration: VmRegistration | None) -> str:
    if registration is None:  # the policy only picks registered VMs
        raise LookupError("chosen VM is not registered")
    return registration.queue_topic


class WaitingJob(NamedTuple):
    """One waiting job as the retry agent walks them: no table read unless it may go."""

    job_id: str
    waiting_since: float
    deadline_at: float | None


class WaitingIndex:
    """Waiting jobs per partition, per job type, oldest first (memory; the table is durable).

    Rebuilt from the `waiting_jobs` table after every rebalance, since the partitions a worker
    owns (and so the waiting jobs it must retry) may have changed. Each entry carries its
    deadline, so a retry tick skips the jobs behind a blocked one without reading the table,
    yet still expires those whose deadline passed.
    """

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, dict[str, WaitingJob]]] = {}

    def built(self, partition: int) -> bool:
        return partition in self._by_partition

    def build(self, partition: int, entries: Iterator[tuple[str, dict[str, Any]]]) -> None:
        found = sorted(
            (entry["waiting_since"], job_id, entry["job"]["job_type"], entry.get("deadline_at"))
            for job_id, entry in entries
            if entry.get("partition") == partition
        )
        types: dict[str, dict[str, WaitingJob]] = {}
        for waiting_since, job_id, job_type, deadline_at in found:
            types.setdefault(job_type, {})[job_id] = WaitingJob(job_id, waiting_since, deadline_at)
        self._by_partition[partition] = types

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
            # Out of order (a clock step back): re-sort this type once, keep walks cheap.
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

    def clear(self) -> None:
        self._by_partition.clear()


class DedupeHorizon:
    """When each remembered dispatched job id may be forgotten, per partition (memory).

    The `dispatched` table is durable; this index of it, oldest first, lets the retry agent
    delete entries past the dedupe horizon without scanning the table on every tick.
    """

    def __init__(self) -> None:
        self._by_partition: dict[int, deque[tuple[float, str]]] = {}

    def add(self, partition: int, job_id: str, at: float) -> None:
        self._by_partition.setdefault(partition, deque()).append((at, job_id))

    def rebuild(self, partition: int, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        found = sorted(
            (entry["at"], job_id)
            for job_id, entry in entries
            if entry.get("partition") == partition
        )
        self._by_partition[partition] = deque(found)

    def expired(self, partition: int, before: float) -> list[str]:
        """Pop and return the job ids of this partition remembered since before `before`."""
        queue = self._by_partition.get(partition)
        gone: list[str] = []
        while queue and queue[0][0] < before:
            gone.append(queue.popleft()[1])
        return gone
