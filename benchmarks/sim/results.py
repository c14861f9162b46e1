"""What one simulated run measured, and how it is summarised.

Response time is submit-to-finish, what a submitter experiences. Percentiles are over *every*
submitted job: a job not finished when the run ends counts with its age at the end (a lower
bound of its response time), so a policy cannot look fast by leaving its worst jobs unfinished.
Throughput counts jobs finished while jobs were still arriving, per second of that period.
`overload_s` sums over hosts the seconds during which the guests' demanded I/O exceeded the
host's limit; `saturated_s` the seconds it exceeded the host's capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.sim.engine import Simulation


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class RunResult:
    scenario: str
    policy: str
    submitted: int
    completed: int
    in_flight: int
    waiting: int
    expired: int
    rejected: int
    lost: int
    throughput_per_s: float
    mean_response_s: float
    p50_response_s: float
    p99_response_s: float
    p999_response_s: float
    overload_s: float
    saturated_s: float
    decisions: int
    waiting_decisions: int
    decision_us: float
    sim_wall_s: float
    #: Ascending response times of completed jobs (for the CDF plot; not in the JSON).
    responses_s: list[float] = field(default_factory=list, repr=False)
    #: Per plotted host: (time, I/O ops/s over the last sampling interval).
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict, repr=False)
    limits_ops_per_s: dict[str, float] = field(default_factory=dict, repr=False)
    per_host_overload_s: dict[str, float] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The numbers, without the bulky series (what `--json` prints)."""
        data = asdict(self)
        for bulky in ("responses_s", "series", "limits_ops_per_s", "per_host_overload_s"):
            data.pop(bulky)
        return data


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
