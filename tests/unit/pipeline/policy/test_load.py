"""The I/O formulas on hand-computed numbers."""

from __future__ import annotations

import pytest

from pipeline.policy.load import (
    committed_io_ops,
    job_io_ops_per_s,
    occupancy,
    paper_total_io_ops_per_s,
    projected_io_ops_per_s,
    running_io_ops_per_s,
    service_rate_jobs_per_s,
    unexplained_io_ops_per_s,
    vm_committed_io_ops_per_s,
    vm_unexplained_io_ops_per_s,
)
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig
from pipeline.policy.testing import NOW, fleet, host, vm


def test_projected_takes_the_worst_view_per_vm_never_their_sum() -> None:
    # a: paper 2*100 = 200 > measured 100; committed (3 + 1 claim)*100 over 5 s = 80 -> 200.
    # b: measured 120 > paper 1*50; committed 2*50 / 5 = 20 -> 120. Projected 320.
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("a", load=2.0, io_per_job=100.0, io_ops_per_s=100.0, outstanding=3),
                vm("b", load=1.0, io_per_job=50.0, io_ops_per_s=120.0, outstanding=2),
            ],
        ),
        config=PolicyConfig(horizon_s=5.0),
    )
    snap.claim("a")
    h = snap.host("h1")
    assert paper_total_io_ops_per_s(snap, h) == pytest.approx(250.0)
    assert committed_io_ops(snap, h) == pytest.approx(500.0)
    assert projected_io_ops_per_s(snap, h) == pytest.approx(320.0)


def test_projected_counts_a_backlog_above_the_present() -> None:
    # measured 100, paper 1*100; 9 outstanding * 100 over 2 s = 450 (service rate unknown).
    snap = fleet(
        host("h1", vms=[vm("a", load=1.0, io_per_job=100.0, io_ops_per_s=100.0, outstanding=9)]),
        config=PolicyConfig(horizon_s=2.0),
    )
    assert projected_io_ops_per_s(snap, snap.host("h1")) == pytest.approx(450.0)


def test_service_rate_is_load_over_busy_fraction() -> None:
    assert service_rate_jobs_per_s(vm("a", load=4.0, busy=0.5)) == pytest.approx(8.0)
    assert service_rate_jobs_per_s(vm("a", load=0.0, busy=0.5)) is None
    assert service_rate_jobs_per_s(vm("a", load=4.0, busy=0.0)) is None


@pytest.mark.parametrize(
    ("outstanding", "expected"),
    [
        (0, 0.0),
        # 20 jobs drain in 2 s at 10 jobs/s: under the 5 s horizon, 20 * 30 / 5 = 120.
        (20, 120.0),
        # 50 drain in exactly 5 s: 50 * 30 / 5 = 300 = io_per_job * service rate.
        (50, 300.0),
        # 200 drain in 20 s: still 300 ops/s, one job at a time, not 200 * 30 / 5 = 1200.
        (200, 300.0),
    ],
)
def test_committed_rate_is_bounded_by_one_job_at_a_time(outstanding: int, expected: float) -> None:
    snap = fleet(
        host("h1", vms=[vm("a", load=5.0, busy=0.5, io_per_job=30.0, outstanding=outstanding)]),
        config=PolicyConfig(horizon_s=5.0),
    )
    assert vm_committed_io_ops_per_s(snap, snap.vm("a")) == pytest.approx(expected)


def test_committed_io_of_unmeasured_vm_uses_type_median_else_zero() -> None:
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("a", "t", io_per_job=80.0),
                vm("b", "t", outstanding=2),
                vm("c", "u", outstanding=4),
            ],
        ),
    )
    # b: 2 jobs * median(t)=80 -> 160; c: type u unmeasured -> 0.
    assert committed_io_ops(snap, snap.host("h1")) == pytest.approx(160.0)


