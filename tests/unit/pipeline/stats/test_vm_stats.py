"""The paper's steps 2 and 3 on hand-computed numbers."""

import random

import pytest
from pydantic_core import from_json, to_json

from pipeline.errors import RowError
from pipeline.events import IoCounters, IoSample, JobCompletion, VmState
from pipeline.stats.vm_stats import VmStats
from pipeline.stats.windows import WindowConfig

CONFIG = WindowConfig(
    rate_window_s=10.0,
    io_per_job_window_s=10.0,
    bucket_s=1.0,
    io_per_job_min_jobs=4,
)


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


def add_sample(row: VmStats, s: IoSample) -> bool:
    return row.add_io(s.host_id, s.sampled_at, s.io_ops)


def add_done(row: VmStats, c: JobCompletion) -> bool:
    return row.add_completion(c.job_id, c.finished_at, c.service_s)


def test_io_rate_is_the_windowed_sum_over_the_window():
    row = VmStats("vm1", CONFIG)
    for t in range(100, 120):  # 20 seconds of 50 ops/s
        add_sample(row, sample(float(t), 50))
    # Window of 10 s ending at 119.5: buckets 110..119 hold 10 x 50 = 500 ops.
    assert row.io_ops_per_s(119.5) == pytest.approx(50.0)


def test_load_is_jobs_completed_per_second_eq1():
    row = VmStats("vm1", CONFIG)
    for i in range(10):  # 10 jobs over buckets 100..109, i.e. 10 jobs in a 10 s window
        add_done(row, done(f"j{i}", 100.0 + i))
    assert row.load_jobs_per_s(109.5) == pytest.approx(1.0)
    # Ten seconds later those jobs have left the window.
    assert row.load_jobs_per_s(125.0) == 0.0


def test_a_vm_seen_for_only_a_few_seconds_is_not_diluted_by_the_full_window():
    row = VmStats("vm1", CONFIG)
    add_done(row, done("a", 100.2))
    add_done(row, done("b", 100.7))
    # Seen for one bucket: 2 jobs in 1 s, not 2 jobs in 10 s.
    assert row.load_jobs_per_s(100.9) == pytest.approx(2.0)


def test_io_per_job_table2_is_the_ratio_of_windowed_sums_after_min_jobs():
    row = VmStats("vm1", CONFIG)
    for t in range(101, 104):
        add_sample(row, sample(float(t), 300))  # each covers the second before it
    for i in range(3):
        add_done(row, done(f"j{i}", 100.5 + i))
    assert row.io_per_job is None  # 3 jobs < min_jobs 4: no estimate yet
    add_done(row, done("j3", 103.5))
    # Its I/O is not in any sample yet: the estimate waits for the sample that covers it.
    assert row.io_per_job is None
    add_sample(row, sample(104.0, 300))
    assert row.io_per_job == pytest.approx(1200 / 4)
    assert row.io_per_job_samples == 4


def test_io_per_job_counts_only_the_jobs_whose_io_was_sampled():
    # Completions arrive ahead of Dom0's samples; jobs newer than the newest sample wait.
    row = VmStats("vm1", CONFIG)
    for t in range(101, 106):
        add_sample(row, sample(float(t), 100))  # 500 ops for 5 jobs, one a second
        add_done(row, done(f"j{t}", t + 0.5))  # ahead of the sample that will carry its I/O
    assert row.io_per_job == pytest.approx(500 / 4)  # not 500 / 5: j105's I/O is not in yet
    add_sample(row, sample(106.0, 100))
    assert row.io_per_job == pytest.approx(600 / 5)


def test_io_per_job_follows_drift_within_one_window():
    row = VmStats("vm1", CONFIG)
    for t in range(100, 110):
        add_done(row, done(f"old{t}", t + 0.5))
        add_sample(row, sample(float(t + 1), 100))
    assert row.io_per_job == pytest.approx(100.0)
    for t in range(110, 121):  # the workload now costs 400 ops per job
        add_done(row, done(f"new{t}", t + 0.5))
        add_sample(row, sample(float(t + 1), 400))
    assert row.io_per_job == pytest.approx(400.0)


