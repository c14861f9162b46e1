"""pipeline.fleet.status: the seconds each host spends over its limit, per telemetry interval,
and what each host's Dom0 says of itself (`/hosts`)."""

from __future__ import annotations

from pipeline.events import HostRegistration
from pipeline.fleet.status import OverLimitClock, fleet_status
from pipeline.fleet.view import FleetView
from pipeline.policy.registry import build_policy
from tests.unit.pipeline.fleet_builders import (
    CONFIG,
    NOW,
    add_host,
    add_state,
    add_vm,
    fleet_of_one,
)


def fleet() -> FleetView:
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_host(view, "h2", io_limit=None)
    add_vm(view, "a1", "h1")
    add_vm(view, "a2", "h1")
    add_vm(view, "b1", "h2")
    return view


def report(view: FleetView, at: float, a1: float, a2: float = 0.0, b1: float = 5000.0) -> None:
    add_state(view, "a1", "h1", io_ops_per_s=a1, last_telemetry_at=at)
    add_state(view, "a2", "h1", io_ops_per_s=a2, last_telemetry_at=at)
    add_state(view, "b1", "h2", io_ops_per_s=b1, last_telemetry_at=at)


def clock() -> tuple[OverLimitClock, list[tuple[str, float]]]:
    recorded: list[tuple[str, float]] = []
    return OverLimitClock(lambda host, s: recorded.append((host, s))), recorded


def test_an_interval_counts_when_the_host_s_summed_io_is_above_its_limit():
    view, (over, recorded) = fleet(), clock()
    report(view, NOW, a1=600, a2=600)
    over.observe(view)  # the first look is a baseline
    assert recorded == []
    report(view, NOW + 1, a1=600, a2=600)  # 1200 > 1000: over, from the VMs' sum
    over.observe(view)
    report(view, NOW + 2.5, a1=600, a2=400)  # exactly at the limit is not above it
    over.observe(view)
    report(view, NOW + 3, a1=900, a2=200)
    over.observe(view)
    assert recorded == [("h1", 1.0), ("h1", 0.5)]
    assert over.over_limit_s == {"h1": 1.5}


def test_no_news_counts_nothing_and_a_long_silence_counts_at_most_the_cap():
    view, (over, recorded) = fleet(), clock()
    report(view, NOW, a1=2000)
    over.observe(view)
    over.observe(view)  # looked again before new telemetry: nothing to add
    report(view, NOW + 60, a1=2000)  # a minute of silence, then over
    over.observe(view)
    assert recorded == [("h1", over.max_interval_s)]


def test_a_host_without_a_limit_is_never_over_it():
    view, (over, recorded) = fleet(), clock()
    for n in range(3):
        report(view, NOW + n, a1=0, b1=10_000)
        over.observe(view)
    assert all(host != "h2" for host, _ in recorded)
    assert recorded == []


def test_each_host_says_how_its_dom0_reads_the_counters():
    view = fleet_of_one()
    policy = build_policy("io-aware", CONFIG)
    assert fleet_status(view, view.snapshot(NOW, CONFIG), policy)[0]["telemetry_path"] is None
    host = HostRegistration(
        host_id="h1", io_limit_ops_per_s=1000.0, telemetry_path="per-device", registered_at=NOW
    )
    view.apply("hosts", host.key(), host.to_bytes())
    hosts = fleet_status(view, view.snapshot(NOW, CONFIG), policy)
    assert [(h["host_id"], h["telemetry_path"]) for h in hosts] == [("h1", "per-device")]