def test_a_jobs_rate_is_its_types_io_per_job_over_its_types_service_time() -> None:
    # Type t: median io_per_job of 100 and 60 = 80; service (0.1 + 0.3) busy / (1 + 1) jobs/s
    # = 0.2 s a job: 400 ops/s for every VM of the type, measured or not.
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("a", load=1.0, busy=0.1, io_per_job=100.0),
                vm("b", load=1.0, busy=0.3, io_per_job=60.0),
                vm("c"),
                vm("u", "u", load=1.0, busy=0.5, io_per_job=100.0),  # a type of its own
            ],
        )
    )
    for vm_id in "abc":
        assert job_io_ops_per_s(snap, snap.vm(vm_id)) == pytest.approx(400.0)
    assert job_io_ops_per_s(snap, snap.vm("u")) == pytest.approx(200.0)


def test_hosts_that_run_a_type_far_apart_each_count_their_own_service_time() -> None:
    # h1's VMs of t take 0.1 s a job (load 2, busy 0.2 each), h2's 0.4 s (load 1, busy 0.4):
    # their devices differ 4x, as their limits (2000, 500). Pooled: 1.2 busy / 6 jobs/s = 0.2 s,
    # which would count every
    # job at 40 / 0.2 = 200 ops/s. A host's two VMs agree exactly (no scatter: cv² 0, no noise),
    # so each host counts its own: h1 40 / 0.1 = 400, h2 40 / 0.4 = 100. A VM of t on a host
    # where none of them ran lately (h3) counts the type's pooled time.
    snap = fleet(
        host("h1", 2000.0, [vm(f"a{i}", load=2.0, busy=0.2, io_per_job=40.0) for i in (1, 2)]),
        host("h2", 500.0, [vm(f"b{i}", load=1.0, busy=0.4, io_per_job=40.0) for i in (1, 2)]),
        host("h3", vms=[vm("c")]),
    )
    assert snap.type_service_s("t") == pytest.approx(0.2)
    assert job_io_ops_per_s(snap, snap.vm("a1")) == pytest.approx(400.0)
    assert job_io_ops_per_s(snap, snap.vm("b2")) == pytest.approx(100.0)
    assert job_io_ops_per_s(snap, snap.vm("c")) == pytest.approx(200.0)


def test_hosts_that_differ_within_their_noise_all_count_the_types_pooled_time() -> None:
    # Hosts alike in truth, their means off by sizes' noise: h1's VMs 0.12 and 0.08 s (own
    # 0.4 / 4 = 0.1), h2's 0.14 and 0.10 s (own 0.12); pooled 0.88 / 8 = 0.11. The scatter of a
    # host's VMs around its mean, Σ load x dev² = 0.16 (h1) and 0.111 (h2) over 2 degrees of
    # freedom, x 5 s (the meter's window) gives cv² 0.678; each host's mean of 20 jobs carries
    # noise 0.678 / 20 = 0.034 while the hosts deviate from the pooled time by only
    # (1/11)² = 0.008: no spread beyond noise, so both count 44 / 0.11 = 400 ops/s.
    snap = fleet(
        host("h1", vms=[vm("a1", load=2, busy=0.24, io_per_job=44.0), vm("a2", load=2, busy=0.16)]),
        host("h2", vms=[vm("b1", load=2, busy=0.28), vm("b2", load=2, busy=0.2)]),
    )
    assert snap.type_service_s("t") == pytest.approx(0.11)
    for vm_id in ("a1", "a2", "b1", "b2"):
        assert job_io_ops_per_s(snap, snap.vm(vm_id)) == pytest.approx(400.0)


def one_vm_per_host(
    limits: tuple[float, float], load: float, busy: tuple[float, float], io_per_job: float
) -> FleetSnapshot:
    """Hosts h1 and h2 with these limits, one VM of type t each (a on h1, b on h2), both
    running `load` jobs/s with these busy fractions."""
    return fleet(
        host("h1", limits[0], [vm("a", load=load, busy=busy[0], io_per_job=io_per_job)]),
        host("h2", limits[1], [vm("b", load=load, busy=busy[1], io_per_job=io_per_job)]),
    )


