"""Read topics as they are now: every partition, from a start to the end offsets seen at start.

The one read-a-topic-to-its-end loop of vmlb (summaries, audits, calibration, benchmarks, tests,
`vmlb job status`); the streaming readers (the worker's agents, the fleet consumer) follow topics
instead. kafka-python, no consumer group, nothing committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from pipeline.errors import VmlbError
from pipeline.settings import KafkaSettings


def read_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    *,
    timeout_s: float = 10.0,
    since_s: float | None = None,
    partitions: Iterable[int] | None = None,
    must_exist: bool = False,
    now: float | None = None,
) -> list[Any]:
    """Every record now in `topics` (kafka-python ConsumerRecords), partition by partition.

    `since_s`: only records produced in the last `since_s` seconds (by record timestamp).
    `partitions`: only these partition numbers. `must_exist`: a missing topic raises VmlbError
    (else it reads as empty). Reading stops at the end offsets seen at start, or at `timeout_s`.
    """
    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=5000,
        **settings.to_kafka_python(),
    )
    try:
        wanted = None if partitions is None else set(partitions)
        assigned: list[TopicPartition] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic) or set()
            if not found and must_exist:
                raise VmlbError(f"topic {topic} does not exist; run `vmlb topics apply`")
            assigned.extend(
                TopicPartition(topic, p) for p in sorted(found) if wanted is None or p in wanted
            )
        if not assigned:
            return []
        consumer.assign(assigned)
        ends = consumer.end_offsets(assigned)
        if since_s is None:
            consumer.seek_to_beginning(*assigned)
        else:
            from_ms = int(((now if now is not None else time.time()) - since_s) * 1000)
            starts = consumer.offsets_for_times({tp: from_ms for tp in assigned})
            for tp in assigned:
                found_at = starts.get(tp)
                consumer.seek(tp, found_at.offset if found_at else ends[tp])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
            consumer.position(tp) < ends[tp] for tp in assigned
        ):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(
                    r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return records
    finally:
        consumer.close()


def read_all(settings: KafkaSettings, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record now in one topic."""
    return read_topics(settings, [topic], timeout_s=timeout_s)
