"""Each filter on both sides of its limit (Nova-style: 999.9 passes, 1000 fails)."""

from __future__ import annotations

import pytest

from pipeline.policy.base import Candidate
from pipeline.policy.filters import (
    BacklogFilter,
    FitFilter,
    FreshTelemetryFilter,
    HysteresisFilter,
    IoLimitFilter,
    KnownLimitFilter,
    WarmupFilter,
)
from pipeline.policy.snapshot import PolicyConfig
from pipeline.policy.testing import host, vm

CONFIG = PolicyConfig(stale_after_s=3.0, warmup_outstanding_per_vm=2)


def candidate(
    total: float = 0.0,
    limit: float | None = 1000.0,
    age_s: float | None = 0.0,
    outstanding: int = 0,
    load: float = 0.0,
    busy: float = 0.0,
    behind_s: float | None = None,
    job_io: float | None = None,
    measured: float = 0.0,
    service_s: float | None = None,
) -> Candidate:
    """`behind_s` (behind the fleet's newest telemetry) defaults to `age_s`: a fleet whose
    other hosts are all current."""
    h = host(
        "h1", limit=limit, vms=[vm("a", load=load, busy=busy, io_ops_per_s=measured)], age_s=age_s
    )
    return Candidate(
        vm=h.vms[0],
        host=h,
        total_io_ops_per_s=total,
        telemetry_age_s=age_s,
        telemetry_behind_s=age_s if behind_s is None else behind_s,
        outstanding_jobs=outstanding,
        job_io_ops_per_s=job_io,
        service_s=service_s,
    )


@pytest.mark.parametrize(
    ("total", "passes"), [(0.0, True), (999.9, True), (1000.0, False), (1500.0, False)]
)
def test_io_limit_is_strict(total: float, passes: bool) -> None:
    verdict = IoLimitFilter().host_passes(candidate(total=total, limit=1000.0), CONFIG)
    assert verdict.passes is passes
    assert "1000" in verdict.reason


def test_io_limit_unknown_limit_defers_or_rejects() -> None:
    assert (
        IoLimitFilter(unknown_limit_passes=True).host_passes(candidate(limit=None), CONFIG).passes
    )
    assert not IoLimitFilter().host_passes(candidate(limit=None), CONFIG).passes
    assert not KnownLimitFilter().host_passes(candidate(limit=None), CONFIG).passes
    assert KnownLimitFilter().host_passes(candidate(limit=1.0), CONFIG).passes


@pytest.mark.parametrize(
    ("age_s", "passes"), [(0.0, True), (3.0, True), (3.01, False), (None, False)]
)
def test_stale_after_s_is_inclusive(age_s: float | None, passes: bool) -> None:
    assert FreshTelemetryFilter().host_passes(candidate(age_s=age_s), CONFIG).passes is passes


@pytest.mark.parametrize(
    ("age_s", "behind_s", "passes", "reason"),
    [
        (10.0, 0.0, True, "telemetry 10.0s old, 0.0s behind the fleet's"),  # the pipeline lags
        (10.0, 3.0, True, "telemetry 10.0s old, 3.0s behind the fleet's"),
        (10.0, 3.01, False, "telemetry 3.0s behind the fleet's > 3s"),  # this host went quiet
        (15.0, 0.0, True, "telemetry 15.0s old, 0.0s behind the fleet's"),
        (15.01, 0.0, False, "telemetry 15.0s old > lag limit 15s"),  # the whole path is down
        (20.0, 20.0, False, "telemetry 20.0s behind the fleet's > 3s"),  # quiet: says so first
    ],
)
def test_staleness_is_judged_against_the_fleets_newest_telemetry_up_to_the_lag_limit(
    age_s: float, behind_s: float, passes: bool, reason: str
) -> None:
    config = PolicyConfig(stale_after_s=3.0, lag_limit_s=15.0)
    verdict = FreshTelemetryFilter().host_passes(candidate(age_s=age_s, behind_s=behind_s), config)
    assert (verdict.passes, verdict.reason) == (passes, reason)