def test_a_hosts_own_service_time_counts_as_far_as_hosts_differ_beyond_noise() -> None:
    # One VM of t per host (no scatter to read: cv² 1): h1 0.1 s, h2 0.2 s, 4 jobs/s each, so
    # 20 jobs in the 5 s window and noise 1 / 20 = 0.05 per host. Pooled 1.2 / 8 = 0.15 s; both
    # deviate by a third, (1/3)² = 1/9, so spread = 1/9 - 1/20 = 11/180 and each host's own
    # time weighs 11/180 / (11/180 + 9/180) = 0.55: h1 0.15 - 0.55 x 0.05 = 0.1225 s (49 ops a
    # job: 400 ops/s), h2 0.1775 s (276 ops/s). h2 is slower than the fleet, which its limit
    # (half h1's) allows up to 0.15 x √2 = 0.212 s (log service against log limit: slope -1):
    # 0.1775 stands.
    snap = one_vm_per_host(limits=(2000.0, 1000.0), load=4.0, busy=(0.4, 0.8), io_per_job=49.0)
    assert snap.host_type_service_s("h1", "t") == pytest.approx(0.1225)
    assert snap.host_type_service_s("h2", "t") == pytest.approx(0.1775)
    assert job_io_ops_per_s(snap, snap.vm("a")) == pytest.approx(400.0)
    assert job_io_ops_per_s(snap, snap.vm("b")) == pytest.approx(49.0 / 0.1775)
    # A wider meter window counts more jobs per host: less noise, more of each host's own.
    wide = FleetSnapshot(list(snap.hosts()), NOW, PolicyConfig(meter_window_s=50.0))
    # spread = 1/9 - 1/200, noise 1/200: weight (1/9 - 1/200) / (1/9) = 0.955
    assert wide.host_type_service_s("h1", "t") == pytest.approx(0.15 - 0.955 * 0.05)


def test_a_host_slower_than_its_limit_says_keeps_the_fleets_time() -> None:
    # Equal limits, h2's jobs take twice h1's (its channel saturated, or degraded: it would read
    # as its jobs asking half as much, and take more). One VM each, 2 jobs/s (10 in the window:
    # noise 1/10 with cv² 1); pooled 0.6 / 4 = 0.15 s; both deviate by a third, spread 1/9 -
    # 1/10 = 1/90, weight (1/90) / (1/90 + 1/10) = 0.1: h1 0.15 - 0.1 x 0.05 = 0.145 s. h2's
    # 0.155 s is slower than the fleet, and the limits (alike) explain none of it: 0.15 s.
    snap = one_vm_per_host(limits=(1000.0, 1000.0), load=2.0, busy=(0.2, 0.4), io_per_job=30.0)
    assert snap.host_type_service_s("h1", "t") == pytest.approx(0.145)
    assert snap.host_type_service_s("h2", "t") == pytest.approx(0.15)
    assert job_io_ops_per_s(snap, snap.vm("b")) == pytest.approx(200.0)


def test_without_io_per_job_a_jobs_rate_is_dom0s_meter_per_busy_second() -> None:
    snap = fleet(host("h1", vms=[vm("a", busy=0.25, io_ops_per_s=100.0)]))
    assert job_io_ops_per_s(snap, snap.vm("a")) == pytest.approx(400.0)
    assert job_io_ops_per_s(fleet(host("h1", vms=[vm("a")])), vm("a")) is None


def test_without_io_per_job_a_vm_that_has_not_run_asks_its_types_median_per_busy_second() -> None:
    # Cold start: a (400 ops/s per busy second), b (300) and d (1000, a VM whose meter is
    # ahead of its busy time) have been metered, c has not run: every VM of t asks the
    # median, 400, c included (not its host's whole limit). u is another type: nothing of t
    # is borrowed for it.
    snap = fleet(
        host("h1", vms=[vm("a", busy=0.25, io_ops_per_s=100.0), vm("c"), vm("u", "u")]),
        host(
            "h2", vms=[vm("b", busy=0.5, io_ops_per_s=150.0), vm("d", busy=0.1, io_ops_per_s=100.0)]
        ),
    )
    for vm_id in "abcd":
        assert job_io_ops_per_s(snap, snap.vm(vm_id)) == pytest.approx(400.0)
    assert snap.type_io_ops_per_busy_s("t") == pytest.approx(400.0)
    assert job_io_ops_per_s(snap, snap.vm("u")) is None
    assert snap.type_io_ops_per_busy_s("u") is None


