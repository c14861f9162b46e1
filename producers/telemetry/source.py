"""What a telemetry source is: something that reads, for one host, each running VM's counters.

A source owns reading the hypervisor (or an emulated host); it knows nothing of Kafka, deltas or
registrations. `producers.telemetry.sources.open_source()` turns a `--source` value into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.events import IoCounters


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
