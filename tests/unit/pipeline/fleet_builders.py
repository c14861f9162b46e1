"""A small fleet view for fleet and dispatch tests: hosts, VMs and states added in a line each."""

import random

from pipeline.dispatch.decide import Dispatcher
from pipeline.events import HostRegistration, JobSubmission, VmRegistration, VmState, VmStatus
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import PolicyConfig

NOW = 1_000.0
CONFIG = PolicyConfig(stale_after_s=3.0, horizon_s=5.0)


def add_host(view: FleetView, host_id: str, io_limit: float | None = 1000.0) -> None:
    host = HostRegistration(host_id=host_id, io_limit_ops_per_s=io_limit, registered_at=NOW)
    view.apply("hosts", host.key(), host.to_bytes())


def add_vm(
    view: FleetView,
    vm_id: str,
    host_id: str,
    job_type: str = "io",
    queue_topic: str | None = None,
    status: VmStatus = VmStatus.RUNNING,
) -> None:
    vm = VmRegistration(
        vm_id=vm_id,
        host_id=host_id,
        job_type=job_type,
        queue_topic=queue_topic or f"t.queue.{vm_id}",
        status=status,
        registered_at=NOW,
    )
    view.apply("vms", vm.key(), vm.to_bytes())


def add_state(view: FleetView, vm_id: str, host_id: str, **fields: float | None) -> None:
    fields.setdefault("last_telemetry_at", NOW)
    state = VmState(vm_id=vm_id, host_id=host_id, updated_at=NOW, **fields)
    view.apply("vm-state", state.key(), state.to_bytes())


#: A VM that has proved how long its jobs take: 1 job/s at 10% busy is 0.1 s a job, so with
#: io_per_job 100 a job asks 1000 ops/s while it runs (all of a 1000 ops/s limit: one at a time),
#: and io-aware's backlog cap (what it clears within the 5 s horizon: 50 jobs) stays out of
#: these tests' way.
FAST_VM = {"load_jobs_per_s": 1.0, "busy_fraction": 0.1}


def fleet_of_one(io_ops_per_s: float = 100.0) -> FleetView:
    """h1 (limit 1000 ops/s, fresh telemetry) with VM a1 serving `io` at 100 I/O per job."""
    view = FleetView()
    add_host(view, "h1")
    add_vm(view, "a1", "h1", queue_topic="custom.queue-for-a1")
    add_state(view, "a1", "h1", io_ops_per_s=io_ops_per_s, io_per_job=100.0, **FAST_VM)
    return view


def job(
    job_id: str = "j1",
    job_type: str = "io",
    submitted_at: float = NOW,
    deadline_s: float | None = None,
) -> JobSubmission:
    return JobSubmission(
        job_id=job_id,
        job_type=job_type,
        payload={"n": 7},
        submitted_at=submitted_at,
        deadline_s=deadline_s,
    )


def dispatcher_for(view: FleetView, **snapshot_options: float) -> Dispatcher:
    source = SnapshotSource(view, CONFIG, **snapshot_options)
    return Dispatcher(build_policy("io-aware", CONFIG), view, source, random.Random(1))
