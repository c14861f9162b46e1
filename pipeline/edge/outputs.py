"""What the worker's agents produce to Kafka: raw-bytes topics, the queue-topic cache, dead letters.

Every topic the worker touches is declared here as raw bytes (Faust's own deserialisation would
crash an agent on a bad message; `pipeline.events` validates instead). Dead letters are built in
one place (`DeadLetter.of`) and counted once (metrics and the worker's counts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from pipeline.edge.metrics import PipelineMetrics
from pipeline.events import DeadLetter
from pipeline.topics import Topics

log = logging.getLogger(__name__)


class Outputs:
    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.topics = topics
        self.metrics = metrics
        self.clock = clock
        self._dead_letters = self.raw_topic(topics.name("dead-letters"))
        self._queues: dict[str, faust.TopicT] = {}

    def raw_topic(self, *names: str, **options: Any) -> faust.TopicT:
        """A Faust topic whose keys and values are bytes, as they are on the wire."""
        return self.app.topic(*names, key_serializer="raw", value_serializer="raw", **options)

    def queue(self, name: str) -> faust.TopicT:
        """A VM's queue topic (one Faust topic object per name, made on first use)."""
        topic = self._queues.get(name)
        if topic is None:
            topic = self._queues[name] = self.raw_topic(name)
        return topic

    async def dead_letter(self, letter: DeadLetter) -> None:
        log.warning(
            "dead letter from %s[%s]@%s: %s",
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
            letter.reason,
        )
        self.metrics.dead_lettered(letter.stage)
        try:
            await self._dead_letters.send(key=letter.key(), value=letter.to_bytes())
        except Exception as exc:  # a dead letter that cannot be sent must not stop the sender
            log.error("dead letter from %s not sent: %r", letter.source_topic, exc)

    async def dead_letter_message(
        self, message: Any, reason: str, stage: str, job_id: str | None = None
    ) -> None:
        """Dead-letter a consumed message as it came (topic, partition, offset, key, value)."""
        await self.dead_letter(
            DeadLetter.of(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                reason=reason,
                stage=stage,
                at=self.clock(),
                job_id=job_id,
            )
        )
