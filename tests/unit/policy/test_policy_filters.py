"""Each filter on both sides of its limit (Nova-style: 999.9 passes, 1000 fails)."""

from __future__ import annotations

import pytest

from pipeline.policy.base import Candidate
from pipeline.policy.filters import (
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
) -> Candidate:
    h = host("h1", limit=limit, vms=[vm("a")], age_s=age_s)
    return Candidate(
        vm=h.vms[0],
        host=h,
        total_io_ops_per_s=total,
        telemetry_age_s=age_s,
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


@pytest.mark.parametrize(("outstanding", "passes"), [(0, True), (1, True), (2, False), (5, False)])
def test_warmup_cap_when_limit_unknown(outstanding: int, passes: bool) -> None:
    verdict = WarmupFilter().host_passes(candidate(limit=None, outstanding=outstanding), CONFIG)
    assert verdict.passes is passes


def test_warmup_does_not_apply_once_limit_known() -> None:
    assert WarmupFilter().host_passes(candidate(limit=1000.0, outstanding=50), CONFIG).passes
