"""Snapshots of the fleet for the policy, with this dispatcher's own jobs in flight counted exactly.

A dispatcher knows its own placements at once and learns of each one's end from the guest's
status record within milliseconds, so it counts its own in-flight jobs per VM exactly
(`InFlight`), where a report (telemetry, another worker's `dispatch-load`) is always behind:
without this, a burst between two reports would herd onto the one host that looked free. A
snapshot's `outstanding(vm)` is the other dispatchers' in-flight jobs (from the FleetView) plus
this one's, applied as claims when the snapshot is built; between two builds, each placement is
claimed by the policy and each end released here, so the cached snapshot stays exact.

The live dispatcher and the simulator use this same code. Time is passed in; the rebuild timer
(which paces rebuilds by their cost) is injected.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from pipeline.fleet.view import FleetView
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig


class InFlight:
    """This dispatcher's jobs dispatched and not finished, per VM (a count per VM), and when
    each VM's last one ended (until `forget_ended`)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._ended_at: dict[str, float] = {}

    def add(self, vm_id: str) -> None:
        self._counts[vm_id] = self._counts.get(vm_id, 0) + 1

    def remove(self, vm_id: str, at: float | None = None) -> None:
        """One job on `vm_id` ended (at `at`, when known)."""
        left = self._counts.get(vm_id, 0) - 1
        if left > 0:
            self._counts[vm_id] = left
        else:
            self._counts.pop(vm_id, None)
        if at is not None and at > self._ended_at.get(vm_id, -math.inf):
            self._ended_at[vm_id] = at

    def ended(self) -> Iterator[tuple[str, float]]:
        """(VM, when its last job ended) for the VMs whose jobs ended since `forget_ended`."""
        return iter(self._ended_at.items())

    def forget_ended(self, before: float) -> None:
        """Forget the ends before `before` (they explain no I/O any more)."""
        for vm_id in [vm_id for vm_id, at in self._ended_at.items() if at < before]:
            del self._ended_at[vm_id]

    def count(self, vm_id: str) -> int:
        return self._counts.get(vm_id, 0)

    def total(self) -> int:
        return sum(self._counts.values())

    def items(self) -> Iterator[tuple[str, int]]:
        return iter(self._counts.items())

    def clear(self) -> None:
        self._counts.clear()
        self._ended_at.clear()


class SnapshotSource:
    """Snapshots of the FleetView for the policy, with this dispatcher's in-flight jobs.

    A snapshot is rebuilt when the view changed, but not sooner than `min_rebuild_s` after the
    last one, nor sooner than the last rebuild's cost divided by `rebuild_share`: rebuilding
    takes at most that share of the dispatcher's time however large the fleet. In between, the
    dispatcher's placements and ends are claims and releases on the cached snapshot.
    """

    def __init__(
        self,
        view: FleetView,
        config: PolicyConfig,
        in_flight: InFlight | None = None,
        min_rebuild_s: float = 0.05,
        max_age_s: float = 0.5,
        rebuild_share: float = 0.1,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.view = view
        self.config = config
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self.min_rebuild_s = min_rebuild_s
        self.max_age_s = max_age_s
        self.rebuild_share = rebuild_share
        self.timer = timer
        #: What the last rebuild took (timer seconds).
        self.rebuild_cost_s = 0.0
        self._snapshot: FleetSnapshot | None = None
        self._built_version = -1
        #: The dispatcher's time as of its latest snapshot: when an end is heard of.
        self._now: float | None = None

    def get(self, now: float) -> FleetSnapshot:
        """The dispatcher's snapshot: cached, rebuilt when due (see the class doc)."""
        self._now = now
        snapshot = self._snapshot
        if snapshot is not None:
            age = now - snapshot.taken_at
            changed = self.view.version != self._built_version
            if age < self.min_interval_s() or (not changed and age < self.max_age_s):
                return snapshot
        started = self.timer()
        snapshot = self.build(now)
        self._snapshot = snapshot
        self._built_version = self.view.version
        self.rebuild_cost_s = self.timer() - started
        return snapshot

    def build(self, now: float) -> FleetSnapshot:
        """A fresh snapshot with the in-flight jobs claimed, leaving the cache and its pacing
        alone (what the web views show: reading the fleet must not change how dispatch runs)."""
        snapshot = self.view.snapshot(now, self.config)
        for vm_id, count in self.in_flight.items():
            # A VM that stopped or left has nothing to count against.
            with contextlib.suppress(KeyError):
                snapshot.claim(vm_id, count)
        # An end explains Dom0's meter while the meter's window (which ends at the host's
        # newest sample, at most `lag_limit_s` behind before the host is stale) reaches it.
        self.in_flight.forget_ended(now - self.config.meter_window_s - self.config.lag_limit_s)
        for vm_id, at in self.in_flight.ended():
            snapshot.job_ended(vm_id, at)
        return snapshot

    def released(self, vm_id: str, at: float | None = None) -> None:
        """One of this dispatcher's jobs on `vm_id` ended (or moved away) at `at` (default: the
        time of the latest snapshot asked for): count it out."""
        at = self._now if at is None else at
        self.in_flight.remove(vm_id, at)
        if self._snapshot is not None:
            with contextlib.suppress(KeyError):
                self._snapshot.claim(vm_id, -1)
            if at is not None:
                self._snapshot.job_ended(vm_id, at)

    def placed(self, vm_id: str) -> None:
        """A job was placed on `vm_id` (the policy has claimed it on the cached snapshot)."""
        self.in_flight.add(vm_id)

    def min_interval_s(self) -> float:
        """The least time between two rebuilds, given what the last one cost."""
        return max(self.min_rebuild_s, self.rebuild_cost_s / self.rebuild_share)
