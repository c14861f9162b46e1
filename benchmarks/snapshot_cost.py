"""What one snapshot rebuild costs on a large fleet, in process (no broker): issue #14's "10,000
registered VMs: snapshot rebuild p99 <= 2 ms".

A fleet of `--vms` VMs (50 per host, four job types) with fresh telemetry, as the fleet view
holds it; then `--rebuilds` rounds, each applying the `vm-state` records one rebuild interval
brings (`--changed` VMs: a 10,000-VM fleet reports 10,000 states a second, and the dispatcher
rebuilds at most every 50 ms, so 500 a round) and taking the dispatcher's snapshot
(`SnapshotSource.build`, what `Dispatcher.decide` gets). Reported: the rebuild's wall time
(p50, p99, max) with and without changes between rebuilds (the baseline of the same run), its
CPU time (this thread's: the work itself, which a busy machine's preemptions do not inflate),
and the view's memory per 1,000 VMs (tracemalloc).

    .venv/bin/python -m benchmarks.snapshot_cost [--vms 10000] [--changed 500] [--rebuilds 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc

from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.snapshot import PolicyConfig
from tests.unit.pipeline.fleet_builders import NOW, add_host, add_state, add_vm

VMS_PER_HOST = 50
JOB_TYPES = ("io", "cpu", "mixed", "batch")


def fleet(vms: int) -> FleetView:
    view = FleetView()
    for i in range(vms):
        host_id = f"h{i // VMS_PER_HOST}"
        if i % VMS_PER_HOST == 0:
            add_host(view, host_id, io_limit=50_000.0)
        vm_id = f"{host_id}-vm{i % VMS_PER_HOST}"
        add_vm(view, vm_id, host_id, job_type=JOB_TYPES[i % len(JOB_TYPES)])
        state(view, vm_id, host_id, NOW, i)
    return view


def state(view: FleetView, vm_id: str, host_id: str, at: float, seed: int) -> None:
    add_state(
        view,
        vm_id,
        host_id,
        io_ops_per_s=100.0 + seed % 37,
        io_per_job=50.0,
        load_jobs_per_s=1.0 + seed % 5,
        busy_fraction=0.1,
        last_telemetry_at=at,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rebuilds(
    view: FleetView, vms: int, changed: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Each rebuild's wall and CPU seconds."""
    source = SnapshotSource(view, PolicyConfig())
    ids = [
        (f"h{i // VMS_PER_HOST}-vm{i % VMS_PER_HOST}", f"h{i // VMS_PER_HOST}") for i in range(vms)
    ]
    took: list[float] = []
    cpu: list[float] = []
    cursor = 0
    for r in range(rounds):
        now = NOW + 0.05 * (r + 1)
        for _ in range(changed):
            vm_id, host_id = ids[cursor % vms]
            state(view, vm_id, host_id, now, cursor)
            cursor += 1
        cpu_started = time.thread_time()  # outside the wall clock's span
        started = time.perf_counter()
        source.build(now)
        took.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=500)
    parser.add_argument("--rebuilds", type=int, default=300)
    args = parser.parse_args()

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view = fleet(args.vms)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    report: dict[str, float | int] = {"vms": args.vms, "changed_per_rebuild": args.changed}
    report["view_mib_per_1000_vms"] = (after - before) / 2**20 / args.vms * 1000
    for name, changed in (("unchanged", 0), ("changed", args.changed)):
        took, cpu = rebuilds(view, args.vms, changed, args.rebuilds)
        report[f"{name}_p50_ms"] = statistics.median(took) * 1000
        report[f"{name}_p99_ms"] = percentile(took, 0.99) * 1000
        report[f"{name}_max_ms"] = max(took) * 1000
        report[f"{name}_cpu_p50_ms"] = statistics.median(cpu) * 1000
        report[f"{name}_cpu_p99_ms"] = percentile(cpu, 0.99) * 1000
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
