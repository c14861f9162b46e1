"""The simulated physical fleet: hosts with a shared I/O channel, VMs with FIFO queues, jobs.

State only, advanced by the engine: `SimHost.advance(now)` integrates progress, I/O done,
goodput lost to collapse and the time demand spent over the limit and over capacity since the
last change at the current speed; `SimHost.reschedule()` recomputes the speed after the set of
running jobs changed; `SimHost.close_interval(interval_s)` judges one telemetry interval against
the limit (the definition of `overload_s`, below). The channel model itself is
`benchmarks.sim.channel`. Nothing here knows about the dispatcher or its (stale) view.

Overload, one definition for the simulator and the live demo: a host is over its limit for a
telemetry interval (1 s by default) when the I/O its guests *asked* of it in that interval, as a
rate, exceeds its limit; `overload_s` sums those intervals. Asked, not served: past saturation
a collapsing channel serves less than its limit however far it is overloaded (asked twice its
capacity, it serves two thirds of it), so the served rate would call the worst overload none;
what it asked and did not serve is the goodput lost (`lost_ops`), reported beside. Secondary
figures: the served rate over the limit (`served_over_limit_s`, what Dom0's counters alone
show), and the instantaneous demand over the limit (`demand_over_limit_s`), which counts
overlaps of a few milliseconds that no meter sees.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from benchmarks.sim.channel import lost_goodput_ops_per_s
from benchmarks.sim.channel import speed as channel_speed
from pipeline.events import DEFAULT_PRIORITY

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
    #: Who submitted it (None: no one named) and its priority, as on a live `JobSubmission`.
    submitter: str | None = None
    priority: int = DEFAULT_PRIORITY
    dispatched_at: float | None = None
    #: The VM it was dispatched to.
    vm_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expired: bool = False
    #: Refused outright (no VM serves its type).
    rejected: bool = False
    #: Full-speed seconds of work left (the job is at `run_s - remaining_s` of its run).
    remaining_s: float = 0.0
    #: Its run at full speed on its VM (`SimVm.run_s`), set when it starts (0: not started).
    run_s: float = 0.0

    @property
    def io_rate_ops_per_s(self) -> float:
        """What it asks of its host's channel while it runs: its I/O over its run (over cpu_s
        before it starts, or on a VM without a device cap)."""
        run_s = self.run_s or self.cpu_s
        return self.io_ops / run_s if run_s > 0 else 0.0


@dataclass(slots=True)
class SimVm:
    vm_id: str
    host: SimHost
    job_type: str
    #: ops/s the VM's own device allows (None: no cap of its own), as an emulated guest's
    #: (`producers.emulated.channel.Guest`).
    device_ops_per_s: float | None = None
    queue: deque[Job] = field(default_factory=deque)
    running: Job | None = None
    #: Jobs dispatched and not completed (queued or running).
    outstanding: int = 0
    #: Cumulative I/O operations issued (what Dom0's counters show).
    io_ops_done: float = 0.0
    #: Completions since the last telemetry sample: (job_id, finished_at, service_s).
    completed_since_sample: list[tuple[str, float, float]] = field(default_factory=list)
    io_ops_at_last_sample: float = 0.0
    #: The VM's latest job ends, (finished_at, the job's I/O rate), newest last: what the
    #: notice-bound oracle has not heard of yet (`benchmarks.sim.oracle`); a few kept.
    ends: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=8))

    def run_s(self, cpu_s: float, io_ops: float) -> float:
        """A job's run at full speed here: its CPU seconds, or, when its I/O spread over them
        asks more than the VM's device allows, the time the device takes to issue it (the job
        paces its I/O at the device's rate, as an emulated guest's job does)."""
        cap = self.device_ops_per_s
        if cap is None or io_ops <= cap * cpu_s:
            return cpu_s
        return io_ops / cap

    def io_rate_ops_per_s(self, job: Job) -> float:
        """What `job` would ask of the channel running here: its I/O over its run here."""
        run_s = self.run_s(job.cpu_s, job.io_ops)
        return job.io_ops / run_s if run_s > 0 else 0.0


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
    #: Seconds of telemetry intervals whose asked I/O rate exceeded the host's limit.
    overload_s: float = 0.0
    #: Seconds of telemetry intervals whose served I/O rate (Dom0's counters) exceeded it.
    served_over_limit_s: float = 0.0
    #: Seconds during which the guests' demanded I/O exceeded the host's limit (instantaneous).
    demand_over_limit_s: float = 0.0
    #: Seconds during which demand exceeded capacity (the channel was saturated).
    saturated_s: float = 0.0
    #: I/O operations the host would have delivered without collapse and did not.
    lost_ops: float = 0.0
    io_ops_done: float = 0.0
    #: I/O operations the guests asked for (∫ demand dt): served, or lost to a saturated channel.
    io_ops_asked: float = 0.0
    #: io_ops_done and io_ops_asked when the current telemetry interval began.
    io_ops_at_interval: float = 0.0
    asked_at_interval: float = 0.0

    def advance(self, now: float) -> None:
        """Integrate everything since the last update at the current speed."""
        dt = now - self.last_update_s
        if dt <= 0:
            return
        if self.running:
            self.io_ops_asked += dt * self.demand_ops_per_s
            progress = dt * self.speed
            for vm in self.running:
                job = vm.running
                assert job is not None
                job.remaining_s -= progress
                io = progress * job.io_rate_ops_per_s
                vm.io_ops_done += io
                self.io_ops_done += io
            if self.demand_ops_per_s > self.limit_ops_per_s:
                self.demand_over_limit_s += dt
            if self.demand_ops_per_s > self.capacity_ops_per_s:
                self.saturated_s += dt
                self.lost_ops += dt * lost_goodput_ops_per_s(
                    self.demand_ops_per_s, self.capacity_ops_per_s, self.collapse
                )
        self.last_update_s = now

    def close_interval(self, interval_s: float) -> float:
        """End a telemetry interval (advanced to its end): count it if over; its served rate."""
        asked = (self.io_ops_asked - self.asked_at_interval) / interval_s
        served = (self.io_ops_done - self.io_ops_at_interval) / interval_s
        self.asked_at_interval = self.io_ops_asked
        self.io_ops_at_interval = self.io_ops_done
        if asked > self.limit_ops_per_s:
            self.overload_s += interval_s
        if served > self.limit_ops_per_s:
            self.served_over_limit_s += interval_s
        return served

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
