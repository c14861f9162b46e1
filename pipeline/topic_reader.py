"""Read a whole topic as it is now: every partition, from the beginning to the current end.

For summaries, audits and tests; not for streaming (the agents and FleetConsumer do that).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from pipeline.settings import KafkaSettings


def read_all(settings: KafkaSettings, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record now in `topic` (kafka-python ConsumerRecords), partition by partition."""
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.to_kafka_python())
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
            consumer.position(tp) < ends[tp] for tp in partitions
        ):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(
                    r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return records
    finally:
        consumer.close()
