"""FleetConsumer against the real broker: `read_through_now` returns only once the view holds
everything written to the fleet topics before the call (the stats agent relies on it before it
refuses a sample for a VM whose registration it has not read yet)."""

from __future__ import annotations

import asyncio
import time

from kafka import KafkaProducer

from pipeline.events import DeadLetter, HostRegistration, VmRegistration
from pipeline.fleet.consumer import FleetConsumer
from pipeline.fleet.view import FleetView
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics


def test_read_through_now_holds_every_registration_written_before_it(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    async def scenario() -> None:
        view = FleetView()
        letters: list[DeadLetter] = []

        async def dead_letter(*args: object) -> None:
            letters.append(args)  # type: ignore[arg-type]

        fleet = FleetConsumer(kafka_settings, topics, view, dead_letter)
        await fleet.start()
        try:
            await asyncio.wait_for(fleet.ready.wait(), 60)
            producer = KafkaProducer(**kafka_settings.to_kafka_python_producer())
            now = time.time()
            host = HostRegistration(host_id="h1", registered_at=now)
            producer.send(topics.name("hosts"), key=host.key(), value=host.to_bytes())
            for i in range(50):
                vm = VmRegistration(
                    vm_id=f"v{i}",
                    host_id="h1",
                    job_type="io",
                    queue_topic=topics.queue_topic(f"v{i}").name,
                    registered_at=now,
                )
                producer.send(topics.name("vms"), key=vm.key(), value=vm.to_bytes())
            producer.flush(timeout=30)
            producer.close()
            # Acked before the call: every one of them is in the view when it returns True.
            assert await fleet.read_through_now(timeout_s=60)
            assert len(view.vms) == 50 and "h1" in view.hosts
            assert letters == []
        finally:
            await fleet.stop()

    asyncio.run(scenario())
