"""WaitingQueue: priority first, then submitters in turns, then oldest; backoff and deadlines."""

from __future__ import annotations

import gc

from pipeline.dispatch.waiting import Turns, Waiting, WaitingQueue


def job(job_id: str, since: float, priority: int = 4, submitter: str = "-", **kw: float) -> Waiting:
    return Waiting(job_id=job_id, priority=priority, submitter=submitter, since=since, **kw)


def drain(queue: WaitingQueue, now: float = 100.0) -> list[str]:
    order = []
    while (head := queue.head(now)) is not None:
        order.append(head.job_id)
        queue.take(head.job_id)
    return order


def test_oldest_first_within_a_priority_and_higher_priority_first():
    queue = WaitingQueue()
    queue.add(job("b", 2.0))
    queue.add(job("a", 1.0))
    queue.add(job("urgent", 3.0, priority=9))
    assert drain(queue) == ["urgent", "a", "b"]


def test_a_flooding_submitter_cannot_starve_another():
    queue = WaitingQueue()
    for n in range(100):
        queue.add(job(f"flood{n}", float(n), submitter="flood"))
    queue.add(job("mine", 50.5, submitter="me"))
    order = drain(queue)
    # "me" joins the turns at the flooder's current count: served within one turn, not after
    # the 50 flood jobs that were older than it.
    assert order.index("mine") <= 1


def test_turns_alternate_between_submitters_and_a_newcomer_does_not_jump_the_history():
    queue = WaitingQueue()
    for n in range(3):
        queue.add(job(f"a{n}", float(n), submitter="a"))
        queue.add(job(f"b{n}", float(n) + 0.5, submitter="b"))
    assert drain(queue) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_a_backing_off_job_is_held_aside_until_due_and_blocks_no_one():
    queue = WaitingQueue()
    queue.add(job("retry", 1.0, not_before=50.0))
    queue.add(job("fresh", 2.0))
    assert queue.head(10.0).job_id == "fresh"
    queue.take("fresh")
    assert queue.head(10.0) is None
    assert queue.head(50.0).job_id == "retry"


def test_deadlines_expire_anywhere_in_the_queue():
    queue = WaitingQueue()
    queue.add(job("head", 1.0))
    queue.add(job("late", 2.0, deadline_at=5.0))
    queue.add(job("fine", 3.0, deadline_at=50.0))
    assert [w.job_id for w in queue.expired(5.0)] == ["late"]
    assert "late" not in queue and len(queue) == 2
    assert drain(queue) == ["head", "fine"]


def test_a_removed_or_readded_job_is_not_served_twice():
    queue = WaitingQueue()
    queue.add(job("a", 1.0))
    queue.add(job("b", 2.0))
    queue.discard("a")
    queue.add(job("b", 0.5))  # re-added with an older time (a rebuilt record)
    assert drain(queue) == ["b"]


def test_the_display_order_lists_ready_jobs_then_those_backing_off():
    queue = WaitingQueue()
    queue.add(job("later", 1.0, not_before=99.0))
    queue.add(job("now", 2.0))
    assert [w.job_id for w in queue.ordered(10.0)] == ["now", "later"]


def test_turns_start_afresh_once_nobody_waits():
    # "me" was served 20 times in an earlier busy spell; the queue then emptied. A flooder
    # that starts waiting later must not get 20 turns in a row before "me" for that history.
    queue = WaitingQueue()
    for n in range(20):
        queue.add(job(f"old{n}", float(n), submitter="me"))
    assert len(drain(queue)) == 20 and not queue
    for n in range(50):
        queue.add(job(f"flood{n}", 100.0 + n, submitter="flood"))
    queue.add(job("mine", 160.0, submitter="me"))
    assert drain(queue, now=200.0).index("mine") <= 1


def test_queues_sharing_turns_count_a_submitters_jobs_in_either():
    turns = Turns()
    here, there = WaitingQueue(turns), WaitingQueue(turns)
    for n in range(3):
        here.add(job(f"f{n}", float(n), submitter="flooder"))
    here.take("f0")  # the flooder had a turn in one partition
    there.add(job("v", 10.0, submitter="victim"))  # joins at the flooder's count, in another
    assert turns.of("victim") == turns.of("flooder") == 1
    here.take("f1")
    assert turns.of("flooder") > turns.of("victim")  # the victim's turn now, in either queue


def test_a_cleared_queue_leaves_the_shared_turns_and_they_restart_when_nobody_waits():
    turns = Turns()
    moved, kept = WaitingQueue(turns), WaitingQueue(turns)
    moved.add(job("a", 1.0, submitter="s"))
    kept.add(job("b", 2.0, submitter="t"))
    kept.take("b")
    assert turns.of("t") == 1
    moved.clear()  # its partition moved away: nothing waits anywhere now
    assert turns.served == {}
    kept.add(job("c", 3.0, submitter="t"))
    assert turns.of("t") == 0


def _followed_from(queue: WaitingQueue) -> int:
    """How many objects a full collection visits from the queue (its shared turns aside)."""
    gc.collect()
    gc.collect()  # a heap entry is untracked once the job it holds is
    seen: set[int] = set()
    stack: list[object] = [queue]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type | Turns):
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    return len(seen)


def test_a_queue_holds_its_jobs_as_nothing_the_collector_follows():
    def filled(jobs: int) -> WaitingQueue:
        queue = WaitingQueue()
        for n in range(jobs):
            kw = {"not_before": 50.0} if n % 3 == 0 else {"deadline_at": 60.0 + n}
            queue.add(job(f"j{n}", float(n), priority=n % 2, submitter=f"s{n % 4}", **kw))
        queue.take(queue.head(10.0).job_id)  # type: ignore[union-attr]
        queue.head(100.0)  # the backed-off ones join the heaps
        return queue

    few, many = filled(12), filled(600)
    assert len(many) == 599
    assert _followed_from(many) == _followed_from(few)  # the containers, not the jobs
    # What is read back is the job as added, in the queue's order (s1 has had its turn).
    assert many.get("j7") == job("j7", 7.0, priority=1, submitter="s3", deadline_at=67.0)
    assert many.get("j1") is None
    order = drain(many)
    assert order[:3] == ["j3", "j5", "j7"]
    assert sorted(order) == sorted(f"j{n}" for n in range(600) if n != 1)
