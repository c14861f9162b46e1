"""Objects the cyclic collector tracks per unfinished job in the dispatcher, in process (no
broker): what a full collection of a loaded worker visits for every job it holds.

A diagnostic for docs/evaluation.md ("Objects per unfinished job"). The worker's
`DispatchCore` on `benchmarks.dispatch_cost`'s fleet is fed `--jobs` submissions, then as many
again; the figure is the growth of `gc.get_objects()` between the two points over the jobs
fed in between, each point taken after a snapshot rebuild (what a snapshot keeps for its own
life, e.g. io-aware's verdicts, is not held per job) and a full collection (which untracks
the tuples of atoms). Two shapes:

- `dispatched`: every job is placed and nothing completes (`vmlb bench pipeline` without
  `--complete`): the jobs sit in the books as dispatched;
- `waiting`: every host is over its limit, so every job waits in its type's `WaitingQueue`.

Run from the repository root:

    .venv/bin/python -m benchmarks.gc_per_job [--jobs N]
"""

from __future__ import annotations

import argparse
import collections
import gc

from benchmarks.dispatch_cost import Clock, core_of, fleet, submissions
from pipeline.dispatch.core import DispatchCore
from pipeline.fleet.view import FleetView

SHAPES = ("dispatched", "waiting")


def _tracked_by_type() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


def _feed(
    core: DispatchCore, clock: Clock, jobs: list[tuple[int, bytes, bytes]], first: int
) -> None:
    for offset, (partition, key, value) in enumerate(jobs, start=first):
        clock.now += 0.0005
        core.on_job(partition, offset, key, value, clock.now)
        core.take()
    clock.now += 1.0  # past the snapshot's longest life: the next one is built afresh
    core.snapshots.get(clock.now)


def _over_limit(view: FleetView) -> None:
    from tests.unit.pipeline.fleet_builders import add_host

    for host_id in list(view.hosts):
        add_host(view, host_id, io_limit=1.0)


def run(shape: str, count: int) -> tuple[float, collections.Counter[str]]:
    """(tracked objects per job, their growth by type) for `count` more jobs in the books."""
    clock = Clock()
    view = fleet()
    if shape == "waiting":
        _over_limit(view)
    core = core_of(view, clock)
    jobs = submissions(2 * count, clock.now)
    _feed(core, clock, jobs[:count], 0)
    before = _tracked_by_type()
    _feed(core, clock, jobs[count:], count)
    after = _tracked_by_type()
    outcomes = core.counts.by_outcome
    expected = "dispatched" if shape == "dispatched" else "waiting"
    assert outcomes.get(expected) == 2 * count, outcomes
    growth = after - before
    return sum(growth.values()) / count, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    for shape in SHAPES:
        per_job, growth = run(shape, args.jobs)
        top = ", ".join(f"{name} {n / args.jobs:.2f}" for name, n in growth.most_common(8))
        print(f"{shape}: {per_job:.2f} tracked objects per unfinished job ({top})")


if __name__ == "__main__":
    main()
