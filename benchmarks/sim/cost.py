"""The decision-cost micro-benchmark: mean `decide()` time at 100 and at 10,000 hosts.

Both fleets are built the same way (4 VMs per host, 3 job types, every host fresh and under its
limit with some load, so the common path is measured), in the same process, with the same
number of decisions; each decision claims its placement, as in production. A snapshot takes
claims for a tenth of its VMs before it is built afresh from the same fleet (in production
completions and telemetry replace it within half a second): without that the 100-host fleet
would fill up after a few hundred decisions and every later one would scan a full fleet, which
is the rare path, not the common one. Building snapshots is not timed. The ratio large / small
is the number that matters: io-aware samples candidates, so it should stay near 1.

The same is measured on a fleet *at its limits* (`saturated`): every VM holds a job and every
host's demand is over its limit, so no job fits anywhere and each decision ends WAITING, as a
retry of a waiting queue's head does (the job has waited past `hold_s`, so the fleet's room is
judged too). Between two decisions one VM ends a job and takes the next (a release and a claim
on one host), as the completion that triggers a retry does. This is the path where a decision
finds no eligible candidate among its probes and must look at every candidate.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass

from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.load import job_io_ops_per_s
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView

JOB_TYPES = ("heavy", "medium", "light")
#: Each type's mean service time on the synthetic fleet (heavy jobs ask ~480 ops/s).
SERVICE_S = (0.25, 0.15, 0.1)


def synthetic_hosts(
    hosts: int, seed: int = 7, now: float = 1_000.0, saturated: bool = False
) -> list[HostView]:
    """`saturated`: every VM holds 1-3 jobs and each host's limit is 0.9x what its VMs' jobs
    ask together (`job_io_ops_per_s`, as io-aware counts them), so every host is over it."""
    rng = random.Random(f"{seed}/fleet/{hosts}/{'saturated' if saturated else 'common'}")
    views = []
    width = len(str(hosts - 1))
    for h in range(hosts):
        host_id = f"h{h:0{width}d}"
        limit = rng.choice((1440.0, 1620.0, 1980.0, 2160.0))
        vms = []
        for i in range(4):
            load = rng.uniform(0.5, 3.0)
            vms.append(
                VmView(
                    vm_id=f"{host_id}-v{i}",
                    host_id=host_id,
                    job_type=JOB_TYPES[i % 3],
                    load_jobs_per_s=load,
                    io_per_job=(120.0, 30.0, 2.0)[i % 3],
                    io_ops_per_s=rng.uniform(50.0, 250.0),
                    outstanding_jobs=rng.randrange(1, 4) if saturated else rng.randrange(3),
                    # Its jobs take its type's service time, a few percent either way (a
                    # type's rate is alike on every host, as io-aware assumes of one host).
                    busy_fraction=min(1.0, load * SERVICE_S[i % 3] * rng.uniform(0.95, 1.05)),
                )
            )
        views.append(HostView(host_id, limit, now - rng.uniform(0, 1.5), tuple(vms)))
    if saturated:
        rates = _job_rates_ops_per_s(views)
        views = [
            HostView(
                h.host_id,
                0.9 * sum(rates[vm.vm_id] for vm in h.vms),
                h.last_telemetry_at,
                h.vms,
            )
            for h in views
        ]
    return views


def _job_rates_ops_per_s(views: list[HostView]) -> dict[str, float]:
    """Per VM, what one running job of it asks as io-aware counts it (`job_io_ops_per_s`: its
    type's io_per_job over the type's service time on its host)."""
    snapshot = FleetSnapshot(views, taken_at=1_000.0, config=PolicyConfig())
    rates = {}
    for host in views:
        for vm in host.vms:
            rate = job_io_ops_per_s(snapshot, vm)
            assert rate
            rates[vm.vm_id] = rate
    return rates


def synthetic_fleet(hosts: int, seed: int = 7, now: float = 1_000.0) -> FleetSnapshot:
    return FleetSnapshot(synthetic_hosts(hosts, seed, now), taken_at=now, config=PolicyConfig())


@dataclass(frozen=True)
class DecisionCost:
    policy: str
    small_hosts: int
    large_hosts: int
    small_us: float
    large_us: float
    #: The same on a fleet at its limits, every decision WAITING (None: not measured).
    waiting_small_us: float | None = None
    waiting_large_us: float | None = None

    @property
    def ratio(self) -> float:
        return self.large_us / self.small_us if self.small_us else float("inf")

    @property
    def waiting_ratio(self) -> float | None:
        if self.waiting_small_us is None or self.waiting_large_us is None:
            return None
        return self.waiting_large_us / self.waiting_small_us if self.waiting_small_us else math.inf


def mean_decide_us(
    policy_name: str, hosts: int, decisions: int, seed: int = 7, saturated: bool = False
) -> float:
    """Mean µs of one decide(); with `saturated`, on a fleet at its limits (every decision must
    wait: a ValueError otherwise, so the benchmark cannot silently time another path)."""
    views = synthetic_hosts(hosts, seed, saturated=saturated)
    per_snapshot = max(1, hosts * 4 // 10)
    policy = build_policy(policy_name)
    rng = random.Random(seed)
    # A waiting queue's head has waited past hold_s: the retry judges the fleet's room too.
    waited_s = 2 * PolicyConfig().hold_s if saturated else 0.0
    jobs = [JobRequest(f"j{i}", JOB_TYPES[i % 3], waited_s=waited_s) for i in range(decisions)]
    vm_ids = [vm.vm_id for host in views for vm in host.vms]
    snapshot = FleetSnapshot(views, taken_at=1_000.0, config=PolicyConfig())
    for job in jobs[: min(100, decisions, per_snapshot)]:  # warm caches and code paths
        policy.decide(snapshot, job, rng)
    elapsed_ns = 0
    for start in range(0, decisions, per_snapshot):
        snapshot = FleetSnapshot(views, taken_at=1_000.0, config=PolicyConfig())
        batch = jobs[start : start + per_snapshot]
        for job in batch:
            if saturated:  # a VM ended a job and took the next: its host changed
                vm_id = rng.choice(vm_ids)
                snapshot.claim(vm_id, -1)
                snapshot.claim(vm_id, 1)
            started = time.perf_counter_ns()
            decision = policy.decide(snapshot, job, rng)
            elapsed_ns += time.perf_counter_ns() - started
            if saturated and decision.outcome is not Outcome.WAITING:
                raise ValueError(f"saturated fleet: {job.job_id} {decision.outcome.value}")
    return elapsed_ns / decisions / 1000


def decision_cost(
    policy_name: str = "io-aware",
    small: int = 100,
    large: int = 10_000,
    decisions: int = 5_000,
    repeats: int = 3,
    waiting_decisions: int = 4_000,
) -> DecisionCost:
    """Best of `repeats` per size (the least disturbed by other work on a shared machine).

    `waiting_decisions` (0: skip) on the saturated fleets; 4000 is one snapshot's worth at
    10,000 hosts, so both sizes pay the same share of a snapshot's first look at every VM."""

    def best(hosts: int, count: int, saturated: bool) -> float:
        return min(
            mean_decide_us(policy_name, hosts, count, saturated=saturated) for _ in range(repeats)
        )

    cost = DecisionCost(
        policy_name, small, large, best(small, decisions, False), best(large, decisions, False)
    )
    if waiting_decisions:
        cost = dataclasses.replace(
            cost,
            waiting_small_us=best(small, waiting_decisions, True),
            waiting_large_us=best(large, waiting_decisions, True),
        )
    return cost
