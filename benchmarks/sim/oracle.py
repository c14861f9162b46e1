"""`oracle`: the simulator's yardstick, a dispatcher that knows the simulated fleet exactly.

Not a dispatch policy (it is never offered live, and `pipeline.policy` does not know it): it
reads the simulation's own state instead of the snapshot, so it has what no online policy has:

- every VM's queue, as it is now (no report delay, no claim to age), and every host's current
  speed;
- every host's exact demand now (Σ of its running jobs' rates) and its true capacity (a degraded
  host's too, which its calibrated limit does not show);
- each VM's true mean service time and I/O rate (its job type's, the scenario's, at its
  device cap where it has one).

It does not know the future: not the size of a job before it has run (sizes vary, exponentially
by default), so it expects each job, running or queued, to take its type's mean (the remaining
time of a running job is, for exponential sizes, the same mean). Knowing sizes in advance would
bound a clairvoyant scheduler, not an online dispatcher; knowing the state exactly bounds what
fresh telemetry and exact accounting can buy.

Rule: the job goes to the VM of its type where it fits, demand now + what it adds <=
min(limit, capacity) (it adds its rate on an idle VM, nothing behind a running job, as for
io-aware), with the least expected response time: the jobs the VM holds, each at its mean
(stretched by the host's current speed while it is saturated), plus the job's own mean.
Nowhere fits: it is held at the dispatcher, and retried whenever a job completes.
With a finite `hold_s` (the strictness, as for io-aware; the headline oracle uses `inf`), a job
held that long goes to the VM whose host it overshoots least, then soonest done.

Its figures bound what an online policy with the same rule can reach, and a goal the oracle
misses is shown infeasible by its run, not argued.

`oracle-notice` is the same oracle bounded by the one delay every online policy has and this
one does not: it learns of a job's end `telemetry.completion_delay_s` after it happens (the
guest's completion travelling to the dispatcher), as io-aware does. Until then the job counts
as running: its VM as busy (one job more held), its rate in its host's demand. The rest of its
knowledge stays exact (queues, speeds, capacities, rates, silent hosts), so the gap between
the two oracles is what the notice delay alone costs a dispatcher with this rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from benchmarks.sim.fleet import Job, SimHost, SimVm
from pipeline.events import CandidateView, trusted
from pipeline.policy.base import rejected
from pipeline.policy.decision import Decision, JobRequest, Outcome
from pipeline.policy.snapshot import FleetSnapshot


class OraclePolicy:
    name = "oracle"

    def __init__(
        self,
        vms: Iterable[SimVm],
        jobs: Sequence[Job],
        clock: Callable[[], float],
        mean_service_s: dict[str, float],
        notice_delay_s: float | None = None,
    ) -> None:
        """The simulation's VMs, its jobs (indexed by job id) and its clock, read as they go,
        and each VM's mean service time (by VM id: its type's, longer where its device caps
        its jobs' I/O). `notice_delay_s` given: the notice-bound oracle (`oracle-notice`),
        which learns of a job's end that much later, as an online policy does
        (`telemetry.completion_delay_s`)."""
        self.jobs = jobs
        self.clock = clock
        self.mean_service_s = mean_service_s
        self.notice_delay_s = notice_delay_s or 0.0
        if notice_delay_s is not None:
            self.name = "oracle-notice"
        self.by_type: dict[str, list[SimVm]] = {}
        for vm in vms:
            self.by_type.setdefault(vm.job_type, []).append(vm)

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = self.by_type.get(job.job_type)
        if not vms:
            return rejected(self.name, job)
        exact = self.jobs[int(job.job_id)]  # its rate per VM (sizes scale cpu and I/O alike)
        best: tuple[float, str, SimVm] | None = None
        least_over: tuple[float, float, str, SimVm] | None = None
        demands: dict[str, float] = {}
        for vm in vms:
            host = vm.host
            ceiling = min(host.limit_ops_per_s, host.capacity_ops_per_s)
            added = vm.io_rate_ops_per_s(exact) if not self.busy(vm) else 0.0
            demand = demands.get(host.host_id)
            if demand is None:
                demand = demands[host.host_id] = self.demand_ops_per_s(host)
            total = demand + added
            response = self.expected_s(vm) + self.mean_service_s[vm.vm_id]
            if total <= ceiling:
                if best is None or (response, vm.vm_id) < best[:2]:
                    best = (response, vm.vm_id, vm)
            else:
                over = (total - ceiling) / ceiling
                if least_over is None or (over, response, vm.vm_id) < least_over[:3]:
                    least_over = (over, response, vm.vm_id, vm)
        if best is not None:
            response, _, vm = best
            return self._dispatch(snapshot, vm, f"fits, done in {response:.3f}s", exact)
        waited_s = job.waited_s
        if least_over is not None and waited_s >= snapshot.config.hold_s:
            over, _, _, vm = least_over
            reason = f"held {waited_s:.2f}s, nowhere fits: {over:.0%} over on {vm.host.host_id}"
            return self._dispatch(snapshot, vm, reason, exact)
        return Decision(
            outcome=Outcome.WAITING,
            vm_id=None,
            host_id=None,
            reason=f"fits under no host's limit among {len(vms)} VMs",
            candidates=(),
            policy=self.name,
        )

    def _dispatch(self, snapshot: FleetSnapshot, vm: SimVm, reason: str, job: Job) -> Decision:
        host = vm.host
        snapshot.claim(vm.vm_id)
        candidate = trusted(
            CandidateView,
            vm_id=vm.vm_id,
            host_id=host.host_id,
            total_io_ops_per_s=host.demand_ops_per_s,
            limit_ops_per_s=host.limit_ops_per_s,
            headroom_ops_per_s=host.limit_ops_per_s - host.demand_ops_per_s,
            outstanding_jobs=vm.outstanding,
            telemetry_age_s=0.0,
            telemetry_behind_s=0.0,
            eligible=True,
            rejected_by=None,
            weight=None,
            job_io_ops_per_s=vm.io_rate_ops_per_s(job) if vm.running is None else 0.0,
            expected_response_s=self.expected_s(vm) + self.mean_service_s[vm.vm_id],
        )
        return Decision(
            outcome=Outcome.DISPATCHED,
            vm_id=vm.vm_id,
            host_id=host.host_id,
            reason=reason,
            candidates=(candidate,),
            policy=self.name,
        )

    def unnoticed(self, vm: SimVm) -> list[float]:
        """The I/O rates of the VM's jobs that have ended and whose end it has not heard of
        yet (the notice-bound oracle only; newest last)."""
        if self.notice_delay_s <= 0:
            return []
        now = self.clock()
        return [rate for at, rate in vm.ends if at + self.notice_delay_s > now]

    def busy(self, vm: SimVm) -> bool:
        """Whether the VM holds a job as far as the oracle knows (a job whose end it has not
        heard of counts as still running)."""
        return vm.running is not None or bool(self.unnoticed(vm))

    def demand_ops_per_s(self, host: SimHost) -> float:
        """The host's demand now as the oracle knows it: Σ of its running jobs' rates, and for
        a VM idle since a job whose end it has not heard of, that job's rate."""
        total = 0.0
        if self.notice_delay_s <= 0:
            return host.demand_ops_per_s
        for vm in host.vms:
            if vm.running is not None:
                total += vm.running.io_rate_ops_per_s
            else:
                unnoticed = self.unnoticed(vm)
                if unnoticed:
                    total += unnoticed[-1]
        return total

    def expected_s(self, vm: SimVm) -> float:
        """Seconds until the VM is expected to have finished what it holds: its jobs at their
        mean on this VM, the running one stretched by its host's current speed (a job whose
        end the oracle has not heard of counts as one more job held)."""
        mean = self.mean_service_s[vm.vm_id]
        held = vm.outstanding + len(self.unnoticed(vm))
        if held == 0:
            return 0.0
        speed = vm.host.speed if vm.host.speed > 0 else 1.0
        return mean / speed + mean * (held - 1)
