"""The dispatcher's Kafka loop: jobs in batches, its partitions' status log, control, the clock.

Runs in every worker as a service of the Faust app, on aiokafka directly rather than as a Faust
agent: it decides a batch of jobs against one snapshot and produces their effects as a batch, so
the per-message machinery of a Faust agent (measured: a do-nothing agent is the floor of a
Faust stream) is not on the dispatch path, and it controls exactly when records are
acknowledged and offsets committed (`pipeline.dispatch.core` says what and in which order).

- Consumer group `<app id>-dispatch` on `jobs`, with static membership (`group.instance.id`,
  derived from the data dir unless set): a worker restarted with the same data dir takes its
  partitions back at once, without waiting out its old session; restarted within that session
  (`MemberMark`) it joins before its fleet view is ready, so that replaying its partitions'
  status logs overlaps the fleet view's catching up (it decides nothing before that).
- On assignment, each new partition's `job-status` log is read to its end into the core's book
  (the durable state: no local table is needed), then followed live, with all of `job-control`.
- Each batch: consume, decide, then produce the decisions, wait for the broker, produce the
  status records (and dead letters, ...), wait, produce the queued jobs, wait, commit. A failed
  produce is retried (holding dispatch) until it succeeds, on a new producer
  (`pipeline.dispatch.producer`); nothing is committed before. The producing runs while the
  next batch is decided, each outbox after the one before it (`pipeline.dispatch.outputs`).

One asyncio lock serialises the batch loop's deciding, the side records, the clock and the
rebalance callbacks, so the core sees one input at a time; their outboxes go to the broker in
the order the core wrote them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.dispatch.core import DispatchCore
from pipeline.dispatch.outputs import OutputChain
from pipeline.dispatch.producer import STOP_TIMEOUT_S, RenewableProducer
from pipeline.edge.metrics import PipelineMetrics
from pipeline.settings import KafkaSettings, PipelineSettings
from pipeline.topics import Topics

log = logging.getLogger(__name__)

#: The dispatcher producer's request timeout (see `DispatchService._new_producer`).
PRODUCE_TIMEOUT_MS = 5000
#: How often a queue topic the cluster does not have yet is asked for again.
QUEUE_METADATA_RETRY_S = 0.25


def instance_id(settings: PipelineSettings) -> str:
    """The static group member id: stable across restarts with the same data dir."""
    if settings.instance_id:
        return settings.instance_id
    digest = hashlib.sha1(os.path.abspath(settings.data_dir).encode()).hexdigest()[:12]
    return f"{settings.app_id}-{digest}"


class MemberMark:
    """Whether this worker's static membership of the dispatch group may still be alive: the
    modification time of a file in its data dir, touched on every clock tick while it is a
    member. A worker restarted within its session (a crash and an immediate restart) is still
    the group's member for those partitions, which nobody else dispatches until it returns, so
    it joins at once and replays their status logs while its fleet view catches up; one started
    later (its partitions moved to the others) or new waits for its fleet view first, so that a
    partition taken from a working peer is not left undispatched meanwhile."""

    NAME = "dispatch-member"

    def __init__(
        self, data_dir: str, session_timeout_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(data_dir) / self.NAME
        self.session_timeout_s = session_timeout_s
        self.clock = clock

    def touch(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            now = self.clock()
            os.utime(self.path, (now, now))
        except OSError as exc:  # only a faster restart is lost
            log.debug("dispatcher: %s: %s", self.path, exc)

    def held(self) -> bool:
        """Whether the last touch is recent enough for the broker to hold the membership."""
        try:
            touched = self.path.stat().st_mtime
        except OSError:
            return False
        return 0.0 <= self.clock() - touched < self.session_timeout_s


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: DispatchService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.assigned({tp.partition for tp in assigned})


class DispatchService(Service):
    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        settings: PipelineSettings,
        core: DispatchCore,
        metrics: PipelineMetrics,
        fleet_ready: asyncio.Event,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self.settings = settings
        self.core = core
        self.metrics = metrics
        self.fleet_ready = fleet_ready
        self.jobs_topic = topics.name("jobs")
        self.status_topic = topics.name("job-status")
        self.control_topic = topics.name("job-control")
        self.lock = asyncio.Lock()
        #: Set once the first assignment is recovered (for /status and tests).
        self.recovered = asyncio.Event()
        self.producer = RenewableProducer(self._new_producer)
        self.outputs: OutputChain[TopicPartition] = OutputChain(
            self.producer.until_acked, self._commit
        )
        self.member_mark = MemberMark(settings.data_dir, settings.session_timeout_s)
        self._subscribed = False
        self._jobs: AIOKafkaConsumer | None = None
        self._side: AIOKafkaConsumer | None = None
        self._side_assigned: set[TopicPartition] = set()
        self._control_partitions: list[TopicPartition] = []
        self._metadata_asked_at = 0.0
        #: The next offset to consume, per jobs partition (for the lag).
        self._next: dict[TopicPartition, int] = {}
        self.batches = 0
        self.last_batch_s = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def _new_producer(self) -> AIOKafkaProducer:
        # aiokafka fails a batch that waited `request_timeout_ms` for its partition's leader,
        # and a produce request the broker left unanswered as long; `RenewableProducer` then
        # sends it again on a new producer. That bounds the dispatch gap after a broker returns:
        # at 15 s (the session timeout + 5 s, as it was) the first dispatch after a broker stop
        # came 15.9-16.0 s after its return (`vmlb bench chaos --scenario broker-stop`, 2 of 5
        # runs). A produce to a live broker is acknowledged in milliseconds, and an idempotent
        # producer's retry of a slow one is recognised by the broker, so 5 s costs nothing.
        return AIOKafkaProducer(
            client_id="vmlb-dispatcher",
            acks="all",
            enable_idempotence=True,
            linger_ms=self.settings.produce_linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=PRODUCE_TIMEOUT_MS,
            **self.kafka.to_aiokafka(),
        )

    async def on_start(self) -> None:
        options = self.kafka.to_aiokafka()
        await self.producer.start()
        self._side = AIOKafkaConsumer(
            client_id="vmlb-dispatcher-side",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )
        await self._side.start()
        self._control_partitions = [
            TopicPartition(self.control_topic, p)
            for p in sorted(await self._partitions_of(self._side, self.control_topic))
        ]
        self._side.assign(self._control_partitions)
        await self._side.seek_to_beginning(*self._control_partitions)
        self._side_assigned = set(self._control_partitions)
        self._jobs = AIOKafkaConsumer(
            client_id="vmlb-dispatcher",
            group_id=f"{self.settings.app_id}-dispatch",
            group_instance_id=instance_id(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.heartbeat_interval_s * 1000),
            max_poll_records=self.settings.job_batch_max,
            **options,
        )
        await self._jobs.start()
        self.add_future(self._run_jobs())
        self.add_future(self._run_side())
        self.add_future(self._run_clock())

    async def on_stop(self) -> None:
        await self.outputs.close(STOP_TIMEOUT_S)
        for client in (self._jobs, self._side):
            if client is not None:
                await client.stop()
        await self.producer.stop()

    async def _partitions_of(self, consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(100):
            found = consumer.partitions_for_topic(topic)
            if found:
                return found
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise KafkaError(f"topic {topic} does not exist; run `vmlb topics apply`")

    # --- the loops ----------------------------------------------------------------------------

    async def _run_jobs(self) -> None:
        assert self._jobs is not None
        # Decide nothing before the fleet view has caught up (a restarted worker must not take
        # an unread fleet for an empty one). Join the group at once if this worker is still its
        # member (`MemberMark`), else once the fleet view is ready.
        if self.member_mark.held():
            log.info("dispatcher: restarted within its session; taking its partitions back")
            self._subscribe()
        await self.fleet_ready.wait()
        if not self._subscribed:
            self._subscribe()
        # The previous batch's outbox, produced while this one is decided.
        in_flight: asyncio.Future[None] | None = None
        while not self.should_stop:
            batch = await self._jobs.getmany(
                timeout_ms=self.settings.job_batch_wait_ms,
                max_records=self.settings.job_batch_max,
            )
            if not batch:
                continue
            started = time.perf_counter()
            offsets: dict[TopicPartition, int] = {}
            async with self.lock:
                for tp, records in batch.items():
                    if tp.partition not in self.core.books:
                        continue  # revoked while this batch was fetched: its new owner has it
                    for record in records:
                        self.core.on_job(
                            tp.partition,
                            record.offset,
                            record.key,
                            record.value,
                            record.timestamp / 1000.0,
                        )
                    offsets[tp] = self._next[tp] = records[-1].offset + 1
                flushed = self.outputs.submit(self.core.take(), offsets)
            self.batches += 1
            self.last_batch_s = time.perf_counter() - started
            # At most one outbox in flight while the next batch is decided.
            if in_flight is not None:
                await in_flight
            in_flight = flushed

    def _subscribe(self) -> None:
        assert self._jobs is not None
        self._jobs.subscribe([self.jobs_topic], listener=_Rebalance(self))
        self._subscribed = True
        self.member_mark.touch()

    async def _run_side(self) -> None:
        """Guests' status records of the owned partitions, and all cancel requests."""
        assert self._side is not None
        while not self.should_stop:
            try:
                batch = await self._side.getmany(timeout_ms=100, max_records=5000)
            except KafkaError as exc:
                log.warning("dispatcher: reading job-status/job-control: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if not batch:
                continue
            async with self.lock:
                for tp, records in batch.items():
                    if tp not in self._side_assigned:
                        continue
                    for record in records:
                        if tp.topic == self.control_topic:
                            self.core.on_control(
                                record.key, record.value, record.offset, tp.partition
                            )
                        else:
                            self.core.on_status(
                                tp.partition, record.key, record.value, record.offset
                            )
                flushed = self._submit()
            if flushed is not None:  # waited for outside the lock: jobs are decided meanwhile
                await flushed

    async def _run_clock(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(self.settings.retry_interval_s)
            if self._subscribed:
                self.member_mark.touch()
            # Nothing is retried or moved before the fleet view is ready (as for new jobs).
            if not (self.recovered.is_set() and self.fleet_ready.is_set()):
                continue
            async with self.lock:
                self.core.tick()
                flushed = self._submit()
            if flushed is not None:
                await flushed

    # --- rebalance ----------------------------------------------------------------------------

    async def assigned(self, partitions: set[int]) -> None:
        async with self.lock:
            new = sorted(p for p in partitions if p not in self.core.books)
            if new:
                started = time.perf_counter()
                replayed = await self._replay(new)
                log.info(
                    "dispatcher: took jobs partitions %s (%d status records in %.2fs)",
                    new,
                    replayed,
                    time.perf_counter() - started,
                )
                await self._flush()
            self.recovered.set()

    async def revoked(self, partitions: set[int]) -> None:
        async with self.lock:
            self._submit()
            await self.outputs.drain()  # and every batch before: acknowledged, committed
            for partition in partitions:
                self.core.revoke(partition)
                self._next.pop(TopicPartition(self.jobs_topic, partition), None)
            await self._reassign_side()

    async def _replay(self, partitions: list[int]) -> int:
        """Read each new partition's status log to its end into the core; follow it live."""
        reader = AIOKafkaConsumer(
            client_id="vmlb-dispatcher-recovery",
            group_id=None,
            enable_auto_commit=False,
            **self.kafka.to_aiokafka(),
        )
        await reader.start()
        count = 0
        try:
            tps = [TopicPartition(self.status_topic, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            for p in partitions:
                self.core.assign(p)
            left = {tp for tp in tps if ends[tp] > 0}
            while left:
                batch = await reader.getmany(*left, timeout_ms=500, max_records=10_000)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            self.core.replay(tp.partition, record.value, record.key, record.offset)
                            count += 1
                    if records and records[-1].offset + 1 >= ends[tp]:
                        left.discard(tp)
                for tp in list(left):
                    if await reader.position(tp) >= ends[tp]:
                        left.discard(tp)
            for p in partitions:
                self.core.recovered(p)
        finally:
            await reader.stop()
        await self._reassign_side(starts={tp: ends[tp] for tp in tps})
        return count

    async def _reassign_side(self, starts: dict[TopicPartition, int] | None = None) -> None:
        """Follow the owned partitions' status logs (from `starts` for new ones) and control."""
        assert self._side is not None
        wanted = set(self._control_partitions) | {
            TopicPartition(self.status_topic, p) for p in self.core.books
        }
        kept = {tp: await self._side.position(tp) for tp in self._side_assigned & wanted}
        self._side.assign(sorted(wanted, key=lambda tp: (tp.topic, tp.partition)))
        for tp in wanted:
            if tp in kept:
                self._side.seek(tp, kept[tp])
            elif starts and tp in starts:
                self._side.seek(tp, starts[tp])
        self._side_assigned = wanted

    # --- producing and committing -------------------------------------------------------------

    def _submit(self) -> asyncio.Future[None] | None:
        """Hand what the core wrote since to the output chain (after every outbox before it);
        None if it wrote nothing. Called under the lock, so outboxes keep the core's order."""
        out = self.core.take()
        return self.outputs.submit(out) if out else None

    async def _flush(self) -> None:
        """Submit, and wait until it is acknowledged (and every batch before it committed)."""
        flushed = self._submit()
        if flushed is not None:
            await flushed

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets or self._jobs is None:
            return
        try:
            await self._jobs.commit(offsets)
        except KafkaError as exc:
            # Not fatal: the partition moved; its new owner recognises the jobs from the log.
            log.warning("dispatcher: commit failed (%s)", exc)

    def lag(self) -> int:
        """Jobs not yet consumed in this worker's partitions (by the last fetch's highwater)."""
        if self._jobs is None:
            return 0
        behind = 0
        for tp in self._jobs.assignment():
            end = self._jobs.highwater(tp)
            if end is not None:
                behind += max(0, end - self._next.get(tp, end))
        return behind

    def queue_ready(self, topic: str) -> bool:
        """Whether a queue topic exists on the cluster (else a send would block on metadata).

        A topic not tracked yet is added at once (aiokafka then asks for it in its next
        metadata request); one tracked but still missing is asked for again at most every
        `QUEUE_METADATA_RETRY_S` (aiokafka refreshes tracked topics only every
        `metadata_max_age_ms`)."""
        producer = self.producer.current
        if producer is None:
            return False
        client = producer.client
        if client.cluster.partitions_for_topic(topic):
            return True
        if topic not in self.producer.tracked:
            self.producer.tracked.add(topic)
            client.add_topic(topic)
            return False
        now = time.monotonic()
        if now - self._metadata_asked_at >= QUEUE_METADATA_RETRY_S:
            self._metadata_asked_at = now
            client.force_metadata_update()
        return False
