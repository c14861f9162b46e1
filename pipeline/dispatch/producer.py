"""The dispatcher's idempotent producer, renewed whenever a record it sent was not acknowledged.

aiokafka 0.14's idempotent producer numbers each partition's batches. When a batch fails for
good (an outage, a leader that moved), the number it took is not given back, so the next batch
to that partition arrives with a gap and the broker answers `OutOfOrderSequenceNumber`, to that
batch and every later one: the producer never delivers to that partition again (aiokafka#1017,
open; Java's producer bumps its epoch and resets the sequences, KAFKA-12152). Seen in
`vmlb bench chaos --scenario broker-stop`: after a 25 s stop the dispatcher re-sent the same two
records every 5 s for the rest of the run and dispatched nothing more.

So a failed send is never retried on the same producer: `renew()` stops it and starts another,
with a new producer id and fresh sequences, and the records are produced again there. The
readers of every record the dispatcher writes are idempotent (status and queue records by job
id and attempt), so a record the old producer did land, then sent again, is harmless.

A new producer bootstraps from the cluster when it starts, which fails while the cluster is
unreachable: `renew()` tries again (0.2 s doubling to 1 s, the cap of every client's reconnect
back-off: a refused bootstrap costs nothing, and a longer wait only delays the first dispatch
after the broker's return) until one starts. (Raising there
crashed the dispatcher, and the worker with it, in 8 of 10 runs of a 20-60 s broker stop.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from pipeline.dispatch.core import Record

log = logging.getLogger(__name__)

#: How long a stopped producer may take to give up what it still holds.
STOP_TIMEOUT_S = 5.0
#: The partitioner `AIOKafkaProducer` uses unless told otherwise (murmur2 of the key).
KEYED = DefaultPartitioner()
#: Back-off between attempts (a send, a new producer's start): first, and at most.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 1.0


class RenewableProducer:
    """One `AIOKafkaProducer` at a time, made by `factory`; `renew()` swaps it for a new one."""

    def __init__(self, factory: Callable[[], AIOKafkaProducer]) -> None:
        self.factory = factory
        self.current: AIOKafkaProducer | None = None
        #: Topics whose metadata the producer tracks (queue topics): a new one is told them.
        self.tracked: set[str] = set()
        #: Producers replaced since start (for /status and tests).
        self.renewals = 0

    async def start(self) -> None:
        """Start a new producer; one that cannot bootstrap is stopped again and the error raised."""
        producer = self.factory()
        try:
            await producer.start()
        except BaseException:
            await _stop(producer)
            raise
        self.current = producer
        for topic in self.tracked:
            producer.client.add_topic(topic)

    async def stop(self) -> None:
        if self.current is not None:
            old, self.current = self.current, None
            await _stop(old)

    async def renew(self, why: str) -> None:
        """Replace the producer: what the old one still holds is given up (the caller sends
        it again on the new one)."""
        old = self.current
        log.warning("dispatcher: producing again on a new producer (%s)", why)
        self.current = None
        if old is not None:
            await _stop(old)
        backoff_s = BACKOFF_FIRST_S
        while True:
            try:
                await self.start()
                break
            except KafkaError as exc:
                log.warning(
                    "dispatcher: no new producer yet (%r); trying again in %.1fs", exc, backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)
        self.renewals += 1

    async def until_acked(self, records: Sequence[Record]) -> None:
        """Produce and wait for every acknowledgement; what failed is produced again, in its
        order, on a new producer, after a back-off (0.2 s doubling to 1 s), until all landed."""
        backoff_s = BACKOFF_FIRST_S
        while records:
            try:
                results = await self.send_all(records)
            except KafkaError as exc:
                why = f"a send failed: {exc!r}"
                failed = list(records)
            else:
                failed = [
                    record
                    for record, result in zip(records, results, strict=True)
                    if isinstance(result, Exception)
                ]
                first = next((r for r in results if isinstance(r, Exception)), None)
                why = f"{len(failed)} of {len(records)} record(s) not acknowledged: {first!r}"
            if failed:
                await asyncio.sleep(backoff_s)
                backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)
                await self.renew(why)
            records = failed

    async def send_all(self, records: Sequence[Record]) -> list[Any]:
        """Send every record and wait for each answer: its batch's RecordMetadata or its
        exception, in the records' order.

        The records go out as one batch per partition (`create_batch` / `send_batch`), in
        their order within each partition: appending to a batch costs a fraction of a
        `send()` per record (a coroutine, a partitioner call and a future each), which was
        most of the dispatcher's produce path. A record without a partition goes where
        `send()` would put it (the producer's default partitioner over the topic's
        partitions, by key)."""
        producer = self.current
        assert producer is not None, "producer not started"
        by_partition: dict[tuple[str, int], list[int]] = {}
        for index, record in enumerate(records):
            partition = record.partition
            if partition is None:
                partition = await self._partition_of(producer, record)
            by_partition.setdefault((record.topic, partition), []).append(index)
        sent: list[tuple[list[int], asyncio.Future[Any]]] = []
        for (topic, partition), indices in by_partition.items():
            for chunk, batch in _batches(producer, records, indices):
                sent.append((chunk, await producer.send_batch(batch, topic, partition=partition)))
        answers = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        results: list[Any] = [None] * len(records)
        for (chunk, _), answer in zip(sent, answers, strict=True):
            for index in chunk:
                results[index] = answer
        return results

    async def _partition_of(self, producer: AIOKafkaProducer, record: Record) -> int:
        """The partition `send()` would choose for a record keyed `record.key`, from the
        producer's current metadata (asked for if it has none of the topic yet, as `send()`
        does)."""
        known = producer.client.cluster.partitions_for_topic(record.topic)
        if not known:
            known = await producer.partitions_for(record.topic)
        partitions = sorted(known)
        return KEYED(record.key, partitions, partitions)


def _batches(
    producer: AIOKafkaProducer, records: Sequence[Record], indices: list[int]
) -> Iterator[tuple[list[int], BatchBuilder]]:
    """`records[indices]` (one partition's) in order, as closed batches of at most the
    producer's batch size (a record larger than that goes alone)."""
    batch, chunk = producer.create_batch(), []
    for index in indices:
        record = records[index]
        if batch.append(timestamp=None, key=record.key, value=record.value) is None:
            yield chunk, batch
            batch, chunk = producer.create_batch(), []
            batch.append(timestamp=None, key=record.key, value=record.value)
        chunk.append(index)
    # Closed, so that no `send()` of another caller appends to it behind our back.
    batch.close()
    yield chunk, batch


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
    except Exception as exc:  # a producer that cannot even stop is dropped all the same
        log.warning("dispatcher: the old producer did not stop cleanly (%r)", exc)
