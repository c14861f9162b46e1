"""Tracked: an unfinished job held as its record's bytes and a few atoms, read back equal."""

from __future__ import annotations

import gc

import pytest

from pipeline.dispatch.book import PartitionBook
from pipeline.dispatch.tracked import NO_VMS, Tracked, tracked
from pipeline.events import (
    FunnelStep,
    JobState,
    JobStatus,
    JobSubmission,
    StatusWriter,
    trusted,
)

NOW = 1_000.0
JOB = JobSubmission(
    job_id="j1",
    job_type="io",
    payload={"n": 1, "nested": {"list": [1, 2.5, "x"], "none": None}},
    submitted_at=NOW,
    deadline_s=30.0,
    max_attempts=3,
    priority=7,
    submitter="alice",
)


def dispatcher_status(state: JobState, **fields: object) -> JobStatus:
    """As `DispatchCore._status` builds its own records: unvalidated (`trusted`)."""
    return trusted(
        JobStatus,
        schema_version=1,
        job_id="j1",
        state=state,
        at=NOW + 1.5,
        writer=StatusWriter.DISPATCHER,
        job=JOB,
        **fields,
    )


STATUSES = {
    "waiting, with its funnel": dispatcher_status(
        JobState.WAITING,
        reason="no eligible host among 2 candidates: 2 at limit (hysteresis)",
        funnel=[FunnelStep(rule="serve io", remaining=2), FunnelStep(rule="fits", remaining=0)],
    ),
    "dispatched": dispatcher_status(
        JobState.DISPATCHED, vm_id="a1", host_id="h1", dispatched_at=NOW + 1.5, reason="fits"
    ),
    "retrying, with its errors": dispatcher_status(
        JobState.RETRYING,
        attempt=2,
        vm_id="a1",
        host_id="h1",
        error="boom",
        errors=["boom"],
        retry_at=NOW + 3.0,
    ),
    "cancel requested": dispatcher_status(
        JobState.DISPATCHED,
        vm_id="a1",
        host_id="h1",
        dispatched_at=NOW,
        cancel_requested=True,
        errors=["one", "two"],
        attempt=3,
    ),
    "running, from a guest": JobStatus(
        job_id="j1",
        state=JobState.RUNNING,
        at=NOW + 2.0,
        writer=StatusWriter.GUEST,
        job=JOB,
        vm_id="a1",
        host_id="h1",
        dispatched_at=NOW + 1.5,
        started_at=NOW + 2.0,
    ),
}


@pytest.mark.parametrize("status", STATUSES.values(), ids=STATUSES.keys())
def test_a_tracked_status_reads_back_equal_with_its_fields_at_hand(status: JobStatus) -> None:
    held = tracked(status)
    back = held.status
    assert back == status
    assert back.job == status.job and back.funnel == status.funnel
    assert back.to_bytes() == status.to_bytes()  # rewritten (a refused report), the same bytes
    assert held.record == status.to_bytes()
    assert (held.job_id, held.job_type, held.state, held.attempt, held.vm_id) == (
        status.job_id,
        status.job.job_type,
        status.state,
        status.attempt,
        status.vm_id,
    )
    assert (held.at, held.dispatched_at, held.reason, held.cancel_requested) == (
        status.at,
        status.dispatched_at,
        status.reason,
        status.cancel_requested,
    )
    assert held.errors == tuple(status.errors)
    in_flight = status.state in (JobState.DISPATCHED, JobState.RUNNING)
    assert held.in_flight_on == (status.vm_id if in_flight else None)


def test_the_bytes_read_are_kept_as_read_and_parse_to_the_record_adopted() -> None:
    status = STATUSES["running, from a guest"]
    as_read = b" " + status.to_bytes().replace(b",", b", ") + b"\n"  # a guest's own spacing
    held = tracked(JobStatus.from_bytes(as_read), as_read)
    assert held.record is as_read
    assert held.status == status
    assert held.status.to_bytes() == status.to_bytes()


def test_every_read_is_a_fresh_model_that_changing_does_not_change_the_job() -> None:
    held = tracked(STATUSES["retrying, with its errors"])
    first = held.status
    first.errors.append("not kept")
    assert held.status is not first
    assert held.status.errors == ["boom"]


def _followed(held: Tracked) -> list[object]:
    """What a full collection would visit from `held`, besides shared objects (its class,
    the enum member, the empty frozenset every job shares)."""
    gc.collect()  # untracks the tuples of atoms (the errors)
    return [
        value
        for value in gc.get_referents(held)
        if gc.is_tracked(value)
        and value is not Tracked
        and value is not NO_VMS
        and not isinstance(value, JobState)
    ]


@pytest.mark.parametrize("status", STATUSES.values(), ids=STATUSES.keys())
def test_a_tracked_job_holds_nothing_the_collector_follows(status: JobStatus) -> None:
    assert _followed(tracked(status)) == []


class _Placements:
    def placed(self, vm_id: str) -> None: ...

    def released(self, vm_id: str) -> None: ...


def test_the_book_holds_each_unfinished_job_as_one_object() -> None:
    book = PartitionBook(0, _Placements())
    for name, status in STATUSES.items():
        job_id = name.replace(" ", "-").replace(",", "")
        job = JOB.model_copy(update={"job_id": job_id})
        book.adopt(status.model_copy(update={"job_id": job_id, "job": job}), NOW)
    assert len(book.jobs) == len(STATUSES)
    for held in book.jobs.values():
        assert type(held) is Tracked
        assert _followed(held) == []
        assert held.avoid is NO_VMS
    held = book.jobs["dispatched"]
    assert held.status == STATUSES["dispatched"].model_copy(
        update={"job_id": "dispatched", "job": JOB.model_copy(update={"job_id": "dispatched"})}
    )
