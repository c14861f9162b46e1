"""The dispatcher's view of the simulated fleet, built by the live pipeline's own code.

Nothing of the aggregation is re-implemented here. Each VM has a `pipeline.stats.vm_stats.VmStats`
row, as the `vm_stats` agent keeps one; the fleet is a `pipeline.fleet.view.FleetView` fed the
same events the fleet topics carry (registrations, limits, `VmState`s); snapshots and claims come
from `pipeline.fleet.snapshots.SnapshotSource`. What the simulator decides is only *when* each
input reaches the pipeline:

- the dispatcher counts its own jobs in flight exactly (`InFlight`): a placement at once, an end
  when the job finishes (live, the guest's status record reaches the dispatcher within
  milliseconds);
- a sampling tick's I/O and the completions since the last tick reach the rows after the
  telemetry delay (Dom0 -> Kafka -> vm_stats), and each VM's state is then published (as
  `vm-state`) as of that moment;
- host limits are registered as configured (`HostRegistration.io_limit_ops_per_s`); a scenario
  with `io_per_job: calibrated` sets each VM's io_per_job as an operator override, so it stays
  as measured at setup (the paper's Table 2) and the running estimate never replaces it.

Snapshot rebuilds are paced as live (`min_rebuild_s`, `max_age_s`), but by simulated time only:
their wall-clock cost is not charged (it would make runs depend on the machine).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.sim.scenario import IoPerJobSource, Scenario
from pipeline.events import (
    HostRegistration,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
    VmRegistration,
)
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig
from pipeline.stats.vm_stats import VmStats


@dataclass(frozen=True, slots=True)
class Sample:
    """One VM's telemetry for one interval, as the dispatcher eventually receives it."""

    vm_id: str
    host_id: str
    sampled_at: float
    io_ops: float
    #: Jobs finished since the previous sample: (job_id, finished_at, service_s).
    completions: tuple[tuple[str, float, float], ...] = ()


class DispatcherView:
    """The pipeline's rows, fleet view and snapshot source, fed by the simulation."""

    def __init__(
        self, scenario: Scenario, vms: list[tuple[str, str, str]], limits: dict[str, float]
    ) -> None:
        """`vms`: (vm_id, host_id, job_type) of every VM; `limits`: calibrated host limits."""
        windows = scenario.telemetry.window_config()
        self.config: PolicyConfig = scenario.dispatcher.policy_config(windows.rate_window_s)
        interval_s = scenario.telemetry.interval_s
        self.fleet = FleetView()
        for host_id in sorted({host_id for _, host_id, _ in vms}):
            self.fleet.put_host(
                HostRegistration(
                    host_id=host_id,
                    io_limit_ops_per_s=limits.get(host_id),
                    sample_interval_s=interval_s,
                    registered_at=0.0,
                )
            )
        calibrated = scenario.telemetry.io_per_job is IoPerJobSource.CALIBRATED
        self.rows: dict[str, VmStats] = {}
        for vm_id, host_id, job_type in vms:
            self.fleet.put_vm(
                VmRegistration(
                    vm_id=vm_id,
                    host_id=host_id,
                    job_type=job_type,
                    queue_topic=f"queue.{vm_id}",
                    registered_at=0.0,
                )
            )
            if calibrated:
                self.fleet.put_limit(
                    LimitSetting(
                        scope=LimitScope.VM,
                        target_id=vm_id,
                        field=LimitField.IO_PER_JOB,
                        source=LimitSource.OPERATOR,
                        value=scenario.job_types[job_type].io_ops or None,
                        set_at=0.0,
                        detail="scenario: calibrated at setup",
                    )
                )
            self.rows[vm_id] = VmStats(vm_id=vm_id, config=windows)
        self.snapshots = SnapshotSource(
            self.fleet,
            self.config,
            max_age_s=scenario.dispatcher.snapshot_max_age_s,
            timer=lambda: 0.0,
        )

    # --- inputs -----------------------------------------------------------------------------

    def deliver(self, samples: list[Sample], now: float) -> None:
        """A sampling tick's telemetry reaches the pipeline at `now`; states are published."""
        for sample in samples:
            row = self.rows[sample.vm_id]
            row.add_io(sample.host_id, sample.sampled_at, sample.io_ops)
            for job_id, finished_at, service_s in sample.completions:
                row.add_completion(job_id, finished_at, service_s)
            self.fleet.put_state(row.state(now))

    def record_dispatch(self, vm_id: str) -> None:
        """A job was placed on `vm_id` (the policy has claimed it on the snapshot)."""
        self.snapshots.placed(vm_id)

    def record_end(self, vm_id: str, at: float | None = None) -> None:
        """One of the jobs placed on `vm_id` finished (at `at`): the dispatcher hears of it at
        once."""
        self.snapshots.released(vm_id, at)

    # --- outputs ----------------------------------------------------------------------------

    def snapshot(self, now: float) -> FleetSnapshot:
        """The dispatcher's snapshot at `now` (cached and rebuilt as the live one is)."""
        return self.snapshots.get(now)
