"""producers.guest.worker.GuestWorker: a broker outage while polling is not the guest's end."""

from __future__ import annotations

import threading
from typing import Any

from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from pipeline.events import JobState, JobStatus, JobSubmission, StatusWriter
from pipeline.settings import KafkaSettings
from pipeline.topics import load_topics
from producers.guest.completed import CompletedJobs
from producers.guest.handlers import mixed
from producers.guest.io import LocalDiskIoChannel
from producers.guest.worker import WEDGED_AFTER_S, GuestWorker


class RefusedThenEmpty:
    """kafka-python's consumer during an outage: poll raises once, then polls as usual."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.polls += 1
        if self.polls == 1:
            raise KafkaConnectionError("111 ECONNREFUSED")
        self.stop.set()
        return {}

    def close(self, autocommit: bool = False) -> None:
        pass


def guest(tmp_path) -> GuestWorker:
    return GuestWorker(
        KafkaSettings(),
        load_topics(prefix="t."),
        "vm1",
        mixed,
        LocalDiskIoChannel(tmp_path / "io"),
        CompletedJobs(tmp_path / "done"),
    )


def test_a_connection_error_from_poll_is_ridden_out(tmp_path, monkeypatch):
    worker = guest(tmp_path)
    stop = threading.Event()
    consumer = RefusedThenEmpty(stop)

    def connected(_stop: threading.Event) -> bool:
        worker._consumer = consumer
        return True

    monkeypatch.setattr(worker, "_connect", connected)
    worker.run(stop)  # returns once stopped, instead of raising the connection error
    assert consumer.polls == 2


def test_the_guests_producer_is_idempotent_with_one_request_in_flight(tmp_path, monkeypatch):
    # A retried end record must not be appended twice (the broker recognises the retry), and
    # stay in order: see GuestWorker._new_producer.
    made: list[dict[str, Any]] = []
    monkeypatch.setattr("kafka.KafkaProducer", lambda **options: made.append(options))
    guest(tmp_path)._new_producer()
    [options] = made
    assert options["enable_idempotence"] is True
    assert options["max_in_flight_requests_per_connection"] == 1
    assert options["acks"] == "all"


class _Future:
    """A send's future: delivered at once, or never (a wedged producer's)."""

    def __init__(self, delivers: bool) -> None:
        self.is_done = delivers
        self.errbacks: list[Any] = []

    def get(self, timeout: float) -> None:
        if not self.is_done:
            raise KafkaTimeoutError("not yet")

    def add_errback(self, errback: Any) -> None:
        self.errbacks.append(errback)


class _Producer:
    """A kafka-python producer as the guest uses it; `wedged` ones never deliver."""

    def __init__(self, wedged: bool) -> None:
        self.wedged = wedged
        self.sent: list[bytes] = []
        self.futures: list[_Future] = []

    def send(self, topic: str, value: bytes, key: bytes | None, partition: int | None) -> _Future:
        self.sent.append(value)
        self.futures.append(_Future(delivers=not self.wedged))
        return self.futures[-1]

    def close(self, timeout: float | None = None) -> None:
        pass


def _wedged_guest(tmp_path, monkeypatch) -> tuple[GuestWorker, _Producer, _Producer]:
    """A guest whose producer never delivers, and the producer that replaces it."""
    worker = guest(tmp_path)
    wedged, fresh = _Producer(wedged=True), _Producer(wedged=False)
    worker._producer = wedged
    monkeypatch.setattr(worker, "_new_producer", lambda: fresh)
    monkeypatch.setattr("producers.guest.worker.close_producer", lambda *args: None)
    return worker, wedged, fresh


def _expire(future: _Future) -> None:
    """The producer's I/O thread: the record's batch expired."""
    for errback in future.errbacks:
        errback(KafkaTimeoutError("Expiring 1 record(s)"))


def test_a_producer_whose_running_record_expired_is_replaced_before_the_end_is_published(
    tmp_path, monkeypatch
):
    # As measured (broker-outage-long): the running record expired during the outage, then
    # the idempotent producer neither delivered nor expired the end record: the guest waited
    # on it for good and its VM took no job again.
    worker, wedged, fresh = _wedged_guest(tmp_path, monkeypatch)
    worker._send(_status(), None)
    [running] = wedged.futures
    _expire(running)
    stop = threading.Event()
    assert worker._publish(b"j1", b"succeeded", None, stop)
    assert fresh.sent == [b"succeeded"] and wedged.sent == [_status().to_bytes()]


def test_a_running_record_that_expires_while_the_end_waits_replaces_the_producer(
    tmp_path, monkeypatch
):
    worker, wedged, fresh = _wedged_guest(tmp_path, monkeypatch)
    worker._send(_status(), None)
    waits = 0

    def expires_on_the_second_wait(timeout: float) -> None:
        nonlocal waits
        waits += 1
        if waits == 2:
            _expire(wedged.futures[0])  # the running record's
        raise KafkaTimeoutError("not yet")

    real_send = wedged.send

    def send(*args: Any, **kwargs: Any) -> _Future:
        future = real_send(*args, **kwargs)
        future.get = expires_on_the_second_wait  # type: ignore[method-assign]
        return future

    monkeypatch.setattr(wedged, "send", send)
    assert worker._publish(b"j1", b"succeeded", None, threading.Event())
    assert fresh.sent == [b"succeeded"] and waits == 2


def test_a_record_neither_delivered_nor_expired_is_sent_again_by_a_new_producer(
    tmp_path, monkeypatch
):
    worker, wedged, fresh = _wedged_guest(tmp_path, monkeypatch)
    clock = iter([0.0, 1.0, WEDGED_AFTER_S + 1.0] + [WEDGED_AFTER_S + 2.0] * 10)
    monkeypatch.setattr("producers.guest.worker.time.monotonic", lambda: next(clock))
    assert worker._publish(b"j1", b"succeeded", None, threading.Event())
    assert wedged.sent == [b"succeeded"] and fresh.sent == [b"succeeded"]


def _status() -> JobStatus:
    return JobStatus(
        job_id="j1",
        state=JobState.RUNNING,
        at=1.0,
        writer=StatusWriter.GUEST,
        job=JobSubmission(job_id="j1", job_type="io", submitted_at=1.0),
        vm_id="vm1",
        host_id="h1",
    )
