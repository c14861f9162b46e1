"""Builders of small fleets for tests and examples: terse, explicit, no randomness.

    snapshot = fleet(host("h1", limit=1000, vms=[vm("a1", io_per_job=100)]), now=100.0)

Every host's telemetry is fresh (sampled at `now`) unless `age_s` says otherwise.
"""

from __future__ import annotations

from pipeline.policy.snapshot import (
    DEFAULT_POLICY_CONFIG,
    FleetSnapshot,
    HostView,
    PolicyConfig,
    VmView,
)

NOW = 1_000.0


def vm(
    vm_id: str,
    job_type: str = "t",
    *,
    load: float = 0.0,
    io_per_job: float | None = None,
    io_ops_per_s: float = 0.0,
    outstanding: int = 0,
    busy: float = 0.0,
) -> VmView:
    """A VM without a host yet (`host()` sets it)."""
    return VmView(
        vm_id=vm_id,
        host_id="",
        job_type=job_type,
        load_jobs_per_s=load,
        io_per_job=io_per_job,
        io_ops_per_s=io_ops_per_s,
        outstanding_jobs=outstanding,
        busy_fraction=busy,
    )


def host(
    host_id: str,
    limit: float | None = 1000.0,
    vms: list[VmView] | None = None,
    *,
    age_s: float | None = 0.0,
    now: float = NOW,
) -> HostView:
    """A host whose newest telemetry is `age_s` old at `now` (None: never reported)."""
    at = None if age_s is None else now - age_s
    homed = tuple(
        VmView(
            vm_id=v.vm_id,
            host_id=host_id,
            job_type=v.job_type,
            load_jobs_per_s=v.load_jobs_per_s,
            io_per_job=v.io_per_job,
            io_ops_per_s=v.io_ops_per_s,
            outstanding_jobs=v.outstanding_jobs,
            busy_fraction=v.busy_fraction,
        )
        for v in (vms if vms is not None else [vm(f"{host_id}-vm")])
    )
    return HostView(host_id=host_id, limit_ops_per_s=limit, last_telemetry_at=at, vms=homed)


def fleet(
    *hosts: HostView, now: float = NOW, config: PolicyConfig = DEFAULT_POLICY_CONFIG
) -> FleetSnapshot:
    return FleetSnapshot(hosts, taken_at=now, config=config)
