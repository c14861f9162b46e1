from pipeline.dispatcher import DedupeHorizon, WaitingIndex, normalize
from pipeline.events import JobSubmission


def test_normalize_derives_a_stable_id_from_the_log_position():
    job = JobSubmission(job_type="io")
    first = normalize(job, "vmlb.jobs", 3, 42, 1000.5)
    again = normalize(job, "vmlb.jobs", 3, 42, 2000.0)  # re-delivered later
    assert first.job_id == again.job_id == "auto.vmlb.jobs.3.42"
    assert first.submitted_at == 1000.5


def test_normalize_keeps_what_the_submitter_gave():
    job = JobSubmission(job_id="mine", job_type="io", submitted_at=5.0)
    assert normalize(job, "t", 0, 1, 99.0) is job


def ids(index: WaitingIndex, partition: int) -> dict[str, list[str]]:
    return {t: [job.job_id for job in jobs] for t, jobs in index.by_type(partition).items()}


def test_waiting_index_orders_oldest_first_per_type_and_partition():
    index = WaitingIndex()
    index.add(0, "io", "b", 2.0)
    index.add(0, "io", "a", 1.0)  # out of order: re-sorted
    index.add(0, "io", "e", 4.0)
    index.add(0, "cpu", "c", 3.0)
    index.add(1, "io", "d", 0.5)
    assert ids(index, 0) == {"io": ["a", "b", "e"], "cpu": ["c"]}
    assert ids(index, 1) == {"io": ["d"]}
    assert index.count() == 5
    index.remove(0, "io", "a")
    index.remove(0, "cpu", "c")
    assert ids(index, 0) == {"io": ["b", "e"]}


def test_waiting_index_carries_each_jobs_deadline():
    index = WaitingIndex()
    index.add(0, "io", "a", 1.0, deadline_at=9.0)
    index.add(0, "io", "b", 2.0)
    assert [(j.job_id, j.deadline_at) for j in index.by_type(0)["io"]] == [("a", 9.0), ("b", None)]


def test_waiting_index_builds_only_its_partition_from_the_table():
    index = WaitingIndex()
    table = {
        "x": {"partition": 2, "waiting_since": 5.0, "deadline_at": 8.0, "job": {"job_type": "io"}},
        "w": {"partition": 2, "waiting_since": 4.0, "deadline_at": None, "job": {"job_type": "io"}},
        "y": {"partition": 3, "waiting_since": 1.0, "deadline_at": None, "job": {"job_type": "io"}},
    }
    assert not index.built(2)
    index.build(2, iter(table.items()))
    assert index.built(2)
    assert index.by_type(2) == {"io": [("w", 4.0, None), ("x", 5.0, 8.0)]}
    index.clear()
    assert not index.built(2)


def test_dedupe_horizon_forgets_oldest_first():
    horizon = DedupeHorizon()
    horizon.add(0, "a", 10.0)
    horizon.add(0, "b", 20.0)
    horizon.add(1, "c", 5.0)
    assert horizon.expired(0, before=15.0) == ["a"]
    assert horizon.expired(0, before=15.0) == []
    assert horizon.expired(1, before=100.0) == ["c"]
    horizon.rebuild(0, [("z", {"partition": 0, "at": 1.0}), ("w", {"partition": 4, "at": 1.0})])
    assert horizon.expired(0, before=2.0) == ["z"]
