"""A bounded buffer of messages waiting for the broker, so a broker outage costs data, not a crash.

Registrations (compacted topics) are kept latest-per-key: only the newest matters, and there is
one per host or VM, so they are never dropped. Everything else (telemetry samples) is a bounded
FIFO: when full, the oldest message is dropped and counted. Old telemetry is the least useful;
the count says how much was lost. Thread-safe: kafka-python calls back from its sender thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    #: Latest-per-key semantics (a compacted topic): a newer message for the key replaces it.
    compacted: bool = False
    #: Order of creation, so a stale compacted message put back never replaces a newer one.
    seq: int = 0
    #: An explicit partition (a HostSample goes to its VMs' partition), or the key's.
    partition: int | None = None


class Outbox:
    def __init__(self, max_messages: int = 10_000) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._latest: OrderedDict[tuple[str, bytes | None], Outgoing] = OrderedDict()
        self._fifo: deque[Outgoing] = deque()
        self._seq = 0
        #: Messages dropped because the buffer was full (only non-compacted ones).
        self.dropped = 0

    def put(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        *,
        compacted: bool = False,
        partition: int | None = None,
    ) -> None:
        with self._lock:
            self._seq += 1
            message = Outgoing(topic, key, value, compacted, self._seq, partition)
            if compacted:
                self._latest.pop((topic, key), None)
                self._latest[(topic, key)] = message
            else:
                self._fifo.append(message)
                self._trim()

    def put_back(self, message: Outgoing) -> None:
        """Return a message whose delivery failed: it goes first in line, within the bound."""
        with self._lock:
            if message.compacted:
                newer = self._latest.get((message.topic, message.key))
                if newer is None or newer.seq < message.seq:
                    self._latest[(message.topic, message.key)] = message
                    self._latest.move_to_end((message.topic, message.key), last=False)
                return
            if len(self._fifo) >= self.max_messages:
                self.dropped += 1  # the buffer is full of newer messages: this one is the oldest
                return
            self._fifo.appendleft(message)

    def take(self, limit: int | None = None) -> list[Outgoing]:
        """Remove and return up to `limit` messages: registrations first, then the FIFO."""
        with self._lock:
            taken: list[Outgoing] = []
            while self._latest and (limit is None or len(taken) < limit):
                taken.append(self._latest.popitem(last=False)[1])
            while self._fifo and (limit is None or len(taken) < limit):
                taken.append(self._fifo.popleft())
            return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._latest) + len(self._fifo)

    def _trim(self) -> None:
        while len(self._fifo) > self.max_messages:
            self._fifo.popleft()
            self.dropped += 1
