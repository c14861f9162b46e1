"""What a policy is asked and what it answers, as plain data.

This module owns `JobRequest` (the job as a policy sees it), `Outcome` and `Decision`. An
examined candidate is recorded as the wire type itself, `pipeline.events.CandidateView` (one
type for the policy's record and the decision event).
A decision records every candidate the policy examined with its numbers and the filter that
rejected it, so an operator can read why a job went where it went (or waited).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import overload

from pipeline.events import CandidateView


@dataclass(frozen=True, slots=True)
class JobRequest:
    job_id: str
    job_type: str
    #: VMs to avoid if any other candidate serves the type (a retry after a failure there, or a
    #: job moved off a stopped or draining VM).
    avoid: frozenset[str] = frozenset()
    #: How long the job has waited for a VM so far, by the caller's clock at this decision
    #: (since it was submitted): what io-aware's hold (`PolicyConfig.hold_s`) is judged by.
    waited_s: float = 0.0


class Outcome(StrEnum):
    """Same strings as `pipeline.events.DecisionOutcome` (which adds `expired`)."""

    DISPATCHED = "dispatched"
    WAITING = "waiting"  # no eligible candidate now; the caller keeps the job and retries
    REJECTED = "rejected"  # no VM serves the job's type


class CandidateRecord(Sequence[CandidateView]):
    """A decision's examined candidates, built as `CandidateView`s when first read.

    Building the wire records can cost more than deciding (a decision that finds no room
    examines dozens of candidates); whoever publishes the decision reads them once, a simulator
    that never reads them does not pay for them. Reads as the tuple it stands for.
    """

    __slots__ = ("_build", "_views")

    def __init__(self, build: Callable[[], Sequence[CandidateView]]) -> None:
        self._build: Callable[[], Sequence[CandidateView]] | None = build
        self._views: tuple[CandidateView, ...] = ()

    def _read(self) -> tuple[CandidateView, ...]:
        if self._build is not None:
            self._views = tuple(self._build())
            self._build = None
        return self._views

    @overload
    def __getitem__(self, index: int) -> CandidateView: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[CandidateView, ...]: ...
    def __getitem__(self, index: int | slice) -> CandidateView | tuple[CandidateView, ...]:
        return self._read()[index]

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Iterator[CandidateView]:
        return iter(self._read())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CandidateRecord):
            return self._read() == other._read()
        if isinstance(other, tuple):
            return self._read() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._read())

    def __repr__(self) -> str:
        return f"CandidateRecord({self._read()!r})"


def record(candidates: Sequence[CandidateView]) -> Sequence[CandidateView]:
    """A lazy record stays lazy; anything else is frozen into a tuple."""
    return candidates if isinstance(candidates, CandidateRecord) else tuple(candidates)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    vm_id: str | None
    host_id: str | None
    #: Human-readable, e.g. "host h3 headroom 412 ops/s (p2c of h3,h7)".
    reason: str
    #: Candidates the policy examined (capped at `PolicyConfig.max_recorded_candidates`): a
    #: tuple, or a `CandidateRecord` that builds one when read.
    candidates: Sequence[CandidateView]
    policy: str
    #: Candidates tested against the filters, and how many each filter refused (the first
    #: refusing filter counts), for the decision record and a waiting job's funnel.
    tested: int = 0
    refused: tuple[tuple[str, int], ...] = ()

    @property
    def dispatched(self) -> bool:
        return self.outcome is Outcome.DISPATCHED
