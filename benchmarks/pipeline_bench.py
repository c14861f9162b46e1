"""`vmlb bench pipeline`: the real worker process against a raw Kafka pass-through, same broker.

One run, fresh topic prefix and app id, topics deleted at the end:

1. pass-through baseline: aiokafka consumes a jobs-like topic (as many partitions as `jobs`, pre-loaded with the
   same JobSubmission bytes) and produces each value to one queue-like topic -> passthrough_per_s;
   then the Faust floor, a do-nothing Faust agent over the same topic -> faust_noop_jobs_per_s
   (benchmarks.faust_floor: what Faust's per-message path alone costs here);
2. a `vmlb worker` process (python -m pipeline.cli.main worker) with 10 registered VMs: its RSS;
3. the dispatch fleet (8 hosts x 4 VMs, limits far above their I/O, fresh telemetry every second)
   plus idle VMs up to `--vms` registered VMs: RSS again -> rss_mib_per_1000_vms;
4. with `--workers W`, W - 1 more workers join the group (same app id) and the run waits until
   the job partitions are split among all W; then dispatch throughput: N jobs produced as fast
   as possible; time from the first submission's Kafka timestamp to the last queue message's
   -> dispatch_per_s; every job must be queued;
5. submit-to-queue latency at fixed offered rates: queue message timestamp minus submission
   timestamp (both Kafka CreateTime, ms) -> p50/p99 per rate; this driver's own cyclic
   collector is paused while it submits (`collector_paused`);
6. telemetry: M VM samples for V registered VMs (`telemetry_vms_per_host` per Dom0), loaded
   under a prefix of their own in each form asked for (an IoSample per VM, or HostSamples),
   then a fresh worker catches up on each; the slope of its count of VM samples read ->
   telemetry_samples_per_s per form, and their ratio (telemetry_host_vs_io_sample).

Ratios are the numbers to compare across machines; absolute rates depend on the (shared) CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.events import (
    HostRegistration,
    IoCounters,
    IoSample,
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
    VmRegistration,
)
from pipeline.ops.worker_process import WorkerProcess
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, TopicSpec, apply_topics, ensure_topic, load_topics, topics_of
from pipeline.topics.reader import read_topics

BENCH_PREFIX = "bench."
JOB_TYPE = "bench"
IDLE_TYPE = "idle"
HOSTS = 8
VMS_PER_HOST = 4
SMALL_FLEET_VMS = 10

Log = Callable[[str], None]


@dataclass
class BenchOptions:
    jobs: int = 20_000
    rates: list[float] = field(default_factory=lambda: [200.0, 1000.0])
    rate_seconds: float = 10.0
    vms: int = 1000
    telemetry_samples: int = 100_000
    telemetry_vms: int = 1000
    #: VMs per Dom0 in the telemetry phase (HostSample carries a host's VMs of one partition).
    telemetry_vms_per_host: int = 50
    #: Which telemetry forms to measure, in order (see TELEMETRY_FORMS).
    telemetry_forms: tuple[str, ...] = ("io-sample", "host-sample")
    #: Only the telemetry phase (no pass-through, dispatch, latency or RSS phases).
    telemetry_only: bool = False
    work_dir: Path | None = None
    complete: bool = False
    #: Workers sharing the job partitions during the dispatch and latency phases.
    workers: int = 1


# --- small Kafka helpers -------------------------------------------------------------------------


def _producer(kafka: KafkaSettings, **options: Any) -> KafkaProducer:
    return KafkaProducer(acks="all", **{"linger_ms": 5, **options}, **kafka.to_kafka_python())


def _end_offsets(kafka: KafkaSettings, topics: list[str]) -> int:
    consumer = KafkaConsumer(group_id=None, **kafka.to_kafka_python())
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or [])
        ]
        return sum(consumer.end_offsets(parts).values()) if parts else 0
    finally:
        consumer.close()


def _read_topics(kafka: KafkaSettings, topics: list[str], timeout_s: float = 60.0) -> list[Any]:
    """Every record now in `topics`, from the beginning to the end offsets seen at start."""
    return read_topics(kafka, topics, timeout_s=timeout_s)


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError:
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- the worker process --------------------------------------------------------------------------


class Fleet:
    """Registers hosts and VMs and keeps the dispatch fleet's telemetry fresh (a thread)."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.kafka = kafka
        self.topics = topics
        self.producer = _producer(kafka)
        self.vm_hosts: dict[str, str] = {}
        self.queue_topics: list[str] = []
        self._counters: dict[str, int] = {}
        self._live: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report_loop, daemon=True)

    def host(self, host_id: str, io_limit: float) -> None:
        reg = HostRegistration(
            host_id=host_id, io_limit_ops_per_s=io_limit, registered_at=time.time()
        )
        self.producer.send(self.topics.name("hosts"), key=reg.key(), value=reg.to_bytes())

    def vm(self, vm_id: str, host_id: str, job_type: str, create_queue: bool) -> None:
        spec = self.topics.queue_topic(vm_id)
        if create_queue:
            ensure_topic(self.kafka, spec)
            self.queue_topics.append(spec.name)
        reg = VmRegistration(
            vm_id=vm_id,
            host_id=host_id,
            job_type=job_type,
            queue_topic=spec.name,
            registered_at=time.time(),
        )
        self.producer.send(self.topics.name("vms"), key=reg.key(), value=reg.to_bytes())
        self.vm_hosts[vm_id] = host_id

    def sample(self, vm_id: str, at: float, io_ops: int) -> None:
        self._counters[vm_id] = self._counters.get(vm_id, 0) + io_ops
        sample = IoSample(
            host_id=self.vm_hosts[vm_id],
            vm_id=vm_id,
            sampled_at=at,
            interval_s=1.0,
            io_ops=io_ops,
            counters=IoCounters(block_rd_reqs=self._counters[vm_id]),
        )
        self.producer.send(
            self.topics.name("io-samples"), key=sample.key(), value=sample.to_bytes()
        )

    def keep_fresh(self, vm_ids: list[str]) -> None:
        self._live = list(vm_ids)
        now = time.time()
        for vm_id in self._live:
            self.sample(vm_id, now, 10)
        self.producer.flush(timeout=30)
        if not self._thread.is_alive():
            self._thread.start()

    def _report_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            for vm_id in self._live:
                self.sample(vm_id, now, 10)
            self.producer.flush(timeout=30)

    def flush(self) -> None:
        self.producer.flush(timeout=60)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.producer.close()