@pytest.mark.parametrize(("outstanding", "passes"), [(0, True), (1, True), (2, False), (5, False)])
def test_warmup_cap_when_limit_unknown(outstanding: int, passes: bool) -> None:
    verdict = WarmupFilter().host_passes(candidate(limit=None, outstanding=outstanding), CONFIG)
    assert verdict.passes is passes


def test_warmup_does_not_apply_once_limit_known() -> None:
    assert WarmupFilter().host_passes(candidate(limit=1000.0, outstanding=50), CONFIG).passes


@pytest.mark.parametrize(
    ("outstanding", "service_s", "passes"),
    [
        # service time unknown (nothing completed): the warm-up allowance, 2.
        (1, None, True),
        (2, None, False),
        # 0.125 s a job: 40 jobs in the 5 s horizon.
        (39, 0.125, True),
        (40, 0.125, False),
        # a slow VM (5 s a job: 1 in the horizon) still gets the warm-up allowance.
        (1, 5.0, True),
        (2, 5.0, False),
    ],
)
def test_backlog_cap_both_sides(outstanding: int, service_s: float | None, passes: bool) -> None:
    c = candidate(outstanding=outstanding, service_s=service_s)
    verdict = BacklogFilter().host_passes(c, PolicyConfig(horizon_s=5.0))
    assert verdict.passes is passes
    assert verdict.reason.startswith(f"backlog {outstanding} ")


@pytest.mark.parametrize(
    ("demand", "job_io", "passes"),
    [
        (0.0, 1000.0, True),  # exactly the limit: not over it
        (0.0, 1000.1, False),
        (400.0, 600.0, True),
        (400.0, 600.1, False),
        (1000.0, 0.0, True),  # behind a running job: adds nothing, the host is at its limit
        (1000.1, 0.0, False),  # ... but not over it
    ],
)
def test_fit_both_sides_of_the_limit(demand: float, job_io: float, passes: bool) -> None:
    verdict = FitFilter().host_passes(candidate(total=demand, job_io=job_io), CONFIG)
    assert verdict.passes is passes
    assert (">" in verdict.reason) is not passes


def test_fit_leaves_an_unknown_limit_to_the_warm_up() -> None:
    assert FitFilter().host_passes(candidate(limit=None, total=5000, job_io=5000), CONFIG).passes


def test_hysteresis_closes_over_the_limit_and_reopens_under_the_band() -> None:
    check, config = HysteresisFilter(), PolicyConfig(hysteresis=0.1)

    def passes(demand: float = 0.0, measured: float = 0.0, job_io: float = 100.0) -> bool:
        return check.host_passes(
            candidate(total=demand, measured=measured, job_io=job_io), config
        ).passes

    assert passes(demand=1000.0)  # at its limit, never over it: open
    assert not passes(demand=1000.1)  # over by its demand: closed
    assert not passes(demand=950.0)  # back under the limit, not under the band (900): closed
    assert not passes(demand=900.1)
    assert passes(demand=900.0)  # under the band: open again
    assert passes(demand=950.0)  # and stays open until over the limit again


def test_hysteresis_lets_a_job_queue_behind_a_running_one_but_not_while_dom0_says_over() -> None:
    check, config = HysteresisFilter(), PolicyConfig(hysteresis=0.1)
    assert not check.host_passes(candidate(total=1100.0, job_io=100.0), config).passes
    # Closed by its demand: a job that would only queue adds nothing now, the fit test decides.
    assert check.host_passes(candidate(total=950.0, job_io=0.0), config).passes
    # Dom0 measures it over its limit: nothing goes there.
    over = check.host_passes(candidate(total=500.0, measured=1000.1, job_io=0.0), config)
    assert not over.passes and "Dom0" in over.reason
    assert check.host_passes(candidate(total=500.0, measured=1000.0, job_io=0.0), config).passes
