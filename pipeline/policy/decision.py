"""What a policy is asked and what it answers, as plain data.

This module owns `JobRequest` (the job as a policy sees it), `Outcome`, `CandidateScore` (one
examined candidate, field for field the wire `pipeline.events.CandidateView`) and `Decision`.
A decision records every candidate the policy examined with its numbers and the filter that
rejected it, so an operator can read why a job went where it went (or waited).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.events import CandidateView


@dataclass(frozen=True, slots=True)
class JobRequest:
    job_id: str
    job_type: str


class Outcome(StrEnum):
    """Same strings as `pipeline.events.DecisionOutcome` (which adds `expired`)."""

    DISPATCHED = "dispatched"
    WAITING = "waiting"  # no eligible candidate now; the caller keeps the job and retries
    REJECTED = "rejected"  # no VM serves the job's type


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One candidate as the policy judged it. Mirrors `pipeline.events.CandidateView`."""

    vm_id: str
    host_id: str
    #: The host's I/O rate as this policy estimates it (paper total, or projected).
    total_io_ops_per_s: float
    limit_ops_per_s: float | None
    headroom_ops_per_s: float | None
    #: Reported outstanding jobs plus this dispatcher's claims.
    outstanding_jobs: int
    telemetry_age_s: float | None
    eligible: bool
    #: How far behind the fleet's newest telemetry the host's is.
    telemetry_behind_s: float | None = None
    #: Name of the filter that rejected it (None if eligible).
    rejected_by: str | None = None
    #: The weighers' combined score (None if not weighed).
    weight: float | None = None

    def to_view(self) -> CandidateView:
        return CandidateView(
            vm_id=self.vm_id,
            host_id=self.host_id,
            total_io_ops_per_s=self.total_io_ops_per_s,
            limit_ops_per_s=self.limit_ops_per_s,
            headroom_ops_per_s=self.headroom_ops_per_s,
            outstanding_jobs=self.outstanding_jobs,
            telemetry_age_s=self.telemetry_age_s,
            telemetry_behind_s=self.telemetry_behind_s,
            eligible=self.eligible,
            rejected_by=self.rejected_by,
            weight=self.weight,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    vm_id: str | None
    host_id: str | None
    #: Human-readable, e.g. "host h3 headroom 412 ops/s (p2c of h3,h7)".
    reason: str
    #: Candidates the policy examined (capped at `PolicyConfig.max_recorded_candidates`).
    candidates: tuple[CandidateScore, ...]
    policy: str

    @property
    def dispatched(self) -> bool:
        return self.outcome is Outcome.DISPATCHED
