"""The decision-cost micro-benchmark: mean `decide()` time at 100 and at 10,000 hosts.

Both fleets are built the same way (4 VMs per host, 3 job types, every host fresh and under its
limit with some load, so the common path is measured), in the same process, with the same
number of decisions; each decision claims its placement, as in production. A snapshot takes
claims for a tenth of its VMs before it is built afresh from the same fleet (in production
completions and telemetry replace it within half a second): without that the 100-host fleet
would fill up after a few hundred decisions and every later one would scan a full fleet, which
is the rare path, not the common one. Building snapshots is not timed. The ratio large / small
is the number that matters: io-aware samples candidates, so it should stay near 1.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from pipeline.policy.decision import JobRequest
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView

JOB_TYPES = ("heavy", "medium", "light")


def synthetic_hosts(hosts: int, seed: int = 7, now: float = 1_000.0) -> list[HostView]:
    rng = random.Random(f"{seed}/fleet/{hosts}")
    views = []
    width = len(str(hosts - 1))
    for h in range(hosts):
        host_id = f"h{h:0{width}d}"
        limit = rng.choice((1440.0, 1620.0, 1980.0, 2160.0))
        vms = tuple(
            VmView(
                vm_id=f"{host_id}-v{i}",
                host_id=host_id,
                job_type=JOB_TYPES[i % 3],
                load_jobs_per_s=rng.uniform(0.5, 3.0),
                io_per_job=(120.0, 30.0, 2.0)[i % 3],
                io_ops_per_s=rng.uniform(50.0, 250.0),
                outstanding_jobs=rng.randrange(3),
                busy_fraction=rng.random(),
            )
            for i in range(4)
        )
        views.append(HostView(host_id, limit, now - rng.uniform(0, 1.5), vms))
    return views


def synthetic_fleet(hosts: int, seed: int = 7, now: float = 1_000.0) -> FleetSnapshot:
    return FleetSnapshot(synthetic_hosts(hosts, seed, now), taken_at=now, config=PolicyConfig())


@dataclass(frozen=True)
class DecisionCost:
    policy: str
    small_hosts: int
    large_hosts: int
    small_us: float
    large_us: float

    @property
    def ratio(self) -> float:
        return self.large_us / self.small_us if self.small_us else float("inf")


def mean_decide_us(policy_name: str, hosts: int, decisions: int, seed: int = 7) -> float:
    views = synthetic_hosts(hosts, seed)
    per_snapshot = max(1, hosts * 4 // 10)
    policy = build_policy(policy_name)
    rng = random.Random(seed)
    jobs = [JobRequest(f"j{i}", JOB_TYPES[i % 3]) for i in range(decisions)]
    snapshot = FleetSnapshot(views, taken_at=1_000.0, config=PolicyConfig())
    for job in jobs[: min(100, decisions, per_snapshot)]:  # warm caches and code paths
        policy.decide(snapshot, job, rng)
    elapsed_ns = 0
    for start in range(0, decisions, per_snapshot):
        snapshot = FleetSnapshot(views, taken_at=1_000.0, config=PolicyConfig())
        batch = jobs[start : start + per_snapshot]
        started = time.perf_counter_ns()
        for job in batch:
            policy.decide(snapshot, job, rng)
        elapsed_ns += time.perf_counter_ns() - started
    return elapsed_ns / decisions / 1000


def decision_cost(
    policy_name: str = "io-aware",
    small: int = 100,
    large: int = 10_000,
    decisions: int = 5_000,
    repeats: int = 3,
) -> DecisionCost:
    """Best of `repeats` per size (the least disturbed by other work on a shared machine)."""
    small_us = min(mean_decide_us(policy_name, small, decisions) for _ in range(repeats))
    large_us = min(mean_decide_us(policy_name, large, decisions) for _ in range(repeats))
    return DecisionCost(policy_name, small, large, small_us, large_us)
