"""Pure detection of fleet changes on one host: VMs that appear, stop, migrate, change type,
pause or resume.

Input: which VMs the host has now (with the job type each serves, if known, and which of them
are paused), what this host last registered, and the latest registration the fleet holds for
each VM (the compacted `vms` topic). Output: what to register. Nothing here reads a clock or a
broker.

Why the fleet's registrations matter: after a live migration from host A to host B, A sees the VM
vanish and B sees it appear. If A then wrote "stopped" after B wrote "running on B", the
compacted topic would end up saying the VM is stopped. So a VM that vanished is only reported
stopped once it has been gone for a grace period and the fleet does not already place it on
another host; a VM that appears while registered on another host is a migration to this host.
For the same reason a VM that pauses while the fleet places it on another host is not
re-registered here: the end of a live migration pauses the source domain just before it goes.

A paused VM stays registered, as `paused`: it serves no job (it runs no guest code), and its
I/O is 0 only because it is frozen, not because it is idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.events import VmRegistration, VmStatus


class ChangeKind(StrEnum):
    STARTED = "started"  # new here, not running elsewhere as far as the fleet knows
    MIGRATED_IN = "migrated-in"  # new here, registered as running on another host
    RETYPED = "retyped"  # still here, serves another job type now
    PAUSED = "paused"  # still here, runs no guest code now
    RESUMED = "resumed"  # was paused here, runs again
    STOPPED = "stopped"  # gone from here for the grace period, not running elsewhere
    MIGRATED_OUT = "migrated-out"  # gone from here, the fleet places it on another host


@dataclass(frozen=True)
class VmChange:
    vm_id: str
    kind: ChangeKind
    job_type: str | None
    previous_host_id: str | None = None
    #: The status to register (STOPPED for a stop; PAUSED or RUNNING otherwise).
    status: VmStatus = VmStatus.RUNNING


@dataclass
class PresenceTracker:
    """What this host has registered, and since when each vanished VM has been missing."""

    host_id: str
    stop_grace_s: float
    #: vm_id -> job type this host last registered it with (here, running or paused).
    registered: dict[str, str | None] = field(default_factory=dict)
    #: vm_id -> the status this host last registered it with (RUNNING or PAUSED).
    statuses: dict[str, VmStatus] = field(default_factory=dict)
    missing_since: dict[str, float] = field(default_factory=dict)

    def update(
        self,
        running: Mapping[str, str | None],
        fleet: Mapping[str, VmRegistration],
        now: float,
        paused: Set[str] = frozenset(),
    ) -> list[VmChange]:
        """Compare the VMs here now with what was registered; return the changes, in vm order.

        `running` maps every VM here (paused ones too) to the job type it serves (None if
        unknown); `paused` says which of them are paused; `fleet` is the latest registration per
        vm_id as read from the vms topic (may lag or be empty).
        """
        changes: list[VmChange] = []
        for vm_id in sorted(running):
            job_type = running[vm_id]
            status = VmStatus.PAUSED if vm_id in paused else VmStatus.RUNNING
            self.missing_since.pop(vm_id, None)
            known = fleet.get(vm_id)
            if job_type is None and known is not None:
                job_type = known.job_type  # a migrated VM keeps the type it served
            if vm_id not in self.registered:
                elsewhere = (
                    known is not None
                    and known.host_id != self.host_id
                    and known.status is not VmStatus.STOPPED
                )
                kind = ChangeKind.MIGRATED_IN if elsewhere else ChangeKind.STARTED
                changes.append(
                    VmChange(
                        vm_id,
                        kind,
                        job_type,
                        known.host_id if elsewhere and known else None,
                        status,
                    )
                )
                self.registered[vm_id] = job_type
                self.statuses[vm_id] = status
                continue
            placed_elsewhere = known is not None and known.host_id != self.host_id
            if status is not self.statuses[vm_id] and not placed_elsewhere:
                kind = ChangeKind.PAUSED if status is VmStatus.PAUSED else ChangeKind.RESUMED
                changes.append(VmChange(vm_id, kind, self.registered[vm_id], status=status))
                self.statuses[vm_id] = status
            if job_type is not None and job_type != self.registered[vm_id]:
                changes.append(
                    VmChange(vm_id, ChangeKind.RETYPED, job_type, status=self.statuses[vm_id])
                )
                self.registered[vm_id] = job_type
        for vm_id in sorted(set(self.registered) - set(running)):
            since = self.missing_since.setdefault(vm_id, now)
            if now - since < self.stop_grace_s:
                continue
            known = fleet.get(vm_id)
            job_type = self.registered.pop(vm_id)
            self.statuses.pop(vm_id, None)
            del self.missing_since[vm_id]
            if known is not None and known.host_id != self.host_id:
                changes.append(VmChange(vm_id, ChangeKind.MIGRATED_OUT, job_type, self.host_id))
            else:
                changes.append(
                    VmChange(vm_id, ChangeKind.STOPPED, job_type, status=VmStatus.STOPPED)
                )
        return changes

    def running_here(self) -> dict[str, str | None]:
        return dict(self.registered)
