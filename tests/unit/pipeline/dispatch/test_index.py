"""WaitingIndex and DedupeHorizon: the dispatcher's in-memory indexes of its tables."""

from pipeline.dispatch.index import DedupeHorizon, WaitingIndex
from pipeline.dispatch.rows import DispatchedRow, WaitingRow
from pipeline.events import JobSubmission, QueuedJob


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


def waiting_row(partition: int, since: float, deadline_at: float | None = None) -> WaitingRow:
    return WaitingRow(
        job=JobSubmission(job_type="io"),
        partition=partition,
        waiting_since=since,
        deadline_at=deadline_at,
    )


def test_waiting_index_builds_only_its_partition_from_the_table():
    index = WaitingIndex()
    table = {"x": waiting_row(2, 5.0, 8.0), "w": waiting_row(2, 4.0), "y": waiting_row(3, 1.0)}
    assert not index.built(2)
    index.build(2, iter(table.items()))
    assert index.built(2)
    assert index.by_type(2) == {"io": [("w", 4.0, None), ("x", 5.0, 8.0)]}
    index.clear()
    assert not index.built(2)


def test_a_job_added_before_the_rebuild_does_not_hide_the_restored_ones():
    # After a rebalance, a new job that waits before the partition's first retry tick must
    # not make the partition look indexed: the jobs restored into the table would never be
    # retried (#15: 115 jobs stranded with every host idle).
    index = WaitingIndex()
    index.add(2, "io", "new", 9.0)
    assert not index.built(2)
    index.build(2, iter({"old": waiting_row(2, 1.0)}.items()))
    assert [job.job_id for job in index.by_type(2)["io"]] == ["old", "new"]


def test_dedupe_horizon_forgets_oldest_first():
    horizon = DedupeHorizon()
    horizon.add(0, "a", 10.0)
    horizon.add(0, "b", 20.0)
    horizon.add(1, "c", 5.0)
    assert horizon.expired(0, before=15.0) == ["a"]
    assert horizon.expired(0, before=15.0) == []
    assert horizon.expired(1, before=100.0) == ["c"]
    horizon.rebuild(0, [("z", dispatched_row(0, 1.0)), ("w", dispatched_row(4, 1.0))])
    assert horizon.expired(0, before=2.0) == ["z"]


def dispatched_row(partition: int, at: float) -> DispatchedRow:
    queued = QueuedJob(
        job_id="z",
        job_type="io",
        vm_id="a1",
        host_id="h1",
        submitted_at=at,
        dispatched_at=at,
        policy="io-aware",
    )
    return DispatchedRow(vm_id="a1", queue_topic="q", partition=partition, queued=queued, at=at)


def test_dedupe_rebuild_keeps_ids_added_before_it():
    horizon = DedupeHorizon()
    horizon.add(0, "new", 9.0)
    horizon.rebuild(0, [("old", dispatched_row(0, 1.0))])
    assert horizon.expired(0, before=10.0) == ["old", "new"]
