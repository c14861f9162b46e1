"""pipeline.worker.kafka_outage: reconnects back off; repeated client errors once per interval."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup

from pipeline.worker.kafka_outage import (
    KAFKA_CLIENT_LOGGERS,
    ReconnectBackoff,
    RepeatLimit,
    _with_backoff,
    install,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka.client"):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_error_passes_once_per_interval_then_says_how_many_it_stood_for():
    clock = Clock()
    limit = RepeatLimit(interval_s=10.0, clock=clock)
    passed = []
    for i in range(100):  # ten a second for 10 s, as aiokafka's retry loop
        clock.now = i * 0.1
        one = record("Unable connect to node with id %s: %s", 1, "refused")
        if limit.filter(one):
            passed.append(one.getMessage())
    clock.now = 10.0
    last = record("Unable connect to node with id %s: %s", 1, "refused")
    assert limit.filter(last)
    passed.append(last.getMessage())
    assert passed == [
        "Unable connect to node with id 1: refused",
        "Unable connect to node with id 1: refused (and 99 more like it in the last 10 s)",
    ]


def test_kinds_are_limited_apart_and_debug_records_are_untouched():
    clock = Clock()
    limit = RepeatLimit(interval_s=10.0, clock=clock)
    assert limit.filter(record("Unable to update metadata from %s", [1]))
    assert limit.filter(record("Failed fetch messages from %s: %s", 1, "x"))
    assert limit.filter(record("Failed fetch messages from %s: %s", 1, "x", level=logging.WARNING))
    assert limit.filter(record("Unable to update metadata from %s", [1], name="aiokafka.conn"))
    assert not limit.filter(record("Unable to update metadata from %s", [2]))  # same template
    for _ in range(5):
        assert limit.filter(record("Unable to update metadata from %s", [1], level=logging.DEBUG))


def test_installed_once_on_every_kafka_client_logger_and_on_aiokafkas_client():
    first = install()
    patched = AIOKafkaClient._get_conn
    assert install() is first and AIOKafkaClient._get_conn is patched
    assert patched.vmlb_backoff
    for name in KAFKA_CLIENT_LOGGERS:
        assert logging.getLogger(name).filters.count(first) == 1


def test_the_backoff_doubles_from_50_ms_to_1_s_and_ends_with_a_success():
    clock = Clock()
    backoff = ReconnectBackoff(clock=clock)
    assert backoff.wait_s("n1") == 0
    waits = []
    for _ in range(7):
        backoff.failed("n1")
        waits.append(round(backoff.wait_s("n1"), 3))
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    clock.now = 0.4
    assert round(backoff.wait_s("n1"), 3) == 0.6  # counted from the last failure
    backoff.succeeded("n1")
    assert backoff.wait_s("n1") == 0


class FakeClient:
    """What the patched `_get_conn` reads of an AIOKafkaClient; connecting always fails."""

    def __init__(self, brokers: list[int]) -> None:
        self._conns: dict[Any, Any] = {}
        self.cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=n) for n in brokers])
        self.attempts: list[int] = []


async def refused(client: FakeClient, node_id: int, *, group: Any, no_hint: bool) -> None:
    client.attempts.append(node_id)
    return None


def test_a_lone_broker_that_refused_is_tried_again_only_after_its_backoff():
    get_conn = _with_backoff(refused)
    client = FakeClient([1])

    async def hammer() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(5):  # as aiokafka's loops do, with nothing in between
            assert await get_conn(client, 1) is None
        return loop.time() - started

    elapsed = asyncio.run(hammer())
    assert client.attempts == [1, 1, 1, 1, 1]
    assert elapsed >= 0.05 + 0.1 + 0.2 + 0.4 - 0.02  # the waits between the five attempts


def test_a_backing_off_broker_fails_at_once_while_another_one_may_answer():
    get_conn = _with_backoff(refused)
    client = FakeClient([1, 2])
    client._vmlb_backoff = ReconnectBackoff(base_s=60.0, max_s=60.0)  # a wait would show

    async def attempts() -> None:
        assert await get_conn(client, 1, group=ConnectionGroup.DEFAULT) is None
        assert await get_conn(client, 1, group=ConnectionGroup.DEFAULT) is None  # not tried
        assert await get_conn(client, 2, group=ConnectionGroup.DEFAULT) is None

    asyncio.run(asyncio.wait_for(attempts(), timeout=20.0))  # no 60 s wait anywhere
    assert client.attempts == [1, 2]