def test_redelivered_inputs_change_nothing():
    row = VmStats("vm1", CONFIG)
    assert add_sample(row, sample(100.0, 10))
    assert not add_sample(row, sample(100.0, 10))
    assert not add_sample(row, sample(99.0, 10))
    assert add_done(row, done("j1", 101.0))
    assert not add_done(row, done("j1", 101.0))
    assert row.load_jobs_per_s(101.5) == pytest.approx(1.0)  # one job, in the only bucket so far


def test_migration_moves_the_vm_to_the_sampling_host():
    row = VmStats("vm1", CONFIG)
    add_sample(row, sample(100.0, 10, host="h1"))
    add_sample(row, sample(101.0, 10, host="h2"))
    assert row.state(101.0).host_id == "h2"


def test_busy_fraction_is_what_a_guest_sees_of_itself():
    row = VmStats("vm1", CONFIG)
    for i in range(10):
        add_done(row, done(f"j{i}", 100.0 + i, service_s=0.25))
    assert row.busy_fraction(109.5) == pytest.approx(0.25)


def test_row_round_trips_as_plain_data():
    row = VmStats("vm1", CONFIG)
    add_sample(row, sample(100.0, 10))
    add_done(row, done("j", 100.5))
    again = VmStats.from_dict(row.to_dict(), "vm1", CONFIG)
    assert again.to_dict() == row.to_dict()
    assert VmStats.from_dict(None, "vm9", CONFIG).to_dict() == VmStats("vm9", CONFIG).to_dict()


def test_rates_follow_a_short_window_while_io_per_job_keeps_a_long_one():
    config = WindowConfig(rate_window_s=2.0, io_per_job_window_s=20.0, io_per_job_min_jobs=4)
    row = VmStats("vm1", config)
    for t in range(100, 110):
        add_done(row, done(f"j{t}", t + 0.5))
        add_sample(row, sample(float(t + 1), 100))
    add_sample(row, sample(111.0, 0))  # the VM goes quiet
    add_sample(row, sample(112.0, 0))
    assert row.io_ops_per_s(112.5) == 0.0  # the 2 s rate window sees it at once
    assert row.io_per_job == pytest.approx(100.0)  # 1000 ops / 10 jobs over the long window


def test_a_changed_window_setting_starts_that_window_afresh():
    row = VmStats("vm1", CONFIG)
    add_sample(row, sample(100.0, 50))
    wider = WindowConfig(rate_window_s=30.0, io_per_job_window_s=10.0, io_per_job_min_jobs=4)
    again = VmStats.from_dict(row.to_dict(), "vm1", wider)
    assert again.windows["io_ops"].window_s == 30.0 and again.io_ops_per_s(100.5) == 0.0
    assert again.windows["io_ops_long"].total(100.5) == 50


