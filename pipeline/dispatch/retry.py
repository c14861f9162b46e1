"""The `retry` agent: waiting jobs decided again, per partition, oldest first per job type.

A timer sends one tick per owned jobs partition to `dispatch-ticks` (co-partitioned with
`jobs`); the agent handles each tick in that partition's stream context, so its table writes
land in the right changelog partition. Per tick it (re)builds the partition's indexes if a
rebalance cleared them, then walks each job type's waiting jobs oldest first: a job whose
deadline passed expires, a job that now finds a host is dispatched, and the first that still
waits blocks the rest of its type (they would wait too) but not other types. Old `dispatched`
rows past the dedupe horizon are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.types import EventT

from pipeline.dispatch.decide import Dispatcher
from pipeline.dispatch.effects import DispatchEffects
from pipeline.dispatch.state import DispatchState
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.events import DeadLetter
from pipeline.fleet.consumer import FleetConsumer
from pipeline.settings import PipelineSettings
from pipeline.topics import Topics


class RetryAgent:
    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        settings: PipelineSettings,
        dispatcher: Dispatcher,
        fleet: FleetConsumer,
        state: DispatchState,
        effects: DispatchEffects,
        outputs: Outputs,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.settings = settings
        self.dispatcher = dispatcher
        self.fleet = fleet
        self.state = state
        self.effects = effects
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self._ticks = outputs.raw_topic(
            topics.name("dispatch-ticks"), partitions=topics.partitions("jobs")
        )

    def register(self) -> RetryAgent:
        self.app.agent(self._ticks, name="retry")(self.run)
        self.app.timer(self.settings.retry_interval_s, name="dispatch_ticks")(self.send_ticks)
        return self

    async def send_ticks(self) -> None:
        ticks = self._ticks.get_topic_name()
        for tp in self.app.consumer.assignment():
            if tp.topic == ticks:
                await self._ticks.send(key=None, value=b"", partition=tp.partition)

    async def run(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            await self.retry(event)

    async def retry(self, event: EventT) -> None:
        partition = event.message.partition
        if not self.state.waiting_index.built(partition):
            await self.rebuild(partition)
        if self.fleet.ready.is_set():
            await self.retry_waiting(partition)
        horizon = self.clock() - self.settings.dedupe_horizon_s
        for job_id in self.state.dedupe.expired(partition, horizon):
            self.state.dispatched.discard(job_id)

    async def rebuild(self, partition: int) -> None:
        """The partition's indexes from its tables; unreadable waiting rows are dead-lettered."""
        unreadable: list[tuple[str, bytes, str]] = []
        state = self.state
        state.waiting_index.build(partition, state.rows(state.waiting, unreadable))
        state.dedupe.rebuild(partition, state.rows(state.dispatched))
        for job_id, raw, reason in unreadable:
            await self.outputs.dead_letter(
                DeadLetter.of(
                    f"{self.settings.app_id}-waiting_jobs-changelog",
                    partition,
                    None,
                    job_id.encode(),
                    raw,
                    reason=f"unreadable waiting row: {reason}",
                    stage="retry",
                    at=self.clock(),
                    job_id=job_id,
                )
            )
            state.waiting.discard(job_id)

    async def retry_waiting(self, partition: int) -> None:
        index = self.state.waiting_index
        for job_type, jobs in index.by_type(partition).items():
            blocked = False  # once one job of a type waits, later ones of that type would too
            for waiting_job in jobs:
                now = self.clock()
                deadline_at = waiting_job.deadline_at
                if blocked and (deadline_at is None or now < deadline_at):
                    continue  # cheap: no table read for a job that cannot go anyway
                job_id = waiting_job.job_id
                row = self.state.get(self.state.waiting, job_id)
                if row is None:
                    index.remove(partition, job_type, job_id)
                    continue
                attempt = row.attempts + 1
                result = self.dispatcher.decide(row.job, now, attempt=attempt)
                if result.waiting:
                    blocked = True
                    self.metrics.still_waiting(result.decision)
                    # Durable, and cheap: only the head of a blocked type is decided per tick.
                    self.state.waiting[job_id] = row.model_copy(update={"attempts": attempt})
                    continue
                del self.state.waiting[job_id]
                index.remove(partition, job_type, job_id)
                await self.effects.produce(result, row.job, None, partition)
