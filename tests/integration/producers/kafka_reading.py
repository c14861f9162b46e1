"""Reading what the producers wrote, for assertions (a helper, not a test).

`wait_for` consumes a topic from the beginning until a condition over everything read so far
holds, or a generous timeout passes (then the test fails with what was read). Read as
`IoSample`, io-samples gives every VM sample of either form (an IoSample, a HostSample's VMs). Waiting for a
condition, not for a time, keeps the tests deterministic on a slow machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from pipeline.events import Event, IoSample, read_io_samples
from pipeline.settings import KafkaSettings

E = TypeVar("E", bound=Event)


class TopicReader:
    def __init__(self, settings: KafkaSettings, topic: str, event_type: type[E]) -> None:
        self.event_type = event_type
        self.topic = topic
        self.events: list[E] = []
        self.raw: list[tuple[bytes | None, bytes | None]] = []
        self._partitions: set[int] = set()
        self._consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, **settings.to_kafka_python()
        )
        self._assigned = False

    def _assign(self) -> bool:
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            return False
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_beginning(*assigned)
        self._assigned = True
        return True

    def poll(self) -> list[E]:
        if not self._assigned and not self._assign():
            time.sleep(0.2)
            return self.events
        for records in self._consumer.poll(timeout_ms=300).values():
            for record in records:
                self.raw.append((record.key, record.value))
                self._partitions.add(record.partition)
                if self.event_type is IoSample:  # either form: a HostSample is several
                    self.events.extend(read_io_samples(record.value))  # type: ignore[arg-type]
                else:
                    self.events.append(self.event_type.from_bytes(record.value))
        return self.events

    def partitions_seen(self) -> set[int]:
        """The partitions the records read so far came from."""
        return set(self._partitions)

    def wait_for(
        self, condition: Callable[[list[E]], bool], timeout_s: float = 90.0, what: str = ""
    ) -> list[E]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition(self.poll()):
                return self.events
        raise AssertionError(f"{self.topic}: {what or 'condition'} not met; read {self.events!r}")

    def read_to_end(self, timeout_s: float = 90.0) -> list[E]:
        """Everything in the topic up to its end offsets as of this call."""
        deadline = time.monotonic() + timeout_s
        while not self._assigned and not self._assign():
            assert time.monotonic() < deadline, f"{self.topic}: no partitions"
        assigned = list(self._consumer.assignment())
        ends = self._consumer.end_offsets(assigned)
        while any(self._consumer.position(tp) < ends[tp] for tp in assigned):
            assert time.monotonic() < deadline, f"{self.topic}: not read to its end"
            self.poll()
        return self.events

    def close(self) -> None:
        self._consumer.close()


def existing_topics(settings: KafkaSettings) -> set[str]:
    admin = KafkaAdminClient(**settings.to_kafka_python())
    try:
        return set(admin.list_topics())
    finally:
        admin.close()