def test_rows_carry_their_version_and_rows_from_before_versioning_still_read():
    row = VmStats("vm1", CONFIG)
    add_sample(row, sample(100.0, 10))
    stored = row.to_dict()
    assert stored["schema_version"] == 1
    del stored["schema_version"]
    assert VmStats.from_dict(stored, "vm1", CONFIG).to_dict() == row.to_dict()


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        ({"schema_version": 9, "vm_id": "vm1"}, "schema_version"),
        ({"vm_id": "vm1", "surprise": 1}, "surprise"),
        ({"vm_id": "vm1", "completed": {"j": "soon"}}, "completed.j"),
        ({"vm_id": "vm1", "windows": {"io_ops": {"window_s": -1, "bucket_s": 1}}}, "window_s"),
        ({"vm_id": "other"}, "vm_id"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_an_unreadable_row_raises_row_error_naming_the_field(stored, field):
    # Before rows were typed, an unknown field raised TypeError out of the agent.
    with pytest.raises(RowError, match="vm_stats\\[vm1\\]") as raised:
        VmStats.from_dict(stored, "vm1", CONFIG)
    assert field in str(raised.value)


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_encodings_give_the_bytes_of_the_validated_ones(seed):
    # The vm_stats agent writes `to_json()` and publishes `state_bytes()` for every VM sample;
    # they are built from kept parts and without validation, and must stay byte for byte
    # what `to_dict()` encoded and the validated `VmState` give (samples, completions, late
    # ones, migrations, restores from the stored row).
    rng = random.Random(seed)
    config = WindowConfig(rate_window_s=5.0, io_per_job_window_s=60.0, io_per_job_min_jobs=3)
    row = VmStats(vm_id="vm1", config=config)
    t = 1000.0
    for n in range(rng.randint(1, 120)):
        t += rng.choice([0.0, 0.25, 1.0, 1.0, 3.0])
        at = t if rng.random() < 0.85 else t - rng.uniform(0, 70)
        if rng.random() < 0.6:
            row.add_io(rng.choice(["h1", "h1", "h1", "h2"]), at, rng.choice([0, 7, 412, 10**9]))
        else:
            row.add_completion(f"j{n}", at, rng.choice([0.0, 0.01, 0.5, 2.0]))
        if rng.random() < 0.05:
            row = VmStats.from_dict(from_json(row.to_json()), "vm1", config)
        assert row.to_json() == to_json(row.to_dict())
        now = t + rng.choice([0.0, 0.5, 10.0])
        assert row.state_bytes(now) == row.state(now).to_bytes()


def test_the_published_state_names_every_vm_state_field_in_its_order():
    # `state_bytes()` writes the fields as given: a field added to VmState must be added here.
    row = VmStats("vm1", CONFIG)
    add_sample(row, sample(100.0, 10))
    assert list(row._state_fields(100.5)) == list(VmState.model_fields)


class _WalkingRow(VmStats):
    """`io_per_job` as first written: a walk over every job id for each estimate."""

    def _estimate_io_per_job(self) -> None:
        until = self.last_telemetry_at
        if until is None or len(self.completed) < self.config.io_per_job_min_jobs:
            return
        io = self.windows["io_ops_long"]
        since = (io.oldest_bucket(until) - 1) * io.bucket_s
        jobs = sum(1 for at in self.completed.values() if since < at <= until)
        if jobs >= self.config.io_per_job_min_jobs:
            self.io_per_job = io.total(until) / jobs
            self.io_per_job_samples = jobs


@pytest.mark.parametrize("seed", range(20))
def test_io_per_job_counts_the_jobs_of_its_window_whatever_the_order_and_restores(seed):
    # The jobs `io_per_job` divides by are counted from a sorted copy of the finish times
    # (memory only, rebuilt from the stored row): the row must stay what the walk over
    # `completed` gives, with completions late and out of order, pruning, and rows restored
    # from their JSON (a restarted worker's rows, read back from the changelog).
    rng = random.Random(seed)
    config = WindowConfig(rate_window_s=5.0, io_per_job_window_s=20.0, io_per_job_min_jobs=3)
    row, walking = VmStats(vm_id="vm1", config=config), _WalkingRow(vm_id="vm1", config=config)
    t = 1000.0
    for n in range(rng.randint(1, 200)):
        t += rng.choice([0.0, 0.1, 0.5, 1.0, 3.0])
        if rng.random() < 0.4:
            io_ops = rng.choice([0, 10, 400])
            assert row.add_io("h1", t, io_ops) == walking.add_io("h1", t, io_ops)
        else:
            at = t if rng.random() < 0.8 else t - rng.uniform(0, 30)
            assert row.add_completion(f"j{n}", at, 0.1) == walking.add_completion(f"j{n}", at, 0.1)
        if rng.random() < 0.1:
            row = VmStats.from_dict(from_json(row.to_json()), "vm1", config)
            walking = _WalkingRow.from_dict(from_json(walking.to_json()), "vm1", config)
        assert row._finished == sorted(row.completed.values())
        assert row.to_dict() == walking.to_dict()
