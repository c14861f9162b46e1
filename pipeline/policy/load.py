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
