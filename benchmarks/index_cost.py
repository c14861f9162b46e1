"""What one index update costs at fleet scale, with the estimates that span hosts: the work a
rebuild and the first decision after it pay, at 100 and at 10,000 hosts (4 VMs each).

Each round changes one host's VMs' busy time (a completion moved its service time) and takes
`FleetIndex.updated`, then asks the host's service time of every job type
(`FleetIndex.host_service_s`, what io-aware's job rate reads), which derives the types' spread
and limit fit on first use per index. Reported: p50 and p99 µs per round, and the p50 ratio
10,000 / 100 hosts (the number that matters: an update should cost O(changed hosts)).

    .venv/bin/python -m benchmarks.index_cost [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.sim.cost import JOB_TYPES, synthetic_hosts
from pipeline.policy.snapshot import FleetIndex, HostView

#: The meter's window the estimates are asked over (PolicyConfig's default).
WINDOW_S = 5.0


def round_us(hosts: int, rounds: int) -> list[float]:
    """µs per round (update + one estimate per type) on a fleet of `hosts` hosts."""
    views = synthetic_hosts(hosts)
    index = FleetIndex.of(views)
    for job_type in JOB_TYPES:  # the index every later one is updated from has asked once
        index.host_service_s(views[0].host_id, job_type, WINDOW_S)
    elapsed = []
    for r in range(rounds):
        host = views[r % hosts]
        stretch = 1.0 + 0.001 * (r % 7 + 1)
        vms = tuple(vm._replace(busy_fraction=vm.busy_fraction * stretch) for vm in host.vms)
        changed = {
            host.host_id: HostView(host.host_id, host.limit_ops_per_s, host.last_telemetry_at, vms)
        }
        started = time.perf_counter_ns()
        index = index.updated(changed)
        for job_type in JOB_TYPES:
            index.host_service_s(host.host_id, job_type, WINDOW_S)
        elapsed.append((time.perf_counter_ns() - started) / 1000)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    report: dict[str, float] = {}
    for hosts in (100, 10_000):
        samples = round_us(hosts, args.rounds)
        report[f"p50_us_{hosts}"] = round(statistics.median(samples), 1)
        report[f"p99_us_{hosts}"] = round(statistics.quantiles(samples, n=100)[98], 1)
    report["ratio_p50"] = round(report["p50_us_10000"] / report["p50_us_100"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
