"""The decision-cost benchmark times what it says: the common path, and a fleet at its limits
where every decision waits."""

from __future__ import annotations

from benchmarks.sim.cost import decision_cost, mean_decide_us, synthetic_fleet, synthetic_hosts
from pipeline.policy.load import running_io_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig


def test_the_saturated_fleet_is_over_its_limits_on_every_host() -> None:
    snapshot = FleetSnapshot(synthetic_hosts(50, saturated=True), 1_000.0, PolicyConfig())
    for host in snapshot.hosts():
        assert host.limit_ops_per_s is not None
        assert running_io_ops_per_s(snapshot, host) > host.limit_ops_per_s


def test_the_common_fleet_has_room() -> None:
    snapshot = synthetic_fleet(50)
    under = [
        h for h in snapshot.hosts() if running_io_ops_per_s(snapshot, h) < (h.limit_ops_per_s or 0)
    ]
    assert len(under) == 50


def test_every_saturated_decision_waits_and_both_sizes_are_timed() -> None:
    # mean_decide_us raises if a decision on the saturated fleet does anything but wait.
    assert mean_decide_us("io-aware", 20, 60, saturated=True) > 0
    cost = decision_cost(
        "io-aware", small=10, large=40, decisions=50, repeats=1, waiting_decisions=50
    )
    assert cost.waiting_ratio is not None and cost.waiting_ratio > 0
