"""The demo's fleet and workload: four emulated hosts of different I/O capacity, three job types.

Sized for a 2-core machine: the fleet's I/O capacity is small enough that the broker, the worker,
twelve guests and the job generator leave CPU to spare, so what slows jobs down is the hosts' I/O
channels (the paper's bottleneck), not the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoHost:
    host_id: str
    io_capacity_ops_per_s: float
    vms: tuple[tuple[str, str], ...]  # (vm_id, job_type)

    @property
    def io_limit_ops_per_s(self) -> float:
        # The limit Dom0 announces: 90% of the channel's capacity, the headroom `vmlb calibrate`
        # would also leave (p95 of the saturated sum x 0.9).
        return round(0.9 * self.io_capacity_ops_per_s)


def _host(host_id: str, capacity: float) -> DemoHost:
    return DemoHost(
        host_id,
        capacity,
        (
            (f"{host_id}-io", "io-heavy"),
            (f"{host_id}-mix", "mixed"),
            (f"{host_id}-cpu", "cpu-heavy"),
        ),
    )


FLEET: tuple[DemoHost, ...] = (
    _host("host-a", 2400),
    _host("host-b", 1600),
    _host("host-c", 1000),
    _host("host-d", 600),
)

#: Job types, their share of submissions, and their payloads (very different I/O costs).
JOB_MIX: dict[str, float] = {"io-heavy": 0.5, "mixed": 0.3, "cpu-heavy": 0.2}
PAYLOADS: dict[str, dict[str, Any]] = {
    "io-heavy": {"io_ops": 200, "cpu_ms": 1},
    "mixed": {"io_ops": 80, "cpu_ms": 5},
    "cpu-heavy": {"io_ops": 4, "cpu_ms": 10},
}


def io_per_job_mean() -> float:
    return sum(share * PAYLOADS[job_type]["io_ops"] for job_type, share in JOB_MIX.items())


def fleet_capacity_jobs_per_s(fleet: tuple[DemoHost, ...] = FLEET) -> float:
    """Jobs per second the fleet's I/O limits allow for the demo's job mix."""
    return sum(host.io_limit_ops_per_s for host in fleet) / io_per_job_mean()


def offered_rate_per_s(elapsed_s: float, duration_s: float, capacity_jobs_per_s: float) -> float:
    """The generator's rate: ramps from 30% to 130% of capacity over 70% of the run, then holds.

    Past 100% the fleet is full: the dispatcher must make jobs wait instead of overloading hosts.
    """
    ramp_s = max(1.0, 0.7 * duration_s)
    fraction = min(1.0, elapsed_s / ramp_s)
    return capacity_jobs_per_s * (0.3 + 1.0 * fraction)
