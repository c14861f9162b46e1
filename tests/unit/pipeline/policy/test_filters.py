"""Each filter on both sides of its limit (Nova-style: 999.9 passes, 1000 fails)."""

from __future__ import annotations

import pytest

from pipeline.policy.base import Candidate
from pipeline.policy.filters import (
    BacklogFilter,
    FreshTelemetryFilter,
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
) -> Candidate:
    """`behind_s` (behind the fleet's newest telemetry) defaults to `age_s`: a fleet whose
    other hosts are all current."""
    h = host("h1", limit=limit, vms=[vm("a", load=load, busy=busy)], age_s=age_s)
    return Candidate(
        vm=h.vms[0],
        host=h,
        total_io_ops_per_s=total,
        telemetry_age_s=age_s,
        telemetry_behind_s=age_s if behind_s is None else behind_s,
        outstanding_jobs=outstanding,
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
    ("outstanding", "load", "busy", "age_s", "passes"),
    [
        # service rate unknown (nothing completed): the warm-up allowance, 2.
        (1, 0.0, 0.0, 0.0, True),
        (2, 0.0, 0.0, 0.0, False),
        # 4 jobs/s at busy 0.5 clears 8 jobs/s: 8 * 5 s = 40.
        (39, 4.0, 0.5, 0.0, True),
        (40, 4.0, 0.5, 0.0, False),
        # a count reported 1 s ago: the VM has cleared ~8 of those since: 8 * 6 s = 48.
        (47, 4.0, 0.5, 1.0, True),
        (48, 4.0, 0.5, 1.0, False),
        # a slow VM (0.2 jobs/s * 5 s = 1) still gets the warm-up allowance.
        (1, 0.1, 0.5, 0.0, True),
        (2, 0.1, 0.5, 0.0, False),
    ],
)
def test_backlog_cap_both_sides(
    outstanding: int, load: float, busy: float, age_s: float, passes: bool
) -> None:
    c = candidate(outstanding=outstanding, load=load, busy=busy, age_s=age_s)
    verdict = BacklogFilter().host_passes(c, PolicyConfig(horizon_s=5.0))
    assert verdict.passes is passes
    assert verdict.reason.startswith(f"backlog {outstanding} ")
