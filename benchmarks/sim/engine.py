"""The discrete-event simulation: one scenario, one policy, one seeded run.

Events (a heap ordered by time, then insertion): job arrivals, a host's next job completion,
telemetry sampling ticks, telemetry deliveries (a tick's samples, after the delay), dispatcher
retry ticks, and capacity changes. The dispatcher calls the *same* policy code as the live
pipeline (`pipeline.policy`), over snapshots that the live pipeline's own aggregation, fleet
view and claim code build from delayed telemetry (`view`), and keeps waiting jobs per job type,
retrying the oldest of each type every `retry_interval_s` as the pipeline's retry agent does.

Accounting: every job ends the run completed, in flight (queued or running on a VM), waiting at
the dispatcher, expired or rejected; `lost` is what is left over, and must be 0.
Wall-clock time is read only to measure `decide()` (the benchmark's point), never to simulate.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable

from benchmarks.sim.arrivals import Arrival, generate
from benchmarks.sim.fleet import Job, SimHost, SimVm
from benchmarks.sim.results import RunResult, percentile
from benchmarks.sim.scenario import Scenario
from benchmarks.sim.view import DispatcherView, Sample
from pipeline.policy.base import Policy
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.registry import build_policy

_ARRIVAL, _HOST_DONE, _SAMPLE, _DELIVER, _RETRY, _CAPACITY = range(6)


def build_fleet(scenario: Scenario) -> list[SimHost]:
    hosts: list[SimHost] = []
    ids = iter(scenario.host_ids())
    for group in scenario.hosts:
        for _ in range(group.count):
            host = SimHost(
                host_id=next(ids),
                capacity_ops_per_s=group.capacity_ops_per_s,
                limit_ops_per_s=scenario.dispatcher.limit_fraction * group.capacity_ops_per_s,
                collapse=scenario.channel.collapse,
            )
            host.vms = [
                SimVm(f"{host.host_id}-v{i}", host, job_type)
                for i, job_type in enumerate(group.vms)
            ]
            hosts.append(host)
    return hosts


class Simulation:
    def __init__(
        self, scenario: Scenario, policy: Policy, arrivals: list[Arrival] | None = None
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.arrivals = arrivals if arrivals is not None else generate(scenario)
        self.hosts = build_fleet(scenario)
        self.host_by_id = {host.host_id: host for host in self.hosts}
        self.base_capacity = {host.host_id: host.capacity_ops_per_s for host in self.hosts}
        self.vms: dict[str, SimVm] = {vm.vm_id: vm for host in self.hosts for vm in host.vms}
        self.view = DispatcherView(
            scenario,
            [(vm.vm_id, vm.host.host_id, vm.job_type) for vm in self.vms.values()],
            {host.host_id: host.limit_ops_per_s for host in self.hosts},
        )
        # The fleet was up and reporting before the run: every VM's (idle) sample at t=0 is
        # already delivered, so no policy starts from a fleet it has never heard of.
        self.view.deliver(
            [Sample(vm.vm_id, vm.host.host_id, 0.0, 0.0) for vm in self.vms.values()], 0.0
        )
        self.rng = random.Random(f"{scenario.seed}/policy")
        self.end_s = scenario.duration_s + scenario.drain_s
        self.now = 0.0
        self._heap: list[tuple[float, int, int, object, object]] = []
        self._seq = 0
        self.jobs: list[Job] = []
        self.waiting: dict[str, deque[Job]] = {}
        self.expired = 0
        self.rejected = 0
        self.decisions = 0
        self.waiting_decisions = 0
        self.decide_ns = 0
        self.plot_hosts = [host.host_id for host in self.hosts[: scenario.plot_hosts]]
        self.series: dict[str, list[tuple[float, float]]] = {
            host_id: [] for host_id in self.plot_hosts
        }
        self._handlers: dict[int, Callable[[object, object], None]] = {
            _ARRIVAL: self._on_arrival,
            _HOST_DONE: self._on_host_done,
            _SAMPLE: self._on_sample,
            _DELIVER: self._on_deliver,
            _RETRY: self._on_retry,
            _CAPACITY: self._on_capacity,
        }

    # --- the loop ---------------------------------------------------------------------------

    def _push(self, at: float, kind: int, a: object = None, b: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, a, b))

    def run(self) -> RunResult:
        started = time.perf_counter()
        if self.arrivals:
            self._push(self.arrivals[0].at_s, _ARRIVAL, 0)
        telemetry = self.scenario.telemetry
        self._push(telemetry.interval_s, _SAMPLE)
        self._push(self.scenario.dispatcher.retry_interval_s, _RETRY)
        for change in self.scenario.events:
            self._push(change.at_s, _CAPACITY, change.host, change.capacity_factor)
        heap, handlers = self._heap, self._handlers
        while heap and heap[0][0] <= self.end_s:
            at, _, kind, a, b = heapq.heappop(heap)
            self.now = at
            handlers[kind](a, b)
        self.now = self.end_s
        for host in self.hosts:
            host.advance(self.end_s)
        return summarise(self, wall_s=time.perf_counter() - started)

    # --- dispatching ------------------------------------------------------------------------

    def _decide(self, job: Job) -> Outcome:
        snapshot = self.view.snapshot(self.now)
        request = JobRequest(str(job.job_id), job.job_type)
        t0 = time.perf_counter_ns()
        decision = self.policy.decide(snapshot, request, self.rng)
        self.decide_ns += time.perf_counter_ns() - t0
        self.decisions += 1
        if decision.outcome is Outcome.DISPATCHED:
            assert decision.vm_id is not None
            vm = self.vms[decision.vm_id]
            job.dispatched_at = self.now
            self.view.record_dispatch(vm.vm_id)
            self._enqueue(vm, job)
        elif decision.outcome is Outcome.WAITING:
            self.waiting_decisions += 1
        return decision.outcome

    def _on_arrival(self, index: object, _: object) -> None:
        assert isinstance(index, int)
        arrival = self.arrivals[index]
        deadline_s = self.scenario.dispatcher.deadline_s
        job = Job(
            job_id=index,
            job_type=arrival.job_type,
            submitted_at=arrival.at_s,
            cpu_s=arrival.cpu_s,
            io_ops=arrival.io_ops,
            deadline_at=None if deadline_s is None else arrival.at_s + deadline_s,
        )
        self.jobs.append(job)
        outcome = self._decide(job)
        if outcome is Outcome.WAITING:
            self.waiting.setdefault(job.job_type, deque()).append(job)
        elif outcome is Outcome.REJECTED:
            self.rejected += 1
        if index + 1 < len(self.arrivals):
            self._push(self.arrivals[index + 1].at_s, _ARRIVAL, index + 1)

    def _on_retry(self, _a: object, _b: object) -> None:
        # Oldest first per job type; a type with no eligible host stops at its head and does
        # not hold up the others (the pipeline's retry agent does the same).
        for queue in self.waiting.values():
            while queue and queue[0].deadline_at is not None and queue[0].deadline_at <= self.now:
                queue.popleft().expired = True
                self.expired += 1
            while queue:
                if self._decide(queue[0]) is not Outcome.DISPATCHED:
                    break
                queue.popleft()
        self._push(self.now + self.scenario.dispatcher.retry_interval_s, _RETRY)

    # --- the fleet --------------------------------------------------------------------------

    def _enqueue(self, vm: SimVm, job: Job) -> None:
        vm.outstanding += 1
        if vm.running is not None:
            vm.queue.append(job)
            return
        host = vm.host
        host.advance(self.now)
        self._start(vm, job)
        self._reschedule(host)

    def _start(self, vm: SimVm, job: Job) -> None:
        job.started_at = self.now
        job.remaining_s = job.cpu_s
        vm.running = job
        vm.host.running.append(vm)

    def _reschedule(self, host: SimHost) -> None:
        delay = host.reschedule()
        if delay is not None:
            self._push(self.now + delay, _HOST_DONE, host, host.version)

    def _on_host_done(self, host: object, version: object) -> None:
        assert isinstance(host, SimHost)
        if version != host.version:
            return  # superseded by a later reschedule
        host.advance(self.now)
        for vm in host.finished():
            job = vm.running
            assert job is not None and job.started_at is not None
            job.finished_at = self.now
            vm.running = None
            host.running.remove(vm)
            vm.outstanding -= 1
            vm.completed_since_sample.append((str(job.job_id), self.now, self.now - job.started_at))
            self.view.record_end(vm.vm_id)
            if vm.queue:
                self._start(vm, vm.queue.popleft())
        self._reschedule(host)

    def _on_capacity(self, host_id: object, factor: object) -> None:
        assert isinstance(host_id, str) and isinstance(factor, float | int)
        host = self.host_by_id[host_id]
        host.advance(self.now)
        # The limit stays as calibrated at setup: the paper measures it once, and so does the
        # sim; what the policies see of the change is the host's slower progress.
        host.capacity_ops_per_s = self.base_capacity[host_id] * factor
        self._reschedule(host)

    # --- telemetry --------------------------------------------------------------------------

    def _in_outage(self, host_id: str, at: float) -> bool:
        return any(
            host_id in outage.hosts and outage.from_s <= at < outage.to_s
            for outage in self.scenario.telemetry.outages
        )

    def _on_sample(self, _a: object, _b: object) -> None:
        telemetry = self.scenario.telemetry
        batch: list[Sample] = []
        outages = bool(telemetry.outages)
        for host in self.hosts:
            host.advance(self.now)
            lost = outages and self._in_outage(host.host_id, self.now)
            io_delta = 0.0
            for vm in host.vms:
                delta = vm.io_ops_done - vm.io_ops_at_last_sample
                io_delta += delta
                if not lost:
                    batch.append(
                        Sample(
                            vm_id=vm.vm_id,
                            host_id=host.host_id,
                            sampled_at=self.now,
                            io_ops=delta,
                            completions=tuple(vm.completed_since_sample),
                        )
                    )
                vm.io_ops_at_last_sample = vm.io_ops_done
                vm.completed_since_sample.clear()
            if host.host_id in self.series:
                self.series[host.host_id].append((self.now, io_delta / telemetry.interval_s))
        if batch:
            self._push(self.now + telemetry.delay_s, _DELIVER, batch)
        self._push(self.now + telemetry.interval_s, _SAMPLE)

    def _on_deliver(self, batch: object, _: object) -> None:
        assert isinstance(batch, list)
        self.view.deliver(batch, self.now)


def summarise(sim: Simulation, wall_s: float) -> RunResult:
    end_s = sim.end_s
    duration_s = sim.scenario.duration_s
    completed = sorted(
        job.finished_at - job.submitted_at for job in sim.jobs if job.finished_at is not None
    )
    unfinished = [
        end_s - job.submitted_at for job in sim.jobs if job.finished_at is None and not job.expired
    ]
    everyone = sorted(completed + unfinished)
    in_flight = sum(vm.outstanding for vm in sim.vms.values())
    waiting = sum(len(queue) for queue in sim.waiting.values())
    finished_in_time = sum(
        1 for job in sim.jobs if job.finished_at is not None and job.finished_at <= duration_s
    )
    submitted = len(sim.jobs)
    accounted = len(completed) + in_flight + waiting + sim.expired + sim.rejected
    return RunResult(
        scenario=sim.scenario.name,
        policy=sim.policy.name,
        submitted=submitted,
        completed=len(completed),
        in_flight=in_flight,
        waiting=waiting,
        expired=sim.expired,
        rejected=sim.rejected,
        lost=submitted - accounted,
        throughput_per_s=finished_in_time / duration_s,
        mean_response_s=sum(everyone) / len(everyone) if everyone else 0.0,
        p50_response_s=percentile(everyone, 0.50),
        p99_response_s=percentile(everyone, 0.99),
        p999_response_s=percentile(everyone, 0.999),
        overload_s=sum(host.overload_s for host in sim.hosts),
        saturated_s=sum(host.saturated_s for host in sim.hosts),
        decisions=sim.decisions,
        waiting_decisions=sim.waiting_decisions,
        decision_us=sim.decide_ns / sim.decisions / 1000 if sim.decisions else 0.0,
        sim_wall_s=wall_s,
        responses_s=completed,
        series=sim.series,
        limits_ops_per_s={
            host_id: sim.host_by_id[host_id].limit_ops_per_s for host_id in sim.series
        },
        per_host_overload_s={
            host.host_id: host.overload_s for host in sim.hosts[: sim.scenario.plot_hosts]
        },
    )


def run(scenario: Scenario, policy_name: str, arrivals: list[Arrival] | None = None) -> RunResult:
    """Simulate `scenario` under the named policy (a fresh instance)."""
    return Simulation(scenario, build_policy(policy_name), arrivals).run()
