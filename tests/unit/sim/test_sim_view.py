"""The dispatcher's view in the simulator: windows, io_per_job estimate, claims."""

from __future__ import annotations

import pytest

from benchmarks.sim.scenario import IoPerJobSource, load_scenario
from benchmarks.sim.view import DispatcherView, Sample

TINY = load_scenario("tiny")


def view(io_per_job: IoPerJobSource = IoPerJobSource.MEASURED, min_jobs: int = 2) -> DispatcherView:
    telemetry = TINY.telemetry.model_copy(
        update={"io_per_job": io_per_job, "io_per_job_min_jobs": min_jobs}
    )
    scenario = TINY.model_copy(update={"telemetry": telemetry})
    return DispatcherView(scenario, [("a", "h1", "io"), ("b", "h1", "cpu")], {"h1": 360.0})


def test_never_heard_host_is_never_fresh() -> None:
    snapshot = view().snapshot(5.0)
    assert snapshot.host("h1").last_telemetry_at is None
    assert snapshot.host("h1").limit_ops_per_s == 360.0


def test_delivered_sample_sets_rates_and_io_per_job() -> None:
    v = view(min_jobs=2)
    v.deliver(
        Sample(
            "a", "h1", 1.9, io_ops=100.0, completions=((1.2, 0.4), (1.5, 0.3)), outstanding_jobs=3
        )
    )
    a = v.snapshot(2.0).vm("a")
    # Everything in bucket 1, the only one seen: span 1 s. io 100/s, load 2 jobs/s, busy 0.7,
    # io_per_job 100 / 2.
    assert a.io_ops_per_s == pytest.approx(100.0)
    assert a.load_jobs_per_s == pytest.approx(2.0)
    assert a.busy_fraction == pytest.approx(0.7)
    assert a.io_per_job == pytest.approx(50.0)
    assert a.outstanding_jobs == 3


def test_io_per_job_waits_for_enough_jobs_unless_calibrated() -> None:
    v = view(min_jobs=5)
    v.deliver(Sample("a", "h1", 1.0, io_ops=100.0, completions=((0.5, 0.4),), outstanding_jobs=0))
    assert v.snapshot(1.5).vm("a").io_per_job is None
    assert (
        view(IoPerJobSource.CALIBRATED).snapshot(0.0).vm("a").io_per_job
        == TINY.job_types["io"].io_ops
    )


def test_claims_last_until_a_sample_covers_them() -> None:
    v = view()
    v.record_dispatch("a", 2.0)
    v.record_dispatch("a", 3.0)
    assert v.snapshot(3.1).claims("a") == 2
    v.deliver(Sample("a", "h1", 2.5, io_ops=0.0, completions=(), outstanding_jobs=1))
    assert v.snapshot(3.2).claims("a") == 1  # the 2.0 placement is in the sample's count
