"""The guest's completed-jobs store and its busy meter."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.guest.busy import BusyMeter
from producers.guest.completed import CompletedJobs


def test_completed_jobs_survive_a_restart(tmp_path: Path) -> None:
    store = CompletedJobs(tmp_path / "done")
    store.add("job-1", 100.0)
    store.close()
    reopened = CompletedJobs(tmp_path / "done")
    assert "job-1" in reopened and "job-2" not in reopened
    reopened.close()


def test_completed_jobs_are_pruned_by_age_and_count(tmp_path: Path) -> None:
    store = CompletedJobs(tmp_path / "done", ttl_s=10.0, max_entries=2)
    for i, at in enumerate([1.0, 5.0, 8.0, 9.0]):
        store.add(f"j{i}", at)
    assert store.prune(now=16.0) == 2  # j0 and j1 are older than 10 s
    assert len(store) == 2 and "j3" in store
    assert store.prune(now=100.0) == 2
    store.close()


def test_busy_meter_separates_cpu_from_waiting_for_io() -> None:
    wall, cpu = [0.0], [0.0]
    meter = BusyMeter(wall=lambda: wall[0], cpu=lambda: cpu[0])
    # Ten seconds in which the guest ran jobs for 9 s, 8 s of it waiting for host I/O.
    meter.job_done(service_s=9.0, io_wait_s=8.0)
    wall[0], cpu[0] = 10.0, 1.0
    report = meter.report()
    assert report.cpu_busy_fraction == pytest.approx(0.1)  # what a guest-side monitor shows
    assert report.in_jobs_fraction == pytest.approx(0.9)
    assert report.io_wait_fraction == pytest.approx(8 / 9)
    wall[0] = 20.0
    assert meter.report().jobs == 0  # a new window


def test_an_end_being_published_is_marked_until_the_job_is_recorded(tmp_path: Path) -> None:
    store = CompletedJobs(tmp_path / "done")
    store.ending("job-1#1", 100.0)
    store.close()
    reopened = CompletedJobs(tmp_path / "done")  # the guest was killed meanwhile
    assert reopened.ending_since("job-1#1") == 100.0 and "job-1#1" not in reopened
    assert len(reopened) == 0  # a mark is not a completed job
    reopened.add("job-1#1", 101.0)
    assert reopened.ending_since("job-1#1") is None and "job-1#1" in reopened
    reopened.close()
