"""Whether a job's attempt already has its end in `job-status`: asked only after a crash.

A guest killed after the broker acknowledged a job's end but before the completed-jobs store
recorded it (`CompletedJobs.ending` marks that window) would otherwise run the job again and
publish a second end. The next guest reads the job's partition of `job-status` from the mark's
time on (Kafka's time index: `offsets_for_times`) to its end offset, and looks for the attempt's
end. The happy path never asks: only a job redelivered with the mark set does.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.errors import KafkaError

from pipeline.errors import EventError
from pipeline.events import JobState, JobStatus, QueuedJob
from pipeline.settings import KafkaSettings

#: Read from this long before the mark: the record's timestamp is the producer's clock, the
#: mark's is the same machine's, taken first; the slack only covers a clock stepped backwards.
CLOCK_SLACK_S = 5.0
#: How long one look may take before it counts as failed (and is asked again by the caller).
READ_TIMEOUT_S = 15.0


def ends_attempt(status: JobStatus, job: QueuedJob) -> bool:
    """Whether `status` says `job`'s attempt is over: its end, or anything of a later attempt."""
    if status.job_id != job.job_id:
        return False
    if status.attempt > job.attempt:
        return True
    return status.attempt == job.attempt and (status.terminal or status.state is JobState.RETRYING)


def end_published(
    settings: KafkaSettings,
    topic: str,
    job: QueuedJob,
    since_s: float,
    *,
    client_id: str,
    timeout_s: float = READ_TIMEOUT_S,
) -> bool:
    """Whether `topic` holds an end of `job`'s attempt written at or after `since_s`.

    Reads the job's status partition (every partition if the job names none). Raises
    KafkaError if the topic could not be read to its end within `timeout_s`: the caller cannot
    tell, and must neither run the job nor skip it yet."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        client_id=client_id, group_id=None, enable_auto_commit=False, **settings.to_kafka_python()
    )
    try:
        if job.status_partition is not None:
            partitions = [TopicPartition(topic, job.status_partition)]
        else:
            found = consumer.partitions_for_topic(topic) or set()
            partitions = [TopicPartition(topic, p) for p in sorted(found)]
        if not partitions:
            raise KafkaError(f"{topic}: no partitions known yet")
        consumer.assign(partitions)
        since_ms = int(max(0.0, since_s - CLOCK_SLACK_S) * 1000)
        starts = consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = consumer.end_offsets(partitions)
        remaining = {}
        for tp in partitions:
            start = starts.get(tp)
            if start is None:  # nothing written since the mark
                continue
            consumer.seek(tp, start.offset)
            remaining[tp] = ends[tp]
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaError(f"{topic}: not read to its end within {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == job.job_id.encode() and _ends(record.value, job):
                        return True
            for tp in list(remaining):
                if consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        return False
    finally:
        consumer.close(autocommit=False)


def _ends(value: Any, job: QueuedJob) -> bool:
    try:
        return ends_attempt(JobStatus.from_bytes(value), job)
    except EventError:  # a forged or garbled record is nobody's end
        return False
