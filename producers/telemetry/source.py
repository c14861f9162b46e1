"""What a telemetry source is: something that reads, for one host, each running VM's counters.

A source owns reading the hypervisor (or an emulated host); it knows nothing of Kafka, deltas or
registrations. `open_source()` turns a `--source` value into a source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.events import IoCounters
from producers.errors import SourceSpecError


@dataclass(frozen=True)
class VmReading:
    """One running VM as a source sees it at one instant.

    `counters` are cumulative since the VM's counters last started from zero. `incarnation`
    changes whenever they start over (a libvirt domain's id changes on every start, an emulated
    host's backend on every restart), so a restart is seen as a reset even when the new counters
    happen to be larger than the old ones. `job_type` is what the source knows of the job type
    the VM serves (libvirt metadata, an emulated host's config), or None.
    """

    vm_id: str
    counters: IoCounters
    job_type: str | None = None
    incarnation: str | None = None


class TelemetrySource(Protocol):
    """The host-side view of one host's VMs."""

    #: e.g. `libvirt:qemu:///system`, for logs and errors.
    description: str

    def read(self) -> list[VmReading]:
        """Every running VM of the host, with its counters now. Raises SourceError if unreachable."""
        ...

    def close(self) -> None: ...


def open_source(spec: str) -> TelemetrySource:
    """`libvirt:URI` (e.g. `libvirt:qemu:///system`, `libvirt:test:///default`) or `emulated:ADDR`."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceSpecError(f"--source {spec!r}: expected libvirt:URI or emulated:ADDR")
    if kind == "libvirt":
        from producers.telemetry.libvirt_source import LibvirtSource

        return LibvirtSource(target)
    if kind == "emulated":
        from producers.telemetry.emulated_source import EmulatedSource

        return EmulatedSource(target)
    raise SourceSpecError(f"--source {spec!r}: unknown source kind {kind!r} (libvirt, emulated)")
