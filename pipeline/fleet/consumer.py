"""Feeds a FleetView from every partition of the fleet topics, in every worker.

A plain aiokafka consumer with no group: it assigns itself all partitions of `hosts`, `vms`,
`vm-state` and `limits`, reads them from the beginning, and keeps going. This is the explicit
replacement for Faust's GlobalTable (whose recovery has open bugs with several workers; see
docs/architecture.md). `ready` is set once the consumer has read up to the end offsets it saw at
start, so a dispatcher never decides on a fleet it has not finished reading; `read_through_now`
waits until it holds everything written before the call (the stats agent asks before it refuses
a sample for a VM it does not know: the VM's registration may just not have been read yet).

Records that do not parse are dead-lettered and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.errors import EventError
from pipeline.fleet.view import FLEET_TOPICS, FleetView
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics

log = logging.getLogger(__name__)

#: Called with (topic, partition, offset, key, value, reason) for a record that does not parse.
DeadLetterSink = Callable[[str, int, int, bytes | None, bytes | None, str], Awaitable[None]]


class FleetConsumer(Service):
    """Keeps `view` up to date with the fleet topics; `ready` once caught up."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        view: FleetView,
        dead_letter: DeadLetterSink,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.view = view
        self.dead_letter = dead_letter
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._logical = {topics.name(name): name for name in FLEET_TOPICS}
        self._catch_up: dict[TopicPartition, int] = {}
        #: True while a fetched batch is being applied (positions are then ahead of the view).
        self._applying = False

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="vmlb-fleet-view",
            **self.settings.to_aiokafka(),
        )
        await self._consumer.start()
        partitions = []
        for topic in self._logical:
            found = await self._partitions_of(topic)
            partitions.extend(TopicPartition(topic, p) for p in found)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._catch_up = {tp: offset for tp, offset in ends.items() if offset > 0}
        self._check_ready()
        self.add_future(self._run())

    async def _partitions_of(self, topic: str) -> set[int]:
        assert self._consumer is not None
        for _ in range(100):
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return found
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise EventError(f"fleet topic {topic} does not exist; run `vmlb topics apply`")

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self.should_stop:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            self._applying = bool(batches)
            for tp, records in batches.items():
                logical = self._logical[tp.topic]
                for record in records:
                    try:
                        self.view.apply(logical, record.key, record.value)
                    except Exception as exc:  # any record: a dead letter, never a dead worker
                        reason = str(exc) if isinstance(exc, EventError) else repr(exc)
                        await self.dead_letter(
                            tp.topic,
                            tp.partition,
                            record.offset,
                            record.key,
                            record.value,
                            reason,
                        )
                if (
                    tp in self._catch_up
                    and records
                    and records[-1].offset + 1 >= self._catch_up[tp]
                ):
                    del self._catch_up[tp]
            self._applying = False
            self._check_ready()

    async def read_through_now(self, timeout_s: float) -> bool:
        """Wait until the view holds every record the fleet topics held when this was called
        (their end offsets, asked of the broker now); False if that takes over `timeout_s`,
        or the consumer has not started."""
        consumer = self._consumer
        if consumer is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            ends = await asyncio.wait_for(
                consumer.end_offsets(list(consumer.assignment())), timeout_s
            )
            while True:
                positions = [await consumer.position(tp) for tp in ends]
                if not self._applying and all(
                    at >= end for at, end in zip(positions, ends.values(), strict=True)
                ):
                    return True
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.02)
        except (TimeoutError, KafkaError):
            return False

    def _check_ready(self) -> None:
        if not self._catch_up and not self.ready.is_set():
            log.info(
                "fleet view caught up: %d hosts, %d VMs", len(self.view.hosts), len(self.view.vms)
            )
            self.ready.set()
