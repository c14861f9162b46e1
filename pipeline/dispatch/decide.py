"""The paper's step 4 between Kafka and the policy: no I/O, time passed in.

- `normalize` gives every submission a stable job id and a submission time;
- `Dispatcher.decide` asks the policy over a snapshot (`pipeline.fleet.snapshots`) and turns its
  `Decision` into what to produce: the decision event, the queued job and its topic, or the
  reason for a dead letter.

The agents that consume and produce live beside this module (`agent`, `retry`, `effects`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pipeline.events import DecisionOutcome, DispatchDecision, JobSubmission, QueuedJob
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.base import Policy
from pipeline.policy.decision import JobRequest, Outcome


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
        waited_s = max(0.0, now - job.submitted_at)
        request = JobRequest(job.job_id, job.job_type, waited_s=waited_s)
        decision = self.policy.decide(snapshot, request, self.rng)
        event = DispatchDecision(
            job_id=job.job_id,
            job_type=job.job_type,
            decided_at=now,
            policy=decision.policy,
            outcome=DecisionOutcome(decision.outcome.value),
            vm_id=decision.vm_id,
            host_id=decision.host_id,
            reason=decision.reason,
            candidates=list(decision.candidates),
            attempt=attempt,
        )
        if decision.outcome is Outcome.REJECTED:
            return DispatchResult(
                event, dead_letter_reason=f"no VM serves job type {job.job_type!r}"
            )
        if decision.outcome is Outcome.WAITING:
            return DispatchResult(event)
        assert decision.vm_id is not None and decision.host_id is not None
        registration = self.view.vms.get(decision.vm_id)
        if registration is None:
            # The VM left the fleet after the cached snapshot was taken: nothing to send it to.
            # The job waits and is decided again over a newer snapshot.
            return DispatchResult(
                event.model_copy(
                    update={
                        "outcome": DecisionOutcome.WAITING,
                        "vm_id": None,
                        "host_id": None,
                        "reason": f"chosen VM {decision.vm_id} left the fleet; deciding again",
                    }
                )
            )
        self.snapshots.record_claim(decision.vm_id, now)
        queued = queued_job(job, decision.vm_id, decision.host_id, now, decision.policy)
        return DispatchResult(event, queued=queued, queue_topic=registration.queue_topic)

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
