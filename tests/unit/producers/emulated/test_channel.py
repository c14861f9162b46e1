"""The emulated host's channel model: capacity, fairness and counters, on a virtual clock."""

from __future__ import annotations

import pytest

from producers.emulated.channel import IoChannelModel, IoKind


def drain(model: IoChannelModel, now: float, until: float | None = None) -> float:
    """Serve as the asyncio server does, with a perfect timer: return the time it ends."""
    while (served := model.next_slice(now)) is not None:
        if until is not None and served.finish_at > until:
            break
        now = max(now, served.finish_at)
        model.complete(served)
    return now


def test_batch_takes_its_service_time() -> None:
    model = IoChannelModel(1000.0)
    request = model.submit("a", IoKind.BLOCK_RD, 400, now=10.0)
    end = drain(model, 10.0)
    assert request.done and request.finished_at == pytest.approx(10.4)
    assert end == pytest.approx(10.4)
    assert model.counters()["a"].block_rd_reqs == 400


def test_throughput_never_exceeds_capacity_under_overload() -> None:
    model = IoChannelModel(2000.0)
    for vm in ("a", "b", "c"):
        for _ in range(10):
            model.submit(vm, IoKind.BLOCK_WR, 500, now=0.0)  # 15000 ops asked at once
    drain(model, 0.0, until=3.0)
    assert model.served_ops <= 2000 * 3.0
    assert model.served_ops >= 2000 * 3.0 * 0.99
    assert model.busy_s == pytest.approx(model.served_ops / 2000.0)


def test_guests_share_the_channel_fairly_not_first_come() -> None:
    model = IoChannelModel(1000.0)
    big = model.submit("a", IoKind.BLOCK_RD, 1000, now=0.0)
    small = model.submit("b", IoKind.BLOCK_RD, 50, now=0.0)
    drain(model, 0.0)
    assert small.finished_at is not None and big.finished_at is not None
    # b waits for about as much of a's I/O as its own, not for all of a's 1000 ops.
    assert small.finished_at <= 0.11
    assert big.finished_at == pytest.approx(1.05)


def test_contention_stretches_every_guest_in_proportion() -> None:
    alone = IoChannelModel(1000.0)
    solo = alone.submit("a", IoKind.BLOCK_RD, 300, now=0.0)
    drain(alone, 0.0)
    shared = IoChannelModel(1000.0)
    contended = [shared.submit(vm, IoKind.BLOCK_RD, 300, now=0.0) for vm in ("a", "b", "c")]
    drain(shared, 0.0)
    assert solo.finished_at is not None
    for request in contended:
        assert request.finished_at is not None
        assert request.finished_at / solo.finished_at == pytest.approx(3.0, rel=0.05)


def test_late_timer_is_caught_up_but_idle_time_is_not_banked() -> None:
    model = IoChannelModel(1000.0, slice_s=0.01, catch_up_s=0.05)
    model.submit("a", IoKind.BLOCK_RD, 20, now=0.0)
    first = model.next_slice(0.0)
    assert first is not None
    model.complete(first)
    second = model.next_slice(0.013)  # woke 3 ms late: the next slice starts where the last ended
    assert second is not None and second.start_at == pytest.approx(first.finish_at)
    model.complete(second)
    model.submit("a", IoKind.BLOCK_RD, 10, now=5.0)  # long idle: starts now, no burst
    third = model.next_slice(5.0)
    assert third is not None and third.start_at == 5.0


def test_counters_per_kind_and_zero_op_requests() -> None:
    model = IoChannelModel(100.0)
    model.register_guest("idle")
    model.submit("a", IoKind.NET_RX, 3, now=0.0)
    model.submit("a", IoKind.NET_TX, 4, now=0.0)
    empty = model.submit("a", IoKind.BLOCK_WR, 0, now=0.0)
    assert empty.done
    drain(model, 0.0)
    counters = model.counters()
    assert (
        counters["a"].net_rx_packets,
        counters["a"].net_tx_packets,
        counters["a"].total_ops,
    ) == (3, 4, 7)
    assert counters["idle"].total_ops == 0
    assert model.pending_ops == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        IoChannelModel(0)
