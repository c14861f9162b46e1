"""producers.guest.worker.GuestWorker: a broker outage while polling is not the guest's end."""

from __future__ import annotations

import threading
from typing import Any

from kafka.errors import KafkaConnectionError

from pipeline.settings import KafkaSettings
from pipeline.topics import load_topics
from producers.guest.completed import CompletedJobs
from producers.guest.handlers import mixed
from producers.guest.io import LocalDiskIoChannel
from producers.guest.worker import GuestWorker


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
