"""Pure detection of fleet changes on one host: VMs that appear, stop, migrate or change type.

Input: which VMs the host runs now (with the job type each serves, if known), what this host
last registered, and the latest registration the fleet holds for each VM (the compacted `vms`
topic). Output: what to register. Nothing here reads a clock or a broker.

Why the fleet's registrations matter: after a live migration from host A to host B, A sees the VM
vanish and B sees it appear. If A then wrote "stopped" after B wrote "running on B", the
compacted topic would end up saying the VM is stopped. So a VM that vanished is only reported
stopped once it has been gone for a grace period and the fleet does not already place it on
another host; a VM that appears while registered on another host is a migration to this host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.events import VmRegistration, VmStatus


class ChangeKind(StrEnum):
    STARTED = "started"  # new here, not running elsewhere as far as the fleet knows
    MIGRATED_IN = "migrated-in"  # new here, registered as running on another host
    RETYPED = "retyped"  # still here, serves another job type now
    STOPPED = "stopped"  # gone from here for the grace period, not running elsewhere
    MIGRATED_OUT = "migrated-out"  # gone from here, the fleet places it on another host


@dataclass(frozen=True)
class VmChange:
    vm_id: str
    kind: ChangeKind
    job_type: str | None
    previous_host_id: str | None = None


@dataclass
class PresenceTracker:
    """What this host has registered, and since when each vanished VM has been missing."""

    host_id: str
    stop_grace_s: float
    #: vm_id -> job type this host last registered it with (running here).
    registered: dict[str, str | None] = field(default_factory=dict)
    missing_since: dict[str, float] = field(default_factory=dict)

    def update(
        self,
        running: Mapping[str, str | None],
        fleet: Mapping[str, VmRegistration],
        now: float,
    ) -> list[VmChange]:
        """Compare the VMs running now with what was registered; return the changes, in vm order.

        `running` maps vm_id to the job type it serves (None if unknown); `fleet` is the latest
        registration per vm_id as read from the vms topic (may lag or be empty).
        """
        changes: list[VmChange] = []
        for vm_id in sorted(running):
            job_type = running[vm_id]
            self.missing_since.pop(vm_id, None)
            known = fleet.get(vm_id)
            if job_type is None and known is not None:
                job_type = known.job_type  # a migrated VM keeps the type it served
            if vm_id not in self.registered:
                elsewhere = (
                    known is not None
                    and known.host_id != self.host_id
                    and known.status is VmStatus.RUNNING
                )
                kind = ChangeKind.MIGRATED_IN if elsewhere else ChangeKind.STARTED
                changes.append(
                    VmChange(vm_id, kind, job_type, known.host_id if elsewhere and known else None)
                )
                self.registered[vm_id] = job_type
            elif job_type is not None and job_type != self.registered[vm_id]:
                changes.append(VmChange(vm_id, ChangeKind.RETYPED, job_type))
                self.registered[vm_id] = job_type
        for vm_id in sorted(set(self.registered) - set(running)):
            since = self.missing_since.setdefault(vm_id, now)
            if now - since < self.stop_grace_s:
                continue
            known = fleet.get(vm_id)
            job_type = self.registered.pop(vm_id)
            del self.missing_since[vm_id]
            if known is not None and known.host_id != self.host_id:
                changes.append(VmChange(vm_id, ChangeKind.MIGRATED_OUT, job_type, self.host_id))
            else:
                changes.append(VmChange(vm_id, ChangeKind.STOPPED, job_type))
        return changes

    def running_here(self) -> dict[str, str | None]:
        return dict(self.registered)
