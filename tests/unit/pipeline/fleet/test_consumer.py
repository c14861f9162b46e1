"""FleetConsumer without a broker: what it promises before it has started."""

from __future__ import annotations

import asyncio

from pipeline.fleet.consumer import FleetConsumer
from pipeline.fleet.view import FleetView
from pipeline.settings import KafkaSettings
from pipeline.topics import topics_of


def test_read_through_now_is_false_before_the_consumer_started() -> None:
    async def dead_letter(*args: object) -> None:
        raise AssertionError(args)

    async def scenario() -> bool:
        kafka = KafkaSettings(topic_prefix="t")
        fleet = FleetConsumer(kafka, topics_of(kafka), FleetView(), dead_letter)
        return await fleet.read_through_now(timeout_s=1)

    assert asyncio.run(scenario()) is False
