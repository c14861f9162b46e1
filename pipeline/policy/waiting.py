"""The WAITING decision of the eligibility-checking policies, with a reason that counts why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.events import CandidateView
from pipeline.policy.decision import Decision, JobRequest, Outcome, record


def waiting_reason(examined: int, rejections: Mapping[str, int]) -> str:
    """E.g. 'no eligible host among 5 candidates: 4 over limit, 1 stale'."""
    counts = ", ".join(f"{count} {name}" for name, count in sorted(rejections.items()) if count)
    noun = "candidate" if examined == 1 else "candidates"
    return f"no eligible host among {examined} {noun}: {counts or 'none examined'}"


def waiting(
    policy: str,
    job: JobRequest,
    examined: int,
    rejections: Mapping[str, int],
    scores: Sequence[CandidateView],
) -> Decision:
    return Decision(
        outcome=Outcome.WAITING,
        vm_id=None,
        host_id=None,
        reason=waiting_reason(examined, rejections),
        candidates=record(scores),
        policy=policy,
        tested=examined,
        refused=tuple(rejections.items()),
    )
