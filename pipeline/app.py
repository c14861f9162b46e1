"""The Faust app: agents, tables, timers and web views, wired from settings.

`create_app()` builds an isolated app (tests make several, with their own topic prefix and app
id); `pipeline.app:app` is the default one, built lazily from the environment, so both
`vmlb worker` and `faust -A pipeline.app worker` run it.

Agents (see docs/architecture.md for the data flow):
- `vm_stats`: io-samples + completions + decisions -> table `vm_stats` -> topic vm-state;
- `dispatch`: jobs -> a VM's queue topic + decisions (or table `waiting_jobs`, or dead letters);
- `retry`: dispatch-ticks -> re-tries `waiting_jobs` of the tick's partition.

Every topic is read as raw bytes and validated here, so a bad message becomes a dead letter with
the reason instead of crashing the agent (Faust's own deserialisation would crash it).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP, EventT

from pipeline import metrics as metrics_module
from pipeline.dispatcher import (
    DedupeHorizon,
    Dispatcher,
    DispatchResult,
    SnapshotSource,
    WaitingIndex,
    normalize,
)
from pipeline.errors import EventError
from pipeline.events import (
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    IoSample,
    JobCompletion,
    JobSubmission,
    QueuedJob,
    payload_text,
)
from pipeline.faust_compat import writing_for
from pipeline.fleet import FleetView
from pipeline.fleet_consumer import FleetConsumer
from pipeline.json_table import JsonTable
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import PolicyConfig
from pipeline.settings import (
    KafkaSettings,
    PipelineSettings,
    load_kafka_settings,
    load_pipeline_settings,
)
from pipeline.topics import load_topics
from pipeline.vm_stats import VmStats, WindowConfig

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass
class Pipeline:
    """One worker's app and the state its agents share (exposed for web views and tests)."""

    app: faust.App
    kafka: KafkaSettings
    settings: PipelineSettings
    view: FleetView
    fleet: FleetConsumer
    dispatcher: Dispatcher
    waiting_index: WaitingIndex
    metrics: metrics_module.PipelineMetrics
    clock: Clock
    #: The newest decisions, as made (turned into JSON only when /decisions asks).
    recent_decisions: deque[DispatchDecision] = field(default_factory=deque)
    tables: dict[str, JsonTable] = field(default_factory=dict)
    #: Decisions by outcome and dead letters, since this worker started (for /status).
    counts: Counter[str] = field(default_factory=Counter)
    #: Events the vm_stats agent handled, by input topic (logical name), for /status.
    stats_events: Counter[str] = field(default_factory=Counter)


