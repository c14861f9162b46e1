"""The simulator's dispatcher view is the pipeline's own rows, fleet view and snapshot source."""

from __future__ import annotations

import pytest

from benchmarks.sim.scenario import IoPerJobSource, load_scenario
from benchmarks.sim.view import DispatcherView, Sample
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.stats.vm_stats import VmStats
from pipeline.stats.windows import WindowConfig

TINY = load_scenario("tiny")


def view(io_per_job: IoPerJobSource = IoPerJobSource.MEASURED, min_jobs: int = 2) -> DispatcherView:
    telemetry = TINY.telemetry.model_copy(
        update={"io_per_job": io_per_job, "io_per_job_min_jobs": min_jobs}
    )
    scenario = TINY.model_copy(update={"telemetry": telemetry})
    return DispatcherView(scenario, [("a", "h1", "io"), ("b", "h1", "cpu")], {"h1": 360.0})


def test_it_is_built_of_the_live_pipelines_parts_with_its_windows() -> None:
    v = view()
    assert isinstance(v.fleet, FleetView)
    assert isinstance(v.snapshots, SnapshotSource)
    assert all(isinstance(row, VmStats) for row in v.rows.values())
    # The live worker's defaults (5 s rates, 60 s io_per_job), not a window of the sim's own.
    assert v.rows["a"].config == WindowConfig(io_per_job_min_jobs=2)


def test_never_heard_host_is_never_fresh() -> None:
    snapshot = view().snapshot(5.0)
    assert snapshot.host("h1").last_telemetry_at is None
    assert snapshot.host("h1").limit_ops_per_s == 360.0


def test_delivered_sample_sets_rates_and_io_per_job() -> None:
    v = view(min_jobs=2)
    for _ in range(3):
        v.record_dispatch("a")
    v.record_end("a")
    v.record_end("a")
    completions = (("j0", 1.2, 0.4), ("j1", 1.5, 0.3))
    v.deliver([Sample("a", "h1", 1.9, io_ops=100.0, completions=completions)], now=1.95)
    a = v.snapshot(2.0).vm("a")
    # Published at 1.95, all in bucket 1, the only one seen: span 1 s. io 100/s, load 2 jobs/s,
    # busy 0.7, io_per_job 100 / 2; one of the three dispatched jobs is still out.
    assert a.io_ops_per_s == pytest.approx(100.0)
    assert a.load_jobs_per_s == pytest.approx(2.0)
    assert a.busy_fraction == pytest.approx(0.7)
    assert a.io_per_job == pytest.approx(50.0)
    snapshot = v.snapshot(1.95)
    assert snapshot.outstanding(snapshot.vm("a")) == 1


def test_io_per_job_waits_for_enough_jobs_unless_calibrated() -> None:
    v = view(min_jobs=5)
    v.deliver([Sample("a", "h1", 1.0, io_ops=100.0, completions=(("j0", 0.5, 0.4),))], now=1.5)
    assert v.snapshot(1.5).vm("a").io_per_job is None
    calibrated = view(IoPerJobSource.CALIBRATED)
    assert calibrated.snapshot(0.0).vm("a").io_per_job == TINY.job_types["io"].io_ops
    assert calibrated.fleet.vm_io_per_job("a").source == "operator"


def test_the_dispatchers_own_jobs_in_flight_are_counted_exactly_in_cached_and_new_snapshots():
    v = view()
    cached = v.snapshot(2.0)
    v.record_dispatch("a")  # as the policy does: the placement is claimed on the snapshot
    cached.claim("a")
    v.record_dispatch("a")
    cached.claim("a")
    assert cached.outstanding(cached.vm("a")) == 2
    v.record_end("a")  # the end is released on the cached snapshot at once
    assert v.snapshot(2.01) is cached
    assert cached.outstanding(cached.vm("a")) == 1
    rebuilt = v.snapshot(3.0)
    assert rebuilt is not cached
    assert rebuilt.outstanding(rebuilt.vm("a")) == 1
