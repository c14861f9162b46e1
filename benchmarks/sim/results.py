"""What one simulated run measured, and how it is summarised.

Response time is submit-to-finish, what a submitter experiences. Percentiles are over *every*
submitted job: a job not finished when the run ends counts with its age at the end (a lower
bound of its response time), so a policy cannot look fast by leaving its worst jobs unfinished.
Throughput counts jobs finished while jobs were still arriving, per second of that period.

Per submitter (scenarios with `submitters`): the same response figures over its own jobs, and
its waiting time, submit to dispatch (what fairness is about: time spent at the dispatcher's
queue; a job never dispatched counts with its age at the end, an expired one not at all).

Overload, as live (`benchmarks.sim.fleet`): `overload_s` sums over hosts the seconds of
telemetry intervals (1 s) in which the I/O the guests asked of the host exceeded its limit;
`lost_goodput_ops` the I/O operations collapse cost (what a saturated host would have delivered
at capacity and did not). Secondary: `served_over_limit_s` (intervals whose served I/O, Dom0's
counters, exceeded the limit), `demand_over_limit_s` (seconds the demand exceeded the limit at
any instant), `saturated_s` (seconds it exceeded the host's capacity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class SubmitterResult:
    """One submitter's jobs in one run."""

    submitted: int
    completed: int
    expired: int
    mean_response_s: float
    p50_response_s: float
    p99_response_s: float
    p50_wait_s: float
    p99_wait_s: float

    @classmethod
    def of(cls, responses_s: list[float], waits_s: list[float], submitted: int, expired: int,
           completed: int) -> SubmitterResult:  # fmt: skip
        """From the responses (completed, and unfinished at their age) and waits, unsorted."""
        responses_s = sorted(responses_s)
        waits_s = sorted(waits_s)
        return cls(
            submitted=submitted,
            completed=completed,
            expired=expired,
            mean_response_s=sum(responses_s) / len(responses_s) if responses_s else 0.0,
            p50_response_s=percentile(responses_s, 0.50),
            p99_response_s=percentile(responses_s, 0.99),
            p50_wait_s=percentile(waits_s, 0.50),
            p99_wait_s=percentile(waits_s, 0.99),
        )


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
    served_over_limit_s: float
    demand_over_limit_s: float
    saturated_s: float
    lost_goodput_ops: float
    io_ops_done: float
    #: The strictness the run used (`PolicyConfig.hold_s`; io-aware and the oracle read it).
    hold_s: float
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
    #: Per submitter, when the scenario names submitters (else empty, and not in the JSON).
    submitters: dict[str, SubmitterResult] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The numbers, without the bulky series (what `--json` prints)."""
        data = asdict(self)
        for bulky in ("responses_s", "series", "limits_ops_per_s", "per_host_overload_s"):
            data.pop(bulky)
        if not self.submitters:
            data.pop("submitters")
        if math.isinf(self.hold_s):
            data["hold_s"] = None  # strict: JSON has no infinity
        data["lost_goodput_pct"] = self.lost_goodput_pct
        return data

    @property
    def lost_goodput_pct(self) -> float:
        """Goodput lost to collapse, as a share of the I/O the fleet did."""
        done = self.io_ops_done + self.lost_goodput_ops
        return 100.0 * self.lost_goodput_ops / done if done else 0.0
