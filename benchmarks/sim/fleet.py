"""The simulated physical fleet: hosts with a shared I/O channel, VMs with FIFO queues, jobs.

State only, advanced by the engine: `SimHost.advance(now)` integrates progress, I/O done and
overload time since the last change at the current speed; `SimHost.reschedule()` recomputes the
speed after the set of running jobs changed. The channel model itself is `benchmarks.sim.channel`.
Nothing here knows about the dispatcher or its (stale) view.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from benchmarks.sim.channel import speed as channel_speed

#: Work left below this (in full-speed seconds) counts as done: float noise, not work.
DONE_EPS_S = 1e-9


@dataclass(slots=True)
class Job:
    job_id: int
    job_type: str
    submitted_at: float
    cpu_s: float
    io_ops: float
    deadline_at: float | None = None
    dispatched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expired: bool = False
    #: Full-speed seconds of work left (the job is at `cpu_s - remaining_s` of its run).
    remaining_s: float = 0.0

    @property
    def io_rate_ops_per_s(self) -> float:
        return self.io_ops / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass(slots=True)
class SimVm:
    vm_id: str
    host: SimHost
    job_type: str
    queue: deque[Job] = field(default_factory=deque)
    running: Job | None = None
    #: Jobs dispatched and not completed (queued or running).
    outstanding: int = 0
    #: Cumulative I/O operations issued (what Dom0's counters show).
    io_ops_done: float = 0.0
    #: Completions since the last telemetry sample: (job_id, finished_at, service_s).
    completed_since_sample: list[tuple[str, float, float]] = field(default_factory=list)
    io_ops_at_last_sample: float = 0.0


@dataclass(slots=True)
class SimHost:
    host_id: str
    capacity_ops_per_s: float
    limit_ops_per_s: float
    collapse: float
    vms: list[SimVm] = field(default_factory=list)
    running: list[SimVm] = field(default_factory=list)
    demand_ops_per_s: float = 0.0
    speed: float = 1.0
    last_update_s: float = 0.0
    #: Bumped on every reschedule, so a stale completion event is recognised and ignored.
    version: int = 0
    #: Seconds during which the guests' demanded I/O exceeded the host's limit.
    overload_s: float = 0.0
    #: Seconds during which demand exceeded capacity (the channel was saturated).
    saturated_s: float = 0.0
    io_ops_done: float = 0.0

    def advance(self, now: float) -> None:
        """Integrate everything since the last update at the current speed."""
        dt = now - self.last_update_s
        if dt <= 0:
            return
        if self.running:
            progress = dt * self.speed
            for vm in self.running:
                job = vm.running
                assert job is not None
                job.remaining_s -= progress
                io = progress * job.io_rate_ops_per_s
                vm.io_ops_done += io
                self.io_ops_done += io
            if self.demand_ops_per_s > self.limit_ops_per_s:
                self.overload_s += dt
            if self.demand_ops_per_s > self.capacity_ops_per_s:
                self.saturated_s += dt
        self.last_update_s = now

    def reschedule(self) -> float | None:
        """Recompute demand and speed; return the delay until the next job finishes (or None)."""
        self.version += 1
        self.demand_ops_per_s = sum(
            vm.running.io_rate_ops_per_s for vm in self.running if vm.running
        )
        self.speed = channel_speed(self.demand_ops_per_s, self.capacity_ops_per_s, self.collapse)
        if not self.running:
            return None
        least = min(vm.running.remaining_s for vm in self.running if vm.running)
        return max(0.0, least) / self.speed

    def finished(self) -> list[SimVm]:
        """The VMs whose running job has no work left."""
        return [vm for vm in self.running if vm.running and vm.running.remaining_s <= DONE_EPS_S]
