"""The Kafka side of the producers: a publisher that drains an `Outbox`, and a registry reader.

kafka-python clients, created lazily and replaced after failed deliveries, so a process started
while the broker is down keeps running and catches up when it returns, however long it was away.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from pipeline.events import Event, VmRegistration
from pipeline.settings import KafkaSettings
from producers.outbox import Outbox, Outgoing

log = logging.getLogger(__name__)


class BufferedPublisher:
    """Publishes what is put into its outbox; failed deliveries go back into the outbox."""

    def __init__(
        self,
        settings: KafkaSettings,
        client_id: str,
        outbox: Outbox | None = None,
        *,
        delivery_timeout_s: float = 15.0,
        retry_every_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.outbox = outbox if outbox is not None else Outbox()  # an empty Outbox is falsy
        self.delivery_timeout_s = delivery_timeout_s
        self.retry_every_s = retry_every_s
        self._producer: Any = None
        self._next_attempt_at = 0.0
        self._reported_dropped = 0
        self._failed_deliveries = 0
        self.delivered = 0
        self.connected = False

    def publish(
        self, topic: str, event: Event, *, compacted: bool = False, partition: int | None = None
    ) -> None:
        self.outbox.put(
            topic, event.key(), event.to_bytes(), compacted=compacted, partition=partition
        )

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    def pump(self) -> int:
        """Hand every buffered message to the producer; return how many were handed over."""
        self._report_drops()
        if self._failed_deliveries:
            # A producer whose deliveries failed (a broker outage past its delivery timeout) is
            # replaced rather than trusted to recover (see KafkaSettings.to_kafka_python_producer).
            self._failed_deliveries = 0
            self._discard_producer()
        producer = self._ensure_producer()
        if producer is None:
            return 0
        from kafka.errors import KafkaError

        pending = self.outbox.take()
        for i, message in enumerate(pending):
            try:
                future = producer.send(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    partition=message.partition,
                )
            except KafkaError as exc:
                # Metadata unavailable within max_block_ms: the broker is away. Keep the rest.
                self._lost_broker(exc)
                for unsent in reversed(pending[i:]):
                    self.outbox.put_back(unsent)
                return i
            future.add_callback(self._on_delivered)
            future.add_errback(self._on_failed, message)
        return len(pending)

    def retry_now(self) -> None:
        """Try the broker again at the next pump, without waiting out the back-off."""
        self._next_attempt_at = 0.0

    def flush(self, timeout_s: float) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except Exception as exc:  # a flush that times out must not stop a shutdown
                log.warning("%s: flush did not complete: %s", self.client_id, exc)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is buffered within `timeout_s`; what is not is one warning, not raised."""
        try:
            self.pump()
        except Exception as exc:
            log.warning("%s: last delivery on close failed: %s", self.client_id, exc)
        # Closing delivers what the producer holds, or gives it back to the outbox (its futures
        # fail): so the count below is every message that did not reach Kafka.
        self._discard_producer(timeout_s)
        self._report_drops()
        if self.outbox:
            log.warning(
                "%s: %d message(s) undelivered at close: Kafka at %s did not take them within %g s",
                self.client_id,
                len(self.outbox),
                self.settings.broker,
                timeout_s,
            )

    def _discard_producer(self, timeout_s: float = 1.0) -> None:
        if self._producer is not None:
            close_producer(self._producer, timeout_s, self.client_id)
            self._producer = None

    # --- internals ----------------------------------------------------------------------------

    def _ensure_producer(self) -> Any:
        if self._producer is not None:
            return self._producer
        if time.monotonic() < self._next_attempt_at:
            return None
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            self._producer = KafkaProducer(
                **self.settings.to_kafka_python_producer(
                    client_id=self.client_id,
                    linger_ms=5,
                    max_block_ms=1000,
                    bootstrap_timeout_ms=2000,
                    delivery_timeout_ms=int(self.delivery_timeout_s * 1000),
                    request_timeout_ms=int(min(self.delivery_timeout_s, 10) * 1000),
                )
            )
        except KafkaError as exc:
            self._lost_broker(exc)
            return None
        if not self.connected:
            log.info("%s: connected to Kafka at %s", self.client_id, self.settings.broker)
        self.connected = True
        return self._producer

    def _lost_broker(self, exc: Exception) -> None:
        if self.connected or self._next_attempt_at == 0.0:
            log.warning(
                "%s: Kafka at %s unavailable (%s); buffering up to %d messages",
                self.client_id,
                self.settings.broker,
                exc,
                self.outbox.max_messages,
            )
        self.connected = False
        self._next_attempt_at = time.monotonic() + self.retry_every_s

    def _on_delivered(self, _metadata: Any) -> None:
        self.delivered += 1
        if not self.connected:
            # A delivery proves the broker is there, whatever a send that timed out said (a
            # metadata fetch slower than max_block_ms on a loaded machine, a slow SASL start):
            # without this, Dom0 would hold its registrations and queue topics forever.
            log.info("%s: Kafka at %s reachable again", self.client_id, self.settings.broker)
            self.connected = True

    def _on_failed(self, message: Outgoing, exc: Exception) -> None:
        # kafka-python calls an errback added with arguments as errback(*arguments, exception).
        self.connected = False
        self._failed_deliveries += 1
        log.debug("%s: delivery to %s failed: %s", self.client_id, message.topic, exc)
        self.outbox.put_back(message)

    def _report_drops(self) -> None:
        if self.outbox.dropped > self._reported_dropped:
            log.warning(
                "%s: dropped %d message(s) so far: the broker was away longer than the buffer lasts",
                self.client_id,
                self.outbox.dropped,
            )
            self._reported_dropped = self.outbox.dropped


