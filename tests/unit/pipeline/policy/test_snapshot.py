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
        config.hold_s,
        config.hysteresis,
    ) == (3.0, 1.0, 2, 2, 0.25, 0.1)


@pytest.mark.parametrize("value", [-0.1, float("nan"), "1", True])
def test_hold_must_be_a_number_of_seconds_or_inf(value: object) -> None:
    with pytest.raises(ConfigError, match="hold_s"):
        PolicyConfig(hold_s=value)  # type: ignore[arg-type]
    assert PolicyConfig(hold_s=float("inf")).hold_s == float("inf")
    assert PolicyConfig(hold_s=0).hold_s == 0


@pytest.mark.parametrize("value", [-0.1, 1.0, 2])
def test_hysteresis_is_a_fraction_below_one(value: float) -> None:
    with pytest.raises(ConfigError, match="hysteresis"):
        PolicyConfig(hysteresis=value)


def test_idle_candidates_follow_the_claims() -> None:
    snap = fleet(
        host("h1", vms=[vm("a"), vm("b", outstanding=1), vm("c")]),
        host("h2", vms=[vm("d"), vm("x", job_type="other")]),
    )
    assert sorted(v.vm_id for v in snap.idle_candidates("t")) == ["a", "c", "d"]
    before = snap.claims_made
    snap.claim("c")
    snap.claim("b")  # already busy: stays out
    assert sorted(v.vm_id for v in snap.idle_candidates("t")) == ["a", "d"]
    snap.claim("a")
    snap.claim("d")
    assert list(snap.idle_candidates("t")) == []
    assert [v.vm_id for v in snap.idle_candidates("other")] == ["x"]
    assert snap.idle_candidates("nobody") == []
    assert snap.claims_made == before + 4


def test_service_time_is_the_vms_own_but_never_shorter_than_its_types() -> None:
    # Pooled over the type: (0.2 + 0.6) busy / (1 + 2) jobs/s = 0.267 s a job.
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("fast", load=1.0, busy=0.2),  # 0.2 s, shorter than the pool: the pool's
                vm("slow", load=2.0, busy=0.6),  # 0.3 s, longer: its own
                vm("idle"),  # nothing in the window: the pool's
            ],
        )
    )
    pooled = 0.8 / 3
    assert snap.type_service_s("t") == pytest.approx(pooled)
    assert snap.service_s_estimate(snap.vm("fast")) == pytest.approx(pooled)
    assert snap.service_s_estimate(snap.vm("slow")) == pytest.approx(0.3)
    assert snap.service_s_estimate(snap.vm("idle")) == pytest.approx(pooled)
    assert fleet(host("h1", vms=[vm("a")])).service_s_estimate(vm("a")) is None


def test_host_memos_are_dropped_when_a_claim_changes_the_host_s_occupancy() -> None:
    snap = fleet(host("h1", vms=[vm("a")]), host("h2", vms=[vm("b")]))
    calls: list[str] = []

    def compute(host_id: str) -> int:
        calls.append(host_id)
        return len(calls)

    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 1
    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 1  # cached
    assert snap.host_memo("h2", "k", lambda: compute("h2")) == 2
    snap.claim("a")  # a starts a job: h1's occupancy changed
    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 3  # recomputed
    assert snap.host_memo("h2", "k", lambda: compute("h2")) == 2  # untouched
    assert snap.memo("x", lambda: compute("x")) == 4
    snap.claim("b")
    assert snap.memo("x", lambda: compute("x")) == 4  # claims never change a plain memo
    snap.claim("a")  # behind a's running job: h1's occupancy is as it was
    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 3  # kept
    snap.claim("a", -2)  # a is idle again
    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 5
    snap.job_ended("a", 999.0)  # an end explains h1's meter
    assert snap.host_memo("h1", "k", lambda: compute("h1")) == 6


def test_vm_memos_outlive_a_claim_behind_a_running_job_on_a_neighbour_only() -> None:
    # a runs a job, b is idle, c is on another host.
    snap = fleet(
        host("h1", vms=[vm("a", outstanding=1), vm("b")]), host("h2", vms=[vm("c", outstanding=1)])
    )
    computed: list[str] = []

    def memo(vm_id: str) -> int:
        def compute() -> int:
            computed.append(vm_id)
            return len(computed)

        return snap.vm_memo(vm_id, "k", compute)

    def fresh(*vm_ids: str) -> list[str]:
        """Which of the VMs' memos were computed again."""
        computed.clear()
        for vm_id in vm_ids:
            memo(vm_id)
        return sorted(computed)

    assert fresh("a", "b", "c") == ["a", "b", "c"]
    assert fresh("a", "b", "c") == []  # kept
    snap.claim("a")  # a second job behind a's running one: h1's occupancy is as it was
    assert fresh("a", "b", "c") == ["a"]
    snap.claim("a", -1)  # and back to one: still busy
    assert fresh("a", "b", "c") == ["a"]
    snap.claim("b")  # b starts a job: h1's occupancy changed, every VM of h1 is dropped
    assert fresh("a", "b", "c") == ["a", "b"]
    snap.claim("b", -1)  # b idle again: dropped again
    assert fresh("a", "b", "c") == ["a", "b"]
    snap.claim("b", -1)  # a release of an idle VM (it stays at 0): only its own
    assert fresh("a", "b", "c") == ["b"]
    snap.job_ended("a", 999.5)  # an end explains h1's meter: every VM of h1
    assert fresh("a", "b", "c") == ["a", "b"]
    snap.job_ended("a", 999.0)  # an older end than the one known: nothing changes
    assert fresh("a", "b", "c") == []
    snap.claim("c", 5)
    assert fresh("a", "b", "c") == ["c"]
