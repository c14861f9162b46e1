"""FleetSnapshot: derived totals, the per-type index, claims, estimates, config validation."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.policy.snapshot import HostView, PolicyConfig, VmView
from pipeline.policy.testing import NOW, fleet, host, vm


def test_paper_total_is_sum_of_load_times_io_per_job_unknown_counts_zero() -> None:
    h = host(
        "h1",
        vms=[
            vm("a", load=2.0, io_per_job=100.0, io_ops_per_s=150.0),  # 200 ops/s
            vm("b", load=0.5, io_per_job=40.0, io_ops_per_s=30.0),  # 20 ops/s
            vm("c", load=3.0, io_per_job=None, io_ops_per_s=7.0),  # unknown: 0
        ],
    )
    assert h.paper_total_io_ops_per_s == pytest.approx(220.0)
    assert h.measured_io_ops_per_s == pytest.approx(187.0)


def test_candidates_indexed_by_type_in_host_then_vm_order() -> None:
    snap = fleet(
        host("h2", vms=[vm("z", "web"), vm("y", "db")]),
        host("h1", vms=[vm("x", "web"), vm("w", "web")]),
    )
    assert [v.vm_id for v in snap.candidates("web")] == ["w", "x", "z"]
    assert [v.vm_id for v in snap.candidates("db")] == ["y"]
    assert list(snap.candidates("nope")) == []
    assert snap.serves("web") and not snap.serves("nope")


def test_claims_add_to_reported_outstanding() -> None:
    snap = fleet(host("h1", vms=[vm("a", outstanding=3)]))
    assert snap.claims("a") == 0
    snap.claim("a")
    snap.claim("a")
    assert snap.claims("a") == 2
    assert snap.outstanding(snap.vm("a")) == 5


def test_claim_on_unknown_vm_is_an_error() -> None:
    snap = fleet(host("h1"))
    with pytest.raises(KeyError, match="nope"):
        snap.claim("nope")


def test_io_per_job_estimate_falls_back_to_median_of_same_type() -> None:
    snap = fleet(
        host("h1", vms=[vm("a", "t", io_per_job=10.0), vm("b", "t", io_per_job=30.0)]),
        host("h2", vms=[vm("c", "t", io_per_job=50.0), vm("d", "t"), vm("e", "u")]),
    )
    assert snap.io_per_job_estimate(snap.vm("a")) == 10.0
    assert snap.io_per_job_estimate(snap.vm("d")) == 30.0  # median of 10, 30, 50
    assert snap.io_per_job_estimate(snap.vm("e")) is None  # no VM of type u measured


def test_telemetry_age() -> None:
    snap = fleet(host("h1", age_s=2.5), host("h2", age_s=None))
    assert snap.telemetry_age_s(snap.host("h1")) == pytest.approx(2.5)
    assert snap.telemetry_age_s(snap.host("h2")) is None


def test_duplicate_host_and_misfiled_vm_are_refused() -> None:
    with pytest.raises(ValueError, match="h1"):
        fleet(host("h1"), host("h1", vms=[vm("other")]))
    stray = VmView(vm_id="a", host_id="h9", job_type="t")
    with pytest.raises(ValueError, match="h9"):
        fleet(HostView("h1", 1000.0, NOW, (stray,)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("stale_after_s", 0), ("horizon_s", -1.0), ("choices", 0), ("warmup_outstanding_per_vm", 1.5)],
)
def test_policy_config_names_the_bad_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        PolicyConfig(**{field: value})


def test_policy_config_defaults_are_documented_values() -> None:
    config = PolicyConfig()
    assert (
        config.stale_after_s,
        config.horizon_s,
        config.warmup_outstanding_per_vm,
        config.choices,
    ) == (
        3.0,
        5.0,
        2,
        2,
    )
