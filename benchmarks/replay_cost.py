"""A new owner's CPU to take over a jobs partition, in process (no broker): its status log
replayed into the book record by record, then `recovered` (every job recorded as dispatched
and not started is sent again to its VM).

A diagnostic for docs/evaluation.md ("Objects per unfinished job"): `--jobs` submissions are
decided by one `DispatchCore` on `benchmarks.dispatch_cost`'s fleet (nothing completes), the
status records it wrote are replayed into a second core's books, partition by partition. CPU
time of this process only; the ratio between two trees' runs of the same command is the
measure. Run from the repository root:

    .venv/bin/python -m benchmarks.replay_cost [--jobs N]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.dispatch_cost import PARTITIONS, Clock, core_of, fleet, submissions


def run(count: int) -> tuple[float, float]:
    """(µs per status record replayed, µs per job re-sent by `recovered`)."""
    clock = Clock()
    view = fleet()
    first = core_of(view, clock)
    logs: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in range(PARTITIONS)}
    for offset, (partition, key, value) in enumerate(submissions(count, clock.now)):
        clock.now += 0.0005
        first.on_job(partition, offset, key, value, clock.now)
        for record in first.take().first:
            if record.topic.endswith("job-status") and record.partition is not None:
                logs[record.partition].append((record.key, record.value))
    owner = core_of(view, clock)
    for partition in range(PARTITIONS):
        owner.revoke(partition)
    started = time.process_time()
    for partition, log in logs.items():
        owner.assign(partition)
        for offset, (key, value) in enumerate(log):
            owner.replay(partition, value, key, offset)
    replayed = time.process_time()
    for partition in logs:
        owner.recovered(partition)
    resent = len(owner.take().then)
    done = time.process_time()
    assert resent == count, (resent, count)
    return (replayed - started) / count * 1e6, (done - replayed) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    args = parser.parse_args()
    replay_us, resend_us = run(args.jobs)
    print(
        f"{args.jobs} dispatched jobs: replay {replay_us:.1f} µs per record, "
        f"recovered {resend_us:.1f} µs per job re-sent"
    )


if __name__ == "__main__":
    main()
