"""The paper's steps 2 and 3 on hand-computed numbers."""

import pytest

from pipeline.events import IoCounters, IoSample, JobCompletion
from pipeline.vm_stats import JobMark, VmStats, WindowConfig

CONFIG = WindowConfig(
    rate_window_s=10.0,
    io_per_job_window_s=10.0,
    bucket_s=1.0,
    io_per_job_min_jobs=4,
    inflight_timeout_s=60.0,
)


class Tracked:
    """A row with its job marks kept as the vm_stats agent keeps them (table `vm_jobs`):
    `add_dispatch`/`add_completion` answer whether the input counted."""

    def __init__(self, row: VmStats) -> None:
        self.row = row
        self.marks: dict[str, JobMark] = {}

    def add_dispatch(self, job_id: str, dispatched_at: float) -> bool:
        mark = self.row.add_dispatch(job_id, dispatched_at, self.marks.get(job_id))
        if mark is not None:
            self.marks[job_id] = mark
        return mark is not None

    def add_completion(self, completion: JobCompletion) -> bool:
        mark = self.row.add_completion(completion, self.marks.get(completion.job_id))
        if mark is not None:
            self.marks[completion.job_id] = mark
        return mark is not None

    def __getattr__(self, name: str):  # everything else is the row's
        return getattr(self.row, name)


def new_row() -> Tracked:
    return Tracked(VmStats("vm1", CONFIG))


def sample(t: float, io_ops: int, host: str = "h1") -> IoSample:
    return IoSample(
        host_id=host,
        vm_id="vm1",
        sampled_at=t,
        interval_s=1.0,
        io_ops=io_ops,
        counters=IoCounters(),
    )


def done(job_id: str, finished_at: float, service_s: float = 0.5) -> JobCompletion:
    return JobCompletion(
        job_id=job_id,
        job_type="io",
        vm_id="vm1",
        host_id="h1",
        submitted_at=finished_at - 2,
        dispatched_at=finished_at - 1.5,
        started_at=finished_at - service_s,
        finished_at=finished_at,
        outcome="succeeded",
    )


def test_io_rate_is_the_windowed_sum_over_the_window():
    row = new_row()
    for t in range(100, 120):  # 20 seconds of 50 ops/s
        row.add_sample(sample(float(t), 50))
    # Window of 10 s ending at 119.5: buckets 110..119 hold 10 x 50 = 500 ops.
    assert row.io_ops_per_s(119.5) == pytest.approx(50.0)


def test_load_is_jobs_completed_per_second_eq1():
    row = new_row()
    for i in range(10):  # 10 jobs over buckets 100..109, i.e. 10 jobs in a 10 s window
        row.add_completion(done(f"j{i}", 100.0 + i))
    assert row.load_jobs_per_s(109.5) == pytest.approx(1.0)
    # Ten seconds later those jobs have left the window.
    assert row.load_jobs_per_s(125.0) == 0.0


def test_a_vm_seen_for_only_a_few_seconds_is_not_diluted_by_the_full_window():
    row = new_row()
    row.add_completion(done("a", 100.2))
    row.add_completion(done("b", 100.7))
    # Seen for one bucket: 2 jobs in 1 s, not 2 jobs in 10 s.
    assert row.load_jobs_per_s(100.9) == pytest.approx(2.0)


def test_io_per_job_table2_is_the_ratio_of_windowed_sums_after_min_jobs():
    row = new_row()
    for t in range(100, 104):
        row.add_sample(sample(float(t), 300))  # 1200 ops
    for i in range(3):
        row.add_completion(done(f"j{i}", 101.0 + i))
    assert row.io_per_job is None  # 3 jobs < min_jobs 4: no estimate yet
    row.add_completion(done("j3", 103.5))
    assert row.io_per_job == pytest.approx(1200 / 4)
    assert row.io_per_job_samples == 4


def test_io_per_job_follows_drift_within_one_window():
    row = new_row()
    for t in range(100, 110):
        row.add_sample(sample(float(t), 100))
        row.add_completion(done(f"old{t}", t + 0.5))
    assert row.io_per_job == pytest.approx(100.0)
    for t in range(110, 121):  # the workload now costs 400 ops per job
        row.add_sample(sample(float(t), 400))
        row.add_completion(done(f"new{t}", t + 0.5))
    assert row.io_per_job == pytest.approx(400.0)


def test_redelivered_inputs_change_nothing():
    row = new_row()
    assert row.add_sample(sample(100.0, 10))
    assert not row.add_sample(sample(100.0, 10))
    assert not row.add_sample(sample(99.0, 10))
    assert row.add_dispatch("j1", 100.0)
    assert not row.add_dispatch("j1", 100.0)
    assert row.add_completion(done("j1", 101.0))
    assert not row.add_completion(done("j1", 101.0))
    assert row.load_jobs_per_s(101.5) == pytest.approx(1.0)  # one job, in the only bucket so far


