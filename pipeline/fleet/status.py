"""The fleet as an operator reads it: per host, its I/O figures, limit, headroom, eligibility.

Serves the `/hosts` and `/vms` queries, `vmlb status` and the web page. Eligibility and reasons
come from the configured policy's own filters (so what the page says is what the dispatcher
does); policies without filters (the baselines) ignore I/O and call every host eligible.

`OverLimitClock` adds up, per host and per telemetry interval, the seconds its measured I/O was
above its limit (the paper's concern, as a counter operators can rate over any range).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.fleet.view import FleetView
from pipeline.policy.base import Policy, make_candidate
from pipeline.policy.load import projected_io_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot


def fleet_status(view: FleetView, snapshot: FleetSnapshot, policy: Policy) -> list[dict[str, Any]]:
    filters = getattr(policy, "filters", ())
    load_model = getattr(policy, "load_model", projected_io_ops_per_s)
    # A policy that judges more than a host's total (io-aware: what the job would add, its VM's
    # backlog) builds its own candidates; the page then says what its dispatcher would do.
    build = getattr(policy, "make_candidate", None)
    config = snapshot.config
    hosts = []
    for host in snapshot.hosts():
        projected = projected_io_ops_per_s(snapshot, host)
        limit = view.host_limit(host.host_id)
        vms = []
        eligible_vms = 0
        reasons: list[str] = []
        for vm in host.vms:
            candidate = build(snapshot, vm) if build else make_candidate(snapshot, vm, load_model)
            verdicts = [check.host_passes(candidate, config) for check in filters]
            refused = [v.reason for v in verdicts if not v.passes]
            eligible_vms += not refused
            reasons.extend(refused[:1])
            io_per_job = view.vm_io_per_job(vm.vm_id)
            vms.append(
                {
                    "vm_id": vm.vm_id,
                    "job_type": vm.job_type,
                    "load_jobs_per_s": vm.load_jobs_per_s,
                    "io_per_job": io_per_job.value,
                    "io_per_job_source": io_per_job.source,
                    "io_ops_per_s": vm.io_ops_per_s,
                    "outstanding_jobs": snapshot.outstanding(vm),
                    "busy_fraction": vm.busy_fraction,
                    "eligible": not refused,
                }
            )
        judged = load_model(snapshot, host)
        admin = view.host_mode(host.host_id)
        if admin is not None:
            eligible = False
            reason = f"{admin.mode.value} by an operator" + (
                f": {admin.reason}" if admin.reason else ""
            )
        elif not filters:
            eligible, reason = True, f"policy {policy.name} ignores I/O"
        elif not host.vms:
            eligible, reason = False, "no running VMs"
        else:
            eligible = eligible_vms > 0
            reason = "under limit, telemetry fresh" if eligible else reasons[0]
        age = snapshot.telemetry_age_s(host)
        registration = view.hosts.get(host.host_id)
        hosts.append(
            {
                "host_id": host.host_id,
                "limit_ops_per_s": limit.value,
                "limit_source": limit.source,
                "total_io_ops_per_s": host.paper_total_io_ops_per_s,
                "measured_io_ops_per_s": host.measured_io_ops_per_s,
                "projected_io_ops_per_s": projected,
                "headroom_ops_per_s": None if limit.value is None else limit.value - judged,
                "eligible": eligible,
                "reason": reason,
                "last_telemetry_at": host.last_telemetry_at,
                "telemetry_age_s": None if age is None else round(age, 3),
                "mode": admin.mode.value if admin else "active",
                "drain_deadline_at": admin.deadline_at if admin else None,
                # How its Dom0 reads the counters (bulk, bulk-per-domain, per-device, emulated).
                "telemetry_path": registration.telemetry_path if registration else None,
                "vms": vms,
            }
        )
    return hosts


class OverLimitClock:
    """Seconds each host's measured I/O spent above its limit, in event time.

    `observe` looks at the fleet view (call it about once per telemetry interval; more often
    only costs time): for each host whose newest telemetry moved on since the last look, the
    interval in between counts as over the limit if the host's measured I/O rate (the VMs'
    rates over the rate window, as of that newest telemetry) is above its limit. An interval
    longer than `max_interval_s` (telemetry went missing) counts only that long: nobody knows
    what the host did meanwhile. A host without a limit is never over it.
    """

    def __init__(self, record: Callable[[str, float], None], max_interval_s: float = 5.0) -> None:
        self.record = record
        self.max_interval_s = max_interval_s
        #: host_id -> the newest telemetry time already accounted for.
        self.accounted_until: dict[str, float] = {}
        #: host_id -> seconds over its limit so far (what `record` was given).
        self.over_limit_s: dict[str, float] = {}

    def observe(self, view: FleetView) -> None:
        for host in view.host_views():
            at = host.last_telemetry_at
            if at is None:
                continue
            since = self.accounted_until.get(host.host_id)
            self.accounted_until[host.host_id] = at if since is None else max(since, at)
            if since is None or at <= since:
                continue  # the first look is a baseline; no news since the last one
            limit = host.limit_ops_per_s
            if limit is None or host.measured_io_ops_per_s <= limit:
                continue
            seconds = min(at - since, self.max_interval_s)
            self.over_limit_s[host.host_id] = self.over_limit_s.get(host.host_id, 0.0) + seconds
            self.record(host.host_id, seconds)
