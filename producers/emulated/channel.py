"""The pure model of one host's I/O path: per-VM devices behind one shared, collapsing channel.

The paper's host has an I/O limit because Dom0 (the driver domain) does the guests' I/O for them
and has finite CPU. Here that is a fluid model, the simulator's own (`benchmarks.sim.channel`):

- each guest's I/O is bounded by its own device (`device_ops_per_s`, as a virtio queue or a
  provisioned volume bounds a real VM's): while it has requests pending, it asks the host for
  that rate; a guest without a device cap asks for the whole channel;
- the host's *demand* D is the sum over its guests with pending requests; its channel delivers
  `producers.emulated.collapse.effective_capacity_ops_per_s(D, C, collapse)`, all of D up to the
  capacity C, and past it a collapsing share, split in proportion to what each guest asks
  (processor sharing), so every busy guest's I/O runs at `speed(D, C, collapse)` of its device
  rate. One guest alone cannot overload a host whose channel is faster than its device; several
  busy at once can, and then every one of them is served worse, and the host as a whole
  delivers less (goodput lost to collapse).

Accounting, for Dom0 and for the benchmarks: cumulative served operations per guest and kind
(what Dom0's counters show), and per host the operations asked (∫ D dt: served, or lost), lost
(∫ (min(D, C) - delivered) dt), and the seconds saturated (D > C) and busy (D > 0).

Time is passed in (`now`), so the accounting is tested without sleeping. The asyncio server
(`producers.emulated.server`) advances the model to the clock, wakes the guests whose requests
finished, and sleeps until the next one is due (`next_finish_at`) or new work arrives.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.events import IoCounters
from producers.emulated.collapse import DEFAULT_COLLAPSE, lost_goodput_ops_per_s, speed

#: Work left below this (operations) counts as done: float noise, not I/O.
DONE_EPS_OPS = 1e-6


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
    remaining_ops: float = 0.0
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.remaining_ops = float(self.ops)

    @property
    def done(self) -> bool:
        return self.finished_at is not None


@dataclass
class Guest:
    """One VM's side of the channel: its device, its pending requests, its counters."""

    vm_id: str
    #: ops/s the VM's own device allows; None: no cap of its own (it asks the whole channel).
    device_ops_per_s: float | None = None
    pending: deque[IoRequest] = field(default_factory=deque)
    #: Operations served per kind (fractional while a request is in progress).
    served: dict[IoKind, float] = field(default_factory=lambda: dict.fromkeys(IoKind, 0.0))

    def asks_ops_per_s(self, capacity_ops_per_s: float) -> float:
        if not self.pending:
            return 0.0
        return self.device_ops_per_s if self.device_ops_per_s else capacity_ops_per_s

    def as_io_counters(self) -> IoCounters:
        return IoCounters(
            **{_COUNTER_FIELD[kind]: math.floor(n + 1e-9) for kind, n in self.served.items()}
        )


