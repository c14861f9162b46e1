"""The pure sampling loop of one host: readings in, events out. No Kafka, no sleeping.

Each `tick()` reads the source once and returns what to publish: an `IoSample` per VM that has a
baseline (the first reading of a VM is only a baseline), a `VmRegistration` for every change
(`changes`: started, stopped, migrated, retyped, paused, resumed), and the host's registration
again when the source's read path changes. The clock is injected; the Kafka edge (`dom0`) calls
`tick()` every interval.

A VM whose counters the source could not read this time (`VmReading.counters` None) is still
there: it keeps its registration and its baseline, and gets no sample until its counters are
back; the next sample then spans the whole gap (its I/O over the longer interval, not a burst).

Where a VM's job type comes from, first match wins: the operator's `--vm-type` mapping; the
source (libvirt domain metadata, the emulated host's config); the fleet's last registration of
the VM (a VM migrated in keeps its type). A VM with no known type is still metered but not
registered: no job can be sent to it. A known gap: the dispatcher places a sample only by its
VM's registration, so it dead-letters such a VM's samples and its I/O does not count toward its
host (a registration of a VM that serves no job type would fix it; not built).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.errors import ConfigError
from pipeline.events import (
    Event,
    HostRegistration,
    HostStatus,
    IoSample,
    VmRegistration,
    VmStatus,
)
from producers.errors import SourceError
from producers.runtime import is_identifier, require_identifier
from producers.telemetry.changes import ChangeKind, PresenceTracker, VmChange
from producers.telemetry.counters import CounterBaselines
from producers.telemetry.source import TelemetrySource, VmReading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerConfig:
    host_id: str
    interval_s: float = 1.0
    io_limit_ops_per_s: float | None = None
    #: The operator's `--vm-type VM=JOB_TYPE` mapping; wins over the source.
    vm_types: Mapping[str, str] = field(default_factory=dict)
    #: How long a vanished VM stays registered before it is reported stopped (migrations).
    stop_grace_s: float | None = None

    def __post_init__(self) -> None:
        require_identifier(self.host_id, "--host-id")
        if self.interval_s <= 0:
            raise ConfigError(f"--interval: must be > 0, got {self.interval_s}")

    @property
    def effective_stop_grace_s(self) -> float:
        return self.stop_grace_s if self.stop_grace_s is not None else 2 * self.interval_s


@dataclass
class TickResult:
    samples: list[IoSample] = field(default_factory=list)
    registrations: list[VmRegistration] = field(default_factory=list)
    changes: list[VmChange] = field(default_factory=list)
    #: VMs running here whose job type nobody knows (metered, not registered).
    untyped: list[str] = field(default_factory=list)
    #: VMs here whose counters could not be read this time (no sample for them).
    unmetered: list[str] = field(default_factory=list)
    #: The host's registration again, when the source's read path changed (`source.path`).
    host_registration: HostRegistration | None = None
    source_error: str | None = None


class Sampler:
    def __init__(
        self,
        config: SamplerConfig,
        source: TelemetrySource,
        *,
        queue_topic: Callable[[str], str],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.source = source
        self.queue_topic = queue_topic
        self.clock = clock
        self.baselines = CounterBaselines()
        self.presence = PresenceTracker(config.host_id, config.effective_stop_grace_s)
        self._warned: set[str] = set()
        self.resets = 0
        self._path: str | None = None

    def host_registration(self, status: HostStatus = HostStatus.UP) -> HostRegistration:
        self._path = self.source.path  # what the registration says: changes re-register
        return HostRegistration(
            host_id=self.config.host_id,
            status=status,
            io_limit_ops_per_s=self.config.io_limit_ops_per_s,
            sample_interval_s=self.config.interval_s,
            telemetry_path=self._path,
            registered_at=self.clock(),
        )

    def tick(self, fleet: Mapping[str, VmRegistration] | None = None) -> TickResult:
        """Read the source once; return the samples and registrations to publish."""
        fleet = fleet or {}
        result = TickResult()
        try:
            readings = self.source.read()
        except SourceError as exc:
            # An unreachable hypervisor says nothing about its VMs: keep every registration and
            # let the telemetry go stale (the dispatcher treats stale hosts as ineligible).
            result.source_error = str(exc)
            return result
        now = self.clock()
        if self.source.path != self._path:
            self._path = self.source.path
            result.host_registration = self.host_registration()
        readings = [r for r in readings if self._valid(r)]
        for reading in readings:
            if reading.counters is None:
                result.unmetered.append(reading.vm_id)
                continue
            delta = self.baselines.advance(
                reading.vm_id, reading.counters, reading.incarnation, now
            )
            if delta is None:
                continue
            if delta.reset:
                self.resets += 1
                log.info("%s: I/O counters of %s restarted", self.config.host_id, reading.vm_id)
            result.samples.append(
                IoSample(
                    host_id=self.config.host_id,
                    vm_id=reading.vm_id,
                    sampled_at=now,
                    interval_s=delta.interval_s,
                    io_ops=delta.io_ops,
                    counters=reading.counters,
                )
            )
        running = {r.vm_id: self._job_type(r) for r in readings}
        # A status not known this time is the one registered (no change either way).
        paused = {
            r.vm_id
            for r in readings
            if (r.status or self.presence.statuses.get(r.vm_id)) is VmStatus.PAUSED
        }
        result.untyped = sorted(
            vm
            for vm, job_type in running.items()
            if job_type is None and vm not in result.unmetered
        )
        for vm_id in result.untyped:
            if vm_id not in fleet:
                self._warn_once(
                    vm_id,
                    f"{vm_id}: no job type known (give --vm-type {vm_id}=TYPE or domain "
                    "metadata); metered but not registered",
                )
        for change in self.presence.update(running, fleet, now, paused):
            result.changes.append(change)
            if change.kind in (ChangeKind.STOPPED, ChangeKind.MIGRATED_OUT):
                self.baselines.forget(change.vm_id)
            registration = self._registration(change, now)
            if registration is not None:
                result.registrations.append(registration)
        return result

    def shutdown_registrations(self, *, vms_stopped: bool) -> list[Event]:
        """What to publish when Dom0 stops: the host is no longer metered, so it goes down (a
        host whose load is unknown must not receive work); its VMs too if they stop with it."""
        events: list[Event] = [self.host_registration(HostStatus.DOWN)]
        if vms_stopped:
            now = self.clock()
            for vm_id, job_type in sorted(self.presence.running_here().items()):
                if job_type is not None:
                    events.append(self._vm(vm_id, job_type, VmStatus.STOPPED, now))
        return events

    def _registration(self, change: VmChange, now: float) -> VmRegistration | None:
        if change.job_type is None:
            return None
        if change.kind is ChangeKind.MIGRATED_OUT:
            return None  # its new host registers it
        if change.kind is ChangeKind.MIGRATED_IN:
            log.info(
                "%s: %s migrated in from %s",
                self.config.host_id,
                change.vm_id,
                change.previous_host_id,
            )
        return self._vm(change.vm_id, change.job_type, change.status, now)

    def _vm(self, vm_id: str, job_type: str, status: VmStatus, now: float) -> VmRegistration:
        return VmRegistration(
            vm_id=vm_id,
            host_id=self.config.host_id,
            job_type=job_type,
            queue_topic=self.queue_topic(vm_id),
            status=status,
            registered_at=now,
        )

    def _job_type(self, reading: VmReading) -> str | None:
        job_type = self.config.vm_types.get(reading.vm_id) or reading.job_type
        if job_type is not None and not is_identifier(job_type):
            self._warn_once(
                f"type:{reading.vm_id}",
                f"{reading.vm_id}: job type {job_type!r} is not a valid identifier",
            )
            return None
        return job_type

    def _valid(self, reading: VmReading) -> bool:
        if is_identifier(reading.vm_id):
            return True
        self._warn_once(
            reading.vm_id, f"VM name {reading.vm_id!r} is not a valid vmlb identifier; skipped"
        )
        return False

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: %s", self.config.host_id, message)
