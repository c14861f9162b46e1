"""The discrete-event simulation: one scenario, one policy, one seeded run.

Events (a heap ordered by time, then insertion): job arrivals, a host's next job completion,
the dispatcher learning of a completion, telemetry sampling ticks, telemetry deliveries (a
tick's samples, after the delay), dispatcher retry ticks, and capacity changes. The dispatcher
calls the *same* policy code as the live pipeline (`pipeline.policy`), over snapshots that the
live pipeline's own aggregation, fleet view and claim code build from delayed telemetry
(`view`), and keeps waiting jobs per job type in the live dispatcher's own queue
(`pipeline.dispatch.waiting.WaitingQueue`: priority, then the submitters' turns, then age;
deadlines), retrying the head of each type every `retry_interval_s` and whenever it learns that
a job completed (a completion frees room). A job whose type already has jobs waiting joins them
and waits its turn: with one submitter at one priority, first come, first served per type. A
dispatched waiting job counts as its submitter's turn (`WaitingQueue.take`), as live.

A job's end reaches the dispatcher `completion_delay_s` after it happens, on the guest's own
path (its `JobStatus`, then the `JobCompletion` the dispatcher forwards), not with Dom0's next
sample: the dispatcher releases the job's place (`DispatcherView.record_end`, so its count of a
VM's jobs in flight is exact within that delay), the VM's row takes the completion
(`VmStats.add_completion`, idempotent, so the same completion carried again by the sample is not
counted twice) and the VM's state is published at once.

The oracle (`benchmarks.sim.oracle`) is built here, bound to the simulation it reads.

Accounting: every job ends the run completed, in flight (queued or running on a VM), waiting at
the dispatcher, expired or rejected; `lost` is what is left over, and must be 0.
Wall-clock time is read only to measure `decide()` (the benchmark's point), never to simulate.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable

from benchmarks.sim.arrivals import Arrival, generate
from benchmarks.sim.fleet import Job, SimHost, SimVm
from benchmarks.sim.oracle import OraclePolicy
from benchmarks.sim.results import RunResult, SubmitterResult, percentile
from benchmarks.sim.scenario import ORACLE_NOTICE, ORACLES, Scenario
from benchmarks.sim.view import DispatcherView, Sample
from pipeline.dispatch.book import ANONYMOUS
from pipeline.dispatch.waiting import Waiting, WaitingQueue
from pipeline.policy.base import Policy
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.registry import build_policy

_ARRIVAL, _HOST_DONE, _SAMPLE, _DELIVER, _RETRY, _CAPACITY, _NOTICE = range(7)


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
                SimVm(f"{host.host_id}-v{i}", host, job_type, group.device_cap(i))
                for i, job_type in enumerate(group.vms)
            ]
            hosts.append(host)
    return hosts


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        policy: Policy | None,
        arrivals: list[Arrival] | None = None,
        label: str | None = None,
        oracle_notice: bool = False,
    ) -> None:
        """`policy` None: the oracle, bound to this simulation (with `oracle_notice`, the one
        that learns of job ends `telemetry.completion_delay_s` late). `label` names the run."""
        self.scenario = scenario
        self.arrivals = arrivals if arrivals is not None else generate(scenario)
        self.hosts = build_fleet(scenario)
        self.host_by_id = {host.host_id: host for host in self.hosts}
        self.base_capacity = {host.host_id: host.capacity_ops_per_s for host in self.hosts}
        self.vms: dict[str, SimVm] = {vm.vm_id: vm for host in self.hosts for vm in host.vms}
        self.jobs: list[Job] = []
        self.now = 0.0
        mean_cost = {name: (t.cpu_s, t.io_ops) for name, t in scenario.job_types.items()}
        self.policy: Policy = (
            policy
            if policy is not None
            else OraclePolicy(
                self.vms.values(),
                self.jobs,
                lambda: self.now,
                {vm.vm_id: vm.run_s(*mean_cost[vm.job_type]) for vm in self.vms.values()},
                scenario.telemetry.completion_delay_s if oracle_notice else None,
            )
        )
        self.label = label or self.policy.name
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
        self._heap: list[tuple[float, int, int, object, object]] = []
        self._seq = 0
        #: Per job type, its waiting jobs (by `str(job_id)`, as live), in the order they leave.
        self.waiting: dict[str, WaitingQueue] = {}
        # Per job type: the snapshot (and its claim count) over which its head was last refused,
        # when, and whether that head was then within its hold (see `_unchanged_since_refused`).
        self._refused: dict[str, tuple[object, int]] = {}
        self._refused_at: dict[str, float] = {}
        self._refused_strict: dict[str, bool] = {}
        self._last_snapshot: object = None
        self._last_snapshot_claims = 0
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
            _NOTICE: self._on_notice,
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
        self._last_snapshot = snapshot
        request = JobRequest(str(job.job_id), job.job_type, waited_s=self.now - job.submitted_at)
        t0 = time.perf_counter_ns()
        decision = self.policy.decide(snapshot, request, self.rng)
        self.decide_ns += time.perf_counter_ns() - t0
        self.decisions += 1
        self._last_snapshot_claims = snapshot.claims_made
        if decision.outcome is Outcome.DISPATCHED:
            assert decision.vm_id is not None
            vm = self.vms[decision.vm_id]
            job.dispatched_at = self.now
            job.vm_id = vm.vm_id
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
            submitter=arrival.submitter,
            priority=arrival.priority,
        )
        self.jobs.append(job)
        queue = self.waiting.get(job.job_type)
        if queue:
            # Jobs of its type already wait: it joins them and waits its turn (with one
            # submitter at one priority, behind them all), and the head is tried first.
            queue.add(self._waiting(job))
            self._retry_type(job.job_type, queue)
        else:
            outcome = self._decide(job)
            if outcome is Outcome.WAITING:
                self.waiting.setdefault(job.job_type, WaitingQueue()).add(self._waiting(job))
            elif outcome is Outcome.REJECTED:
                job.rejected = True
                self.rejected += 1
        if index + 1 < len(self.arrivals):
            self._push(self.arrivals[index + 1].at_s, _ARRIVAL, index + 1)

    def _waiting(self, job: Job) -> Waiting:
        """The job as the live dispatcher queues it (`PartitionBook.adopt`): its submitter, or
        the anonymous one; with fair queueing off, everyone is the anonymous one."""
        fair = self.scenario.dispatcher.fair_queueing
        return Waiting(
            job_id=str(job.job_id),
            priority=job.priority,
            submitter=(job.submitter or ANONYMOUS) if fair else ANONYMOUS,
            since=job.submitted_at,
            deadline_at=job.deadline_at,
        )

    def _on_retry(self, _a: object, _b: object) -> None:
        self._retry_waiting()
        self._push(self.now + self.scenario.dispatcher.retry_interval_s, _RETRY)

    def _retry_waiting(self) -> None:
        # Head first per job type; a type with no eligible host stops at its head and does
        # not hold up the others (the pipeline's retry agent does the same).
        for job_type, queue in self.waiting.items():
            self._retry_type(job_type, queue)

    def _retry_type(self, job_type: str, queue: WaitingQueue) -> None:
        for gone in queue.expired(self.now):
            self.jobs[int(gone.job_id)].expired = True
            self.expired += 1
        head = queue.head(self.now)
        if head is None or self._unchanged_since_refused(job_type, self.jobs[int(head.job_id)]):
            return
        while head is not None:
            job = self.jobs[int(head.job_id)]
            if self._decide(job) is not Outcome.DISPATCHED:
                self._refused[job_type] = (self._last_snapshot, self._last_snapshot_claims)
                self._refused_at[job_type] = self.now
                self._refused_strict[job_type] = self.now < self._hold_ends(job)
                return
            queue.take(head.job_id)
            head = queue.head(self.now)

    def _hold_ends(self, job: Job) -> float:
        return job.submitted_at + self.scenario.dispatcher.hold_s

    def _unchanged_since_refused(self, job_type: str, head: Job) -> bool:
        """The type's head was refused over this very snapshot, unchanged since, and no hold
        has run out that would change the answer: deciding again would refuse it again (saves
        the cost of re-deciding on every completion notice while the cached snapshot stands).

        A hold that changes the answer: the head's ran out since the refusal, or the head is
        past its hold where the job refused was within its own. The head may be another job
        than the one refused (an expiry, a turn or a priority put it first): a policy reads of a
        job only its type and whether it has waited its hold, and refuses a job within its hold
        wherever it refuses one past it."""
        refused = self._refused.get(job_type)
        snapshot = self.view.snapshot(self.now)
        if refused is None or refused[0] is not snapshot or refused[1] != snapshot.claims_made:
            return False
        hold_ends = self._hold_ends(head)
        if hold_ends > self.now:
            return True  # within its hold: refused like the job refused, whichever it was
        ran_out_since = self._refused_at[job_type] < hold_ends
        return not (ran_out_since or self._refused_strict[job_type])

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
        job.remaining_s = job.run_s = vm.run_s(job.cpu_s, job.io_ops)
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
            done = (str(job.job_id), self.now, self.now - job.started_at)
            vm.ends.append((self.now, job.io_rate_ops_per_s))
            vm.completed_since_sample.append(done)
            self._push(self.now + self.scenario.telemetry.completion_delay_s, _NOTICE, vm, done)
            if vm.queue:
                self._start(vm, vm.queue.popleft())
        self._reschedule(host)

    def _on_notice(self, vm: object, done: object) -> None:
        """The dispatcher learns that a job completed (the guest's status record arrives: it
        releases the job's place; its completion reaches the VM's row)."""
        assert isinstance(vm, SimVm) and isinstance(done, tuple)
        self.view.record_end(vm.vm_id, self.now)
        row = self.view.rows[vm.vm_id]
        if row.add_completion(*done):
            self.view.fleet.put_state(row.state(self.now))
        if any(self.waiting.values()):
            self._retry_waiting()

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
            # The interval's I/O as Dom0's counters show it, judged against the limit.
            rate = host.close_interval(telemetry.interval_s)
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
                self.series[host.host_id].append((self.now, rate))
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
        policy=sim.label,
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
        served_over_limit_s=sum(host.served_over_limit_s for host in sim.hosts),
        demand_over_limit_s=sum(host.demand_over_limit_s for host in sim.hosts),
        saturated_s=sum(host.saturated_s for host in sim.hosts),
        lost_goodput_ops=sum(host.lost_ops for host in sim.hosts),
        io_ops_done=sum(host.io_ops_done for host in sim.hosts),
        hold_s=sim.scenario.dispatcher.hold_s,
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
        submitters=by_submitter(sim) if sim.scenario.submitters else {},
    )


def by_submitter(sim: Simulation) -> dict[str, SubmitterResult]:
    """Each submitter's responses and waits (submit to dispatch), counted as `summarise` does:
    an unfinished job with its age at the end, an expired one not at all (a rejected one has
    a response, its age, and no wait)."""
    end_s = sim.end_s
    grouped: dict[str, list[Job]] = {}
    for job in sim.jobs:
        grouped.setdefault(job.submitter or ANONYMOUS, []).append(job)
    results = {}
    for name, jobs in sorted(grouped.items()):
        responses: list[float] = []
        waits: list[float] = []
        expired = completed = 0
        for job in jobs:
            if job.expired:
                expired += 1
                continue
            if job.finished_at is not None:
                completed += 1
            responses.append((job.finished_at or end_s) - job.submitted_at)
            if job.dispatched_at is not None:
                waits.append(job.dispatched_at - job.submitted_at)
            elif not job.rejected:
                waits.append(end_s - job.submitted_at)
        results[name] = SubmitterResult.of(responses, waits, len(jobs), expired, completed)
    return results


def sweep_label(policy_name: str, hold_s: float) -> str:
    """How a run at another strictness is named: `io-aware hold=0.5s`, `oracle hold=inf`."""
    return f"{policy_name} hold={'inf' if math.isinf(hold_s) else f'{hold_s:g}s'}"


def run(
    scenario: Scenario,
    policy_name: str,
    arrivals: list[Arrival] | None = None,
    hold_s: float | None = None,
) -> RunResult:
    """Simulate `scenario` under the named policy (a fresh instance; `oracle` too).

    `hold_s` overrides the strictness (`PolicyConfig.hold_s`) for this run, which is then
    labelled e.g. `io-aware hold=2s`; the oracle runs strict (`inf`) unless told otherwise.
    """
    label = None
    if policy_name in ORACLES and hold_s is None:
        hold_s = math.inf
    elif hold_s is not None:
        label = sweep_label(policy_name, hold_s)
    if hold_s is not None:
        dispatcher = scenario.dispatcher.model_copy(update={"hold_s": hold_s})
        scenario = scenario.model_copy(update={"dispatcher": dispatcher})
    policy = None if policy_name in ORACLES else build_policy(policy_name)
    notice = policy_name == ORACLE_NOTICE
    return Simulation(scenario, policy, arrivals, label=label, oracle_notice=notice).run()
