"""The I/O formulas: the paper's Table 3 total, and the projected total that fixes it.

Pure functions of a snapshot and a host; nothing else. Units: I/O requests per second.

- `paper_total_io_ops_per_s`: Σ load[vm] * io_per_job[vm] (paper Table 3). It uses completions
  reported in the past, so jobs placed since the last report are invisible to it.
- `committed_io_ops`: I/O that jobs dispatched but not finished will still cost,
  Σ (outstanding + claims) * io_per_job, with an unknown io_per_job replaced by the median of the
  same job type in the snapshot (else 0: warm-up then bounds the risk).
- `vm_committed_io_ops_per_s`: one VM's outstanding I/O spread over max(horizon_s, the time
  the VM needs to drain it at its measured service rate): a VM runs one job at a time.
- `projected_io_ops_per_s`: Σ over VMs of max(measured, paper, committed rate). The maximum
  takes whichever view is worse (Dom0's meter sees I/O of jobs still running; the paper's
  product sees I/O of jobs finished; the committed rate sees jobs sent and not yet run), so a
  burst of placements raises the estimate at once, without counting a running job twice.
- `job_io_ops_per_s`: what one job of a VM asks of the channel while it runs, io_per_job over
  its type's service time on its host (the time scale of a job, not of a telemetry window;
  its host's, as its VM's device paces it, shrunk toward the fleet's as far as it is noise,
  and slower than the fleet's only as far as the host's limit says).
- `running_io_ops_per_s`: the host's I/O demand *now*: Σ over its VMs holding a job of that
  job's rate (a VM runs one job at a time, so a queue adds nothing now, only later). This is
  what io-aware checks a job's fit against (`pipeline.policy.io_aware`).
- `unexplained_io_ops_per_s`: the part of Dom0's meter that the dispatcher's jobs do not
  explain (foreign I/O: other dispatchers' jobs, a drifted job cost, a noisy guest). The meter
  is a window behind; I/O in it from the dispatcher's own jobs is already in the demand now,
  or gone with them. What io-aware's hysteresis closes a host for, beside its demand.
- `occupancy`: what of a host claims and job ends change and the two above read (per VM,
  holds a job, ran one in the meter's window): equal occupancies give equal values, which is
  how io-aware recognises a host it has judged before on the same snapshot.
"""

from __future__ import annotations

from pipeline.policy.snapshot import FleetSnapshot, HostView, VmView


def paper_total_io_ops_per_s(snapshot: FleetSnapshot, host: HostView) -> float:
    """Paper Table 3 (the snapshot is not used: the paper knows nothing beyond the reports)."""
    return host.paper_total_io_ops_per_s


def committed_io_ops(snapshot: FleetSnapshot, host: HostView) -> float:
    total = 0.0
    for vm in host.vms:
        jobs = snapshot.outstanding(vm)
        if jobs:
            total += jobs * (snapshot.io_per_job_estimate(vm) or 0.0)
    return total


def projected_io_ops_per_s(snapshot: FleetSnapshot, host: HostView) -> float:
    """Σ over the host's VMs of the worst of: measured, paper (Eq. 1 x Table 2), committed rate.

    Per VM, not per host: a VM's running job is in Dom0's meter *and* in its outstanding count,
    so adding the two (the old host-level `max(measured, paper) + committed / horizon_s`)
    counted it twice, and a deep queue counted as if it ran in parallel. Each VM's I/O over the
    horizon is at least what it does now and at least what its backlog needs
    (`vm_committed_io_ops_per_s`, bounded by one job at a time); never their sum.
    """
    total = 0.0
    for vm in host.vms:
        paper = vm.load_jobs_per_s * (vm.io_per_job or 0.0)
        total += max(vm.io_ops_per_s, paper, vm_committed_io_ops_per_s(snapshot, vm))
    return total