class Completer:
    """Plays the guests: ends every queued job at once (a thread), as a live fleet would, with
    the status record a guest writes (`succeeded`, to the job's partition of `job-status`); the
    dispatcher checks it and forwards the run to `completions`.

    Off by default: once runs give a VM a service rate, io-aware's backlog cap applies and jobs
    wait (the retry path), which is not the "nothing waits" throughput measure.
    """

    def __init__(self, kafka: KafkaSettings, topics: Topics, queue_topics: list[str]) -> None:
        self.kafka = kafka
        self.status_topic = topics.name("job-status")
        self.queue_topics = list(queue_topics)
        self.completed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.kafka.to_kafka_python()
        )
        producer = _producer(self.kafka)
        try:
            parts = [
                TopicPartition(t, p)
                for t in self.queue_topics
                for p in (consumer.partitions_for_topic(t) or [])
            ]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=100).values():
                    for record in batch:
                        job = QueuedJob.from_bytes(record.value)
                        now = time.time()
                        done = JobStatus(
                            job_id=job.job_id,
                            state=JobState.SUCCEEDED,
                            at=now,
                            writer=StatusWriter.GUEST,
                            job=job.submission(),
                            attempt=job.attempt,
                            vm_id=job.vm_id,
                            host_id=job.host_id,
                            dispatched_at=job.dispatched_at,
                            started_at=now,
                            finished_at=now,
                        )
                        producer.send(
                            self.status_topic,
                            key=done.key(),
                            value=done.to_bytes(),
                            partition=job.status_partition,
                        )
                        self.completed += 1
        except Exception as exc:  # reported in the result
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            producer.flush(timeout=30)
            producer.close()
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


