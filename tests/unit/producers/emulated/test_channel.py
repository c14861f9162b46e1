"""The emulated host's channel model: device caps, sharing, collapse and counters, on a virtual
clock (hand-checked numbers)."""

from __future__ import annotations

import pytest

from producers.emulated.channel import IoChannelModel, IoKind, IoRequest
from producers.emulated.collapse import effective_capacity_ops_per_s


def run(model: IoChannelModel, until: float) -> list[IoRequest]:
    """Serve as the asyncio server does, with a perfect timer, until `until`."""
    finished = []
    now = 0.0
    while (due := model.next_finish_at()) is not None and due <= until:
        now = max(now, due)
        model.advance(now)
        finished.extend(model.pop_finished())
    model.advance(until)
    finished.extend(model.pop_finished())
    return finished


def test_a_capped_guest_alone_runs_at_its_device_rate_not_the_hosts() -> None:
    model = IoChannelModel(1000.0, device_ops_per_s={"a": 200.0})
    request = model.submit("a", IoKind.BLOCK_RD, 100, now=0.0)
    run(model, 5.0)
    assert request.finished_at == pytest.approx(0.5)  # 100 ops at 200 ops/s, not 0.1 s
    assert model.counters()["a"].block_rd_reqs == 100
    assert (model.asked_ops, model.served_ops, model.lost_ops) == pytest.approx((100, 100, 0))


def test_an_uncapped_guest_asks_the_whole_channel() -> None:
    model = IoChannelModel(1000.0)
    request = model.submit("a", IoKind.BLOCK_RD, 400, now=10.0)
    model.advance(10.0)
    run(model, 20.0)
    assert request.finished_at == pytest.approx(10.4)


def test_guests_under_capacity_together_run_at_full_speed() -> None:
    # 300 + 300 + 300 = 900 <= 1000: nobody slows anybody down.
    caps = {vm: 300.0 for vm in ("a", "b", "c")}
    model = IoChannelModel(1000.0, device_ops_per_s=caps)
    requests = [model.submit(vm, IoKind.BLOCK_WR, 150, now=0.0) for vm in caps]
    run(model, 5.0)
    assert [r.finished_at for r in requests] == pytest.approx([0.5, 0.5, 0.5])
    assert model.saturated_s == 0.0 and model.lost_ops == 0.0


def test_past_capacity_every_guest_slows_and_the_host_loses_goodput() -> None:
    # Two guests of 1000 ops/s on a 1000 ops/s channel, collapse 0.5: D = 2C, so the channel
    # delivers C / 1.5 = 666.7 ops/s, 333.3 each; 100 ops each take 0.3 s instead of 0.1 s.
    model = IoChannelModel(1000.0, collapse=0.5, device_ops_per_s={"a": 1000.0, "b": 1000.0})
    a = model.submit("a", IoKind.BLOCK_RD, 100, now=0.0)
    b = model.submit("b", IoKind.BLOCK_RD, 100, now=0.0)
    run(model, 1.0)
    assert a.finished_at == pytest.approx(0.3) and b.finished_at == pytest.approx(0.3)
    assert model.served_ops == pytest.approx(200.0)
    assert model.asked_ops == pytest.approx(2000.0 * 0.3)  # D x time
    assert model.lost_ops == pytest.approx((1000.0 - 1000.0 / 1.5) * 0.3)
    assert model.saturated_s == pytest.approx(0.3)
    delivered = effective_capacity_ops_per_s(2000.0, 1000.0, 0.5)
    assert delivered == pytest.approx(200 / 0.3)


def test_without_collapse_an_overloaded_channel_still_serves_its_capacity() -> None:
    model = IoChannelModel(1000.0, collapse=0.0, device_ops_per_s={"a": 1000.0, "b": 1000.0})
    model.submit("a", IoKind.BLOCK_RD, 100, now=0.0)
    model.submit("b", IoKind.BLOCK_RD, 100, now=0.0)
    [first, second] = run(model, 1.0)
    assert first.finished_at == pytest.approx(0.2) and second.finished_at == pytest.approx(0.2)
    assert model.lost_ops == 0.0


def test_rates_change_when_a_guest_finishes_or_arrives() -> None:
    # a alone (cap 1000 on a 1000 channel): full speed. b arrives at 0.05 with 30 ops: D = 2C,
    # each gets 333.3 ops/s; b's 30 ops take 0.09 s (to 0.14), a does 30 more meanwhile; a's
    # last 20 ops then run alone at 1000: a ends at 0.16.
    model = IoChannelModel(1000.0, collapse=0.5, device_ops_per_s={"a": 1000.0, "b": 1000.0})
    a = model.submit("a", IoKind.BLOCK_RD, 100, now=0.0)
    model.advance(0.05)
    b = model.submit("b", IoKind.NET_TX, 30, now=0.05)
    run(model, 1.0)
    assert b.finished_at == pytest.approx(0.14)
    assert a.finished_at == pytest.approx(0.16)
    counters = model.counters()
    assert (counters["a"].block_rd_reqs, counters["b"].net_tx_packets) == (100, 30)


def test_a_guests_requests_are_served_in_order() -> None:
    model = IoChannelModel(100.0, device_ops_per_s={"a": 100.0})
    first = model.submit("a", IoKind.BLOCK_RD, 10, now=0.0)
    second = model.submit("a", IoKind.BLOCK_WR, 10, now=0.0)
    assert model.next_finish_at() == pytest.approx(0.1)
    run(model, 1.0)
    assert (first.finished_at, second.finished_at) == pytest.approx((0.1, 0.2))
    assert model.pending_ops == 0


def test_counters_per_kind_and_zero_op_requests() -> None:
    model = IoChannelModel(100.0)
    model.register_guest("idle")
    model.submit("a", IoKind.NET_RX, 3, now=0.0)
    model.submit("a", IoKind.NET_TX, 4, now=0.0)
    empty = model.submit("a", IoKind.BLOCK_WR, 0, now=0.0)
    assert empty.done
    run(model, 1.0)
    counters = model.counters()
    assert (
        counters["a"].net_rx_packets,
        counters["a"].net_tx_packets,
        counters["a"].total_ops,
    ) == (3, 4, 7)
    assert counters["idle"].total_ops == 0
    assert model.pending_ops == 0 and model.next_finish_at() is None


def test_counters_show_a_request_in_progress_by_what_it_has_done() -> None:
    model = IoChannelModel(100.0)
    model.submit("a", IoKind.BLOCK_RD, 100, now=0.0)
    model.advance(0.255)
    assert model.counters()["a"].block_rd_reqs == 25  # 25.5 done, whole ops counted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity_ops_per_s": 0}, "capacity"),
        ({"capacity_ops_per_s": 10, "collapse": -1}, "collapse"),
        ({"capacity_ops_per_s": 10, "device_ops_per_s": {"a": 0.0}}, "device_ops_per_s"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IoChannelModel(**kwargs)
