"""What a decided job produces, for the dispatch and retry agents alike.

A dispatched job: its `QueuedJob` to the VM's queue topic, a `dispatched` row (for redelivery),
and its decision to `decisions`. A refused one: its decision and a dead letter with the reason.
Sends are buffered; Faust flushes the producer before it commits the consumed offsets, so the
effects are acknowledged before the job counts as consumed (at-least-once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from pipeline.dispatch.decide import DispatchResult
from pipeline.dispatch.rows import DispatchedRow
from pipeline.dispatch.state import DispatchState
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.events import DeadLetter, JobSubmission
from pipeline.topics import Topics


class DispatchEffects:
    def __init__(
        self,
        state: DispatchState,
        topics: Topics,
        outputs: Outputs,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.state = state
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self.jobs_topic = topics.name("jobs")
        self._decisions: faust.TopicT = outputs.raw_topic(topics.name("decisions"))

    async def produce(
        self, result: DispatchResult, job: JobSubmission, message: Any | None, partition: int
    ) -> None:
        """Produce a decided job's effects (`message`: where it was consumed, if it was)."""
        decision = result.decision
        self.state.recent_decisions.append(decision)
        self.metrics.decided(decision.outcome.value)
        self.metrics.refused_by(decision)
        if result.queued is not None and result.queue_topic is not None:
            queue = self.outputs.queue(result.queue_topic)
            await queue.send(key=result.queued.key(), value=result.queued.to_bytes())
            queued = result.queued
            self.metrics.job_waited(queued.job_type, queued.dispatched_at - queued.submitted_at)
            assert decision.vm_id is not None
            self.state.dispatched[decision.job_id] = DispatchedRow(
                vm_id=decision.vm_id,
                queue_topic=result.queue_topic,
                partition=partition,
                queued=result.queued,
                at=decision.decided_at,
            )
            self.state.dedupe.add(partition, decision.job_id, decision.decided_at)
        await self._decisions.send(key=decision.key(), value=decision.to_bytes())
        if result.dead_letter_reason is not None:
            await self.outputs.dead_letter(
                DeadLetter.of(
                    message.topic if message else self.jobs_topic,
                    message.partition if message else partition,
                    message.offset if message else None,
                    job.key(),
                    job.to_bytes(),
                    reason=result.dead_letter_reason,
                    stage="dispatcher",
                    at=self.clock(),
                    job_id=job.job_id,
                )
            )

    async def redeliver(self, job_id: str) -> bool:
        """A job already dispatched is sent again to the same VM (guests skip duplicates)."""
        row = self.state.get(self.state.dispatched, job_id)
        if row is None:
            return False
        queued = row.queued  # the same bytes as the first send
        await self.outputs.queue(row.queue_topic).send(key=queued.key(), value=queued.to_bytes())
        return True