def test_demand_now_counts_each_vm_holding_a_job_once_whatever_its_queue() -> None:
    # a holds 5 jobs (one runs: 500), b 1 (300), c none; d holds one nobody has measured: it
    # counts as the whole limit.
    snap = fleet(
        host(
            "h1",
            limit=2000.0,
            vms=[
                vm("a", load=1.0, busy=0.1, io_per_job=50.0, outstanding=5),
                vm("b", "u", load=1.0, busy=0.1, io_per_job=30.0, outstanding=1),
                vm("c", "w", load=1.0, busy=0.1, io_per_job=90.0),
            ],
        ),
        host("h2", vms=[vm("d", "v", outstanding=1)]),
    )
    assert running_io_ops_per_s(snap, snap.host("h1")) == pytest.approx(800.0)
    snap.claim("c")
    assert running_io_ops_per_s(snap, snap.host("h1")) == pytest.approx(1700.0)
    assert running_io_ops_per_s(snap, snap.host("h2")) == pytest.approx(1000.0)


# --- Dom0's meter, less what the dispatcher's jobs explain -----------------------------------


def _metered(io_ops_per_s: float, outstanding: int = 0, age_s: float = 0.0) -> FleetSnapshot:
    """h1 (limit 1000) with VM a: Dom0 meters `io_ops_per_s`; a job of a asks 100 I/O in
    0.1 s (1000 ops/s); its newest sample is `age_s` old."""
    a = vm("a", load=1.0, busy=0.1, io_per_job=100.0, io_ops_per_s=io_ops_per_s)
    a = a._replace(outstanding_jobs=outstanding)
    return fleet(host("h1", vms=[a], age_s=age_s), config=PolicyConfig(meter_window_s=5.0))


def test_metered_io_of_a_vm_without_known_jobs_is_all_unexplained() -> None:
    snap = _metered(1500.0)
    assert vm_unexplained_io_ops_per_s(snap, snap.vm("a")) == 1500.0
    assert unexplained_io_ops_per_s(snap, snap.host("h1")) == 1500.0


@pytest.mark.parametrize(("metered", "unexplained"), [(900.0, 0.0), (1500.0, 500.0)])
def test_a_known_job_explains_at_most_one_jobs_rate(metered: float, unexplained: float) -> None:
    for snap in (_metered(metered, outstanding=1), _metered(metered)):
        if snap.outstanding(snap.vm("a")) == 0:
            snap.claim("a")  # this dispatcher's own job, claimed
        assert vm_unexplained_io_ops_per_s(snap, snap.vm("a")) == pytest.approx(unexplained)


def test_a_job_that_ended_explains_the_meter_while_its_window_reaches_it() -> None:
    # The newest sample is 2 s old (NOW - 2): the meter covers NOW - 7 .. NOW - 2.
    snap = _metered(1500.0, age_s=2.0)
    h1 = snap.host("h1")
    assert unexplained_io_ops_per_s(snap, h1) == 1500.0
    snap.job_ended("a", NOW - 7.5)  # before the window: explains nothing
    assert unexplained_io_ops_per_s(snap, h1) == 1500.0
    snap.job_ended("a", NOW - 6.5)  # within it (and the memo is dropped with it)
    assert unexplained_io_ops_per_s(snap, h1) == pytest.approx(500.0)
    snap.job_ended("a", NOW - 9.0)  # an older end never replaces a newer one
    assert snap.last_job_ended_at(snap.vm("a")) == NOW - 6.5
    snap.job_ended("gone", NOW)  # a VM not in the snapshot: nothing to explain


def test_occupancy_is_what_claims_and_ends_change_of_a_host_s_demand_and_meter() -> None:
    snap = fleet(host("h1", vms=[vm("a", outstanding=1), vm("b")]), now=1_000.0)
    h1 = snap.host("h1")
    assert occupancy(snap, h1) == ((True, True), (False, False))
    snap.claim("a")  # behind a's running job: as it was
    assert occupancy(snap, h1) == ((True, True), (False, False))
    snap.claim("b")
    assert occupancy(snap, h1) == ((True, True), (True, True))
    snap.claim("b", -1)
    snap.job_ended("b", 1_000.0 - 6.0)  # before the meter's 5 s window: nothing explained
    assert occupancy(snap, h1) == ((True, True), (False, False))
    snap.job_ended("b", 1_000.0 - 1.0)  # within it: b's job is in Dom0's meter
    assert occupancy(snap, h1) == ((True, True), (False, True))
