"""BufferedPublisher's view of the broker, with a fake producer."""

from __future__ import annotations

from typing import Any

import kafka
from kafka.errors import KafkaTimeoutError

from pipeline.events import HostRegistration
from pipeline.settings import KafkaSettings
from producers.kafka_edge import BufferedPublisher


class FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, callback: Any, *args: Any) -> FakeFuture:
        self.callbacks.append((callback, args))
        return self

    def add_errback(self, errback: Any, *args: Any) -> FakeFuture:
        return self

    def succeed(self) -> None:
        for callback, args in self.callbacks:
            callback(*args, None)


class SlowThenFineProducer:
    """The first send times out waiting for metadata (a slow SASL login); later ones work."""

    def __init__(self, **_options: Any) -> None:
        self.sends = 0
        self.futures: list[FakeFuture] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> FakeFuture:
        self.sends += 1
        if self.sends == 1:
            raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")
        future = FakeFuture()
        self.futures.append(future)
        return future


def test_a_delivery_after_a_slow_start_marks_the_broker_connected_again(monkeypatch) -> None:
    monkeypatch.setattr(kafka, "KafkaProducer", SlowThenFineProducer)
    publisher = BufferedPublisher(KafkaSettings(), "test", retry_every_s=0.0)
    registration = HostRegistration(host_id="h1", registered_at=1.0)

    publisher.publish("hosts", registration)
    assert publisher.pump() == 0
    assert not publisher.connected  # the broker did not answer in time

    publisher.pump()  # the same producer, now answering
    producer = publisher._producer
    assert isinstance(producer, SlowThenFineProducer) and producer.futures
    producer.futures[-1].succeed()
    assert publisher.connected
