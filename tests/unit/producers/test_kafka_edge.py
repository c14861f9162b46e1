"""producers.kafka_edge.BufferedPublisher: a send that timed out does not leave it 'away'."""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaTimeoutError

from pipeline.events import HostRegistration
from pipeline.settings import KafkaSettings
from producers.kafka_edge import BufferedPublisher


class Delivered:
    """A send's future that is already acknowledged."""

    def add_callback(self, callback: Any, *args: Any) -> Delivered:
        callback("metadata", *args)
        return self

    def add_errback(self, errback: Any, *args: Any) -> Delivered:
        return self


class SlowThenFineProducer:
    """The first send's metadata fetch times out (a loaded machine); later sends succeed."""

    def __init__(self) -> None:
        self.sends = 0

    def send(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None = None
    ) -> Delivered:
        self.sends += 1
        if self.sends == 1:
            raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")
        return Delivered()


def test_a_delivery_after_a_timed_out_send_marks_the_broker_reachable_again():
    publisher = BufferedPublisher(KafkaSettings(), "test", retry_every_s=0.0)
    publisher._producer = SlowThenFineProducer()
    publisher.connected = True
    event = HostRegistration(host_id="h1", registered_at=1.0)
    publisher.publish("t.hosts", event)
    assert publisher.pump() == 0  # timed out: kept in the outbox
    assert publisher.connected is False
    assert publisher.pump() == 1
    assert publisher.delivered == 1
    assert publisher.connected is True  # so Dom0 goes on to create queues and register VMs


class Pending:
    """A send's future the broker has not answered yet."""

    def __init__(self) -> None:
        self.errbacks: list[tuple[Any, tuple[Any, ...]]] = []

    def add_callback(self, callback: Any, *args: Any) -> Pending:
        return self

    def add_errback(self, errback: Any, *args: Any) -> Pending:
        self.errbacks.append((errback, args))
        return self


class Sender:
    def __init__(self, producer: OutageProducer) -> None:
        self.producer = producer
        self.alive = True

    def force_close(self) -> None:
        # As kafka-python's Sender: the loop stops and the incomplete batches are aborted.
        self.alive = False
        for future in self.producer.pending:
            for errback, args in future.errbacks:
                # As kafka.future.Future: functools.partial(errback, *args)(exception).
                errback(*args, KafkaTimeoutError("Producer is closed forcefully."))
        self.producer.pending.clear()

    def join(self, timeout: float) -> None:
        pass


class OutageProducer:
    """kafka-python 3.0.12's KafkaProducer while the broker is away: `close(timeout)` flushes
    first and raises KafkaTimeoutError while records are undelivered, leaving it open."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self._sender = Sender(self)
        self.closed = False

    def send(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None = None
    ) -> Pending:
        self.pending.append(Pending())
        return self.pending[-1]

    def close(self, timeout: float) -> None:
        if self.pending:
            raise KafkaTimeoutError("Timeout waiting for future")
        self.closed = True


def test_closing_during_an_outage_is_one_warning_and_keeps_the_undelivered(caplog):
    import logging

    publisher = BufferedPublisher(KafkaSettings(broker="k:9092"), "dom0-h1")
    producer = OutageProducer()
    publisher._producer = producer
    for at in (1.0, 2.0, 3.0):
        publisher.publish("t.io-samples", HostRegistration(host_id="h1", registered_at=at))
    with caplog.at_level(logging.DEBUG, logger="producers.kafka_edge"):
        publisher.close(timeout_s=0.1)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "dom0-h1: 3 message(s) undelivered at close: Kafka at k:9092 did not take them within 0.1 s"
    ]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback anywhere
    # Stopped for good, so nothing is left for its __del__ to fail on at exit.
    assert producer.closed and not producer._sender.alive
    assert len(publisher.outbox) == 3
