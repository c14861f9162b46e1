"""The worker's Kafka clients through a broker outage: a reconnect back-off, and a quiet log.

The one place for both (`install()`, called by `vmlb worker` before Faust starts).

aiokafka 0.14 (under Faust and the dispatcher) has no reconnect back-off: a failed connection
makes its client ask for metadata again at once (`AIOKafkaClient._get_conn` calls
`force_metadata_update()`), its fetcher, coordinator and sender loops wait on that metadata and
retry as soon as it fails, and each failure is an ERROR record ("Unable connect to node with id
1", "Unable to update metadata from [1]", "Failed fetch messages from 1"). A worker under a 20 s
outage logged 14,300 ERROR lines (2,000-26,000 in the chaos runs) and spun a core. Its one knob,
`retry_backoff_ms`, does not cover that path (and would slow every ordinary retry), Faust passes
none to the clients it builds, and the upstream fix is an open pull request
(aio-libs/aiokafka#1014; faust-streaming/faust#624 asks the same). So:

- `ReconnectBackoff`, patched around `AIOKafkaClient._get_conn`: after a failed connection to a
  broker, the next attempt waits 50 ms doubling to 1 s (`RECONNECT_BACKOFF_MAX_MS`, as
  kafka-python's clients: a broker that is back is used again within a second); while another
  broker is not backing off, a connection to one that is fails at once instead, so on a cluster
  with a dead node metadata and leaders come from the live ones without waiting.
- `RepeatLimit` on aiokafka's and Faust's aiokafka driver's loggers: each kind of record
  (logger, level, message template) once, then at most once per 10 s, with the count of those it
  stood for. DEBUG records pass untouched.

Regression test: tests/integration/pipeline/test_worker_outage_log.py (a real broker stopped for
20 s under a running worker: its ERROR lines and its CPU time).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from pipeline.settings import RECONNECT_BACKOFF_MAX_MS

RECONNECT_BACKOFF_MS = 50

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


class ReconnectBackoff:
    """When the next connection attempt to each broker may be made: 50 ms after a first failure,
    doubling with each failure since the last success, at most `max_s`."""

    def __init__(
        self,
        base_s: float = RECONNECT_BACKOFF_MS / 1000,
        max_s: float = RECONNECT_BACKOFF_MAX_MS / 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.clock = clock
        #: Per connection: failures since its last success, and when the last one was.
        self._failed: dict[Hashable, tuple[int, float]] = {}

    def wait_s(self, conn: Hashable) -> float:
        """How long until `conn` may be tried again (0: now)."""
        failed = self._failed.get(conn)
        if failed is None:
            return 0.0
        count, at = failed
        return max(0.0, min(self.base_s * 2 ** (count - 1), self.max_s) - (self.clock() - at))

    def failed(self, conn: Hashable) -> None:
        count = self._failed.get(conn, (0, 0.0))[0]
        self._failed[conn] = (count + 1, self.clock())

    def succeeded(self, conn: Hashable) -> None:
        self._failed.pop(conn, None)


def _with_backoff(get_conn: Any) -> Any:
    """`AIOKafkaClient._get_conn`, each client with its ReconnectBackoff."""

    @functools.wraps(get_conn)
    async def _get_conn(
        self: Any, node_id: Any, *, group: Any = None, no_hint: bool = False
    ) -> Any:
        from aiokafka.client import ConnectionGroup

        group = ConnectionGroup.DEFAULT if group is None else group
        conn_id = (node_id, group)
        backoff = self.__dict__.get("_vmlb_backoff")
        if backoff is None:
            backoff = self.__dict__["_vmlb_backoff"] = ReconnectBackoff()
        if conn_id not in self._conns:
            wait_s = backoff.wait_s(conn_id)
            if wait_s > 0:
                others = [b.nodeId for b in self.cluster.brokers() if b.nodeId != node_id]
                if any(backoff.wait_s((other, group)) == 0 for other in others):
                    return None  # another broker may answer: no reason to wait for this one
                await asyncio.sleep(wait_s)
        conn = await get_conn(self, node_id, group=group, no_hint=no_hint)
        if conn is None:
            backoff.failed(conn_id)
        else:
            backoff.succeeded(conn_id)
        return conn

    _get_conn.vmlb_backoff = True  # type: ignore[attr-defined]
    return _get_conn


_installed: RepeatLimit | None = None


def install(interval_s: float = DEFAULT_INTERVAL_S) -> RepeatLimit:
    """The reconnect back-off on aiokafka's client and one RepeatLimit on every Kafka client
    logger of this process (idempotent)."""
    global _installed
    from aiokafka.client import AIOKafkaClient

    if not getattr(AIOKafkaClient._get_conn, "vmlb_backoff", False):
        AIOKafkaClient._get_conn = _with_backoff(AIOKafkaClient._get_conn)  # type: ignore[method-assign]
    if _installed is None:
        _installed = RepeatLimit(interval_s)
        for name in KAFKA_CLIENT_LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed
