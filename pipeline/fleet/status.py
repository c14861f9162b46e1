"""The fleet as an operator reads it: per host, its I/O figures, limit, headroom, eligibility.

Serves the `/hosts` and `/vms` queries, `vmlb status` and the web page. Eligibility and reasons
come from the configured policy's own filters (so what the page says is what the dispatcher
does); policies without filters (the baselines) ignore I/O and call every host eligible.
"""

from __future__ import annotations

from typing import Any

from pipeline.fleet.view import FleetView
from pipeline.policy.base import Policy, make_candidate
from pipeline.policy.load import projected_io_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot


def fleet_status(view: FleetView, snapshot: FleetSnapshot, policy: Policy) -> list[dict[str, Any]]:
    filters = getattr(policy, "filters", ())
    load_model = getattr(policy, "load_model", projected_io_ops_per_s)
    config = snapshot.config
    hosts = []
    for host in snapshot.hosts():
        projected = projected_io_ops_per_s(snapshot, host)
        limit = view.host_limit(host.host_id)
        vms = []
        eligible_vms = 0
        reasons: list[str] = []
        for vm in host.vms:
            candidate = make_candidate(snapshot, vm, load_model)
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
        if not filters:
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
                # How its Dom0 reads the counters (bulk, bulk-per-domain, per-device, emulated).
                "telemetry_path": registration.telemetry_path if registration else None,
                "vms": vms,
            }
        )
    return hosts
