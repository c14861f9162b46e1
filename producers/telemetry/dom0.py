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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from kafka.errors import KafkaError

from pipeline.errors import ConfigError
from pipeline.events import HostRegistration, IoSample, VmRegistration, VmStatus
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from producers.kafka_edge import BufferedPublisher, RegistryReader
from producers.outbox import Outbox
from producers.telemetry.host_samples import host_samples
from producers.telemetry.sampler import Sampler, SamplerConfig
from producers.telemetry.source import TelemetrySource

log = logging.getLogger(__name__)


@dataclass
class Dom0Stats:
    ticks: int = 0
    #: VM samples published (in either form) and the io-samples records that carried them.
    samples: int = 0
    records: int = 0
    registrations: int = 0
    source_errors: int = 0
    #: Readings of a VM present but without counters (its hypervisor call overran or answered
    #: without them): no sample that tick.
    unmetered: int = 0


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
        per_vm_samples: bool = False,
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
        #: Publish one IoSample per VM (the first format) instead of HostSamples.
        self.per_vm_samples = per_vm_samples
        self._partitions = topics.partitions("io-samples")
        self.stats = Dom0Stats()
        # Queue topics known to exist, and registrations waiting for theirs.
        self._queues_ready: set[str] = set()
        self._held: dict[str, VmRegistration] = {}
        self._topic_jobs: dict[str, Future[bool]] = {}
        self._topic_retry_at: dict[str, float] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dom0-topics")
        self._unmetered: set[str] = set()
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
        self.publisher.pump()  # connect now, so the first tick can create queue topics
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
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.publisher.close(timeout_s=5.0)
            self.registry.close()
            self.source.close()
            log.info(
                "dom0 %s: stopped after %d ticks; %d samples, %d registrations, %d dropped, "
                "%d readings without counters",
                self.config.host_id,
                self.stats.ticks,
                self.stats.samples,
                self.stats.registrations,
                self.dropped,
                self.stats.unmetered,
            )

    def tick(self) -> None:
        result = self.sampler.tick(self.registry.poll())
        self.stats.ticks += 1
        if result.source_error:
            self.stats.source_errors += 1
            log.warning("dom0 %s: %s", self.config.host_id, result.source_error)
        if result.host_registration is not None:
            log.info(
                "dom0 %s: telemetry path: %s (%s)",
                self.config.host_id,
                result.host_registration.telemetry_path,
                self.source.description,
            )
            self.publisher.publish(self._hosts, result.host_registration, compacted=True)
        self._log_unmetered(set(result.unmetered), {s.vm_id for s in result.samples})
        self.stats.unmetered += len(result.unmetered)
        for change in result.changes:
            log.info("dom0 %s: %s %s", self.config.host_id, change.vm_id, change.kind)
        for registration in [*self._held.values(), *result.registrations]:
            self._register(registration)
        self._publish_samples(result.samples)
        self.publisher.pump()

    def _publish_samples(self, samples: list[IoSample]) -> None:
        """This tick's samples: HostSamples (one per partition of the host's VMs), or one
        IoSample per VM with `per_vm_samples`. A record is the outbox's unit: when a long
        broker outage overflows it, the oldest records go, whole."""
        if self.per_vm_samples:
            for sample in samples:
                self.publisher.publish(self._io_samples, sample)
            self.stats.records += len(samples)
        else:
            records = host_samples(samples, self._partitions)
            for partition, record in records:
                self.publisher.publish(self._io_samples, record, partition=partition)
            self.stats.records += len(records)
        self.stats.samples += len(samples)

    def _log_unmetered(self, now: set[str], sampled: set[str]) -> None:
        """Say when a VM's counters go missing and when they are back, not every tick."""
        for vm_id in sorted(now - self._unmetered):
            log.warning(
                "dom0 %s: %s: counters unavailable (hypervisor call overran or answered without "
                "them); no sample until they are back",
                self.config.host_id,
                vm_id,
            )
        for vm_id in sorted((self._unmetered - now) & sampled):
            log.info("dom0 %s: %s: counters back", self.config.host_id, vm_id)
        self._unmetered = now

    def _register(self, registration: VmRegistration) -> None:
        vm_id = registration.vm_id
        if registration.status is VmStatus.RUNNING and not self._queue_ready(vm_id):
            self._hold(registration)  # published once its queue topic exists
            return
        self._held.pop(vm_id, None)
        self.publisher.publish(self._vms, registration, compacted=True)
        self.stats.registrations += 1

    def _queue_ready(self, vm_id: str) -> bool:
        """Whether the VM's queue topic exists; creates it in the background if not.

        Topic creation runs off the sampling thread: against an unreachable broker it takes the
        admin client's whole bootstrap timeout, and sampling must not stall meanwhile.
        """
        if vm_id in self._queues_ready:
            return True
        job = self._topic_jobs.get(vm_id)
        if job is None:
            if not self.publisher.connected:
                return False  # the broker is away: creating the topic would only time out
            if time.monotonic() < self._topic_retry_at.get(vm_id, 0.0):
                return False
            spec = self.topics.queue_topic(vm_id)
            job = self._executor.submit(ensure_topic, self.settings, spec, 10.0)
            self._topic_jobs[vm_id] = job
            # Usually quick: then the VM registers in this very tick.
            wait([job], timeout=min(self.config.interval_s / 2, 2.0))
        if not job.done():
            return False
        del self._topic_jobs[vm_id]
        try:
            created = job.result()
        except ConfigError as exc:  # more replicas than brokers: the operator's to fix
            self._topic_retry_at[vm_id] = time.monotonic() + 30.0
            log.error("dom0 %s: queue topic for %s refused: %s", self.config.host_id, vm_id, exc)
            return False
        except (KafkaError, OSError) as exc:
            self._topic_retry_at[vm_id] = time.monotonic() + 5.0
            log.warning(
                "dom0 %s: queue topic for %s not created yet: %s", self.config.host_id, vm_id, exc
            )
            return False
        if created:
            log.info(
                "dom0 %s: created queue topic %s",
                self.config.host_id,
                self.topics.queue_topic(vm_id).name,
            )
        self._queues_ready.add(vm_id)
        return True

    def _hold(self, registration: VmRegistration) -> None:
        """Keep the newest registration of a VM until its queue topic exists."""
        held = self._held.get(registration.vm_id)
        if held is None or held.registered_at <= registration.registered_at:
            self._held[registration.vm_id] = registration
