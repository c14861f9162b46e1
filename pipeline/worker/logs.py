"""The worker's log during a broker outage: each repeated Kafka client error once per interval.

aiokafka (under Faust and the dispatcher) retries a lost broker every `retry_backoff_ms`, 100 ms,
in each of its loops (metadata, fetch, heartbeat, coordinator, sender), and logs every failed
attempt at ERROR ("Unable connect to node with id 1", "Unable to update metadata from [1]",
"Failed fetch messages from 1"): a worker logged 2,000-26,000 ERROR lines per outage, burying
anything else. aiokafka has no reconnect back-off to lengthen instead (its only knob,
`retry_backoff_ms`, also delays every ordinary retry, such as a leader moving after a broker
died), and Faust builds its clients without passing one. So the records are limited where they
are made: `RepeatLimit` lets the first record of each kind (logger, level, message template)
through, then at most one per `interval_s`, saying how many like it it stood for. DEBUG records
pass untouched. `limit_kafka_client_logs()` installs it on the Kafka client libraries' loggers,
once per process (`vmlb worker` does). Regression test: tests/integration/pipeline/
test_worker_outage_log.py (a real broker stopped for 20 s under a running worker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: The loggers of aiokafka's modules that log per failed attempt, and Faust's aiokafka driver.
KAFKA_CLIENT_LOGGERS = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "aiokafka.producer.message_accumulator",
    "faust.transport.drivers.aiokafka",
)

DEFAULT_INTERVAL_S = 10.0


class RepeatLimit(logging.Filter):
    """At most one record per `interval_s` of each (logger, level, message template)."""

    def __init__(
        self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        #: Per kind: when a record of it was last let through, and how many were held since.
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        passed = self._kinds.get(kind)
        if passed is not None and now - passed[0] < self.interval_s:
            self._kinds[kind] = (passed[0], passed[1] + 1)
            return False
        self._kinds[kind] = (now, 0)
        if passed is not None and passed[1]:
            # Said once, with the count: the message stays one line an operator can grep.
            record.msg = (
                f"{record.getMessage()} (and {passed[1]} more like it in the last "
                f"{now - passed[0]:.0f} s)"
            )
            record.args = ()
        return True


_installed: RepeatLimit | None = None


def limit_kafka_client_logs(interval_s: float = DEFAULT_INTERVAL_S) -> RepeatLimit:
    """Install one RepeatLimit on every Kafka client logger of this process (idempotent)."""
    global _installed
    if _installed is None:
        _installed = RepeatLimit(interval_s)
        for name in KAFKA_CLIENT_LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed
