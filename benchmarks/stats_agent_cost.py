"""vm_stats CPU per VM sample, in process (no broker, no Faust consumer): IoSample vs HostSample.

A diagnostic for docs/evaluation.md (Telemetry at fleet scale): the agent's `handle` over
batches of one interval each, built with the unit tests' harness (a recording producer), so it
measures the per-VM work (decode, windows, the row write, the vm-state record) and not Faust's
per-record consumer path. CPU time of this process only. Run from the repository root:

    .venv/bin/python -m benchmarks.stats_agent_cost [--store rocksdb://] [--intervals-per-batch 8]

The harness keeps tables in memory (`memory://`); `--store rocksdb://` measures the worker's
own store (RocksDB in a temporary directory), set through the settings the harness builds, so
the same file measures an older tree too (`PYTHONPATH=<tree> python <this file>`).

A batch holds one interval by default: each VM sample then costs one row write and one
`vm-state` record. `--intervals-per-batch N` puts N intervals in each batch, as a worker
catching up on a backlog reads them (`vmlb bench pipeline`'s telemetry phase: a batch of up to
`VMLB_STATS_BATCH_MAX` records holds several intervals of every VM), so a row write and a
`vm-state` record are shared by N samples and the per-sample work (decoding, windows) shows.
`--jobs-per-s J` adds J completions per VM per second (busy VMs: a row then holds a minute of
job ids); their cost is counted in the CPU per VM sample.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tests.unit.pipeline.worker_harness as harness
from pipeline.events import HostSample, IoSample, JobCompletion
from pipeline.settings import PipelineSettings
from pipeline.topics.partitioning import partition_for_key
from tests.unit.pipeline.worker_harness import NOW, build, io_sample

VMS, INTERVALS, VMS_PER_HOST, PARTITIONS = 200, 50, 50, 6


@dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes
    partition: int


class Event:
    """What `handle` reads of a Faust event (weak-referenceable, as `writing_for` needs)."""

    def __init__(self, message: Message) -> None:
        self.message = message


def completions(at: float, per_vm: int) -> list[Any]:
    """`per_vm` jobs of each VM finished in the second before `at` (read before the sample
    that carries their I/O, as completions travel on their own path)."""
    events = []
    for i in range(VMS):
        vm_id = f"v{i}"
        for j in range(per_vm):
            done = at - 1 + (j + 0.5) / per_vm
            job = JobCompletion(
                job_id=f"job-{vm_id}-{at:.0f}-{j}",
                job_type="io",
                vm_id=vm_id,
                host_id=f"th{i // VMS_PER_HOST}",
                submitted_at=done - 1,
                dispatched_at=done - 0.9,
                started_at=done - 0.5,
                finished_at=done,
                outcome="succeeded",
            )
            message = Message(
                "t.completions", job.key(), job.to_bytes(), partition_for_key(vm_id, PARTITIONS)
            )
            events.append(Event(message))
    return events


def interval(form: str, at: float, jobs_per_s: int = 0) -> list[Any]:
    jobs = completions(at, jobs_per_s) if jobs_per_s else []
    samples = [io_sample(f"v{i}", at, 50, host_id=f"th{i // VMS_PER_HOST}") for i in range(VMS)]
    if form == "io-sample":
        return jobs + [
            Event(
                Message(
                    "t.io-samples",
                    s.key(),
                    s.to_bytes(),
                    partition_for_key(s.vm_id, PARTITIONS),
                )
            )
            for s in samples
        ]
    groups: dict[tuple[str, int], list[IoSample]] = {}
    for s in samples:
        groups.setdefault((s.host_id, partition_for_key(s.vm_id, PARTITIONS)), []).append(s)
    return jobs + [
        Event(Message("t.io-samples", host.encode(), HostSample.of(group).to_bytes(), p))
        for (host, p), group in groups.items()
    ]


async def measure(form: str, per_batch: int = 1, jobs_per_s: int = 0) -> str:
    h = build(Path(tempfile.mkdtemp()), stats_batch_max=1000)
    for i in range(VMS // VMS_PER_HOST):
        h.host(f"th{i}")
    for i in range(VMS):
        h.vm(f"v{i}", f"th{i // VMS_PER_HOST}")
    h.ready()
    # A worker opens a partition's RocksDB database when the partition is assigned, not per
    # sample: open them before the clock starts (~0.1 s of CPU for the six, its threads').
    store = h.pipeline.stats.table.table.data
    if hasattr(store, "_db_for_partition"):
        for partition in range(PARTITIONS):
            store._db_for_partition(partition)
    intervals = [interval(form, NOW + t, jobs_per_s) for t in range(INTERVALS)]
    batches = [
        (
            NOW + min(t + per_batch, INTERVALS) - 0.5,
            list(itertools.chain(*intervals[t : t + per_batch])),
        )
        for t in range(0, INTERVALS, per_batch)
    ]
    started = time.process_time()
    for now, batch in batches:
        h.clock.now = now
        await h.pipeline.stats.handle(batch)
    cpu_s = time.process_time() - started
    samples = VMS * INTERVALS
    assert not h.producer.dead_letters()
    return (
        f"{form}: {sum(len(batch) for _, batch in batches)} records for {samples} VM samples "
        f"and {jobs_per_s * samples} completions in {len(batches)} batches, "
        f"{cpu_s / samples * 1e6:.1f} µs CPU per VM sample ({samples / cpu_s:,.0f}/s); "
        f"{len(h.producer.changelog)} row writes, {len(h.producer.on('vm-state'))} vm-state"
    )


def use_store(store: str) -> None:
    """Make the harness build its apps with `store` (it asks for memory://)."""

    def settings(**values: Any) -> PipelineSettings:
        return PipelineSettings(**{**values, "store": store})

    harness.PipelineSettings = settings  # type: ignore[assignment,misc]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="memory://", help="memory:// (default) or rocksdb://")
    parser.add_argument(
        "--intervals-per-batch", type=int, default=1, help="intervals in each batch (default 1)"
    )
    parser.add_argument(
        "--jobs-per-s",
        type=int,
        default=0,
        help="completions per VM per second, read with its samples (default 0); their cost "
        "is in the CPU per VM sample",
    )
    args = parser.parse_args()
    if args.store != "memory://":
        use_store(args.store)
    for form in ("io-sample", "host-sample"):
        per_batch = max(1, args.intervals_per_batch)
        print(f"{args.store} {await measure(form, per_batch, max(0, args.jobs_per_s))}")


if __name__ == "__main__":
    asyncio.run(main())
