"""The paper's step 4 between Kafka and the policy: no I/O, time passed in.

- `normalize` gives every submission a stable job id and a submission time;
- `Dispatcher.decide` asks the policy over a snapshot (`pipeline.fleet.snapshots`) and turns its
  `Decision` into what to produce: the decision event (compact: the compared candidates in full,
  the refused ones counted per rule, a few kept as examples), the queued job and its topic, a
  waiting job's funnel, or the reason for a dead letter.

The dispatcher's state and its Kafka I/O live beside this module (`core`, `service`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.events import (
    CandidateView,
    DecisionOutcome,
    DispatchDecision,
    FunnelStep,
    JobStatus,
    JobSubmission,
    QueuedJob,
    trusted,
)
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.base import Policy
from pipeline.policy.decision import Decision, JobRequest, Outcome

#: Refused candidates kept in a decision as examples (all are counted in `refused`).
REFUSED_EXAMPLES = 3


def normalize(
    job: JobSubmission, topic: str, partition: int, offset: int, timestamp_s: float
) -> JobSubmission:
    """Fill in what a submitter may leave out: a job id stable under redelivery, and a time.

    Without a `job_id`, the id derives from where the message sits in the log, so the same
    message re-delivered after a crash gets the same id (and is recognised).
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
    #: A waiting job's candidates left after each rule.
    funnel: tuple[FunnelStep, ...] = ()

    @property
    def outcome(self) -> DecisionOutcome:
        return self.decision.outcome

    @property
    def waiting(self) -> bool:
        return self.decision.outcome is DecisionOutcome.WAITING


