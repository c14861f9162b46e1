"""producers.guest.published.ends_attempt: which status records end a job's attempt."""

from __future__ import annotations

import time

import pytest

from pipeline.events import JobState, JobStatus, QueuedJob, StatusWriter
from producers.guest.published import ends_attempt


def _job(attempt: int) -> QueuedJob:
    now = time.time()
    return QueuedJob(
        job_id="j1", job_type="t", payload={}, vm_id="vm1", host_id="h1", submitted_at=now,
        dispatched_at=now, policy="test", attempt=attempt, max_attempts=3,
    )  # fmt: skip


def _status(state: JobState, attempt: int, job_id: str = "j1") -> JobStatus:
    job = _job(attempt)
    return JobStatus(
        job_id=job_id, state=state, at=time.time(), writer=StatusWriter.GUEST,
        job=job.submission().model_copy(update={"job_id": job_id}), attempt=attempt,
        vm_id="vm1",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "attempt", "ends"),
    [
        (JobState.SUCCEEDED, 2, True),
        (JobState.FAILED, 2, True),
        (JobState.RETRYING, 2, True),  # a failed attempt that is not the last
        (JobState.CANCELLED, 2, True),
        (JobState.RUNNING, 2, False),  # started, not ended: it runs again
        (JobState.SUCCEEDED, 1, False),  # an earlier attempt's end
        (JobState.RUNNING, 3, True),  # a later attempt began: this one is over
    ],
)
def test_which_records_end_an_attempt(state: JobState, attempt: int, ends: bool) -> None:
    assert ends_attempt(_status(state, attempt), _job(2)) is ends


def test_another_jobs_end_is_not_this_ones() -> None:
    assert not ends_attempt(_status(JobState.SUCCEEDED, 2, job_id="j2"), _job(2))