class IoChannelModel:
    """A host's shared I/O channel: per-VM device caps, collapse past capacity, counters."""

    def __init__(
        self,
        capacity_ops_per_s: float,
        *,
        collapse: float = DEFAULT_COLLAPSE,
        device_ops_per_s: dict[str, float | None] | None = None,
        now: float = 0.0,
    ) -> None:
        if capacity_ops_per_s <= 0:
            raise ValueError("capacity_ops_per_s must be > 0")
        if collapse < 0:
            raise ValueError("collapse must be >= 0")
        self.capacity_ops_per_s = capacity_ops_per_s
        self.collapse = collapse
        self._guests: dict[str, Guest] = {}
        for vm_id, cap in (device_ops_per_s or {}).items():
            self.register_guest(vm_id, cap)
        self._finished: list[IoRequest] = []
        self._updated_at = now
        #: Cumulative accounting (operations, seconds) since the model started.
        self.served_ops = 0.0
        self.asked_ops = 0.0
        self.lost_ops = 0.0
        self.busy_s = 0.0
        self.saturated_s = 0.0

    # --- guests and requests ----------------------------------------------------------------

    def register_guest(self, vm_id: str, device_ops_per_s: float | None = None) -> None:
        if device_ops_per_s is not None and device_ops_per_s <= 0:
            raise ValueError(f"guest {vm_id}: device_ops_per_s must be > 0")
        guest = self._guests.get(vm_id)
        if guest is None:
            self._guests[vm_id] = Guest(vm_id, device_ops_per_s)
        elif device_ops_per_s is not None:
            guest.device_ops_per_s = device_ops_per_s

    def submit(self, vm_id: str, kind: IoKind, ops: int, now: float) -> IoRequest:
        if ops < 0:
            raise ValueError("ops must be >= 0")
        self.advance(now)  # what ran so far ran at the old rates
        self.register_guest(vm_id)
        request = IoRequest(vm_id, kind, ops, submitted_at=now)
        if ops == 0:
            request.finished_at = now
            return request
        self._guests[vm_id].pending.append(request)
        return request

    @property
    def pending_ops(self) -> float:
        return sum(r.remaining_ops for g in self._guests.values() for r in g.pending)

    # --- time -------------------------------------------------------------------------------

    def demand_ops_per_s(self) -> float:
        """What the guests with pending requests ask now (D)."""
        return sum(g.asks_ops_per_s(self.capacity_ops_per_s) for g in self._guests.values())

    def advance(self, now: float) -> None:
        """Serve everything due until `now`, step by step as requests finish and rates change."""
        while self._updated_at < now:
            busy = [g for g in self._guests.values() if g.pending]
            if not busy:
                self._updated_at = now
                return
            capacity = self.capacity_ops_per_s
            demand = sum(g.asks_ops_per_s(capacity) for g in busy)
            factor = speed(demand, capacity, self.collapse)
            rates = [g.asks_ops_per_s(capacity) * factor for g in busy]
            until_next = min(
                g.pending[0].remaining_ops / r for g, r in zip(busy, rates, strict=True)
            )
            dt = min(now - self._updated_at, until_next)
            self._updated_at += dt
            self.asked_ops += demand * dt
            self.busy_s += dt
            if demand > capacity:
                self.saturated_s += dt
                self.lost_ops += lost_goodput_ops_per_s(demand, capacity, self.collapse) * dt
            for guest, rate in zip(busy, rates, strict=True):
                head = guest.pending[0]
                step = min(head.remaining_ops, rate * dt)
                head.remaining_ops -= step
                guest.served[head.kind] += step
                self.served_ops += step
                if head.remaining_ops <= DONE_EPS_OPS:
                    guest.served[head.kind] += head.remaining_ops  # count it whole
                    self.served_ops += head.remaining_ops
                    head.remaining_ops = 0.0
                    head.finished_at = self._updated_at
                    guest.pending.popleft()
                    self._finished.append(head)

    def next_finish_at(self) -> float | None:
        """When the next pending request finishes at the current rates (None: nothing pending)."""
        busy = [g for g in self._guests.values() if g.pending]
        if not busy:
            return None
        capacity = self.capacity_ops_per_s
        factor = speed(sum(g.asks_ops_per_s(capacity) for g in busy), capacity, self.collapse)
        return self._updated_at + min(
            g.pending[0].remaining_ops / (g.asks_ops_per_s(capacity) * factor) for g in busy
        )

    def pop_finished(self) -> list[IoRequest]:
        """The requests finished since the last call, in the order they finished."""
        finished, self._finished = self._finished, []
        return finished

    # --- what Dom0 reads --------------------------------------------------------------------

    def counters(self) -> dict[str, IoCounters]:
        """Cumulative I/O requests served per guest, as the host sees them."""
        return {vm_id: g.as_io_counters() for vm_id, g in self._guests.items()}

    def device_ops_per_s(self, vm_id: str) -> float | None:
        guest = self._guests.get(vm_id)
        return guest.device_ops_per_s if guest else None
