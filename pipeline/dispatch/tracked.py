"""One unfinished job as a book holds it: its latest status record's bytes and the few fields
the dispatcher reads on every input, nothing the cyclic collector has to look into.

A worker holds every unfinished job of its partitions, tens of thousands under load, and
CPython's full collections visit every container object it holds (docs/evaluation.md, "The
worker's collector pauses"). A `JobStatus` with its `JobSubmission` is ten of them (two
models, their `__dict__`s and fields-set sets, the funnel and error lists, ...); a `Tracked`
is one: a slotted record whose fields are strings, numbers, an enum member, a tuple of
strings, a shared empty frozenset, and the record's bytes.

`status` rebuilds the pydantic model from the bytes (a `JobStatus.from_bytes`, ~5 µs) for
the paths that need the whole job: deciding it again, re-sending its queued job, writing its
record again, the web views. What is read back equals what was adopted: the bytes are the
record as written (the dispatcher's own encoding) or as read (a guest's record, validated
when it was read), and parsing them is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.events import JobState, JobStatus

#: The `avoid` of a job that avoids no VM: one object shared by every job.
NO_VMS: frozenset[str] = frozenset()

_IN_FLIGHT = (JobState.DISPATCHED, JobState.RUNNING)


@dataclass(slots=True, eq=False)
class Tracked:
    """One unfinished job: its latest status (as bytes, and the fields read often) and what
    the dispatcher keeps beside it. Build it with `tracked`."""

    #: The job's latest status record, JSON (what `status` is parsed from).
    record: bytes
    job_id: str
    job_type: str
    state: JobState
    attempt: int
    vm_id: str | None
    at: float
    dispatched_at: float | None
    reason: str | None
    #: Every failed attempt's error, oldest first.
    errors: tuple[str, ...]
    cancel_requested: bool
    #: Decisions made for its current attempt (a waiting job is decided again and again).
    decisions: int = 0
    #: VMs it should avoid (a failed attempt there; moved off it).
    avoid: frozenset[str] = NO_VMS
    #: When a waiting record was last written for it (waiting reasons are rewritten sparingly).
    waiting_written_at: float | None = None
    #: Since when it waits (kept while only its waiting reason changes): its place in the queue.
    waiting_since: float | None = None

    @property
    def status(self) -> JobStatus:
        """The latest status as the pydantic model (parsed afresh on every call)."""
        return JobStatus.from_bytes(self.record)

    @property
    def in_flight_on(self) -> str | None:
        return self.vm_id if self.state in _IN_FLIGHT else None


def tracked(
    status: JobStatus,
    record: bytes | None = None,
    *,
    decisions: int = 0,
    avoid: frozenset[str] = NO_VMS,
    waiting_written_at: float | None = None,
    waiting_since: float | None = None,
) -> Tracked:
    """`status` held lean; `record` is its bytes if at hand (the record written or read),
    else they are encoded here."""
    return Tracked(
        record=status.to_bytes() if record is None else record,
        job_id=status.job_id,
        job_type=status.job.job_type,
        state=status.state,
        attempt=status.attempt,
        vm_id=status.vm_id,
        at=status.at,
        dispatched_at=status.dispatched_at,
        reason=status.reason,
        errors=tuple(status.errors),
        cancel_requested=status.cancel_requested,
        decisions=decisions,
        avoid=avoid or NO_VMS,
        waiting_written_at=waiting_written_at,
        waiting_since=waiting_since,
    )
