"""Counter deltas and resets (producers.telemetry.counters)."""

from __future__ import annotations

import pytest

from pipeline.events import IoCounters
from producers.telemetry.counters import CounterBaselines, counter_delta, counters_delta_ops


def c(rx: int = 0, tx: int = 0, rd: int = 0, wr: int = 0) -> IoCounters:
    return IoCounters(net_rx_packets=rx, net_tx_packets=tx, block_rd_reqs=rd, block_wr_reqs=wr)


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [(10, 15, 5), (10, 10, 0), (0, 7, 7), (100, 3, 3), (100, 0, 0)],
)
def test_counter_delta_never_negative_and_backwards_means_from_zero(
    previous: int, current: int, delta: int
) -> None:
    assert counter_delta(previous, current) == delta


def test_fields_reset_independently() -> None:
    # The NIC's counters restarted (device re-plugged); the disk's kept counting.
    assert counters_delta_ops(c(rx=1000, tx=500, rd=50, wr=20), c(rx=4, tx=6, rd=60, wr=25)) == (
        4 + 6 + 10 + 5
    )


def test_first_reading_is_a_baseline_only() -> None:
    baselines = CounterBaselines()
    assert baselines.advance("vm1", c(rd=10_000), "i1", now=100.0) is None
    delta = baselines.advance("vm1", c(rd=10_050, wr=5), "i1", now=101.5)
    assert delta is not None
    assert (delta.io_ops, delta.interval_s, delta.reset) == (55, 1.5, False)


def test_counter_going_backwards_is_a_reset() -> None:
    baselines = CounterBaselines()
    baselines.advance("vm1", c(rd=500), "i1", now=1.0)
    delta = baselines.advance("vm1", c(rd=30), "i1", now=2.0)
    assert delta is not None
    assert (delta.io_ops, delta.reset) == (30, True)


def test_new_incarnation_is_a_reset_even_if_counters_grew() -> None:
    baselines = CounterBaselines()
    baselines.advance("vm1", c(rd=500), "dom/1", now=1.0)
    # The domain restarted (new id) and did more I/O since than it had before.
    delta = baselines.advance("vm1", c(rd=700), "dom/2", now=2.0)
    assert delta is not None
    assert (delta.io_ops, delta.reset) == (700, True)


def test_clock_that_did_not_move_keeps_the_baseline() -> None:
    baselines = CounterBaselines()
    baselines.advance("vm1", c(rd=1), "i", now=5.0)
    assert baselines.advance("vm1", c(rd=9), "i", now=5.0) is None
    delta = baselines.advance("vm1", c(rd=11), "i", now=6.0)
    assert delta is not None and delta.io_ops == 10


def test_forgotten_vm_starts_over_with_a_baseline() -> None:
    baselines = CounterBaselines()
    baselines.advance("vm1", c(rd=1), "i", now=1.0)
    baselines.forget("vm1")
    assert baselines.known() == set()
    assert baselines.advance("vm1", c(rd=99), "i", now=2.0) is None
