"""`vmlb guest`: consume one VM's queue, run each job, report its status, then commit.

At-least-once, made idempotent:
1. the job's `running` status is published (not waited for), and the job runs;
2. its end (`succeeded` with the handler's result, `failed` with the error, or `cancelled`) is
   published to `job-status` and acknowledged by the broker;
3. its (job id, attempt) is recorded in the local completed-jobs store;
4. only then is its offset committed.
A crash anywhere before 4 redelivers the job: if 3 happened it is committed without running or
publishing again. If the guest was killed between 2 and 3, the store still holds the end's
*ending* mark (set just before 2), and the next guest reads `job-status` from the mark on
(`producers.guest.published`): an end found there is recorded and the job committed, not run
again. Otherwise (killed while running) it runs again; the dispatcher takes the first end of an
attempt and refuses the rest. Status records go to the partition of
`job-status` the job belongs to (`QueuedJob.status_partition`), where its dispatcher reads them;
the dispatcher checks each against its own record and forwards the run to `completions`.

A publish is retried on the same future until the broker answers (a timeout while waiting is not
a failure: the record is still in the producer), and sent again only if the delivery failed; a
record the broker refuses for good (too large) is given up, logged, and the job is committed.

The guest follows `job-control` (every partition, no group): a job cancelled before it starts is
skipped and reported `cancelled`; one revoked from this VM (the dispatcher moved it elsewhere)
is skipped silently; a cancel while it runs marks it (`producers.guest.cancel`) and it ends
`cancelled`. A message that is not a valid `QueuedJob` for this VM goes to the dead-letter
topic and is committed; the worker keeps going.

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

from kafka.errors import KafkaError, KafkaTimeoutError

from pipeline.errors import ConfigError, EventError
from pipeline.events import (
    MAX_ATTEMPTS,
    MAX_RESULT_BYTES,
    MAX_TEXT,
    ControlAction,
    DeadLetter,
    JobControl,
    JobState,
    JobStatus,
    QueuedJob,
    StatusWriter,
    to_json_bytes,
)
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from producers.guest import cancel
from producers.guest.busy import BusyMeter
from producers.guest.completed import CompletedJobs
from producers.guest.handlers import Handler
from producers.guest.io import IoChannel, MeteredIoChannel
from producers.guest.published import end_published
from producers.kafka_edge import close_producer

log = logging.getLogger(__name__)

STAGE = "guest"
#: The guest producer's delivery timeout: a record is acknowledged or failed within it. Long,
#: so that the producer itself rides out a broker outage: its retries keep their producer id
#: and sequence, and the broker recognises a retried record it had appended (a new producer
#: could not: `broker-outage-long` published 3 job ends twice with 30 s). A guest can do
#: nothing else meanwhile anyway: it takes its next job only once its last one's end is
#: acknowledged.
DELIVERY_TIMEOUT_S = 120.0
#: A record neither delivered nor failed this long after it was sent: its producer is wedged
#: (kafka-python's idempotent producer after a batch expired), and is replaced.
WEDGED_AFTER_S = DELIVERY_TIMEOUT_S + 10.0


@dataclass
class GuestStats:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    revoked: int = 0
    skipped_duplicates: int = 0
    dead_lettered: int = 0
    released: int = 0
    given_up: int = 0


class Released(Exception):
    """The worker was stopped and the job in hand was not finished within the grace period."""


def done_key(job: QueuedJob) -> str:
    """What the completed-jobs store remembers: a job's attempt (a retry may come here again)."""
    return f"{job.job_id}#{job.attempt}"


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
        self.status_topic = topics.name("job-status")
        self.control_topic = topics.name("job-control")
        self.stats = GuestStats()
        self.busy = BusyMeter()
        #: The latest control request per job id (cancel, or a revoke naming this VM).
        self.controls: dict[str, JobControl] = {}
        self._consumer: Any = None
        self._control: Any = None
        self._producer: Any = None
        #: The producer one of whose deliveries failed (`_delivery_failed`): replaced by
        #: `_publish` before it sends again.
        self._failed_producer: Any = None
        self._running: tuple[str, threading.Event] | None = None
        self._next_busy_report = time.monotonic() + busy_report_every_s

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process jobs until `stop` is set (or a job is released past the grace period)."""
        try:
            if not self._connect(stop):
                return
            log.info("guest %s: consuming %s", self.vm_id, self.queue_topic)
            while not stop.is_set():
                self._poll_control()
                records = self._poll_queue(stop)
                for partition, batch in records.items():
                    for record in batch:
                        self._process(partition, record, stop)
                self._maybe_report_busy()
        except Released:
            self.stats.released += 1
        finally:
            self._close()

    def _connect(self, stop: threading.Event) -> bool:
        from kafka import KafkaConsumer, TopicPartition

        while not stop.is_set():
            try:
                may_create = self._ensure_queue()
                self._producer = self._new_producer()
                self._control = KafkaConsumer(
                    client_id=f"vmlb-guest-{self.vm_id}-control",
                    group_id=None,
                    enable_auto_commit=False,
                    **self.settings.to_kafka_python(),
                )
                if not may_create and not self._wait_for_queue(stop):
                    return False
                found = self._control.partitions_for_topic(self.control_topic) or set()
                parts = [TopicPartition(self.control_topic, p) for p in sorted(found)]
                self._control.assign(parts)
                self._control.seek_to_beginning(*parts)
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

    def _poll_queue(self, stop: threading.Event) -> dict[Any, list[Any]]:
        """The next record of the queue, if any. kafka-python 3.0.12's `poll()` can raise a
        connection error while the broker is away (a coordinator lookup whose metadata refresh
        was refused): that is an outage, not the guest's end; the consumer polls again."""
        try:
            return self._consumer.poll(timeout_ms=500, max_records=1)  # type: ignore[no-any-return]
        except KafkaError as exc:
            log.warning(
                "guest %s: polling %s: %s; polling again", self.vm_id, self.queue_topic, exc
            )
            stop.wait(1.0)
            return {}

    def _ensure_queue(self) -> bool:
        """Create this VM's queue topic if it is missing; False if this guest may not. On a
        secured cluster a guest may not create topics (its Dom0 does)."""
        from kafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError

        try:
            ensure_topic(self.settings, self.topics.queue_topic(self.vm_id), timeout_s=10.0)
        except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
            log.info("guest %s: may not create %s; its Dom0 does", self.vm_id, self.queue_topic)
            return False
        except ConfigError as exc:  # more replicas than brokers: said once, then wait for it
            log.error("guest %s: %s", self.vm_id, exc)
            return False
        return True

    def _wait_for_queue(self, stop: threading.Event) -> bool:
        """Wait until this VM's queue topic exists (False if stopped first). Subscribed to a
        topic that does not exist yet, a consumer would see it only at its next metadata
        refresh, up to `metadata.max.age.ms` (5 minutes) later: jobs would wait that long."""
        assert self._control is not None
        waited = False
        while not self._control.partitions_for_topic(self.queue_topic):
            if not waited:
                log.info("guest %s: waiting for %s to exist", self.vm_id, self.queue_topic)
                waited = True
            if stop.wait(1.0):
                return False
        return True

    def _new_producer(self) -> Any:
        """Idempotent, unlike vmlb's other kafka-python producers (`KafkaSettings.
        to_kafka_python_producer`): a job's end record whose acknowledgement was lost (the
        broker killed mid-request) is retried by the producer and recognised by the broker,
        not appended twice (`vmlb bench chaos --scenario broker-kill`: 1 of 5 runs published a
        `succeeded` twice; `replicated-broker-kill`, 2 of 5). kafka-python's idempotent
        producer stops delivering after a batch expired (its later records neither deliver
        nor expire: `vmlb bench chaos --scenario broker-outage-long`, a guest's running record
        expired and its end record waited for good, 3 of 5 runs); `_publish` replaces the
        producer after any of its deliveries failed (the fire-and-forget running record's
        too) or when a record has waited `WEDGED_AFTER_S`, so that wedge never lasts."""
        from kafka import KafkaProducer

        return KafkaProducer(
            **self.settings.to_kafka_python_producer(
                enable_idempotence=True,
                client_id=f"vmlb-guest-{self.vm_id}",
                linger_ms=0,
                max_block_ms=5000,
                delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
                request_timeout_ms=10_000,
            )
        )

    def _close(self) -> None:
        for name in ("_consumer", "_control"):
            client = getattr(self, name)
            if client is not None:
                try:
                    client.close(autocommit=False)
                except Exception as exc:  # closing must not mask why we stop
                    log.debug("guest %s: closing %s: %s", self.vm_id, name, exc)
                setattr(self, name, None)
        if self._producer is not None:
            close_producer(self._producer, 5.0, f"guest {self.vm_id}")
            self._producer = None

    # --- control ------------------------------------------------------------------------------

    def _poll_control(self) -> None:
        if self._control is None:
            return
        try:
            batches = self._control.poll(timeout_ms=0, max_records=10_000)
        except KafkaError as exc:
            log.debug("guest %s: job-control: %s", self.vm_id, exc)
            return
        for records in batches.values():
            for record in records:
                self._apply_control(record)

    def _apply_control(self, record: Any) -> None:
        if record.value is None:
            return
        try:
            control = JobControl.from_bytes(record.value)
        except EventError:
            return  # not ours to dead-letter: the dispatchers do
        if control.action is ControlAction.REVOKE and control.vm_id != self.vm_id:
            return
        self.controls[control.job_id] = control
        running = self._running
        if control.action is ControlAction.CANCEL and running and running[0] == control.job_id:
            log.info("guest %s: cancel requested for running job %s", self.vm_id, control.job_id)
            running[1].set()

    # --- one message --------------------------------------------------------------------------

    def _process(self, partition: Any, record: Any, stop: threading.Event) -> None:
        try:
            job = QueuedJob.from_bytes(record.value)
            if job.vm_id != self.vm_id:
                raise EventError(
                    f"QueuedJob: vm_id: queued for {job.vm_id}, this guest is {self.vm_id}"
                )
            if record.key is not None and record.key != job.job_id.encode():
                raise EventError("QueuedJob: the message key is not its job_id")
        except EventError as exc:
            self._dead_letter(record, str(exc), stop)
            self._commit(partition, record)
            return
        key = done_key(job)
        if key in self.completed:
            log.info("guest %s: job %s already done; skipping the redelivery", self.vm_id, key)
            self.stats.skipped_duplicates += 1
            self._commit(partition, record)
            return
        ending_since = self.completed.ending_since(key)
        if ending_since is not None and self._end_on_record(job, ending_since, stop):
            log.info(
                "guest %s: job %s's end is already in %s (the last guest was killed before "
                "recording it); skipping the redelivery",
                self.vm_id,
                key,
                self.status_topic,
            )
            self.stats.skipped_duplicates += 1
            self.completed.add(key, self.clock())
            self._commit(partition, record)
            return
        self._poll_control()
        control = self.controls.get(job.job_id)
        if control is not None and control.action is ControlAction.REVOKE:
            log.info("guest %s: job %s was moved elsewhere; skipping it", self.vm_id, job.job_id)
            self.stats.revoked += 1
            self._commit(partition, record)
            return
        started_at = self.clock()
        if control is not None and control.action is ControlAction.CANCEL:
            self._finish(job, JobState.CANCELLED, started_at, started_at, stop, reason="cancelled")
            self.stats.cancelled += 1
        else:
            running = self._status(job, JobState.RUNNING, started_at)
            self._send(running, job.status_partition)  # not waited for
            state, result, error, finished_at = self._run_job(job, started_at, stop)
            self._finish(job, state, started_at, finished_at, stop, result=result, error=error)
            if state is JobState.SUCCEEDED:
                self.stats.completed += 1
            elif state in (JobState.FAILED, JobState.RETRYING):
                self.stats.failed += 1
            else:
                self.stats.cancelled += 1
        self.completed.add(key, self.clock())
        self._commit(partition, record)

    def _run_job(
        self, job: QueuedJob, started_at: float, stop: threading.Event
    ) -> tuple[JobState, dict[str, Any] | None, str | None, float]:
        started_mono = time.monotonic()
        waited_before = self.io.waited_s
        outcome: dict[str, Any] = {}
        cancelled = threading.Event()
        if job.job_id in self.controls:
            cancelled.set()

        def work() -> None:
            cancel.bind(cancelled)
            try:
                outcome["result"] = self.handler(job, self.io)
            except BaseException as exc:  # the job's failure is data, not the worker's
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=work, name=f"job-{job.job_id}", daemon=True)
        self._running = (job.job_id, cancelled)
        thread.start()
        released_at: float | None = None
        try:
            while thread.is_alive():
                thread.join(0.2)
                self._poll_control()
                if stop.is_set() and released_at is None:
                    released_at = time.monotonic() + self.grace_s
                    log.warning(
                        "guest %s: stopping; job %s has %.0fs to finish",
                        self.vm_id,
                        job.job_id,
                        self.grace_s,
                    )
                if released_at is not None and time.monotonic() >= released_at:
                    log.warning(
                        "guest %s: releasing job %s uncommitted (redelivered later)",
                        self.vm_id,
                        job.job_id,
                    )
                    raise Released(job.job_id)
        finally:
            self._running = None
        finished_at = max(self.clock(), started_at)
        self.busy.job_done(time.monotonic() - started_mono, self.io.waited_s - waited_before)
        error = outcome.get("error")
        result = outcome.get("result")
        if error is None and result is not None:
            error = result_problem(result)
            if error is not None:
                result = None
        if cancelled.is_set():
            log.info("guest %s: job %s ended after its cancel", self.vm_id, job.job_id)
            return JobState.CANCELLED, None, None, finished_at
        if error is not None:
            log.warning("guest %s: job %s failed: %s", self.vm_id, job.job_id, error)
            return JobState.FAILED, None, error[:MAX_TEXT], finished_at
        log.info("guest %s: job %s done: %s", self.vm_id, job.job_id, result)
        return JobState.SUCCEEDED, result, None, finished_at

    def _finish(
        self,
        job: QueuedJob,
        state: JobState,
        started_at: float,
        finished_at: float,
        stop: threading.Event,
        **fields: Any,
    ) -> None:
        if state is JobState.FAILED and job.attempt < job.max_attempts:
            # Not the job's end: it runs again (the dispatcher says when and where). `failed`
            # is final for whoever follows the job, so a failed attempt that is not the last
            # is reported as `retrying`.
            state = JobState.RETRYING
        status = self._status(job, state, started_at, finished_at=finished_at, **fields)
        # Wall-clock time, as the record's timestamp (kafka-python's) is: see `published`.
        self.completed.ending(done_key(job), time.time())
        if not self._publish(status.key(), status.to_bytes(), job.status_partition, stop):
            self.stats.given_up += 1

    def _status(
        self, job: QueuedJob, state: JobState, started_at: float, **fields: Any
    ) -> JobStatus:
        errors = list(job.errors)
        if state in (JobState.FAILED, JobState.RETRYING) and fields.get("error"):
            errors.append(fields["error"])
        return JobStatus(
            job_id=job.job_id,
            state=state,
            at=self.clock(),
            writer=StatusWriter.GUEST,
            job=job.submission(),
            attempt=job.attempt,
            vm_id=self.vm_id,
            host_id=self.host_id or job.host_id,
            dispatched_at=job.dispatched_at,
            started_at=started_at,
            errors=errors[-MAX_ATTEMPTS:],
            **{name: value for name, value in fields.items() if value is not None},
        )

    def _end_on_record(self, job: QueuedJob, since_s: float, stop: threading.Event) -> bool:
        """Whether the job's end, which a killed guest began to publish at `since_s`, reached
        `job-status`. Asked again until the topic answers: running the job again or skipping it
        on a guess would risk a second end or a lost job."""
        while True:
            try:
                return end_published(
                    self.settings,
                    self.status_topic,
                    job,
                    since_s,
                    client_id=f"vmlb-guest-{self.vm_id}-recovery",
                )
            except (KafkaError, OSError) as exc:
                log.warning(
                    "guest %s: cannot read %s to see whether job %s ended (%s); asking again",
                    self.vm_id,
                    self.status_topic,
                    job.job_id,
                    exc,
                )
                if stop.wait(1.0):
                    raise Released(job.job_id) from None

    def _dead_letter(self, record: Any, reason: str, stop: threading.Event) -> None:
        log.warning("guest %s: dead-lettering offset %s: %s", self.vm_id, record.offset, reason)
        letter = DeadLetter.of(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            reason=reason,
            stage=STAGE,
            at=self.clock(),
        )
        self._publish(letter.key(), letter.to_bytes(), None, stop, self.topics.name("dead-letters"))
        self.stats.dead_lettered += 1

    # --- publishing ---------------------------------------------------------------------------

    def _send(self, status: JobStatus, partition: int | None) -> None:
        """Fire and forget (the running record): an error is logged, and the producer whose
        delivery failed is replaced before the next publish (see `_publish`)."""
        producer = self._producer
        try:
            future = producer.send(
                self.status_topic, value=status.to_bytes(), key=status.key(), partition=partition
            )
            future.add_errback(lambda exc: self._delivery_failed(producer, exc))
        except KafkaError as exc:
            log.warning("guest %s: running status not sent: %s", self.vm_id, exc)

    def _delivery_failed(self, producer: Any, exc: BaseException) -> None:
        """A record of `producer` was not delivered (called on its I/O thread). kafka-python's
        idempotent producer delivers nothing more once one of its batches expired, so it is
        marked for replacement."""
        log.warning("guest %s: running status not sent: %s", self.vm_id, exc)
        self._failed_producer = producer

    def _publish(
        self,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        stop: threading.Event,
        topic: str | None = None,
    ) -> bool:
        """Publish and wait for the broker's acknowledgement; False if it refuses for good.

        Waiting is retried on the same future (its record is still in the producer, which
        retries on its own until its delivery timeout); only a delivery that failed is sent
        again, by a new producer (see `KafkaSettings.to_kafka_python_producer`). If the worker
        is stopped meanwhile the job is released (its offset stays uncommitted)."""
        topic = topic or self.status_topic
        future = None
        sent_at = 0.0
        while True:
            try:
                if self._failed_producer is self._producer:
                    # One of its deliveries failed (the running record's, say): it is wedged.
                    raise _Wedged("an earlier delivery of this producer failed")
                if future is None:
                    future = self._producer.send(topic, value=value, key=key, partition=partition)
                    sent_at = time.monotonic()
                future.get(timeout=5)
                return True
            except _Wedged as exc:
                exc_text = str(exc)
            except KafkaTimeoutError as exc:
                if future is not None and not future.is_done:
                    if stop.is_set():
                        raise Released("publish") from None
                    if time.monotonic() - sent_at < WEDGED_AFTER_S:
                        continue  # still in flight: wait on the same record
                    exc_text = f"neither delivered nor expired after {WEDGED_AFTER_S:.0f} s"
                else:
                    exc_text = str(exc) or "delivery timed out"
            except KafkaError as exc:
                if not getattr(exc, "retriable", False) and future is not None:
                    log.error(
                        "guest %s: %s refused the record for good (%s); giving it up",
                        self.vm_id,
                        topic,
                        exc,
                    )
                    return False
                exc_text = str(exc)
            log.warning(
                "guest %s: publishing to %s failed (%s); retrying", self.vm_id, topic, exc_text
            )
            future = None
            self._replace_producer()
            if stop.wait(1.0):
                raise Released("publish")

    def _replace_producer(self) -> None:
        # Stopped for good (close_producer), so that none of its held records is delivered
        # later, behind what the new producer sends: kafka-python's close() alone would raise
        # and leave it sending.
        close_producer(self._producer, 1.0, f"guest {self.vm_id}")
        try:
            self._producer = self._new_producer()
        except KafkaError as exc:
            log.warning("guest %s: no producer yet (%s)", self.vm_id, exc)

    def _commit(self, partition: Any, record: Any) -> None:
        from kafka.structs import OffsetAndMetadata

        try:
            self._consumer.commit({partition: OffsetAndMetadata(record.offset + 1, "", -1)})
        except KafkaError as exc:
            # Not fatal: the job is recorded as done, so its redelivery is only skipped.
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


class _Wedged(Exception):
    """The guest's producer will deliver nothing more (see `GuestWorker._publish`)."""


def result_problem(result: Any) -> str | None:
    """Why a handler's return value cannot travel as the job's result (None if it can)."""
    if not isinstance(result, dict):
        return f"the handler returned {type(result).__name__}, not a JSON object (a dict)"
    try:
        size = len(to_json_bytes(result))
    except Exception as exc:
        return f"the handler's result is not JSON: {exc}"
    if size > MAX_RESULT_BYTES:
        return (
            f"the handler's result is {size} bytes, over the {MAX_RESULT_BYTES}-byte limit; "
            "return a reference (a path, a URL) to larger output"
        )
    return None
