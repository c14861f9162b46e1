"""pipeline.worker.logs: a Kafka client's repeated errors once per interval, with their count."""

from __future__ import annotations

import logging

from pipeline.worker.logs import KAFKA_CLIENT_LOGGERS, RepeatLimit, limit_kafka_client_logs


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


def test_installed_once_on_every_kafka_client_logger():
    first = limit_kafka_client_logs()
    assert limit_kafka_client_logs() is first
    for name in KAFKA_CLIENT_LOGGERS:
        assert logging.getLogger(name).filters.count(first) == 1
