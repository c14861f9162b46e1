"""Filters: yes or no about one candidate, with a reason. One rule each.

Every limit is strict where the paper's is (`total_io < limit`), and the tests sit on both sides
of each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.policy.base import Candidate, Verdict
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
        return Verdict(True, "telemetry {:.1f}s old, {:.1f}s behind the fleet's", age, behind)


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
            return Verdict(True, "{:.0f} < limit {:.0f} ops/s", total, limit)
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
            return Verdict(True, "warm-up {} < {} jobs", candidate.outstanding_jobs, cap)
        return Verdict(False, f"warm-up {candidate.outstanding_jobs} >= {cap} jobs")


@dataclass(frozen=True)
class FitFilter:
    """The job fits under its host's limit now: demand now + what the job adds <= limit.

    Demand now is `pipeline.policy.load.running_io_ops_per_s` (Σ of the rates of the jobs
    running on the host's VMs); the job adds its own rate on an idle VM, nothing behind a
    running job (one job at a time). The paper asks only whether the host is under its limit
    before the job; this asks whether it stays under with the job, so one job cannot take a
    host from just under its limit to far over it. A host without a limit is left to the
    warm-up filter. "Over" means strictly more: a host exactly
    at its limit is not over it.
    """

    name: str = "does not fit"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        limit = candidate.limit_ops_per_s
        added = candidate.job_io_ops_per_s
        if limit is None or added is None:
            return Verdict(True, "fit not judged (warm-up)")
        total = candidate.total_io_ops_per_s + added
        # Rates are ratios (I/O per job over seconds per job): a job that asks exactly the
        # limit must not be refused for its last bit of rounding.
        if total <= limit * (1.0 + _RATE_TOLERANCE):
            return Verdict(
                True, "{:.0f} + {:.0f} <= {:.0f}", candidate.total_io_ops_per_s, added, limit
            )
        return Verdict(
            False, f"{candidate.total_io_ops_per_s:.0f} + {added:.0f} > limit {limit:.0f} ops/s"
        )


#: Relative slack of the fit test for floating-point rounding of derived rates.
_RATE_TOLERANCE = 1e-9


class HysteresisFilter:
    """A host that went over its limit starts no new job until it is back under
    (1 - hysteresis) x its limit; while Dom0 measures it over its limit (io-aware: with I/O its
    jobs do not explain, `pipeline.policy.load.unexplained_io_ops_per_s`) it takes no job.

    Without it a host at its limit flaps: every completion frees a little room, the next job
    fills it, and an estimate a few percent off (rates are measured over windows) takes it over
    and back many times a second. Over is judged on either view: the demand of the jobs running
    there (a job sent over the limit after its hold, an estimate that moved), or Dom0's meter
    (what the dispatcher's estimates do not see: other dispatchers' jobs, a drifted job cost).
    A job that would queue behind a running one adds nothing now, so on the demand view alone
    it is left to the fit test (demand now <= limit); Dom0 measuring the host over its limit
    refuses it too.

    The only state of a policy instance beyond its inputs: the set of hosts closed, updated as
    hosts are examined (one instance per dispatcher, deterministic given its inputs).
    """

    name = "at limit (hysteresis)"

    def __init__(self) -> None:
        self.closed: set[str] = set()

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        limit = candidate.limit_ops_per_s
        host_id = candidate.host.host_id
        if limit is None:
            self.closed.discard(host_id)
            return Verdict(True, "limit unknown")
        measured = candidate.measured_io_ops_per_s
        if measured > limit:
            self.closed.add(host_id)
            return Verdict(
                False, f"Dom0 meters {measured:.0f} ops/s beyond its jobs' > limit {limit:.0f}"
            )
        demand = candidate.total_io_ops_per_s
        worst = max(measured, demand)
        if worst > limit:
            self.closed.add(host_id)
        elif host_id in self.closed and worst <= (1.0 - config.hysteresis) * limit:
            self.closed.discard(host_id)
        starts = candidate.job_io_ops_per_s is None or candidate.job_io_ops_per_s > 0
        if starts and host_id in self.closed:
            reopen_at = (1.0 - config.hysteresis) * limit
            return Verdict(False, f"{worst:.0f} not yet under {reopen_at:.0f} ops/s")
        return Verdict(True, "{:.0f} ops/s, host open", worst)


def backlog_cap_jobs(candidate: Candidate, config: PolicyConfig) -> int:
    """Jobs the VM may hold: what it clears within `horizon_s` at its service time.

    ceil(horizon_s / service_s), at least `warmup_outstanding_per_vm` (also the cap of a VM
    that has run nothing lately: its service time is unknown). The service time is measured
    (the VM's, else its type's), so a VM on a slowed host gets a smaller cap.
    """
    service_s = candidate.service_s
    if service_s is None or service_s <= 0:
        return config.warmup_outstanding_per_vm
    clears = math.ceil(config.horizon_s / service_s - 1e-9)
    return max(config.warmup_outstanding_per_vm, clears)


@dataclass(frozen=True)
class BacklogFilter:
    """The VM holds fewer jobs (reported plus claimed) than it clears within `horizon_s`.

    HAProxy's bounded server queue (`maxqueue`): a VM runs one job at a time, so jobs beyond what
    it can clear within the horizon are better kept in the dispatcher's durable waiting queue,
    per type, and sent to whichever VM frees first (late binding), than pinned behind one VM's
    backlog. See `backlog_cap_jobs` for the cap.
    """

    name: str = "backlog full"

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict:
        cap = backlog_cap_jobs(candidate, config)
        held = candidate.outstanding_jobs
        if held < cap:
            return Verdict(True, "backlog {} < {} jobs", held, cap)
        return Verdict(False, f"backlog {held} >= {cap} jobs")
