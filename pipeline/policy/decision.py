"""What a policy is asked and what it answers, as plain data.

This module owns `JobRequest` (the job as a policy sees it), `Outcome` and `Decision`. An
examined candidate is recorded as the wire type itself, `pipeline.events.CandidateView` (one
type for the policy's record and the decision event).
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
    #: VMs to avoid if any other candidate serves the type (a retry after a failure there, or a
    #: job moved off a stopped or draining VM).
    avoid: frozenset[str] = frozenset()


class Outcome(StrEnum):
    """Same strings as `pipeline.events.DecisionOutcome` (which adds `expired`)."""

    DISPATCHED = "dispatched"
    WAITING = "waiting"  # no eligible candidate now; the caller keeps the job and retries
    REJECTED = "rejected"  # no VM serves the job's type


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    vm_id: str | None
    host_id: str | None
    #: Human-readable, e.g. "host h3 headroom 412 ops/s (p2c of h3,h7)".
    reason: str
    #: Candidates the policy examined (capped at `PolicyConfig.max_recorded_candidates`).
    candidates: tuple[CandidateView, ...]
    policy: str
    #: Candidates tested against the filters, and how many each filter refused (the first
    #: refusing filter counts), for the decision record and a waiting job's funnel.
    tested: int = 0
    refused: tuple[tuple[str, int], ...] = ()

    @property
    def dispatched(self) -> bool:
        return self.outcome is Outcome.DISPATCHED
