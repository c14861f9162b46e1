"""Filters: yes or no about one candidate, with a reason. One rule each.

Every limit is strict where the paper's is (`total_io < limit`), and the tests sit on both sides
of each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.policy.base import Candidate, Verdict
from pipeline.policy.load import service_rate_jobs_per_s
from pipeline.policy.snapshot import PolicyConfig


@dataclass(frozen=True)
class FreshTelemetryFilter:
    """The host's newest I/O sample is at most `stale_after_s` behind the fleet's newest.

    A host whose Dom0 went quiet may be overloaded and unable to report; treating silence as
    idleness is how a stale balancer herds onto a sick host. Silence is judged in event time,
    against the telemetry watermark (the newest sample of any host), not against the clock: a
    pipeline that falls behind (a burst of jobs, a slow worker) delays every host's telemetry
    alike, and a wall-clock rule would then call the whole fleet stale and stop dispatching
    exactly when work piles up, while this dispatcher's own placements since (its claims) are
    still counted. Only when the watermark itself is older than `lag_limit_s` (the telemetry
    path is down, or the pipeline that far behind) is every host stale. Never heard from is
    stale.
    """

    name: str = "stale"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        age, behind = candidate.telemetry_age_s, candidate.telemetry_behind_s
        if age is None or behind is None:
            return Verdict(False, f"host {candidate.host.host_id} never reported")
        if behind > config.stale_after_s:  # this host went quiet while others report
            return Verdict(
                False, f"telemetry {behind:.1f}s behind the fleet's > {config.stale_after_s:g}s"
            )
        if age > config.lag_limit_s:  # nobody reports: the telemetry path is down or far behind
            return Verdict(False, f"telemetry {age:.1f}s old > lag limit {config.lag_limit_s:g}s")
        return Verdict(True, f"telemetry {age:.1f}s old, {behind:.1f}s behind the fleet's")


@dataclass(frozen=True)
class IoLimitFilter:
    """Paper Table 3: the host's estimated I/O rate is strictly under its limit.

    With `unknown_limit_passes` a host without a limit is left to the warm-up filter (io-aware);
    without it such a host is ineligible (the paper, which knows every limit from setup).
    """

    name: str = "over limit"
    unknown_limit_passes: bool = False

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        limit = candidate.limit_ops_per_s
        if limit is None:
            return Verdict(self.unknown_limit_passes, "limit unknown")
        total = candidate.total_io_ops_per_s
        if total < limit:
            return Verdict(True, f"{total:.0f} < limit {limit:.0f} ops/s")
        return Verdict(False, f"{total:.0f} >= limit {limit:.0f} ops/s")


@dataclass(frozen=True)
class KnownLimitFilter:
    """The host's limit is known (the paper's literal rule cannot judge a host without one)."""

    name: str = "limit unknown"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        if candidate.limit_ops_per_s is None:
            return Verdict(False, "limit unknown")
        return Verdict(True, "limit known")


@dataclass(frozen=True)
class WarmupFilter:
    """While a host's limit is unknown, the VM holds fewer than `warmup_outstanding_per_vm` jobs.

    Envoy-style warm-up: a host nobody has calibrated yet gets a trickle of work, enough to
    measure it, never a flood. Hosts with a known limit always pass.
    """

    name: str = "warm-up full"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        if candidate.limit_ops_per_s is not None:
            return Verdict(True, "limit known")
        cap = config.warmup_outstanding_per_vm
        if candidate.outstanding_jobs < cap:
            return Verdict(True, f"warm-up {candidate.outstanding_jobs} < {cap} jobs")
        return Verdict(False, f"warm-up {candidate.outstanding_jobs} >= {cap} jobs")


def backlog_cap_jobs(candidate: Candidate, config: PolicyConfig) -> int:
    """Jobs the VM clears within the horizon, counted from when its count was reported.

    service_rate * (horizon_s + telemetry age): the reported outstanding count is
    `telemetry_age_s` old and the VM has cleared about service_rate * age jobs since, which the
    count (plus claims) still includes. The service rate is measured (load / busy fraction), so
    a VM on a slowed host gets a smaller cap. At least `warmup_outstanding_per_vm`, which is also
    the cap of a VM that has completed nothing in the window (its rate is unknown).
    """
    rate = service_rate_jobs_per_s(candidate.vm)
    if rate is None:
        return config.warmup_outstanding_per_vm
    age_s = max(0.0, candidate.telemetry_age_s or 0.0)
    clears = math.ceil(rate * (config.horizon_s + age_s) - 1e-9)
    return max(config.warmup_outstanding_per_vm, clears)


@dataclass(frozen=True)
class BacklogFilter:
    """The VM holds fewer jobs (reported plus claimed) than it clears within `horizon_s`.

    HAProxy's bounded server queue (`maxqueue`): a VM runs one job at a time, so jobs beyond what
    it can clear within the horizon are better kept in the dispatcher's durable waiting queue,
    per type, and sent to whichever VM frees first, than pinned behind one VM's backlog. See
    `backlog_cap_jobs` for the cap.
    """

    name: str = "backlog full"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        cap = backlog_cap_jobs(candidate, config)
        held = candidate.outstanding_jobs
        if held < cap:
            return Verdict(True, f"backlog {held} < {cap} jobs")
        return Verdict(False, f"backlog {held} >= {cap} jobs")