@dataclass
class WorkerGroup:
    """The benchmark's workers (one app id): liveness and status over all of them."""

    workers: list[WorkerProcess] = field(default_factory=list)
    #: The jobs topic's partition count.
    partitions: int = 6

    def check_alive(self) -> None:
        for worker in self.workers:
            worker.check_alive()

    def status(self) -> dict[str, Any]:
        statuses = [worker.status() for worker in self.workers]
        return {
            "waiting": sum(s["waiting"] for s in statuses),
            "dead_letters": sum(s["dead_letters"] for s in statuses),
            "job_partitions": [s["job_partitions"] for s in statuses],
        }

    def split(self) -> bool:
        """Every worker owns job partitions, and together all of them, once each."""
        owned = self.status()["job_partitions"]
        together = sorted(p for partitions in owned for p in partitions)
        return all(owned) and together == list(range(self.partitions))


def _job_bytes(job_id: str, submitted_at: float) -> bytes:
    return JobSubmission(
        job_id=job_id, job_type=JOB_TYPE, payload={"n": 1}, submitted_at=submitted_at
    ).to_bytes()


# --- phases --------------------------------------------------------------------------------------


def _preload(kafka: KafkaSettings, topic: str, count: int, tag: str) -> tuple[list[str], float]:
    """Produce `count` jobs as fast as possible; return their ids and the produce rate."""
    producer = _producer(kafka, linger_ms=20, batch_size=262144)
    ids = [f"{tag}-{i}" for i in range(count)]
    now = time.time()
    # Serialised before timing, and the producer connected, so that the preload outruns the
    # consumer under test (the report says if it did not: `produce_per_s`).
    messages = [(job_id.encode(), _job_bytes(job_id, now)) for job_id in ids]
    producer.partitions_for(topic)
    started = time.perf_counter()
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return ids, count / max(1e-9, time.perf_counter() - started)


async def _passthrough_async(kafka: KafkaSettings, source: str, sink: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        group_id=f"bench-passthrough-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka.to_aiokafka(),
    )
    producer = AIOKafkaProducer(acks="all", **kafka.to_aiokafka())
    await producer.start()
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    await producer.send(sink, key=record.key, value=record.value)
                    seen += 1
            if batches:
                await consumer.commit()
        await producer.flush()
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def passthrough(kafka: KafkaSettings, topics: Topics, count: int) -> dict[str, float]:
    jobs_spec = topics.specs["jobs"]
    source = TopicSpec(
        name=kafka.topic_prefix + "pt-jobs", partitions=jobs_spec.partitions, replication_factor=1
    )
    sink = topics.queue_topic("pt-sink").model_copy(
        update={"name": kafka.topic_prefix + "pt-queue"}
    )
    ensure_topic(kafka, source)
    ensure_topic(kafka, sink)
    _, produce_rate = _preload(kafka, source.name, count, "pt")
    rate = asyncio.run(_passthrough_async(kafka, source.name, sink.name, count))
    produced = _end_offsets(kafka, [sink.name])
    if produced != count:
        raise RuntimeError(f"pass-through produced {produced} of {count} messages")
    return {"passthrough_per_s": rate, "preload_per_s": produce_rate}


def dispatch_throughput(
    kafka: KafkaSettings, fleet: Fleet, worker: WorkerGroup, count: int, tag: str
) -> dict[str, Any]:
    before = _end_offsets(kafka, fleet.queue_topics)
    ids, produce_rate = _preload(kafka, topics_of(kafka).name("jobs"), count, tag)

    _wait(_all_queued(kafka, fleet, worker, ids, before), 60 + count / 100, f"{count} jobs queued")
    return _queued_report(kafka, fleet, ids, produce_rate)


