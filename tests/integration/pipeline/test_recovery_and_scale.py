"""Crash recovery from changelogs, and two workers sharing the partitions."""

from __future__ import annotations

import time

from pipeline.events import QueuedJob, VmState
from tests.integration.pipeline.conftest import read_topic, wait_for
from tests.integration.pipeline.test_dispatch import FAST, hosts_by_id, metered_over_limit


def queued_ids(kafka, topic: str) -> list[str]:
    return [QueuedJob.from_bytes(r.value).job_id for r in read_topic(kafka, topic)]


def test_a_killed_worker_recovers_its_tables_and_loses_no_job(
    kafka_settings, topics, fleet, start_worker, tmp_path
):
    settings = {
        **FAST,
        "VMLB_IO_PER_JOB_WINDOW_S": "300",
    }  # nothing leaves the window during the test
    fleet.host("h1", io_limit=1000)
    queue = fleet.vm("a1", "h1", "io")
    fleet.flush()
    fleet.report("a1", 1500, jobs_per_s=5)
    first = start_worker(data_dir=tmp_path / "first", **settings)
    wait_for(lambda: metered_over_limit(first, "h1"), what="h1 metered over its limit")
    waiting = [fleet.submit("io") for _ in range(5)]
    fleet.flush()
    wait_for(lambda: first.get("/waiting")["count"] == 5, what="5 waiting")
    more = [fleet.submit("io") for _ in range(20)]  # still in flight when the worker dies
    fleet.flush()
    first.kill()
    fleet.report("a1", 1500, jobs_per_s=0)  # from now on, completions only when the test says
    time.sleep(1.5)
    completed_before = fleet.completed["a1"]

    # A new worker with an empty data dir: its tables can only come from the changelogs.
    second = start_worker(data_dir=tmp_path / "second", **settings)
    # Its partitions move over once the killed worker's session times out (10 s).
    wait_for(
        lambda: second.get("/waiting")["count"] == 25,
        what="all 25 jobs waiting after restart",
        timeout_s=60,
        on_fail=lambda: (
            f"waiting={second.get('/waiting')['count']} status={second.get('/status')} "
            f"decisions={len(read_topic(kafka_settings, topics.name('decisions')))} "
            f"jobs={len(read_topic(kafka_settings, topics.name('jobs')))}"
        ),
    )
    fleet.completions("a1", jobs=1, over_s=0.5)
    fleet.flush()

    def a1_state() -> VmState | None:
        states = [
            VmState.from_bytes(r.value) for r in read_topic(kafka_settings, topics.name("vm-state"))
        ]
        return next(
            (
                s
                for s in reversed(states)
                if s.vm_id == "a1" and s.io_per_job_samples > completed_before
            ),
            None,
        )

    # Every completion from before the crash is still in the window: restored, not forgotten.
    assert (
        wait_for(a1_state, what="a1's windows restored").io_per_job_samples == completed_before + 1
    )

    fleet.report("a1", 1500, jobs_per_s=5)  # a1 clears jobs again: io-aware's backlog cap opens
    fleet.limit("h1", 100_000)
    fleet.flush()
    wait_for(
        lambda: set(waiting + more) <= set(queued_ids(kafka_settings, queue)),
        what="every job dispatched",
    )


def test_two_workers_split_the_partitions_and_both_see_every_host(
    kafka_settings, topics, fleet, start_worker
):
    for host in ("h1", "h2", "h3"):
        fleet.host(host, io_limit=100_000)
        fleet.vm(f"{host}-vm", host, "io")
    fleet.flush()
    for host in ("h1", "h2", "h3"):
        # Completing jobs, so io-aware knows what each VM clears (its backlog cap).
        fleet.report(f"{host}-vm", 100, jobs_per_s=5)
    one = start_worker(**FAST)
    two = start_worker(**FAST)

    partitions = topics.partitions("jobs")

    def split() -> bool:
        a, b = set(one.get("/status")["job_partitions"]), set(two.get("/status")["job_partitions"])
        return bool(a) and bool(b) and not (a & b) and len(a | b) == partitions

    wait_for(split, timeout_s=60, what=f"the {partitions} job partitions split between two workers")
    for worker in (one, two):
        assert set(hosts_by_id(worker)) == {"h1", "h2", "h3"}

    jobs = [fleet.submit("io") for _ in range(60)]
    fleet.flush()

    def all_dispatched() -> bool:
        found = set()
        for host in ("h1", "h2", "h3"):
            found.update(queued_ids(kafka_settings, topics.queue_topic(f"{host}-vm").name))
        return set(jobs) <= found

    wait_for(all_dispatched, what="60 jobs dispatched")
    assert (
        one.get("/decisions?limit=100")["decisions"]
        and two.get("/decisions?limit=100")["decisions"]
    )
