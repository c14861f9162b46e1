"""The dispatcher's table rows, typed and versioned like events.

- `WaitingRow` (table `waiting_jobs`, key job_id): a job with no eligible host yet;
- `DispatchedRow` (table `dispatched`, key job_id): where a job went, and the exact `QueuedJob`
  sent, so a redelivered submission is re-sent with the same bytes (guests dedupe by job id).

Both tables are partitioned like `jobs`; `partition` says which jobs partition a row belongs to
(the retry agent of that partition owns it). Rows written before versioning carry no
`schema_version` and read as version 1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events import JobSubmission, QueuedJob

ROW_VERSION = 1


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = ROW_VERSION


class WaitingRow(_Row):
    job: JobSubmission
    partition: int = Field(ge=0)
    waiting_since: float
    deadline_at: float | None = None
    #: Decisions made for this job so far (the next one records `attempts + 1`).
    attempts: int = Field(1, ge=1)


class DispatchedRow(_Row):
    vm_id: str
    queue_topic: str
    partition: int = Field(ge=0)
    queued: QueuedJob
    #: When it was dispatched (the dedupe horizon counts from here).
    at: float