def _all_queued(
    kafka: KafkaSettings, fleet: Fleet, worker: WorkerGroup, ids: list[str], before: int
) -> Callable[[], bool]:
    """Whether every job of `ids` is on a queue topic: the topics' growth first (cheap), then
    the ids themselves, at most every 2 s (a job sent again, after a rebalance, grows them too)."""
    wanted = set(ids)
    checked_at = -math.inf

    def done() -> bool:
        nonlocal checked_at
        worker.check_alive()
        if _end_offsets(kafka, fleet.queue_topics) - before < len(ids):
            return False
        if time.monotonic() - checked_at < 2.0:
            return False
        checked_at = time.monotonic()
        found = {r.key.decode() for r in _read_topics(kafka, fleet.queue_topics) if r.key}
        return wanted <= found

    return done


def _queued_report(
    kafka: KafkaSettings, fleet: Fleet, ids: list[str], produce_rate: float
) -> dict[str, Any]:
    wanted = set(ids)
    jobs = {
        r.key.decode(): r.timestamp
        for r in _read_topics(kafka, [topics_of(kafka).name("jobs")])
        if r.key is not None and r.key.decode() in wanted
    }
    queued: dict[str, int] = {}
    for record in _read_topics(kafka, fleet.queue_topics):
        job_id = record.key.decode() if record.key else ""
        if job_id in wanted and job_id not in queued:
            queued[job_id] = record.timestamp
    missing = wanted - set(queued)
    if not queued or not jobs:
        raise RuntimeError(
            f"none of the {len(ids)} jobs found on the queue topics ({len(jobs)} on jobs): "
            "the queue topics grew by jobs not sent in this pass"
        )
    first_submit = min(jobs.values())
    last_queued = max(queued.values())
    latencies = [queued[j] - jobs[j] for j in queued if j in jobs]
    return {
        "jobs": len(ids),
        "queued": len(queued),
        "lost": len(missing),
        "produce_per_s": produce_rate,
        "dispatch_per_s": len(queued) / max(0.001, (last_queued - first_submit) / 1000.0),
        "first_to_last_queued_per_s": len(queued)
        / max(0.001, (last_queued - min(queued.values())) / 1000.0),
        "latencies_ms": latencies,
    }


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's cyclic collector off for the block. A full pass of the driver's heap
    (28 per run, 30-220 ms each, measured: docs/evaluation.md, "Objects per unfinished job")
    holds kafka-python's sender thread, so a submission stamped just before one reaches the
    broker after it, and the driver's pause would be counted as the worker's latency.
    Reference counting still frees what the block makes; cycles wait for the next pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def latency_at_rate(
    kafka: KafkaSettings, fleet: Fleet, worker: WorkerGroup, rate: float, seconds: float, tag: str
) -> dict[str, Any]:
    count = max(1, int(rate * seconds))
    producer = _producer(kafka, linger_ms=0)
    topic = topics_of(kafka).name("jobs")
    ids = [f"{tag}-{i}" for i in range(count)]
    before = _end_offsets(kafka, fleet.queue_topics)
    started = time.perf_counter()
    try:
        with collector_paused():
            for i, job_id in enumerate(ids):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                producer.send(topic, key=job_id.encode(), value=_job_bytes(job_id, time.time()))
            producer.flush(timeout=60)
    finally:
        producer.close()
    offered = count / (time.perf_counter() - started)

    # A worker that does not keep up is reported as it is: how many were queued in time.
    with contextlib.suppress(RuntimeError):
        _wait(
            _all_queued(kafka, fleet, worker, ids, before),
            60 + count / 100,
            f"{count} jobs queued at {rate:g}/s",
        )
    report = _queued_report(kafka, fleet, ids, offered)
    latencies = report.pop("latencies_ms")
    return {
        "rate_per_s": rate,
        "offered_per_s": offered,
        "jobs": count,
        "queued": report["queued"],
        "lost": report["lost"],
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


#: The telemetry forms the benchmark can load: one IoSample per VM per interval (the first
#: format), or one HostSample per host per io-samples partition per interval (what Dom0 sends).
TELEMETRY_FORMS = ("io-sample", "host-sample")


def _telemetry_records(
    form: str, per_vm: int, vms: int, vms_per_host: int, partitions: int, base: float
) -> list[tuple[bytes | None, bytes, int | None]]:
    """(key, value, partition) of every record of the backlog, tick by tick, host by host."""
    from producers.telemetry.host_samples import host_samples

    records: list[tuple[bytes | None, bytes, int | None]] = []
    for j in range(per_vm):
        tick: dict[str, list[IoSample]] = {}
        for i in range(vms):
            sample = IoSample(
                host_id=f"thost{i // vms_per_host}",
                vm_id=f"tvm-{i}",
                sampled_at=base + j,
                interval_s=1.0,
                io_ops=50,
                counters=IoCounters(block_rd_reqs=50 * (j + 1)),
            )
            tick.setdefault(sample.host_id, []).append(sample)
        for samples in tick.values():
            if form == "io-sample":
                records += [(s.key(), s.to_bytes(), None) for s in samples]
            else:
                records += [
                    (record.key(), record.to_bytes(), partition)
                    for partition, record in host_samples(samples, partitions)
                ]
    return records


def telemetry(
    kafka: KafkaSettings,
    app_id: str,
    work: Path,
    samples: int,
    vms: int,
    log: Log,
    form: str = "io-sample",
    vms_per_host: int = VMS_PER_HOST,
) -> dict[str, Any]:
    """A fresh worker catching up on a backlog of I/O samples: its vm_stats rate.

    The hosts and VMs are registered and the samples loaded first, under a topic prefix of
    their own (one per form), so the producer (this process) cannot be what limits the rate,
    and every sample is counted (not refused for an unknown VM); then a worker starts on those
    topics and its count of VM samples read (/status `stats_vm_samples`) is polled. `form`
    says how the samples travel: an IoSample each, or HostSamples (a host's VMs of one
    partition per record). The rate is the samples read over the time the worker spent reading
    them, by its own clock (/status `stats_vm_samples_s`: from the start of its first batch to
    the end of its latest), so a backlog read between two polls still has a rate; the worker's
    consumer group must then have committed every record's offset (nothing handled was left
    uncommitted).
    """
    from kafka.admin import KafkaAdminClient

    if form not in TELEMETRY_FORMS:
        raise ValueError(f"telemetry form {form!r} is not one of {', '.join(TELEMETRY_FORMS)}")
    tag = "tel." if form == "io-sample" else "telh."
    tel_kafka = kafka.model_copy(update={"topic_prefix": f"{kafka.topic_prefix}{tag}"})
    tel_app_id = f"{app_id}-{tag[:-1]}"
    tel_topics = load_topics(prefix=tel_kafka.topic_prefix)
    apply_topics(tel_kafka, tel_topics.all_specs())
    topic = tel_topics.name("io-samples")
    per_vm = max(1, samples // vms)
    total = per_vm * vms
    base = time.time() - per_vm - 5
    producer = _producer(tel_kafka, linger_ms=20, batch_size=262144)
    now = time.time()
    for i in range(vms):
        host_id = f"thost{i // vms_per_host}"
        if i % vms_per_host == 0:
            host = HostRegistration(host_id=host_id, io_limit_ops_per_s=1e9, registered_at=now)
            producer.send(tel_topics.name("hosts"), key=host.key(), value=host.to_bytes())
        vm = VmRegistration(
            vm_id=f"tvm-{i}",
            host_id=host_id,
            job_type=IDLE_TYPE,
            queue_topic=tel_topics.queue_topic(f"tvm-{i}").name,
            registered_at=now,
        )
        producer.send(tel_topics.name("vms"), key=vm.key(), value=vm.to_bytes())
    records = _telemetry_records(
        form, per_vm, vms, vms_per_host, tel_topics.partitions("io-samples"), base
    )
    started = time.monotonic()
    for key, value, partition in records:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush(timeout=120)
    producer.close()
    produce_s = time.monotonic() - started
    log(f"  {total} VM samples loaded as {len(records)} {form} records; a fresh worker catches up")
    worker = WorkerProcess(
        tel_kafka, tel_app_id, work / f"telemetry-worker-{form}", loglevel="warning"
    )
    points: list[tuple[float, int]] = []
    dead = 0
    reading_s = 0.0
    try:
        deadline = time.monotonic() + 120 + total / 200
        while time.monotonic() < deadline:
            worker.check_alive()
            try:
                status = worker.status()
                handled = status.get("stats_vm_samples", 0)
                dead = status.get("dead_letters", 0)
                reading_s = status.get("stats_vm_samples_s", 0.0)
            except OSError:
                handled = dead = 0  # not serving yet
            points.append((time.monotonic(), handled))
            if handled >= total:
                break
            time.sleep(0.1)
        else:
            # Not caught up in time: report the rate it sustained and what it reached.
            log(f"  the worker read {points[-1][1]} of {total} VM samples in time; reporting that")
        if points[-1][1] >= total:
            admin = KafkaAdminClient(client_id="vmlb-bench", **tel_kafka.to_kafka_python())
            try:

                def committed() -> int:
                    offsets = admin.list_group_offsets({tel_app_id: None}).get(tel_app_id, {})
                    return sum(m.offset for tp, m in offsets.items() if tp.topic == topic)

                _wait(
                    lambda: committed() >= len(records),
                    60,
                    f"{len(records)} io-samples committed",
                )
            finally:
                admin.close()
    finally:
        worker.stop()
    floor = faust_floor(tel_kafka, topic, len(records), work)
    read = points[-1][1]
    rate = read / reading_s if reading_s > 0 else 0.0
    return {
        "form": form,
        "telemetry_samples_per_s": rate,
        "telemetry_samples": total,
        "telemetry_samples_read": read,
        "telemetry_records": len(records),
        "telemetry_vms": vms,
        "telemetry_vms_per_host": vms_per_host,
        "telemetry_dead_letters": dead,
        "telemetry_catch_up_s": reading_s,
        "telemetry_produce_per_s": total / max(1e-3, produce_s),
        "faust_noop_per_s": floor,
        "faust_noop_vm_samples_per_s": floor * total / len(records),
        "telemetry_vs_faust_noop": rate / (floor * total / len(records)),
    }


def telemetry_forms(
    kafka: KafkaSettings, app_id: str, work: Path, options: BenchOptions, log: Log
) -> dict[str, Any]:
    """Each form of `options.telemetry_forms` over the same backlog of VM samples, in turn;
    the headline keys are the last form's (HostSample's when both), plus the ratio of the two."""
    reports = {}
    for form in options.telemetry_forms:
        log(
            f"telemetry as {form} ({options.telemetry_samples} samples for "
            f"{options.telemetry_vms} VMs, {options.telemetry_vms_per_host} per host)"
        )
        reports[form] = telemetry(
            kafka,
            app_id,
            work,
            options.telemetry_samples,
            options.telemetry_vms,
            log,
            form=form,
            vms_per_host=options.telemetry_vms_per_host,
        )
    result: dict[str, Any] = {"telemetry": reports}
    result.update({k: v for k, v in reports[options.telemetry_forms[-1]].items() if k != "form"})
    if set(reports) == set(TELEMETRY_FORMS):
        result["telemetry_host_vs_io_sample"] = (
            reports["host-sample"]["telemetry_samples_per_s"]
            / reports["io-sample"]["telemetry_samples_per_s"]
        )
    return result


def faust_floor(kafka: KafkaSettings, topic: str, count: int, work: Path) -> float:
    """A do-nothing Faust agent's rate over the same backlog (benchmarks.faust_floor)."""
    out = work / "faust-floor.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.faust_floor",
        "--broker",
        kafka.broker,
        "--topic",
        topic,
        "--count",
        str(count),
        "--out",
        str(out),
    ]
    with open(work / "faust-floor.log", "wb") as log_file:
        subprocess.run(
            command, stdout=log_file, stderr=subprocess.STDOUT, timeout=120 + count / 500
        )
    if not out.exists():
        raise RuntimeError(f"the Faust floor run wrote no result; see {work / 'faust-floor.log'}")
    return float(json.loads(out.read_text())["faust_noop_per_s"])


# --- the whole run -------------------------------------------------------------------------------


def run_bench(
    base: KafkaSettings, options: BenchOptions, log: Log = lambda _: None
) -> dict[str, Any]:
    run_id = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    kafka = base.model_copy(update={"topic_prefix": f"{BENCH_PREFIX}{run_id}."})
    app_id = f"vmlb-bench-{run_id}"
    topics = load_topics(prefix=kafka.topic_prefix)
    work = Path(options.work_dir or tempfile.mkdtemp(prefix="vmlb-bench-"))
    result: dict[str, Any] = {"topic_prefix": kafka.topic_prefix, "app_id": app_id}
    fleet: Fleet | None = None
    worker: WorkerProcess | None = None
    group = WorkerGroup(partitions=topics.specs["jobs"].partitions)
    completer: Completer | None = None
    try:
        if options.telemetry_only:
            result.update(telemetry_forms(kafka, app_id, work, options, log))
            result["goals"] = {"telemetry_samples_per_s_min": 50000.0}
            return result
        apply_topics(kafka, topics.all_specs())
        log(f"topics under {kafka.topic_prefix}; pass-through baseline ({options.jobs} messages)")
        result.update(passthrough(kafka, topics, options.jobs))
        log("Faust floor: a do-nothing Faust agent over the same jobs")
        result["faust_noop_jobs_per_s"] = faust_floor(
            kafka, kafka.topic_prefix + "pt-jobs", options.jobs, work
        )

        fleet = Fleet(kafka, topics)
        hosts = [f"h{i}" for i in range(HOSTS)]
        fleet_vms = [(f"h{i}-vm{j}", f"h{i}") for i in range(HOSTS) for j in range(VMS_PER_HOST)]
        for host_id in hosts:
            fleet.host(host_id, io_limit=1e9)
        for vm_id, host_id in fleet_vms[:SMALL_FLEET_VMS]:
            fleet.vm(vm_id, host_id, JOB_TYPE, create_queue=True)
        fleet.keep_fresh([vm for vm, _ in fleet_vms[:SMALL_FLEET_VMS]])
        log("starting the worker")
        worker_env = {
            "VMLB_POLICY": "io-aware",
            # Nothing completes in the benchmark, so each VM's backlog cap is the warm-up
            # cap: set far above the jobs sent, so that no job waits (this measures speed).
            "VMLB_WARMUP_OUTSTANDING_PER_VM": "1000000000",
            # No guest takes a job (without --complete): the dispatcher would move every VM's
            # unstarted jobs after the lease, queueing them again, which is not a dispatch.
            "VMLB_LEASE_S": "1000000000",
        }
        worker = WorkerProcess(kafka, app_id, work / "worker", env=worker_env, loglevel="warning")
        group.workers.append(worker)
        _wait(
            lambda: worker.status()["fleet_ready"] and worker.status()["vms"] >= SMALL_FLEET_VMS,
            120,
            "worker ready",
        )
        time.sleep(3)
        rss_small = worker.rss_mib()

        log(f"registering {options.vms} VMs")
        for vm_id, host_id in fleet_vms[SMALL_FLEET_VMS:]:
            fleet.vm(vm_id, host_id, JOB_TYPE, create_queue=True)
        fleet.keep_fresh([vm for vm, _ in fleet_vms])
        extra = max(0, options.vms - len(fleet_vms))
        for i in range(extra):
            host_id = f"idle-h{i // VMS_PER_HOST}"
            if i % VMS_PER_HOST == 0:
                fleet.host(host_id, io_limit=1e9)
            vm_id = f"idle-vm{i}"
            fleet.vm(vm_id, host_id, IDLE_TYPE, create_queue=False)
            fleet.sample(vm_id, time.time(), 10)
        fleet.flush()
        registered = len(fleet_vms) + extra
        _wait(
            lambda: worker.status()["vms"] >= registered, 120, f"{registered} VMs in the fleet view"
        )
        time.sleep(3)
        rss_large = worker.rss_mib()
        result["rss_mib_10_vms"] = rss_small
        result["rss_mib_many_vms"] = rss_large
        result["registered_vms"] = registered
        result["rss_mib_per_1000_vms"] = (
            (rss_large - rss_small) / (registered - SMALL_FLEET_VMS) * 1000
        )

        if options.workers > 1:
            log(f"{options.workers - 1} more workers join; waiting for the partitions to split")
            for i in range(2, options.workers + 1):
                group.workers.append(
                    WorkerProcess(
                        kafka, app_id, work / f"worker{i}", env=worker_env, loglevel="warning"
                    )
                )
            _wait(group.split, 180, f"the job partitions split among {options.workers} workers")
        result["workers"] = options.workers

        if options.complete:
            completer = Completer(kafka, topics, fleet.queue_topics)
            completer.start()
        result["guests_complete_jobs"] = options.complete
        log(f"dispatch throughput ({options.jobs} jobs)")
        # A short warm-up, so the worker's queue producers exist before timing.
        dispatch_throughput(kafka, fleet, group, min(200, options.jobs), f"warm{run_id}")
        report = dispatch_throughput(kafka, fleet, group, options.jobs, f"tp{run_id}")
        report.pop("latencies_ms")
        result["dispatch"] = report
        result["dispatch_per_s"] = report["dispatch_per_s"]
        result["dispatch_vs_passthrough"] = report["dispatch_per_s"] / result["passthrough_per_s"]
        result["dispatch_vs_faust_noop"] = (
            report["dispatch_per_s"] / result["faust_noop_jobs_per_s"]
        )

        result["latency"] = []
        for rate in options.rates:
            log(f"submit-to-queue latency at {rate:g} jobs/s for {options.rate_seconds:g} s")
            result["latency"].append(
                latency_at_rate(
                    kafka, fleet, group, rate, options.rate_seconds, f"r{int(rate)}{run_id}"
                )
            )
        top = max(result["latency"], key=lambda r: r["rate_per_s"])
        result["p99_submit_to_queue_ms"] = top["p99_ms"]
        result["p99_rate_per_s"] = top["rate_per_s"]

        result.update(telemetry_forms(kafka, app_id, work, options, log))
        if completer is not None:
            completer.stop()
            result["jobs_completed_by_guests"] = completer.completed
            if completer.error:
                result["completer_error"] = completer.error
        status = group.status()
        result["worker_waiting"] = status["waiting"]
        result["worker_dead_letters"] = status["dead_letters"]
        result["jobs_lost"] = result["dispatch"]["lost"] + sum(r["lost"] for r in result["latency"])
        result["goals"] = {
            "dispatch_vs_passthrough_min": 0.5,
            "p99_submit_to_queue_ms_max_at_1000_per_s": 50.0,
            "telemetry_samples_per_s_min": 50000.0,
        }
        return result
    except Exception:
        for member in group.workers:
            if member.process.poll() is not None:
                log(member.tail())
        raise
    finally:
        if completer is not None:
            completer.stop()
        for member in group.workers:
            member.stop()
        if fleet is not None:
            fleet.close()
        delete_run_topics(kafka, app_id)


def delete_run_topics(kafka: KafkaSettings, app_id: str) -> int:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(client_id="vmlb-bench", **kafka.to_kafka_python())
    try:
        doomed = [
            t
            for t in admin.list_topics()
            if t.startswith(kafka.topic_prefix) or t.startswith(app_id)
        ]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30000)
        return len(doomed)
    finally:
        admin.close()