def close_producer(producer: Any, timeout_s: float, client_id: str) -> None:
    """Close a kafka-python producer within about `timeout_s`, whatever it still holds; never
    raises. The records it could not deliver fail their futures (their errbacks run).

    Workaround, kafka-python 3.0.12: `KafkaProducer.close(timeout)` flushes first (since
    dpkp/kafka-python#2537) and, when records are still undelivered (the broker is away), raises
    KafkaTimeoutError before it stops its I/O thread. The producer stays open; at exit its
    `__del__` closes it again, fails again, and Python prints "Exception ignored in:
    KafkaProducer.__del__" with a traceback (a Dom0 stopped during a broker outage did). After a
    failed close, the I/O thread is stopped the way close() itself stops it once its timeout has
    passed (`_sender.force_close()`, which fails the pending records), and the second close has
    nothing left to flush. Tested in tests/unit/producers/test_kafka_edge.py and, on a real
    broker, tests/integration/producers/test_dom0_kafka.py.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as exc:
        log.debug(
            "%s: close within %g s failed (%s): stopping the producer", client_id, timeout_s, exc
        )
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()
            sender.join(timeout_s)
        producer.close(timeout=0)
    except Exception as exc:  # nothing more can be done; the process is stopping it anyway
        log.warning("%s: producer not closed: %s", client_id, exc)


class RegistryReader:
    """The latest `VmRegistration` per VM, read from the compacted vms topic (no consumer group).

    Dom0 uses it to tell a migration from a stop; it is advisory, so it never blocks or fails.
    """

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.latest: dict[str, VmRegistration] = {}
        self._consumer: Any = None
        self._next_attempt_at = 0.0

    def poll(self) -> dict[str, VmRegistration]:
        from kafka.errors import KafkaError

        try:
            consumer = self._ensure_consumer()
            if consumer is not None:
                for records in consumer.poll(timeout_ms=0, max_records=10_000).values():
                    for record in records:
                        self._apply(record)
        except KafkaError as exc:
            log.debug("registry reader: %s", exc)
            self._close()
        return self.latest

    def _apply(self, record: Any) -> None:
        from pipeline.errors import EventError

        if record.value is None:
            self.latest.pop(record.key.decode() if record.key else "", None)
            return
        try:
            registration = VmRegistration.from_bytes(record.value)
        except EventError:
            return  # not ours to dead-letter: the registry's readers do that
        self.latest[registration.vm_id] = registration

    def _ensure_consumer(self) -> Any:
        if self._consumer is not None:
            return self._consumer
        if time.monotonic() < self._next_attempt_at:
            return None
        self._next_attempt_at = time.monotonic() + 5.0
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=2000,
            **self.settings.to_kafka_python(),
        )
        partitions = consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            consumer.close()
            return None
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        self._consumer = consumer
        return consumer

    def _close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
            self._consumer = None

    def close(self) -> None:
        self._close()
