"""Pure counter arithmetic: deltas of cumulative I/O counters, with resets.

Hypervisor counters are cumulative and restart from zero when a domain restarts (or a device is
re-plugged, or a 32-bit counter wraps). A counter that went backwards is taken to have restarted
from zero, so its new value is the whole delta: an under-count at worst, never a negative delta.
A changed incarnation is a restart even if the counter did not go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.events import IoCounters

_FIELDS = ("net_rx_packets", "net_tx_packets", "block_rd_reqs", "block_wr_reqs")


def counter_delta(previous: int, current: int) -> int:
    """The increase of one cumulative counter; a counter that went backwards restarted at zero."""
    return current - previous if current >= previous else current


def counters_delta_ops(previous: IoCounters, current: IoCounters) -> int:
    """I/O requests between two readings, field by field, each with reset handling."""
    return sum(counter_delta(getattr(previous, f), getattr(current, f)) for f in _FIELDS)


@dataclass(frozen=True)
class Baseline:
    """The last reading of one VM: what the next delta is taken from."""

    counters: IoCounters
    incarnation: str | None
    read_at: float


@dataclass(frozen=True)
class Delta:
    """I/O of one VM between two readings."""

    io_ops: int
    interval_s: float
    reset: bool


class CounterBaselines:
    """The last reading per VM. The first reading of a VM is a baseline only: no delta.

    (A VM first seen mid-run may have counted for a long time before; publishing that as one
    interval's I/O would make it look like a burst.)
    """

    def __init__(self) -> None:
        self._last: dict[str, Baseline] = {}

    def advance(
        self, vm_id: str, counters: IoCounters, incarnation: str | None, now: float
    ) -> Delta | None:
        """Record a reading; return the delta since the previous one (None on first sight or if
        no time passed)."""
        previous = self._last.get(vm_id)
        if previous is not None and now <= previous.read_at:
            return None  # a clock that did not move: keep the older baseline
        self._last[vm_id] = Baseline(counters, incarnation, now)
        if previous is None:
            return None
        interval_s = now - previous.read_at
        if previous.incarnation != incarnation:
            return Delta(io_ops=counters.total_ops, interval_s=interval_s, reset=True)
        io_ops = counters_delta_ops(previous.counters, counters)
        went_back = any(getattr(counters, f) < getattr(previous.counters, f) for f in _FIELDS)
        return Delta(io_ops=io_ops, interval_s=interval_s, reset=went_back)

    def forget(self, vm_id: str) -> None:
        self._last.pop(vm_id, None)

    def known(self) -> set[str]:
        return set(self._last)
