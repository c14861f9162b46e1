"""The `dispatch` agent: jobs -> a VM's queue topic + decisions (or `waiting_jobs`, or dead letters).

The paper's step 4 as a Faust agent. Per job: validate (bad input is dead-lettered), normalize,
skip it if it is already waiting or re-send it if it was already dispatched (a redelivery),
decide, record a waiting job durably, produce the effects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust

from pipeline.dispatch.decide import Dispatcher, normalize
from pipeline.dispatch.effects import DispatchEffects
from pipeline.dispatch.rows import WaitingRow
from pipeline.dispatch.state import DispatchState
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.errors import EventError
from pipeline.events import JobSubmission
from pipeline.fleet.consumer import FleetConsumer
from pipeline.topics import Topics


class DispatchAgent:
    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        dispatcher: Dispatcher,
        fleet: FleetConsumer,
        state: DispatchState,
        effects: DispatchEffects,
        outputs: Outputs,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.fleet = fleet
        self.state = state
        self.effects = effects
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self._jobs = outputs.raw_topic(topics.name("jobs"))

    def register(self) -> DispatchAgent:
        self.app.agent(self._jobs, name="dispatch")(self.run)
        return self

    async def run(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            await self.handle(event.message)

    async def handle(self, message: Any) -> None:
        try:
            job = JobSubmission.from_bytes(message.value)
        except EventError as exc:
            await self.outputs.dead_letter_message(message, str(exc), stage="dispatcher")
            return
        job = normalize(job, message.topic, message.partition, message.offset, message.timestamp)
        assert job.job_id is not None
        if job.job_id in self.state.waiting or await self.effects.redeliver(job.job_id):
            return
        started = time.perf_counter()
        # Never await the fleet view here: an agent that blocks while Faust starts its streams
        # loses the messages fetched meanwhile (see docs/architecture.md, "Faust workarounds").
        # A job that arrives before the view has caught up waits, durably, like any other.
        now = self.clock()
        result = (
            self.dispatcher.decide(job, now)
            if self.fleet.ready.is_set()
            else self.dispatcher.not_ready(job, now)
        )
        self.metrics.decision_seconds.observe(time.perf_counter() - started)
        if result.waiting:
            self.wait(job, message.partition)
        await self.effects.produce(result, job, message, message.partition)

    def wait(self, job: JobSubmission, partition: int) -> None:
        """Store a job that found no eligible host, durably, and index it for the retry agent."""
        assert job.job_id is not None
        waiting_since = self.clock()
        self.state.waiting[job.job_id] = WaitingRow(
            job=job,
            partition=partition,
            waiting_since=waiting_since,
            deadline_at=job.deadline_at,
            attempts=1,
        )
        self.state.waiting_index.add(
            partition, job.job_type, job.job_id, waiting_since, job.deadline_at
        )