def service_rate_jobs_per_s(vm: VmView) -> float | None:
    """Jobs per second the VM clears while busy: load / busy_fraction (None until it has run).

    A VM runs one job at a time, so this is its ceiling: Eq. 1's load divided by the fraction of
    the window it was busy. It is measured, so a VM on a slowed host clears fewer.
    """
    if vm.load_jobs_per_s <= 0 or vm.busy_fraction <= 0:
        return None
    return vm.load_jobs_per_s / vm.busy_fraction


def vm_committed_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float:
    """The VM's outstanding I/O as a rate: spread over max(horizon, the time to drain it).

    One job at a time: a VM holding a deep queue cannot issue it faster than its service rate,
    so its queue adds at most io_per_job * service_rate (its rate while busy), however deep.
    """
    jobs = snapshot.outstanding(vm)
    if not jobs:
        return 0.0
    io_per_job = snapshot.io_per_job_estimate(vm) or 0.0
    spread_s = snapshot.config.horizon_s
    rate = service_rate_jobs_per_s(vm)
    if rate is not None:
        spread_s = max(spread_s, jobs / rate)
    return jobs * io_per_job / spread_s


def job_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float | None:
    """The I/O rate one job of `vm` asks while it runs: io_per_job / its service time there.

    io_per_job is its type's, the median of the type's VMs (else the VM's own): a job of a type
    costs what its type costs. The service time is its type's on its host
    (`FleetSnapshot.host_type_service_s`: the host's own VMs' of the type, pooled, shrunk toward
    the type's pooled over every VM of it as far as the host's figure is noise; else the
    type's; else the VM's own). Per host, because a job's I/O is paced by its VM's device: the
    same job asks 4x the rate on a host whose devices are 4x faster, and a fleet-pooled time
    counts the fast hosts' jobs too slow and fills them past their limits (the live demo,
    `device-spread` in the simulator). Shrunk, because one host's mean rests on a few dozen
    jobs of varying size, and a fit judged within a few percent of a limit turns that noise
    into overloads one way and refusals the other: on a fleet whose hosts run a type alike
    every host gets the type's pooled time. A host slower than the fleet counts as slower only
    as far as its limit says (a saturated channel stretches jobs, which must not read as jobs
    asking less). Without io_per_job (it waits for
    `io_per_job_min_jobs` completions in a VM's window, half a minute for a VM of one-second
    jobs), the median I/O per busy second of the type's metered VMs
    (`FleetSnapshot.type_io_ops_per_busy_s`, the VM's own among them); None if none of them
    has run lately.
    """
    return snapshot.memo(("job_io_ops_per_s", vm.vm_id), lambda: _job_io_ops_per_s(snapshot, vm))


def _job_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float | None:
    io_per_job = snapshot.type_io_per_job(vm.job_type) or vm.io_per_job
    service_s = snapshot.host_type_service_s(vm.host_id, vm.job_type) or vm.service_s
    if io_per_job is not None and service_s:
        return io_per_job / service_s
    # Cold start: a VM that has not run yet is not taken for one whose job may ask its host's
    # whole limit (`unmeasured_job_io_ops_per_s`) once its peers' jobs have shown what they ask;
    # else a type whose VMs reach io_per_job slowly runs on a few VMs, one per empty host, and
    # the backlog built then drains for the rest of the run.
    return snapshot.type_io_ops_per_busy_s(vm.job_type)


def unmeasured_job_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float:
    """What a job nobody has measured yet counts as: its host's whole limit (it runs alone).

    Cold start (no completions of its type yet) is when estimates are worst; assuming the job
    may ask everything the host allows is the one guess that cannot overload a host, and it
    costs only while the first jobs of a type are measured. Without a limit, Dom0's meter.
    """
    limit = snapshot.host(vm.host_id).limit_ops_per_s
    return max(vm.io_ops_per_s, limit or 0.0)