class Dispatcher:
    """Decides one job at a time with the configured policy; produces nothing itself.

    `queue_ready(topic)` says whether a VM's queue topic can take a job now (it exists on the
    cluster); a chosen VM whose queue cannot is not sent to, and the job waits.
    """

    def __init__(
        self,
        policy: Policy,
        view: FleetView,
        snapshots: SnapshotSource,
        rng: random.Random,
        queue_ready: Callable[[str], bool] = lambda topic: True,
    ) -> None:
        self.policy = policy
        self.view = view
        self.snapshots = snapshots
        self.rng = rng
        self.queue_ready = queue_ready

    def decide(
        self,
        job: JobSubmission,
        now: float,
        *,
        attempt: int = 1,
        decision_count: int = 1,
        partition: int | None = None,
        avoid: frozenset[str] = frozenset(),
        errors: list[str] | None = None,
    ) -> DispatchResult:
        assert job.job_id is not None and job.submitted_at is not None, "normalize() first"
        deadline_at = job.deadline_at
        if deadline_at is not None and now >= deadline_at:
            reason = f"deadline passed: {now - deadline_at:.1f}s after submitted_at + deadline_s"
            return self.refuse(job, now, DecisionOutcome.EXPIRED, reason, attempt, decision_count)
        snapshot = self.snapshots.get(now)
        # How long it has waited so far: what io-aware's strictness (`hold_s`) is judged by.
        waited_s = max(0.0, now - job.submitted_at)
        request = JobRequest(job.job_id, job.job_type, avoid, waited_s=waited_s)
        decision = self.policy.decide(snapshot, request, self.rng)
        event = self._event(job, now, decision, attempt, decision_count)
        if decision.outcome is Outcome.REJECTED:
            return DispatchResult(event, dead_letter_reason=decision.reason)
        if decision.outcome is Outcome.WAITING:
            return DispatchResult(event, funnel=self._funnel(job.job_type, decision, snapshot))
        assert decision.vm_id is not None and decision.host_id is not None
        registration = self.view.vms.get(decision.vm_id)
        why_not = None
        if registration is None:
            # The VM left the fleet after the cached snapshot was taken: nothing to send it to.
            why_not = f"chosen VM {decision.vm_id} left the fleet; deciding again"
        elif not self.queue_ready(registration.queue_topic):
            why_not = f"queue topic {registration.queue_topic} of VM {decision.vm_id} is missing"
        if why_not is not None or registration is None:
            snapshot.claim(decision.vm_id, -1)  # the policy claimed it; nothing was placed
            waiting = event.model_copy(
                update={
                    "outcome": DecisionOutcome.WAITING,
                    "vm_id": None,
                    "host_id": None,
                    "reason": why_not,
                }
            )
            return DispatchResult(waiting)
        queued = queued_job(
            job, decision.vm_id, decision.host_id, now, decision.policy, attempt, partition, errors
        )
        return DispatchResult(event, queued=queued, queue_topic=registration.queue_topic)

    def not_ready(self, job: JobSubmission, now: float) -> DispatchResult:
        """A job that arrives before the fleet view has caught up waits; it is never rejected."""
        return DispatchResult(self._waits(job, now, "fleet view not caught up yet"))

    def behind(self, job: JobSubmission, now: float, head: JobStatus) -> DispatchResult:
        """A new job whose type has jobs waiting that still cannot go joins them, to leave in
        its turn (priority, submitter's turn, age) rather than take room freed for them; why
        they wait is the first one's reason and funnel. The first may itself have joined the
        wait behind another that has left since: its reason is the one that job waited for,
        said once (not "behind ...; the first: behind ...")."""
        behind = f"behind waiting {job.job_type} jobs; the first: "
        root = head.reason or "waiting"
        while root.startswith(behind):
            root = root.removeprefix(behind)
        reason = behind + root
        return DispatchResult(self._waits(job, now, reason), funnel=tuple(head.funnel))

    def _waits(self, job: JobSubmission, now: float, reason: str) -> DispatchDecision:
        """A waiting decision made without asking the policy."""
        return DispatchDecision(
            job_id=job.job_id or "",
            job_type=job.job_type,
            decided_at=now,
            policy=self.policy.name,
            outcome=DecisionOutcome.WAITING,
            reason=reason,
        )

    def refuse(
        self,
        job: JobSubmission,
        now: float,
        outcome: DecisionOutcome,
        reason: str,
        attempt: int = 1,
        decision_count: int = 1,
    ) -> DispatchResult:
        event = DispatchDecision(
            job_id=job.job_id or "",
            job_type=job.job_type,
            decided_at=now,
            policy=self.policy.name,
            outcome=outcome,
            reason=reason,
            attempt=attempt,
            decision_count=decision_count,
        )
        return DispatchResult(event, dead_letter_reason=reason)

    # --- internals --------------------------------------------------------------------------

    def _event(
        self, job: JobSubmission, now: float, decision: Decision, attempt: int, count: int
    ) -> DispatchDecision:
        assert job.job_id is not None
        return trusted(
            DispatchDecision,
            schema_version=1,
            job_id=job.job_id,
            job_type=job.job_type,
            decided_at=now,
            policy=decision.policy,
            outcome=DecisionOutcome(decision.outcome.value),
            vm_id=decision.vm_id,
            host_id=decision.host_id,
            reason=decision.reason,
            candidates=compact(decision.candidates),
            refused=dict(decision.refused),
            attempt=attempt,
            decision_count=count,
        )

    def _funnel(self, job_type: str, decision: Decision, snapshot: Any) -> tuple[FunnelStep, ...]:
        """Candidates left after each rule: `type 16 -> stale 12 -> over limit 0`, in the
        policy's filter order (the first refusing filter counts a candidate)."""
        remaining = len(snapshot.candidates(job_type))
        steps = [FunnelStep(rule=f"serve {job_type}", remaining=remaining)]
        refused = dict(decision.refused)
        names = [f.name for f in getattr(self.policy, "filters", ())]
        for name in names + sorted(set(refused) - set(names)):
            remaining = max(0, remaining - refused.get(name, 0))
            steps.append(FunnelStep(rule=f"not {name}", remaining=remaining))
        return tuple(steps)


def compact(candidates: Sequence[CandidateView]) -> list[CandidateView]:
    """The compared (eligible) candidates in full and the first few refused ones."""
    eligible = [c for c in candidates if c.eligible]
    refused = [c for c in candidates if not c.eligible][:REFUSED_EXAMPLES]
    return refused + eligible


def queued_job(
    job: JobSubmission,
    vm_id: str,
    host_id: str,
    now: float,
    policy: str,
    attempt: int = 1,
    partition: int | None = None,
    errors: list[str] | None = None,
) -> QueuedJob:
    assert job.job_id is not None and job.submitted_at is not None
    return trusted(
        QueuedJob,
        schema_version=1,
        job_id=job.job_id,
        job_type=job.job_type,
        payload=job.payload,
        vm_id=vm_id,
        host_id=host_id,
        submitted_at=job.submitted_at,
        dispatched_at=now,
        deadline_at=job.deadline_at,
        policy=policy,
        attempt=attempt,
        status_partition=partition,
        max_attempts=job.max_attempts,
        priority=job.priority,
        submitter=job.submitter,
        deadline_s=job.deadline_s,
        errors=list(errors or []),
    )
