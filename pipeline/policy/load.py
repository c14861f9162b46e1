"""The I/O formulas: the paper's Table 3 total, and the projected total that fixes it.

Pure functions of a snapshot and a host; nothing else. Units: I/O requests per second.

- `paper_total_io_ops_per_s`: Σ load[vm] * io_per_job[vm] (paper Table 3). It uses completions
  reported in the past, so jobs placed since the last report are invisible to it.
- `committed_io_ops`: I/O that jobs dispatched but not finished will still cost,
  Σ (outstanding + claims) * io_per_job, with an unknown io_per_job replaced by the median of the
  same job type in the snapshot (else 0: warm-up then bounds the risk).
- `projected_io_ops_per_s`: max(measured, paper total) + committed / horizon_s. The maximum
  takes whichever view of the present is worse (Dom0's meter sees I/O of jobs still running; the
  paper's product sees I/O of jobs finished), and the committed term spreads the work already
  sent over the horizon, so a burst of placements raises the estimate at once.
"""

from __future__ import annotations

from pipeline.policy.snapshot import FleetSnapshot, HostView


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
    present = max(host.measured_io_ops_per_s, host.paper_total_io_ops_per_s)
    return present + committed_io_ops(snapshot, host) / snapshot.config.horizon_s