def vm_running_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float:
    """What the VM asks of its host's channel now: its job's rate while it holds one, else 0.

    A VM whose job rate is unknown counts as `unmeasured_job_io_ops_per_s` (never nothing). A
    job that alone asks more than its host's limit counts as the whole limit, as the fit test
    counts it (`pipeline.policy.io_aware.fit_candidate`): its host is full, not over, so it
    takes no job beside it but may queue the next behind it.
    """
    if snapshot.outstanding(vm) == 0:
        return 0.0
    rate = job_io_ops_per_s(snapshot, vm)
    if rate is None:
        rate = unmeasured_job_io_ops_per_s(snapshot, vm)
    return capped_at_limit(snapshot, vm, rate)


def capped_at_limit(snapshot: FleetSnapshot, vm: VmView, rate: float) -> float:
    """A job's rate as io-aware counts it: never more than its host's whole limit (a job that
    alone asks more would fit nowhere, ever; it runs on a host running nothing else)."""
    limit = snapshot.host(vm.host_id).limit_ops_per_s
    return rate if limit is None else min(rate, limit)


def running_io_ops_per_s(snapshot: FleetSnapshot, host: HostView) -> float:
    """The host's I/O demand now: Σ over its VMs of `vm_running_io_ops_per_s`."""
    return snapshot.host_memo(
        host.host_id,
        "running_io_ops_per_s",
        lambda: sum(vm_running_io_ops_per_s(snapshot, vm) for vm in host.vms),
    )


def vm_unexplained_io_ops_per_s(snapshot: FleetSnapshot, vm: VmView) -> float:
    """The part of the VM's metered I/O that no job known to the dispatcher explains.

    Dom0's meter averages the VM's I/O over `meter_window_s` ending at the host's newest
    sample, which is seconds behind. While the VM holds a known job, or a job of this
    dispatcher ended within that window, the meter's I/O is (at most one job's rate of it: a
    VM runs one job at a time) those jobs': counted now by the demand view while they run,
    and nothing once they ended. Only what exceeds one job's rate is foreign. A VM that held
    no known job in the window is all foreign: other dispatchers', a job submitted around the
    dispatcher, a guest's own I/O.
    """
    metered = vm.io_ops_per_s
    if metered <= 0 or not _jobs_in_meter(snapshot, vm):
        return max(0.0, metered)
    rate = job_io_ops_per_s(snapshot, vm)
    return 0.0 if rate is None else max(0.0, metered - rate)


def _jobs_in_meter(snapshot: FleetSnapshot, vm: VmView) -> bool:
    """Whether a job the dispatcher knows of ran on the VM within its meter's window."""
    if snapshot.outstanding(vm) > 0:
        return True
    ended_at = snapshot.last_job_ended_at(vm)
    if ended_at is None:
        return False
    sampled_at = snapshot.host(vm.host_id).last_telemetry_at
    return sampled_at is None or ended_at >= sampled_at - snapshot.config.meter_window_s


def occupancy(snapshot: FleetSnapshot, host: HostView) -> tuple[tuple[bool, bool], ...]:
    """Per VM of the host, whether it holds a job and whether a job of this dispatcher ran in
    its meter's window: all that claims and job ends change of what `running_io_ops_per_s` and
    `unexplained_io_ops_per_s` read (the rest is fixed for the snapshot's life). Equal
    occupancies give equal values (a claim and its release give back the host they found)."""
    return snapshot.host_memo(
        host.host_id,
        "occupancy",
        lambda: tuple(
            (snapshot.outstanding(vm) > 0, _jobs_in_meter(snapshot, vm)) for vm in host.vms
        ),
    )


def unexplained_io_ops_per_s(snapshot: FleetSnapshot, host: HostView) -> float:
    """Σ over the host's VMs of `vm_unexplained_io_ops_per_s` (per host: which of its VMs hold
    a job changes it)."""
    return snapshot.host_memo(
        host.host_id,
        "unexplained_io_ops_per_s",
        lambda: sum(vm_unexplained_io_ops_per_s(snapshot, vm) for vm in host.vms),
    )
