"""`vmlb dom0`: sample one host every interval and publish telemetry and registrations.

The Kafka edge around the pure `Sampler`: it creates a VM's queue topic before the VM's first
registration (so the dispatcher never routes to a missing topic), publishes through a bounded
outbox, and keeps sampling while the broker is away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka.errors import KafkaError

from pipeline.events import HostRegistration, VmRegistration, VmStatus
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from producers.kafka_edge import BufferedPublisher, RegistryReader
from producers.outbox import Outbox
from producers.telemetry.sampler import Sampler, SamplerConfig
from producers.telemetry.source import TelemetrySource

log = logging.getLogger(__name__)


@dataclass
class Dom0Stats:
    ticks: int = 0
    samples: int = 0
    registrations: int = 0
    source_errors: int = 0


class Dom0:
    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        config: SamplerConfig,
        source: TelemetrySource,
        *,
        clock: Callable[[], float] = time.time,
        max_buffered: int = 10_000,
        vms_stopped_on_exit: bool = False,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.config = config
        self.source = source
        self.sampler = Sampler(
            config, source, queue_topic=lambda vm: topics.queue_topic(vm).name, clock=clock
        )
        self.publisher = BufferedPublisher(
            settings, f"vmlb-dom0-{config.host_id}", Outbox(max_messages=max_buffered)
        )
        self.registry = RegistryReader(settings, topics.name("vms"))
        self.vms_stopped_on_exit = vms_stopped_on_exit
        self.stats = Dom0Stats()
        # Queue topics known to exist, and registrations waiting for theirs.
        self._queues_ready: set[str] = set()
        self._held: dict[str, VmRegistration] = {}
        self._io_samples = topics.name("io-samples")
        self._hosts = topics.name("hosts")
        self._vms = topics.name("vms")

    @property
    def dropped(self) -> int:
        """Messages lost to a broker outage longer than the buffer (also logged)."""
        return self.publisher.dropped

    def run(self, stop: threading.Event) -> None:
        """Sample every interval until `stop` is set; then publish the host's departure."""
        log.info(
            "dom0 %s: sampling %s every %.3gs",
            self.config.host_id,
            self.source.description,
            self.config.interval_s,
        )
        self.publisher.publish(self._hosts, self.sampler.host_registration(), compacted=True)
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                self.tick()
                next_at += self.config.interval_s
                # A late tick is not made up for: the next one measures the longer interval.
                next_at = max(next_at, time.monotonic())
                stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            for event in self.sampler.shutdown_registrations(vms_stopped=self.vms_stopped_on_exit):
                topic = self._hosts if isinstance(event, HostRegistration) else self._vms
                self.publisher.publish(topic, event, compacted=True)
            self.publisher.close(timeout_s=5.0)
            self.registry.close()
            self.source.close()
            log.info(
                "dom0 %s: stopped after %d ticks; %d samples, %d registrations, %d dropped",
                self.config.host_id,
                self.stats.ticks,
                self.stats.samples,
                self.stats.registrations,
                self.dropped,
            )

    def tick(self) -> None:
        result = self.sampler.tick(self.registry.poll())
        self.stats.ticks += 1
        if result.source_error:
            self.stats.source_errors += 1
            log.warning("dom0 %s: %s", self.config.host_id, result.source_error)
        for change in result.changes:
            log.info("dom0 %s: %s %s", self.config.host_id, change.vm_id, change.kind)
        for registration in [*self._held.values(), *result.registrations]:
            self._register(registration)
        for sample in result.samples:
            self.publisher.publish(self._io_samples, sample)
        self.stats.samples += len(result.samples)
        self.publisher.pump()

    def _register(self, registration: VmRegistration) -> None:
        vm_id = registration.vm_id
        if registration.status is VmStatus.RUNNING and vm_id not in self._queues_ready:
            try:
                if ensure_topic(self.settings, self.topics.queue_topic(vm_id), timeout_s=5.0):
                    log.info(
                        "dom0 %s: created queue topic %s",
                        self.config.host_id,
                        registration.queue_topic,
                    )
                self._queues_ready.add(vm_id)
            except (KafkaError, OSError) as exc:
                held = self._held.get(vm_id)
                if held is None or held.registered_at <= registration.registered_at:
                    self._held[vm_id] = registration  # published once its queue exists
                log.warning(
                    "dom0 %s: queue topic for %s not created yet: %s",
                    self.config.host_id,
                    vm_id,
                    exc,
                )
                return
        self._held.pop(vm_id, None)
        self.publisher.publish(self._vms, registration, compacted=True)
        self.stats.registrations += 1
