"""One chaos run, start to end: fleet up, jobs flowing, faults in, drain, read back, count.

1. A fresh topic prefix and app id (`chaos.<run>.`), its topics at the scenario's replication;
   the hosts and the scenario's workers started; wait until every worker sees every host fresh.
2. The steady load starts (`benchmarks.chaos.load`); each planned fault is injected at its
   offset from the first submission (`benchmarks.chaos.faults`). A worker that dies on its own
   is restarted and listed in the result.
3. Drain: until every job sent has ended, or no job changed state for `QUIET_S`, or
   `DRAIN_MAX_S` passed.
4. Every topic of the run is read to its end offsets and counted
   (`benchmarks.chaos.accounting`); the processes are stopped whatever happened.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos.accounting import (
    DecisionRecord,
    Fault,
    Observed,
    StatusRecord,
    account,
)
from benchmarks.chaos.faults import Injector
from benchmarks.chaos.fleet import Brokers, ChaosFleet
from benchmarks.chaos.follow import StatusFollower
from benchmarks.chaos.load import SteadyLoad
from benchmarks.chaos.scenarios import Scenario, vm_ids
from pipeline.errors import EventError, VmlbError
from pipeline.events import (
    DeadLetter,
    DispatchDecision,
    HostSample,
    IoSample,
    JobCompletion,
    JobStatus,
    JobSubmission,
    QueuedJob,
)
from pipeline.settings import KafkaSettings
from pipeline.topics.reader import read_topics

#: The drain ends once nothing was written for this long: longer than the dispatcher's lease
#: (VMLB_LEASE_S, 60 s), after which it moves the unstarted jobs of a silent VM, so when the
#: topics are this quiet nothing more will happen to the jobs left.
QUIET_S = 75.0
DRAIN_MAX_S = 300.0
READ_TIMEOUT_S = 120.0
WARM_UP_JOBS = 12
READY_S = 120.0


@dataclass(frozen=True)
class RunOptions:
    jobs: int
    rate_per_s: float
    seed: int
    results_dir: Path


def run_once(
    scenario: Scenario,
    options: RunOptions,
    brokers: Brokers,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One seeded run of `scenario`; its counts and fault times as a plain dict."""
    tag = f"{time.strftime('%m%d%H%M%S')}{uuid.uuid4().hex[:4]}"
    kafka = KafkaSettings(
        broker=brokers.bootstrap(scenario.nodes),
        topic_prefix=f"chaos.{tag}.",
        # Every process of the run creates its topics from these (VMLB_REPLICATION_FACTOR...).
        replication_factor=scenario.replication_factor,
        min_insync_replicas=scenario.min_insync_replicas,
    )
    run_dir = options.results_dir / f"{scenario.name}-{options.seed}-{tag}"
    fleet = ChaosFleet(kafka, scenario, run_dir, app_id=f"vmlb-chaos-{tag}")
    load = SteadyLoad(
        kafka, f"j{tag}", options.jobs, options.rate_per_s, scenario.payload(options.rate_per_s)
    )
    planned = scenario.plan(random.Random(options.seed), load.window_s)
    follower = StatusFollower(kafka, fleet.topics.name("job-status"))
    faults: list[Fault] = []
    started = time.monotonic()
    drained = "not reached"
    finished = False
    try:
        fleet.create_topics()
        fleet.start_hosts()
        for _ in range(scenario.workers):
            fleet.start_worker()
        fleet.wait_ready()
        follower.start()
        _warm_up(kafka, follower, fleet, f"w{tag}")
        log(f"{scenario.name} seed {options.seed}: fleet ready; {len(planned)} faults planned")
        load.start()
        injector = Injector(scenario, fleet, brokers, follower, log)
        load_started = time.monotonic()
        for fault in planned:
            while time.monotonic() < load_started + fault.offset_s:
                fleet.supervise()
                time.sleep(0.05)
            faults.append(injector.inject(fault))
            log(f"  {faults[-1].kind} {faults[-1].target} {faults[-1].note or ''}".rstrip())
        while not load.done():
            fleet.supervise()
            time.sleep(0.2)
        if load.failures:
            on_topic = {
                job.job_id for job, _ in _parse(kafka, fleet.topics.name("jobs"), JobSubmission)
            }
            missing = [job_id for job_id in load.sent if job_id not in on_topic]
            log(f"  {len(missing)} jobs not acknowledged by the broker: sending them again")
            load.resend(missing)
        drained = _drain(kafka, load, follower, fleet)
        observed = read_back(kafka, fleet)
        finished = True
    finally:
        # Each step runs even if one before it raised (a Ctrl-C or SIGTERM during a broker
        # outage interrupted the load's flush, and the fleet was left running): an ExitStack
        # runs them last-registered first, re-raising at the end.
        with contextlib.ExitStack() as cleanup:
            if brokers.external is not None:
                cleanup.callback(_quietly, fleet.delete_topics)
            cleanup.callback(fleet.stop)
            # Interrupted, the load's last flush may wait for a broker that is down: not long.
            cleanup.callback(load.stop, timeout_s=150 if finished else 5)
            cleanup.callback(follower.close)
    observed.submitted = [
        j for j in observed.submitted if (j.job_id or "").startswith(load.run_tag)
    ]
    counts = account(observed, faults)
    result = counts.as_dict()
    result.update(
        scenario=scenario.name,
        seed=options.seed,
        topic_prefix=kafka.topic_prefix,
        logs=str(run_dir),
        sent=len(load.sent),
        not_acknowledged=len(load.failures),
        resubmitted=load.resent,
        unplanned_worker_exits=fleet.unplanned_exits,
        drain=drained,
        wall_s=round(time.monotonic() - started, 1),
    )
    return result


