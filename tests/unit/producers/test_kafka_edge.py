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
