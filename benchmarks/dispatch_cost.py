"""The dispatcher's CPU per job, in process (no broker): what `vmlb bench pipeline` pays per job
beyond Kafka's own clients.

A diagnostic for docs/evaluation.md (Pipeline benchmark): the worker's `DispatchCore` as
`pipeline.worker.app` builds it (io-aware, its metrics), on the pipeline benchmark's fleet
(8 hosts x 4 VMs of one type, limits far above the load, fresh telemetry), fed the same
submissions as bytes; every record it would produce is encoded (the outbox holds bytes). Two
shapes of fleet:

- `busy`: nothing completes (the pipeline benchmark without `--complete`): every VM holds a
  growing backlog, so a decision probes `probe_limit` busy VMs and compares them all;
- `complete`: each job's guest reports it succeeded before the next job arrives, so a
  decision finds idle VMs (power of two choices).

CPU time of this process only; the ratio between two runs of the same command is the measure
(the machine is shared). Run from the repository root:

    .venv/bin/python -m benchmarks.dispatch_cost [--jobs N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import time

from pipeline.dispatch.core import DispatchCore
from pipeline.dispatch.decide import Dispatcher
from pipeline.edge.metrics import PipelineMetrics
from pipeline.events import (
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
)
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.registry import build_policy
from pipeline.settings import PipelineSettings
from pipeline.topics import load_topics
from tests.unit.pipeline.fleet_builders import NOW, add_host, add_state, add_vm

HOSTS, VMS_PER_HOST, JOB_TYPE, PARTITIONS = 8, 4, "bench", 12


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def fleet() -> FleetView:
    """The pipeline benchmark's fleet: limits far above the load, fresh telemetry (at NOW)."""
    view = FleetView()
    for h in range(HOSTS):
        add_host(view, f"h{h}", io_limit=1e9)
        for v in range(VMS_PER_HOST):
            vm_id = f"h{h}-vm{v}"
            add_vm(view, vm_id, f"h{h}", job_type=JOB_TYPE)
            add_state(
                view,
                vm_id,
                f"h{h}",
                io_ops_per_s=10.0,
                io_per_job=10.0,
                load_jobs_per_s=10.0,
                busy_fraction=0.1,
            )
    return view


def core_of(view: FleetView, clock: Clock) -> DispatchCore:
    # As `pipeline.worker.app` builds it, with the pipeline benchmark's settings.
    settings = PipelineSettings(
        warmup_outstanding_per_vm=1_000_000_000, lease_s=1_000_000_000, policy="io-aware"
    )
    config = settings.policy_config()
    snapshots = SnapshotSource(view, config)
    dispatcher = Dispatcher(
        build_policy(settings.policy, config), view, snapshots, random.Random(1)
    )
    core = DispatchCore(
        dispatcher,
        view,
        load_topics(prefix="t."),
        settings,
        clock,
        rng=random.Random(2),
        metrics=PipelineMetrics(),
    )
    for p in range(PARTITIONS):
        core.assign(p)
        core.recovered(p)
    return core


def submissions(count: int, at: float) -> list[tuple[int, bytes, bytes]]:
    out = []
    for i in range(count):
        job = JobSubmission(job_id=f"j{i}", job_type=JOB_TYPE, payload={"n": i}, submitted_at=at)
        out.append((i % PARTITIONS, job.key(), job.to_bytes()))
    return out


def succeeded(record_value: bytes, at: float) -> tuple[bytes, bytes]:
    """The guest's `succeeded` record for a queued job."""
    queued = QueuedJob.from_bytes(record_value)
    job = JobSubmission(
        job_id=queued.job_id,
        job_type=queued.job_type,
        payload=queued.payload,
        submitted_at=queued.submitted_at,
    )
    status = JobStatus(
        job_id=queued.job_id,
        state=JobState.SUCCEEDED,
        at=at,
        writer=StatusWriter.GUEST,
        job=job,
        vm_id=queued.vm_id,
        host_id=queued.host_id,
        attempt=queued.attempt,
        dispatched_at=queued.dispatched_at,
        started_at=at,
        finished_at=at,
    )
    return status.key(), status.to_bytes()


def run(shape: str, count: int, profile: bool) -> float:
    """CPU µs per job (deciding it, and, for `complete`, taking its guest's report)."""
    clock = Clock()
    view = fleet()
    core = core_of(view, clock)
    jobs = submissions(count, clock.now)
    profiler = cProfile.Profile() if profile else None
    cpu_s = 0.0
    records = 0
    for offset, (partition, key, value) in enumerate(jobs):
        clock.now += 0.0005
        started = time.process_time()
        if profiler:
            profiler.enable()
        core.on_job(partition, offset, key, value, clock.now)
        out = core.take()
        if profiler:
            profiler.disable()
        cpu_s += time.process_time() - started
        records += len(out.decisions) + len(out.first) + len(out.then)
        if shape == "complete":
            (queued,) = out.then
            status_key, status_value = succeeded(queued.value, clock.now)
            started = time.process_time()
            if profiler:
                profiler.enable()
            core.on_status(partition, status_key, status_value, offset)
            after = core.take()
            records += len(after.decisions) + len(after.first)
            if profiler:
                profiler.disable()
            cpu_s += time.process_time() - started
    assert core.counts.by_outcome.get("dispatched") == count, core.counts.by_outcome
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(35)
    print(
        f"{shape}: {count} jobs, {records / count:.1f} records per job, "
        f"{cpu_s / count * 1e6:.0f} µs CPU per job ({count / cpu_s:,.0f} jobs/s)"
    )
    return cpu_s / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--shape", choices=("busy", "complete", "both"), default="both")
    args = parser.parse_args()
    shapes = ("busy", "complete") if args.shape == "both" else (args.shape,)
    for shape in shapes:
        run(shape, args.jobs, args.profile)


if __name__ == "__main__":
    main()
