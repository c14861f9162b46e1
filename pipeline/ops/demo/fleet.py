"""The demo's fleet and workload: four emulated hosts of different I/O capacity, three job types.

Sized for a 2-core machine: the fleet's I/O capacity is small enough that the broker, the worker,
sixteen guests and the job generator leave CPU to spare, so what slows jobs down is the hosts'
I/O channels (the paper's bottleneck), not the machine.

Shaped like the paper's hosts (and the simulator's): every VM's I/O is bounded by its own
device, a fraction of its host's channel, so one busy guest cannot overload its host, and
exceeding a host's limit takes several busy at once. Each host runs two io-heavy VMs (half its
capacity each: both busy together reach its capacity, over its limit), one mixed VM (38 %) and
one cpu-heavy VM (2 %): one io-heavy, the mixed and the cpu-heavy VM together ask 90 % of the
capacity, exactly the limit, so a dispatcher that keeps one io-heavy job per host at a time
keeps every host under its limit. The job mix puts 57 % of the I/O on io-heavy jobs and 42 % on
mixed ones, so at 80 % of the fleet's limits one io-heavy and one mixed VM per host are busy
about 80 % of the time (`busy_fraction_at`): overload-free placement is possible up to about
80 % of the limits, with jobs queueing for their turn, and impossible past 100 %, where jobs
must wait at the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A VM's device cap, as a fraction of its host's channel capacity, by job type.
DEVICE_SHARE: dict[str, float] = {"io-heavy": 0.5, "mixed": 0.38, "cpu-heavy": 0.02}
#: The limit each host's Dom0 announces: 90 % of its channel's capacity, the headroom
#: `vmlb calibrate` would also leave (p95 of the saturated sum x 0.9).
LIMIT_FRACTION = 0.9


@dataclass(frozen=True)
class DemoHost:
    host_id: str
    io_capacity_ops_per_s: float
    vms: tuple[tuple[str, str], ...]  # (vm_id, job_type)

    @property
    def io_limit_ops_per_s(self) -> float:
        return round(LIMIT_FRACTION * self.io_capacity_ops_per_s)

    def device_ops_per_s(self, job_type: str) -> float:
        """The device cap of this host's VMs serving `job_type`."""
        return round(DEVICE_SHARE[job_type] * self.io_capacity_ops_per_s)

    def vm_flag(self, vm_id: str) -> str:
        """`vmlb host --vm` for one of this host's VMs: VM:JOB_TYPE@DEVICE_OPS_PER_S."""
        job_type = dict(self.vms)[vm_id]
        return f"{vm_id}:{job_type}@{self.device_ops_per_s(job_type):g}"


def _host(host_id: str, capacity: float) -> DemoHost:
    return DemoHost(
        host_id,
        capacity,
        (
            (f"{host_id}-io1", "io-heavy"),
            (f"{host_id}-io2", "io-heavy"),
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
JOB_MIX: dict[str, float] = {"io-heavy": 0.27, "mixed": 0.49, "cpu-heavy": 0.24}
PAYLOADS: dict[str, dict[str, Any]] = {
    "io-heavy": {"io_ops": 200, "cpu_ms": 1},
    "mixed": {"io_ops": 80, "cpu_ms": 4},
    "cpu-heavy": {"io_ops": 4, "cpu_ms": 10},
}


def io_per_job_mean() -> float:
    return sum(share * PAYLOADS[job_type]["io_ops"] for job_type, share in JOB_MIX.items())


def io_share(job_type: str) -> float:
    """The share of the offered I/O that jobs of `job_type` carry."""
    return JOB_MIX[job_type] * PAYLOADS[job_type]["io_ops"] / io_per_job_mean()


def fleet_capacity_jobs_per_s(fleet: tuple[DemoHost, ...] = FLEET) -> float:
    """Jobs per second the fleet's I/O limits allow for the demo's job mix."""
    return sum(host.io_limit_ops_per_s for host in fleet) / io_per_job_mean()


def busy_fraction_at(load: float, job_type: str, fleet: tuple[DemoHost, ...] = FLEET) -> float:
    """How busy one VM of `job_type` per host must be to carry its type's I/O at `load` (a
    fraction of the fleet's limits), when each host carries a share of it proportional to its
    capacity: what placement under the limits needs, ignoring the time jobs queue."""
    offered = load * sum(host.io_limit_ops_per_s for host in fleet) * io_share(job_type)
    per_vm = sum(host.device_ops_per_s(job_type) for host in fleet)
    return offered / per_vm


def offered_rate_per_s(elapsed_s: float, duration_s: float, capacity_jobs_per_s: float) -> float:
    """The generator's rate: ramps from 30% to 130% of capacity over 70% of the run, then holds.

    Past 100% the fleet is full: the dispatcher must make jobs wait instead of overloading hosts.
    """
    ramp_s = max(1.0, 0.7 * duration_s)
    fraction = min(1.0, elapsed_s / ramp_s)
    return capacity_jobs_per_s * (0.3 + 1.0 * fraction)
