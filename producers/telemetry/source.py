"""What a telemetry source is: something that reads, for one host, each running VM's counters.

A source owns reading the hypervisor (or an emulated host); it knows nothing of Kafka, deltas or
registrations. `producers.telemetry.sources.open_source()` turns a `--source` value into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.events import IoCounters, VmStatus


@dataclass(frozen=True)
class VmReading:
    """One VM present on the host (running or paused) as a source sees it at one instant.

    `counters` are cumulative since the VM's counters last started from zero; None when the VM
    is there but its counters could not be read this time (its hypervisor call overran, or
    answered without them): no delta is taken then, and the next full reading is measured from
    the last one (never from zero). `incarnation` changes whenever they start over (a libvirt
    domain's id changes on every start, an emulated host's backend on every restart), so a
    restart is seen as a reset even when the new counters happen to be larger than the old ones.
    `job_type` is what the source knows of the job type the VM serves (libvirt metadata, an
    emulated host's config), or None. `status` is RUNNING or PAUSED (a paused VM serves no job),
    or None if not known this time.
    """

    vm_id: str
    counters: IoCounters | None
    job_type: str | None = None
    incarnation: str | None = None
    status: VmStatus | None = VmStatus.RUNNING


class TelemetrySource(Protocol):
    """The host-side view of one host's VMs."""

    #: e.g. `libvirt:qemu:///system`, for logs and errors.
    description: str
    #: How the last `read()` got the counters (libvirt: `bulk`, `bulk-per-domain`,
    #: `per-device`; `emulated`), or None before the first read that said: operators see it.
    path: str | None

    def read(self) -> list[VmReading]:
        """Every VM of the host (running or paused), with its counters now. Raises SourceError
        if the hypervisor is unreachable."""
        ...

    def close(self) -> None: ...