def test_outstanding_counts_dispatched_not_completed_and_ignores_late_decisions():
    row = new_row()
    row.add_dispatch("a", 100.0)
    row.add_dispatch("b", 100.1)
    row.add_completion(done("a", 101.0))
    # The completion of c overtook its decision (different topics): c never counts in flight.
    row.add_completion(done("c", 101.2))
    row.add_dispatch("c", 100.2)
    state = row.state(101.5)
    assert state.outstanding_jobs == 1
    assert state.last_decision_at == pytest.approx(100.2)


def test_in_flight_jobs_past_the_timeout_stop_counting():
    row = new_row()
    row.add_dispatch("lost", 100.0)
    row.add_dispatch("fresh", 170.0)  # 70 s later: "lost" is past the 60 s timeout
    assert row.outstanding_jobs() == 1
    # The late completion of the timed-out job changes no count (it is no longer counted).
    assert row.add_completion(done("lost", 171.0))
    assert row.outstanding_jobs() == 1


def test_the_row_keeps_counts_not_job_ids():
    row = new_row()
    for i in range(500):
        row.add_dispatch(f"j{i}", 100.0 + i * 0.01)
    for i in range(400):
        row.add_completion(done(f"j{i}", 106.0 + i * 0.01))
    assert row.outstanding_jobs() == 100
    assert len(str(row.to_dict())) < 3000  # windows and a few counts, whatever the job count
    assert row.marks["j0"] == JobMark("vm1", dispatched_at=100.0, finished_at=106.0)
    assert row.marks["j499"] == JobMark("vm1", dispatched_at=104.99)


def test_a_job_mark_expires_after_the_dedupe_window_or_the_inflight_timeout():
    completed = JobMark("vm1", dispatched_at=100.0, finished_at=101.0)
    in_flight = JobMark("vm1", dispatched_at=100.0)
    assert completed.expires_at(CONFIG) == 101.0 + 10.0  # max(rate, io_per_job windows)
    assert in_flight.expires_at(CONFIG) == 100.0 + 60.0  # inflight_timeout_s
    assert JobMark.from_dict(completed.to_dict()) == completed


def test_migration_moves_the_vm_to_the_sampling_host():
    row = new_row()
    row.add_sample(sample(100.0, 10, host="h1"))
    row.add_sample(sample(101.0, 10, host="h2"))
    assert row.state(101.0).host_id == "h2"


def test_busy_fraction_is_what_a_guest_sees_of_itself():
    row = new_row()
    for i in range(10):
        row.add_completion(done(f"j{i}", 100.0 + i, service_s=0.25))
    assert row.busy_fraction(109.5) == pytest.approx(0.25)


def test_row_round_trips_as_plain_data():
    row = new_row()
    row.add_sample(sample(100.0, 10))
    row.add_dispatch("j", 100.0)
    again = VmStats.from_dict(row.to_dict(), "vm1", CONFIG)
    assert again.to_dict() == row.to_dict()
    assert again.outstanding_jobs() == 1
    assert VmStats.from_dict(None, "vm9", CONFIG).to_dict() == VmStats("vm9", CONFIG).to_dict()


def test_a_row_written_before_job_marks_restarts_its_counts():
    old = VmStats("vm1", CONFIG).to_dict()
    old["inflight"] = {"j1": 100.0}  # job ids, as rows kept them before
    old["completed"] = {"j0": 99.0}
    again = VmStats.from_dict(old, "vm1", CONFIG)
    assert again.outstanding_jobs() == 0 and "completed" not in again.to_dict()


def test_rates_follow_a_short_window_while_io_per_job_keeps_a_long_one():
    config = WindowConfig(rate_window_s=2.0, io_per_job_window_s=20.0, io_per_job_min_jobs=4)
    row = Tracked(VmStats("vm1", config))
    for t in range(100, 110):
        row.add_sample(sample(float(t), 100))
        row.add_completion(done(f"j{t}", t + 0.5))
    row.add_sample(sample(110.0, 0))  # the VM goes quiet
    row.add_sample(sample(111.0, 0))
    assert row.io_ops_per_s(111.5) == 0.0  # the 2 s rate window sees it at once
    assert row.io_per_job == pytest.approx(100.0)  # 1000 ops / 10 jobs over the long window


def test_a_changed_window_setting_starts_that_window_afresh():
    row = new_row()
    row.add_sample(sample(100.0, 50))
    wider = WindowConfig(rate_window_s=30.0, io_per_job_window_s=10.0, io_per_job_min_jobs=4)
    again = VmStats.from_dict(row.to_dict(), "vm1", wider)
    assert again.windows["io_ops"].window_s == 30.0 and again.io_ops_per_s(100.5) == 0.0
    assert again.windows["io_ops_long"].total(100.5) == 50
