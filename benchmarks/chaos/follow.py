"""Following `job-status` while a chaos run goes on: when to stop draining, when to strike.

A thread tails every partition of the run's `job-status` from the beginning (kafka-python, no
group) and keeps each job's latest state. The run uses it to steer, never to count: the drain
ends when every submitted job has ended or nothing has changed for a while; a
`guest-kill-at-publish` fault is armed here and fires on the next guest `succeeded` record; a
`worker-kill-retrying` fault waits until jobs wait. The figures come from reading every topic
again after the drain (`benchmarks.chaos.accounting`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from pipeline.errors import EventError
from pipeline.events import JobState, JobStatus, StatusWriter
from pipeline.settings import KafkaSettings

#: Called with the VM and the job id of a guest's `succeeded` record, in the follower's thread.
OnPublished = Callable[[str, str], None]


class StatusFollower:
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.latest: dict[str, JobState] = {}
        self.changed_at = time.monotonic()
        self._armed: OnPublished | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-follower", daemon=True)
        self.error: str | None = None
        #: Records taken so far (a follower that stopped after a broker fault shows here).
        self.records = 0

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    # --- queries (any thread) ---------------------------------------------------------------

    def ended(self, job_ids: set[str]) -> int:
        with self._lock:
            return sum(1 for job_id in job_ids if (s := self.latest.get(job_id)) and s.terminal)

    def waiting(self) -> int:
        with self._lock:
            return sum(
                1
                for state in self.latest.values()
                if state in (JobState.WAITING, JobState.RETRYING)
            )

    def quiet_s(self) -> float:
        """Seconds since a job last changed state."""
        return time.monotonic() - self.changed_at

    def arm(self, on_published: OnPublished) -> None:
        """Call `on_published` once, on the next guest `succeeded` record."""
        with self._lock:
            self._armed = on_published

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
                **self.kafka.to_kafka_python(),
            )
        except Exception as exc:  # shown in the report: the run then cannot steer
            self.error = f"{type(exc).__name__}: {exc}"
            return
        try:
            partitions = sorted(consumer.partitions_for_topic(self.topic) or [])
            assigned = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # a broker outage: poll again
                    for batch in consumer.poll(timeout_ms=100).values():
                        for record in batch:
                            self._take(record.value)
        finally:
            consumer.close()

    def _take(self, value: bytes | None) -> None:
        self.records += 1
        if value is None:
            return
        try:
            status = JobStatus.from_bytes(value)
        except EventError:
            return
        fire: OnPublished | None = None
        with self._lock:
            if self.latest.get(status.job_id) is not status.state:
                self.latest[status.job_id] = status.state
                self.changed_at = time.monotonic()
            if (
                self._armed is not None
                and status.writer is StatusWriter.GUEST
                and status.state is JobState.SUCCEEDED
                and status.vm_id
            ):
                fire, self._armed = self._armed, None
        if fire is not None and status.vm_id:
            fire(status.vm_id, status.job_id)
