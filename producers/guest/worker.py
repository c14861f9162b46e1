"""`vmlb guest`: consume one VM's queue, run each job, publish its completion, then commit.

At-least-once, made idempotent:
1. a job is run, and its `JobCompletion` published and acknowledged by the broker;
2. its id is recorded in the local completed-jobs store;
3. only then is its offset committed.
A crash anywhere before 3 redelivers the job: if 2 happened it is committed without running or
publishing again; otherwise it runs again. (A crash between 1 and 2 is the one window where a
completion can be published twice; readers dedupe by job id.) A message that is not a valid
`QueuedJob` for this VM goes to the dead-letter topic and is committed; the worker keeps going.

On SIGTERM the job in hand gets `grace_s` to finish; past that it is released: the process
exits without committing, so the job is redelivered to the next worker of this VM.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError

from pipeline.errors import EventError
from pipeline.events import DeadLetter, Event, JobCompletion, JobOutcome, QueuedJob, payload_text
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from producers.guest.busy import BusyMeter
from producers.guest.completed import CompletedJobs
from producers.guest.handlers import Handler
from producers.guest.io import IoChannel, MeteredIoChannel

log = logging.getLogger(__name__)

STAGE = "guest"


@dataclass
class GuestStats:
    completed: int = 0
    failed: int = 0
    skipped_duplicates: int = 0
    dead_lettered: int = 0
    released: int = 0


class Released(Exception):
    """The worker was stopped and the job in hand was not finished within the grace period."""


class GuestWorker:
    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        vm_id: str,
        handler: Handler,
        io: IoChannel,
        completed: CompletedJobs,
        *,
        host_id: str | None = None,
        grace_s: float = 30.0,
        busy_report_every_s: float = 10.0,
        max_job_s: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.vm_id = vm_id
        self.host_id = host_id
        self.handler = handler
        self.io = MeteredIoChannel(io)
        self.completed = completed
        self.grace_s = grace_s
        self.busy_report_every_s = busy_report_every_s
        self.max_job_s = max_job_s
        self.clock = clock
        self.queue_topic = topics.queue_topic(vm_id).name
        self.stats = GuestStats()
        self.busy = BusyMeter()
        self._consumer: Any = None
        self._producer: Any = None
        self._next_busy_report = time.monotonic() + busy_report_every_s

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process jobs until `stop` is set (or a job is released past the grace period)."""
        try:
            if not self._connect(stop):
                return
            log.info("guest %s: consuming %s", self.vm_id, self.queue_topic)
            while not stop.is_set():
                records = self._consumer.poll(timeout_ms=500, max_records=1)
                for partition, batch in records.items():
                    for record in batch:
                        self._process(partition, record, stop)
                self._maybe_report_busy()
        except Released:
            self.stats.released += 1
        finally:
            self._close()

    def _connect(self, stop: threading.Event) -> bool:
        from kafka import KafkaConsumer, KafkaProducer

        while not stop.is_set():
            try:
                ensure_topic(self.settings, self.topics.queue_topic(self.vm_id), timeout_s=10.0)
                self._producer = KafkaProducer(
                    client_id=f"vmlb-guest-{self.vm_id}",
                    acks="all",
                    linger_ms=0,
                    max_block_ms=5000,
                    **self.settings.to_kafka_python(),
                )
                self._consumer = KafkaConsumer(
                    self.queue_topic,
                    client_id=f"vmlb-guest-{self.vm_id}",
                    group_id=f"vmlb-guest-{self.vm_id}",
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=1,
                    # A job runs between two polls; past this the group presumes the guest dead.
                    max_poll_interval_ms=int(self.max_job_s * 1000),
                    # A crashed guest's partition goes to its replacement after this long (the
                    # broker's default minimum); heartbeats come from a background thread.
                    session_timeout_ms=6000,
                    heartbeat_interval_ms=2000,
                    **self.settings.to_kafka_python(),
                )
                return True
            except (KafkaError, OSError) as exc:
                log.warning("guest %s: Kafka unavailable (%s); retrying", self.vm_id, exc)
                self._close()
                stop.wait(2.0)
        return False

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    # --- one message --------------------------------------------------------------------------

    def _process(self, partition: Any, record: Any, stop: threading.Event) -> None:
        try:
            job = QueuedJob.from_bytes(record.value)
            if job.vm_id != self.vm_id:
                raise EventError(
                    f"QueuedJob: vm_id: queued for {job.vm_id}, this guest is {self.vm_id}"
                )
        except EventError as exc:
            self._dead_letter(record, str(exc), stop)
            self._commit(partition, record)
            return
        if job.job_id in self.completed:
            log.info(
                "guest %s: job %s already completed; skipping the redelivery",
                self.vm_id,
                job.job_id,
            )
            self.stats.skipped_duplicates += 1
            self._commit(partition, record)
            return
        completion = self._run_job(job, stop)
        self._publish(self.topics.name("completions"), completion, stop)
        self.completed.add(job.job_id, completion.finished_at)
        self._commit(partition, record)
        if completion.outcome is JobOutcome.SUCCEEDED:
            self.stats.completed += 1
        else:
            self.stats.failed += 1

    def _run_job(self, job: QueuedJob, stop: threading.Event) -> JobCompletion:
        started_at = self.clock()
        started_mono = time.monotonic()
        waited_before = self.io.waited_s
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = self.handler(job, self.io)
            except BaseException as exc:  # the job's failure is data, not the worker's
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=work, name=f"job-{job.job_id}", daemon=True)
        thread.start()
        released_at: float | None = None
        while thread.is_alive():
            thread.join(0.2)
            if stop.is_set() and released_at is None:
                released_at = time.monotonic() + self.grace_s
                log.warning(
                    "guest %s: stopping; job %s has %.0fs to finish",
                    self.vm_id,
                    job.job_id,
                    self.grace_s,
                )
            if released_at is not None and time.monotonic() >= released_at and thread.is_alive():
                log.warning(
                    "guest %s: releasing job %s uncommitted (redelivered later)",
                    self.vm_id,
                    job.job_id,
                )
                raise Released(job.job_id)
        finished_at = max(self.clock(), started_at)
        self.busy.job_done(time.monotonic() - started_mono, self.io.waited_s - waited_before)
        error = outcome.get("error")
        if error is None:
            log.info("guest %s: job %s done: %s", self.vm_id, job.job_id, outcome.get("result"))
        else:
            log.warning("guest %s: job %s failed: %s", self.vm_id, job.job_id, error)
        return JobCompletion(
            job_id=job.job_id,
            job_type=job.job_type,
            vm_id=self.vm_id,
            host_id=self.host_id or job.host_id,
            submitted_at=job.submitted_at,
            dispatched_at=job.dispatched_at,
            started_at=started_at,
            finished_at=finished_at,
            outcome=JobOutcome.FAILED if error else JobOutcome.SUCCEEDED,
            error=error[:2000] if error else None,
        )

    def _dead_letter(self, record: Any, reason: str, stop: threading.Event) -> None:
        log.warning("guest %s: dead-lettering offset %s: %s", self.vm_id, record.offset, reason)
        letter = DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_key=payload_text(record.key),
            payload=payload_text(record.value),
            reason=reason,
            stage=STAGE,
            dead_lettered_at=self.clock(),
        )
        self._publish(self.topics.name("dead-letters"), letter, stop)
        self.stats.dead_lettered += 1

    def _publish(self, topic: str, event: Event, stop: threading.Event) -> None:
        """Publish and wait for the broker's acknowledgement, retrying until it comes or we stop
        (then the offset stays uncommitted and the message is redelivered)."""
        while True:
            try:
                self._producer.send(topic, value=event.to_bytes(), key=event.key()).get(timeout=15)
                return
            except KafkaError as exc:
                log.warning(
                    "guest %s: publishing to %s failed (%s); retrying", self.vm_id, topic, exc
                )
                if stop.wait(1.0):
                    raise Released("publish") from None

    def _commit(self, partition: Any, record: Any) -> None:
        from kafka.structs import OffsetAndMetadata

        try:
            self._consumer.commit({partition: OffsetAndMetadata(record.offset + 1, "", -1)})
        except KafkaError as exc:
            # Not fatal: the job is recorded as completed, so its redelivery is only skipped.
            log.warning("guest %s: commit of offset %s failed: %s", self.vm_id, record.offset, exc)

    def _maybe_report_busy(self) -> None:
        if time.monotonic() < self._next_busy_report:
            return
        self._next_busy_report = time.monotonic() + self.busy_report_every_s
        report = self.busy.report()
        log.info(
            "guest %s: sees itself %.0f%% CPU-busy; %.0f%% of its time in %d job(s), %.0f%% of "
            "which waiting for host I/O",
            self.vm_id,
            100 * report.cpu_busy_fraction,
            100 * report.in_jobs_fraction,
            report.jobs,
            100 * report.io_wait_fraction,
        )
