"""The pure model of one host's I/O path: finite capacity, served fairly, counted per guest.

The paper's host has an I/O limit because Dom0 (the driver domain) does the guests' I/O for them
and has finite CPU. Here that is a single server of `capacity_ops_per_s`: every I/O request costs
`1 / capacity` seconds of the channel, requests are served in slices of at most `slice_s`, and
guests with pending work take turns slice by slice (round robin; each guest's own requests
FIFO). So when the guests of a host together ask for more than its capacity, every one of them
waits, in proportion: the slowdown the paper warns of, for real.

Time is passed in (`now`), so the accounting is tested without sleeping. The asyncio server
(`producers.emulated.server`) sleeps until each slice's `finish_at` and then calls `complete`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.events import IoCounters


class IoKind(StrEnum):
    """Which host-side counter an I/O request advances (the fields of `IoCounters`)."""

    NET_RX = "net_rx"
    NET_TX = "net_tx"
    BLOCK_RD = "block_rd"
    BLOCK_WR = "block_wr"


_COUNTER_FIELD = {
    IoKind.NET_RX: "net_rx_packets",
    IoKind.NET_TX: "net_tx_packets",
    IoKind.BLOCK_RD: "block_rd_reqs",
    IoKind.BLOCK_WR: "block_wr_reqs",
}


@dataclass
class IoRequest:
    """One batched request: a guest asks for `ops` I/O operations in one round trip."""

    vm_id: str
    kind: IoKind
    ops: int
    submitted_at: float
    remaining_ops: int = 0
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.remaining_ops = self.ops

    @property
    def done(self) -> bool:
        return self.remaining_ops == 0


@dataclass(frozen=True)
class Slice:
    """Part of a request the channel serves in one go, from `start_at` to `finish_at`."""

    request: IoRequest
    ops: int
    start_at: float
    finish_at: float


@dataclass
class GuestCounters:
    counts: dict[IoKind, int] = field(default_factory=lambda: dict.fromkeys(IoKind, 0))

    def as_io_counters(self) -> IoCounters:
        return IoCounters(**{_COUNTER_FIELD[kind]: n for kind, n in self.counts.items()})


class IoChannelModel:
    """A host's shared I/O channel: capacity, fair scheduling, per-guest counters."""

    def __init__(
        self,
        capacity_ops_per_s: float,
        *,
        slice_s: float = 0.005,
        catch_up_s: float = 0.05,
    ) -> None:
        if capacity_ops_per_s <= 0:
            raise ValueError("capacity_ops_per_s must be > 0")
        self.capacity_ops_per_s = capacity_ops_per_s
        self.slice_ops = max(1, math.ceil(capacity_ops_per_s * slice_s))
        # While the channel stays busy, each slice starts where the last one ended even if the
        # server woke a little late, so timer overshoot does not lower the capacity; an idle
        # channel does not bank more than `catch_up_s` of unused capacity (no bursts above it).
        self.catch_up_s = catch_up_s
        self._queues: dict[str, deque[IoRequest]] = {}
        self._turns: deque[str] = deque()
        self._busy_until = 0.0
        self._counters: dict[str, GuestCounters] = {}
        self.served_ops = 0
        self.busy_s = 0.0

    # --- requests ---------------------------------------------------------------------------

    def submit(self, vm_id: str, kind: IoKind, ops: int, now: float) -> IoRequest:
        if ops < 0:
            raise ValueError("ops must be >= 0")
        request = IoRequest(vm_id, kind, ops, submitted_at=now)
        self._counters.setdefault(vm_id, GuestCounters())
        if ops == 0:
            request.finished_at = now
            return request
        queue = self._queues.setdefault(vm_id, deque())
        if not queue:
            self._turns.append(vm_id)
        queue.append(request)
        return request

    @property
    def pending_ops(self) -> int:
        return sum(r.remaining_ops for q in self._queues.values() for r in q)

    def next_slice(self, now: float) -> Slice | None:
        """Reserve the channel for the next guest's next slice; None if nothing is pending."""
        while self._turns:
            vm_id = self._turns[0]
            queue = self._queues.get(vm_id)
            if not queue:
                self._turns.popleft()
                continue
            request = queue[0]
            ops = min(self.slice_ops, request.remaining_ops)
            still_busy = self._busy_until >= now - self.catch_up_s
            start_at = self._busy_until if still_busy else now
            finish_at = start_at + ops / self.capacity_ops_per_s
            self._busy_until = finish_at
            self._turns.rotate(-1)  # the next slice goes to the next guest
            return Slice(request, ops, start_at, finish_at)
        return None

    def complete(self, served: Slice) -> bool:
        """Account a served slice; True if it finished its request."""
        request = served.request
        request.remaining_ops -= served.ops
        self._counters[request.vm_id].counts[request.kind] += served.ops
        self.served_ops += served.ops
        self.busy_s += served.finish_at - served.start_at
        if request.done:
            request.finished_at = served.finish_at
            queue = self._queues[request.vm_id]
            queue.popleft()
            if not queue:
                del self._queues[request.vm_id]
                if request.vm_id in self._turns:
                    self._turns.remove(request.vm_id)
            return True
        return False

    # --- what Dom0 reads --------------------------------------------------------------------

    def counters(self) -> dict[str, IoCounters]:
        """Cumulative I/O requests served per guest, as the host sees them."""
        return {vm_id: c.as_io_counters() for vm_id, c in self._counters.items()}

    def register_guest(self, vm_id: str) -> None:
        self._counters.setdefault(vm_id, GuestCounters())