def create_app(
    kafka: KafkaSettings | None = None,
    settings: PipelineSettings | None = None,
    clock: Clock = time.time,
    rng: random.Random | None = None,
) -> Pipeline:
    kafka = kafka or load_kafka_settings()
    settings = settings or load_pipeline_settings()
    topics = load_topics(prefix=kafka.topic_prefix)
    partitions = topics.specs["jobs"].partitions

    policy_config = PolicyConfig(
        stale_after_s=settings.stale_after_s,
        lag_limit_s=settings.lag_limit_s,
        horizon_s=settings.horizon_s,
        warmup_outstanding_per_vm=settings.warmup_outstanding_per_vm,
    )
    policy = build_policy(settings.policy, policy_config)  # unknown name fails here, at start
    windows = WindowConfig(
        rate_window_s=settings.rate_window_s,
        io_per_job_window_s=settings.io_per_job_window_s,
        bucket_s=settings.bucket_s,
        io_per_job_min_jobs=settings.io_per_job_min_jobs,
        inflight_timeout_s=settings.inflight_timeout_s,
    )

    app = faust.App(
        settings.app_id,
        broker=kafka.to_faust_url(),
        broker_credentials=kafka.to_faust_credentials(),
        store=settings.store,
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        topic_partitions=partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # Tables are plain JSON rows; no pickle anywhere.
        key_serializer="json",
        value_serializer="json",
    )

    def raw_topic(*names: str, **options: Any) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", **options)

    io_samples = kafka.topic("io-samples")
    completions = kafka.topic("completions")
    decisions_name = kafka.topic("decisions")
    stats_source = raw_topic(io_samples, completions, decisions_name)
    stats_inputs = {
        io_samples: "io-samples",
        completions: "completions",
        decisions_name: "decisions",
    }
    jobs_topic = raw_topic(kafka.topic("jobs"))
    ticks_topic = raw_topic(kafka.topic("dispatch-ticks"), partitions=partitions)
    decisions_topic = raw_topic(decisions_name)
    vm_state_topic = raw_topic(kafka.topic("vm-state"))
    dead_letter_topic = raw_topic(kafka.topic("dead-letters"))
    queue_topics: dict[str, faust.TopicT] = {}

    # Table names are pipeline.topics.TABLES (`vmlb worker` creates their changelogs up front).
    vm_stats_table = JsonTable.declare(
        app, "vm_stats", partitions, help="per-VM windows, io_per_job, in-flight jobs"
    )
    waiting_table = JsonTable.declare(
        app, "waiting_jobs", partitions, help="jobs with no eligible host yet"
    )
    dispatched_table = JsonTable.declare(
        app, "dispatched", partitions, help="job id -> VM, for redelivery"
    )

    registry = metrics_module.PipelineMetrics()
    view = FleetView()

    async def dead_letter(
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        stage: str,
        job_id: str | None = None,
    ) -> None:
        log.warning("dead letter from %s[%s]@%s: %s", topic, partition, offset, reason)
        registry.dead_letters.labels(stage=stage).inc()
        pipeline.counts["dead_letters"] += 1
        letter = DeadLetter(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_key=payload_text(key),
            payload=payload_text(value),
            reason=reason,
            stage=stage,
            dead_lettered_at=clock(),
            job_id=job_id,
        )
        await dead_letter_topic.send(key=letter.key(), value=letter.to_bytes())

    async def dead_letter_message(message: Any, reason: str, stage: str) -> None:
        """Dead-letter a consumed message as it came (topic, partition, offset, key, value)."""
        await dead_letter(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            reason,
            stage,
        )

    async def fleet_dead_letter(
        topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
    ) -> None:
        await dead_letter(topic, partition, offset, key, value, reason, stage="fleet-view")

    fleet = FleetConsumer(kafka, view, fleet_dead_letter, loop=app.loop)
    app.service(fleet)  # type: ignore[arg-type]

    snapshots = SnapshotSource(view, policy_config)
    dispatcher = Dispatcher(policy, view, snapshots, rng or random.Random())
    pipeline = Pipeline(
        app=app,
        kafka=kafka,
        settings=settings,
        view=view,
        fleet=fleet,
        dispatcher=dispatcher,
        waiting_index=WaitingIndex(),
        metrics=registry,
        clock=clock,
        recent_decisions=deque(maxlen=settings.recent_decisions),
        tables={
            "vm_stats": vm_stats_table,
            "waiting_jobs": waiting_table,
            "dispatched": dispatched_table,
        },
    )

    # --- vm_stats: the paper's steps 2 and 3 ---------------------------------------------------

    last_published: dict[str, float] = {}
    unpublished: set[str] = set()
    # Decoded rows of the VMs of this worker's partitions: this agent is their only writer, so
    # the copy stays true until a rebalance (then it is dropped, see on_revoked) and the table
    # is read and decoded once per VM, not once per batch.
    rows: dict[str, VmStats] = {}

    def load_row(vm_id: str) -> VmStats:
        row = rows.get(vm_id)
        if row is None:
            row = rows[vm_id] = VmStats.from_dict(vm_stats_table.get(vm_id), vm_id, windows)
        return row

    async def publish_state(vm_id: str, now: float, row: VmStats | None = None) -> None:
        row = row or rows.get(vm_id)
        if row is None:  # not (or no longer) this worker's VM: its owner publishes it
            unpublished.discard(vm_id)
            return
        state = row.state(now)
        await vm_state_topic.send(key=state.key(), value=state.to_bytes())
        last_published[vm_id] = now
        unpublished.discard(vm_id)

    def parse_stats_event(message: Any) -> tuple[str, Any] | None:
        topic = message.topic
        if topic == io_samples:
            sample = IoSample.from_bytes(message.value)
            return sample.vm_id, sample
        if topic == completions:
            done = JobCompletion.from_bytes(message.value)
            return done.vm_id, done
        decision = DispatchDecision.from_bytes(message.value)
        if decision.outcome is not DecisionOutcome.DISPATCHED or decision.vm_id is None:
            return None  # waiting/expired/rejected decisions place nothing on a VM
        return decision.vm_id, decision

    def apply_stats_event(row: VmStats, item: IoSample | JobCompletion | DispatchDecision) -> bool:
        if isinstance(item, IoSample):
            return row.add_sample(item)
        if isinstance(item, JobCompletion):
            return row.add_completion(item)
        return row.add_dispatch(item.job_id, item.decided_at)

    @app.agent(stats_source, name="vm_stats")
    async def vm_stats_agent(stream: faust.StreamT) -> None:
        # In batches: each touched row is read, parsed, serialised and written (one changelog
        # record) once per batch rather than once per event; a VM sampled every second while
        # taking hundreds of jobs would otherwise rewrite its whole row for each. Faust acks a
        # batch's offsets only after this loop body has handled it (at-least-once holds).
        async for events in stream.take_events(
            settings.stats_batch_max, within=settings.stats_batch_s
        ):
            # vm_id -> the row and the last event that changed it (its partition)
            changed: dict[str, tuple[VmStats, EventT]] = {}
            handled: Counter[str] = Counter()
            for event in events:
                message = event.message
                handled[stats_inputs.get(message.topic, "other")] += 1
                try:
                    parsed = parse_stats_event(message)
                    if parsed is None:
                        continue
                    vm_id, item = parsed
                    if message.key is not None and message.key != vm_id.encode():
                        raise EventError(
                            f"message key {message.key!r} is not its vm_id {vm_id!r}; key by vm_id"
                        )
                except EventError as exc:
                    await dead_letter_message(message, str(exc), stage="vm_stats")
                    continue
                row = load_row(vm_id)
                if apply_stats_event(row, item):
                    changed[vm_id] = (row, event)
            for name, count in handled.items():
                pipeline.stats_events[name] += count
                registry.stats_events.labels(topic=name).inc(count)
            now = clock()
            for vm_id, (row, event) in changed.items():
                with writing_for(event):  # faust-streaming#497: see pipeline.faust_compat
                    vm_stats_table[vm_id] = row.to_dict()
                if now - last_published.get(vm_id, 0.0) >= settings.vm_state_interval_s:
                    await publish_state(vm_id, now, row)
                else:
                    unpublished.add(vm_id)

    @app.timer(settings.vm_state_interval_s, name="vm_state_flush")
    async def flush_vm_states() -> None:
        now = clock()
        for vm_id in list(unpublished):
            await publish_state(vm_id, now)

    # --- dispatch: the paper's step 4 ----------------------------------------------------------

    def record(result: DispatchResult) -> None:
        pipeline.recent_decisions.append(result.decision)
        registry.decisions.labels(outcome=result.decision.outcome.value).inc()
        pipeline.counts[result.decision.outcome.value] += 1

    async def produce(
        result: DispatchResult, job: JobSubmission, message: Any | None, partition: int
    ) -> None:
        """Produce a decided job's effects. Sends are buffered; Faust flushes before committing."""
        decision = result.decision
        record(result)
        if result.queued is not None and result.queue_topic is not None:
            topic = queue_topics.get(result.queue_topic)
            if topic is None:
                topic = queue_topics[result.queue_topic] = raw_topic(result.queue_topic)
            await topic.send(key=result.queued.key(), value=result.queued.to_bytes())
            dispatched_table[decision.job_id] = {
                "vm_id": decision.vm_id,
                "queue_topic": result.queue_topic,
                "partition": partition,
                "queued": result.queued.model_dump(mode="json"),
                "at": decision.decided_at,
            }
            dedupe.add(partition, decision.job_id, decision.decided_at)
        await decisions_topic.send(key=decision.key(), value=decision.to_bytes())
        if result.dead_letter_reason is not None:
            await dead_letter(
                message.topic if message else jobs_topic.get_topic_name(),
                message.partition if message else None,
                message.offset if message else None,
                job.key(),
                job.to_bytes(),
                result.dead_letter_reason,
                stage="dispatcher",
                job_id=job.job_id,
            )

    async def redeliver(job_id: str) -> bool:
        """A job already dispatched is sent again to the same VM (guests skip duplicates)."""
        entry = dispatched_table.get(job_id)
        if entry is None:
            return False
        topic = queue_topics.get(entry["queue_topic"]) or raw_topic(entry["queue_topic"])
        queued = QueuedJob.model_validate(entry["queued"])  # the same bytes as the first send
        await topic.send(key=queued.key(), value=queued.to_bytes())
        return True

    @app.agent(jobs_topic, name="dispatch")
    async def dispatch_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                job = JobSubmission.from_bytes(message.value)
            except EventError as exc:
                await dead_letter_message(message, str(exc), stage="dispatcher")
                continue
            job = normalize(
                job, message.topic, message.partition, message.offset, message.timestamp
            )
            assert job.job_id is not None
            if job.job_id in waiting_table or await redeliver(job.job_id):
                continue
            started = time.perf_counter()
            # Never await the fleet view here: an agent that blocks while Faust starts its streams
            # loses the messages fetched meanwhile (see docs/architecture.md, "Faust workarounds").
            # A job that arrives before the view has caught up waits, durably, like any other.
            result = (
                dispatcher.decide(job, clock())
                if fleet.ready.is_set()
                else dispatcher.not_ready(job, clock())
            )
            registry.decision_seconds.observe(time.perf_counter() - started)
            if result.waiting:
                waiting_since = clock()
                waiting_table[job.job_id] = {
                    "job": job.model_dump(mode="json"),
                    "deadline_at": job.deadline_at,
                    "partition": message.partition,
                    "waiting_since": waiting_since,
                    "attempts": 1,
                }
                pipeline.waiting_index.add(
                    message.partition, job.job_type, job.job_id, waiting_since, job.deadline_at
                )
            await produce(result, job, message, message.partition)

    # --- retry: waiting jobs, per partition, per job type --------------------------------------

    @app.agent(ticks_topic, name="retry")
    async def retry_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await retry_partition(event)

    async def retry_partition(event: EventT) -> None:
        partition = event.message.partition
        index = pipeline.waiting_index
        if not index.built(partition):
            index.build(partition, iter(waiting_table.items()))
            dedupe.rebuild(partition, dispatched_table.items())
        if not fleet.ready.is_set():
            return
        for job_type, jobs in index.by_type(partition).items():
            blocked = False  # once one job of a type waits, later ones of that type would too
            for waiting_job in jobs:
                now = clock()
                deadline_at = waiting_job.deadline_at
                if blocked and (deadline_at is None or now < deadline_at):
                    continue  # cheap: no table read for a job that cannot go anyway
                job_id = waiting_job.job_id
                entry = waiting_table.get(job_id)
                if entry is None:
                    index.remove(partition, job_type, job_id)
                    continue
                job = JobSubmission.model_validate(entry["job"])
                result = dispatcher.decide(job, now, attempt=entry["attempts"] + 1)
                if result.waiting:
                    blocked = True
                    continue
                del waiting_table[job_id]
                index.remove(partition, job_type, job_id)
                await produce(result, job, None, partition)
        registry.waiting.set(index.count())
        for job_id in dedupe.expired(partition, clock() - settings.dedupe_horizon_s):
            dispatched_table.pop(job_id, None)

    dedupe = DedupeHorizon()

    @app.timer(settings.retry_interval_s, name="dispatch_ticks")
    async def send_ticks() -> None:
        ticks_name = ticks_topic.get_topic_name()
        for tp in app.consumer.assignment():
            if tp.topic == ticks_name:
                await ticks_topic.send(key=None, value=b"", partition=tp.partition)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        pipeline.waiting_index.clear()
        rows.clear()  # these partitions may move: re-read rows from the table when next needed
        unpublished.clear()

    from pipeline import web

    web.register(pipeline)
    return pipeline


_default: Pipeline | None = None


def default_pipeline() -> Pipeline:
    global _default
    if _default is None:
        _default = create_app()
    return _default


def __getattr__(name: str) -> Any:
    # `faust -A pipeline.app worker` looks up `app` here; build it only when asked.
    if name == "app":
        return default_pipeline().app
    raise AttributeError(name)