def _warm_up(kafka: KafkaSettings, follower: StatusFollower, fleet: ChaosFleet, tag: str) -> None:
    """A few jobs through the whole path (dispatcher, queues, guests) before the measured ones,
    so a run starts with every consumer joined; their ids are not the run's, so not counted."""
    warm = SteadyLoad(kafka, tag, WARM_UP_JOBS, 10.0, {"io_ops": 1, "cpu_ms": 1})
    warm.start()
    warm.join(timeout_s=120)
    deadline = time.monotonic() + READY_S
    while follower.ended(set(warm.sent)) < len(warm.sent):
        fleet.supervise()
        if time.monotonic() > deadline:
            raise VmlbError(f"warm-up jobs did not end in {READY_S:.0f} s; logs in {fleet.run_dir}")
        time.sleep(0.5)


def _drain(
    kafka: KafkaSettings, load: SteadyLoad, follower: StatusFollower, fleet: ChaosFleet
) -> str:
    """Until every job sent has ended, or nothing was written to `job-status`, `decisions` or a
    queue for QUIET_S (counted from the drain's start: a fault just before it is no quiet
    time), or DRAIN_MAX_S. Quiet is judged by the topics' end offsets, not by the follower,
    which may lag after a broker fault."""
    from kafka import KafkaConsumer, TopicPartition

    sent = set(load.sent)
    topics = fleet.topics
    names = [topics.name("job-status"), topics.name("decisions")]
    names += [topics.queue_topic(vm_id).name for vm_id in vm_ids()]
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **kafka.to_kafka_python())
    try:
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or [])
        ]
        started = time.monotonic()
        deadline = started + DRAIN_MAX_S
        last_ends: dict[Any, int] = {}
        changed_at = started
        while time.monotonic() < deadline:
            fleet.supervise()
            if follower.ended(sent) == len(sent):
                return "every job ended"
            with contextlib.suppress(Exception):  # the broker still recovering: ask again
                ends = consumer.end_offsets(partitions)
                if ends != last_ends:
                    last_ends, changed_at = ends, time.monotonic()
            if time.monotonic() - changed_at > QUIET_S:
                return f"nothing written for {QUIET_S:.0f} s"
            time.sleep(1.0)
        return f"bounded at {DRAIN_MAX_S:.0f} s"
    finally:
        consumer.close()


def _quietly(step: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        step()


def read_back(kafka: KafkaSettings, fleet: ChaosFleet) -> Observed:
    """Every record of the run's topics, up to the end offsets seen now."""
    topics = fleet.topics

    def parse(logical: str, cls: type) -> list[tuple[Any, Any]]:
        return _parse(kafka, topics.name(logical), cls)

    statuses = [
        StatusRecord(status, record.partition, record.timestamp / 1000.0)
        for status, record in parse("job-status", JobStatus)
    ]
    statuses.sort(key=lambda r: r.partition)  # stable: each partition keeps its order
    queued = [
        job
        for vm_id in vm_ids()
        for job, _ in _parse(kafka, topics.queue_topic(vm_id).name, QueuedJob)
    ]
    return Observed(
        submitted=[job for job, _ in parse("jobs", JobSubmission)],
        statuses=statuses,
        decisions=[
            DecisionRecord(decision, record.partition)
            for decision, record in parse("decisions", DispatchDecision)
        ],
        queued=queued,
        completions=[done for done, _ in parse("completions", JobCompletion)],
        dead_letters=[letter for letter, _ in parse("dead-letters", DeadLetter)],
        samples=[  # both forms: Dom0 publishes HostSamples (or IoSamples, --per-vm-samples)
            (sample.host_id, record.timestamp / 1000.0)
            for cls in (IoSample, HostSample)
            for sample, record in parse("io-samples", cls)
        ],
    )


def _parse(kafka: KafkaSettings, topic: str, cls: type) -> list[tuple[Any, Any]]:
    """(event, record) of every record of `topic` that parses as `cls`."""
    parsed = []
    for record in read_topics(kafka, [topic], timeout_s=READ_TIMEOUT_S):
        if record.value is None:
            continue
        with contextlib.suppress(EventError):
            parsed.append((cls.from_bytes(record.value), record))
    return parsed
