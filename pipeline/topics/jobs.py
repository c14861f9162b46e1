"""Following a job from outside the worker: which partition holds it, and its latest status.

A job's records (`job-status`, `decisions`) sit in the partition of `jobs` it was consumed from.
A job submitted keyed by its id (as `vmlb submit` and the `Submitter` do) is in the partition
Kafka's default partitioner gives that key (murmur2, as every Kafka client); a job without an id
got `auto.<topic>.<partition>.<offset>`, which names it. Otherwise every partition is read.
Used by `vmlb job` and the Python `Submitter`'s handles; any Kafka client can do the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.errors import EventError
from pipeline.events import JobStatus
from pipeline.settings import KafkaSettings
from pipeline.topics.partitioning import partition_for_key
from pipeline.topics.reader import read_topics
from pipeline.topics.spec import Topics


def partition_of(job_id: str, partitions: int) -> int | None:
    """The jobs partition a job keyed by its id lands in (None: an id that does not say)."""
    if job_id.startswith("auto."):
        parts = job_id.rsplit(".", 2)
        if len(parts) == 3 and parts[1].isdigit():
            return int(parts[1])
    return partition_for_key(job_id, partitions)


def latest_status(
    settings: KafkaSettings, topics: Topics, job_id: str, timeout_s: float = 30.0
) -> JobStatus | None:
    """The job's latest record on `job-status`, or None if it has none (unknown, or forgotten
    past the dedupe horizon). Reads one partition, or all if the first holds nothing."""
    topic = topics.name("job-status")
    key = job_id.encode()
    guess = partition_of(job_id, topics.partitions("jobs"))
    tries: list[list[int] | None] = [[guess]] if guess is not None else []
    tries.append(None)
    for partitions in tries:
        latest = None
        for record in read_topics(settings, [topic], partitions=partitions, timeout_s=timeout_s):
            if record.key == key:
                latest = _after(latest, record.value)
        if latest is not None:
            return latest
    return None


def wait_for_status(
    settings: KafkaSettings,
    topics: Topics,
    job_id: str,
    done: Callable[[JobStatus], bool] = lambda status: status.terminal,
    timeout_s: float = 60.0,
) -> JobStatus | None:
    """Follow the job's partition of `job-status` until its latest record satisfies `done`
    (by default: the job ended); return that record, or the latest one seen at the timeout
    (None if none)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = topics.name("job-status")
    key = job_id.encode()
    guess = partition_of(job_id, topics.partitions("jobs"))
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.to_kafka_python())
    try:
        found = sorted(consumer.partitions_for_topic(topic) or [])
        if not found:
            return None
        # The partition its id says first; if it holds nothing of the job, every partition
        # (a job submitted with an id but keyed otherwise, or not at all).
        wanted = [guess] if guess in found else found
        parts = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        latest: JobStatus | None = None
        seen = False
        deadline = time.monotonic() + timeout_s
        while True:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    if record.key == key:
                        seen = True
                        latest = _after(latest, record.value)
            if latest is not None and done(latest):
                return latest
            if time.monotonic() >= deadline:
                return latest
            caught_up = all(consumer.position(tp) >= ends[tp] for tp in parts)
            if caught_up and not seen and len(parts) < len(found):
                parts = [TopicPartition(topic, p) for p in found]
                consumer.assign(parts)
                consumer.seek_to_beginning(*parts)
                ends = consumer.end_offsets(parts)
    finally:
        consumer.close()


def _after(latest: JobStatus | None, value: bytes | None) -> JobStatus | None:
    """A job's latest status once one more of its records is read: a tombstone clears it, a
    record that does not parse leaves it as it was."""
    if value is None:
        return None
    try:
        return JobStatus.from_bytes(value)
    except EventError:
        return latest
