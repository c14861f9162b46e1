"""The dispatcher's view of the simulated fleet: delivered telemetry, windowed, plus claims.

What the live pipeline does in `vm_stats` and `FleetView`/`SnapshotSource`, done the same way:

- each delivered sample adds its I/O operations to the VM's I/O window at the sample's time, and
  each completion it carries adds one job and its service time at the completion's time
  (`pipeline.windows.SlidingWindow`, same semantics as the pipeline's rows);
- `load_jobs_per_s` (Eq. 1), `io_ops_per_s` and `busy_fraction` are the windows' rates, and
  `io_per_job` (Table 2) is the ratio of windowed sums once the window holds `io_per_job_min_jobs`
  completions (the last estimate stands otherwise), unless the scenario says `calibrated`;
- `outstanding_jobs` is the count at the sample's time; placements this dispatcher made after a
  VM's newest delivered sample are re-applied to each new snapshot as claims;
- a VM's `VmView` is computed when its sample is delivered (as vm-state is published), and a
  host's `last_telemetry_at` is the time of its newest delivered sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from benchmarks.sim.scenario import IoPerJobSource, Scenario
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView
from pipeline.windows import SlidingWindow


@dataclass(frozen=True, slots=True)
class Sample:
    """One VM's telemetry for one interval, as the dispatcher eventually receives it."""

    vm_id: str
    host_id: str
    sampled_at: float
    io_ops: float
    completions: tuple[tuple[float, float], ...]  # (finished_at, service_s)
    outstanding_jobs: int


class _VmWindows:
    __slots__ = ("busy_s", "io_ops", "io_per_job", "jobs", "last_sample_at", "view")

    def __init__(self, view: VmView, window_s: float, bucket_s: float) -> None:
        self.io_ops = SlidingWindow(window_s, bucket_s)
        self.jobs = SlidingWindow(window_s, bucket_s)
        self.busy_s = SlidingWindow(window_s, bucket_s)
        self.io_per_job: float | None = view.io_per_job
        self.last_sample_at: float | None = None
        self.view = view


class DispatcherView:
    """Builds FleetSnapshots from what has been delivered, with this dispatcher's claims."""

    def __init__(
        self, scenario: Scenario, vms: list[tuple[str, str, str]], limits: dict[str, float]
    ) -> None:
        """`vms`: (vm_id, host_id, job_type) of every VM; `limits`: calibrated host limits."""
        telemetry = scenario.telemetry
        self.window_s = telemetry.load_window_s
        self.bucket_s = telemetry.bucket_s
        self.min_jobs = telemetry.io_per_job_min_jobs
        self.config: PolicyConfig = scenario.dispatcher.policy_config()
        calibrated = telemetry.io_per_job is IoPerJobSource.CALIBRATED
        self._vms: dict[str, _VmWindows] = {}
        self._host_vms: dict[str, list[str]] = {}
        for vm_id, host_id, job_type in vms:
            io_per_job = scenario.job_types[job_type].io_ops if calibrated else None
            view = VmView(vm_id=vm_id, host_id=host_id, job_type=job_type, io_per_job=io_per_job)
            self._vms[vm_id] = _VmWindows(view, self.window_s, self.bucket_s)
            self._host_vms.setdefault(host_id, []).append(vm_id)
        self._calibrated = calibrated
        self._limits = limits
        self._last_telemetry_at: dict[str, float] = {}
        self._host_views: dict[str, HostView] = {
            host_id: self._host_view(host_id) for host_id in sorted(self._host_vms)
        }
        self._dirty_hosts: set[str] = set()
        self._claims: dict[str, deque[float]] = {}

    # --- inputs -----------------------------------------------------------------------------

    def deliver(self, sample: Sample) -> None:
        vm = self._vms[sample.vm_id]
        at = sample.sampled_at
        vm.io_ops.add(at, sample.io_ops)
        for finished_at, service_s in sample.completions:
            vm.jobs.add(finished_at, 1.0)
            vm.busy_s.add(finished_at, service_s)
        if not self._calibrated:
            jobs = vm.jobs.total(at)
            if jobs >= self.min_jobs:
                vm.io_per_job = vm.io_ops.total(at) / jobs
        vm.last_sample_at = at
        old = vm.view
        vm.view = VmView(
            vm_id=old.vm_id,
            host_id=old.host_id,
            job_type=old.job_type,
            load_jobs_per_s=vm.jobs.rate_per_s(at),
            io_per_job=vm.io_per_job,
            io_ops_per_s=vm.io_ops.rate_per_s(at),
            outstanding_jobs=sample.outstanding_jobs,
            busy_fraction=min(1.0, vm.busy_s.rate_per_s(at)),
        )
        previous = self._last_telemetry_at.get(sample.host_id)
        if previous is None or at > previous:
            self._last_telemetry_at[sample.host_id] = at
        self._dirty_hosts.add(sample.host_id)

    def record_dispatch(self, vm_id: str, at: float) -> None:
        self._claims.setdefault(vm_id, deque()).append(at)

    # --- outputs ----------------------------------------------------------------------------

    def snapshot(self, now: float) -> FleetSnapshot:
        for host_id in self._dirty_hosts:
            self._host_views[host_id] = self._host_view(host_id)
        self._dirty_hosts.clear()
        snapshot = FleetSnapshot(self._host_views.values(), taken_at=now, config=self.config)
        for vm_id in list(self._claims):
            times = self._claims[vm_id]
            reported_until = self._vms[vm_id].last_sample_at
            # A sample's outstanding count includes every placement made up to its time; like
            # the pipeline's SnapshotSource, claims older than 4 * stale_after_s are dropped
            # too, so a silent host cannot pin them forever.
            expiry = now - 4 * self.config.stale_after_s
            while times and (
                times[0] <= expiry or (reported_until is not None and times[0] <= reported_until)
            ):
                times.popleft()
            if not times:
                del self._claims[vm_id]
                continue
            for _ in times:
                snapshot.claim(vm_id)
        return snapshot

    def _host_view(self, host_id: str) -> HostView:
        return HostView(
            host_id=host_id,
            limit_ops_per_s=self._limits.get(host_id),
            last_telemetry_at=self._last_telemetry_at.get(host_id),
            vms=tuple(self._vms[vm_id].view for vm_id in self._host_vms[host_id]),
        )
