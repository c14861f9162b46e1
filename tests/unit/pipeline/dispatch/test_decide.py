"""Dispatcher.decide's outcomes on a fake clock, and normalize."""

import pytest

from pipeline.dispatch.decide import normalize
from pipeline.events import DecisionOutcome, JobSubmission, QueuedJob
from pipeline.fleet.view import FleetView
from tests.unit.pipeline.fleet_builders import (
    FAST_VM,
    NOW,
    add_host,
    add_state,
    add_vm,
    dispatcher_for,
    fleet_of_one,
    job,
)

# --- Dispatcher.decide ------------------------------------------------------------------------


def test_decide_dispatches_to_the_registrations_queue_topic():
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    result = dispatcher.decide(job(deadline_s=30.0), NOW + 1, attempt=3, partition=7)
    decision = result.decision
    assert decision.outcome is DecisionOutcome.DISPATCHED
    assert (decision.vm_id, decision.host_id, decision.attempt) == ("a1", "h1", 3)
    assert decision.policy == "io-aware"
    assert decision.decided_at == NOW + 1
    assert decision.key() == b"j1"  # in the job's partition (the service places it there)
    assert [c.vm_id for c in decision.candidates] == ["a1"]
    assert decision.candidates[0].eligible
    assert result.queue_topic == "custom.queue-for-a1"
    assert result.dead_letter_reason is None
    assert not result.waiting
    queued = result.queued
    assert queued is not None
    assert (queued.job_id, queued.job_type, queued.vm_id, queued.host_id) == (
        "j1",
        "io",
        "a1",
        "h1",
    )
    assert queued.payload == {"n": 7}
    assert (queued.submitted_at, queued.dispatched_at, queued.deadline_at) == (
        NOW,
        NOW + 1,
        NOW + 30.0,
    )
    assert queued.policy == "io-aware"
    assert (queued.attempt, queued.status_partition) == (3, 7)
    assert QueuedJob.from_bytes(queued.to_bytes()) == queued  # built unvalidated: still valid
    # decide() only claims on the snapshot; the dispatcher's core counts the placement.
    assert dispatcher.snapshots.in_flight.total() == 0


def test_each_dispatch_is_claimed_so_a_burst_fills_the_host():
    # h1: a1's jobs take 0.1 s and ask 1000 ops/s: the first starts (0 + 1000 <= the limit), the
    # next queue behind it (adding nothing now) up to what a1 clears in the 5 s horizon, 50 jobs:
    # the 51st waits. Each placement is claimed at once, so the burst sees them all.
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    outcomes = [dispatcher.decide(job(f"j{n}"), NOW).decision.outcome for n in range(51)]
    assert outcomes[:50] == [DecisionOutcome.DISPATCHED] * 50
    assert outcomes[50] is DecisionOutcome.WAITING


def test_decide_goes_only_to_the_host_under_its_limit():
    view = fleet_of_one(io_ops_per_s=1000.1)  # Dom0 measures h1 over its limit
    add_host(view, "h2")
    add_vm(view, "b1", "h2")
    add_state(view, "b1", "h2", io_ops_per_s=100.0, io_per_job=100.0, **FAST_VM)
    dispatcher = dispatcher_for(view)
    chosen = {dispatcher.decide(job(f"j{n}"), NOW).decision.vm_id for n in range(10)}
    assert chosen == {"b1"}


def test_decide_waits_when_no_host_is_eligible():
    view = fleet_of_one(io_ops_per_s=1000.1)
    result = dispatcher_for(view).decide(job(), NOW)
    assert result.waiting
    assert result.decision.outcome is DecisionOutcome.WAITING
    assert result.decision.reason == "no eligible host among 1 candidate: 1 at limit (hysteresis)"
    assert result.decision.candidates[0].rejected_by == "at limit (hysteresis)"
    assert result.decision.refused == {"at limit (hysteresis)": 1}
    assert [(step.rule, step.remaining) for step in result.funnel] == [
        ("serve io", 1),
        ("not stale", 1),
        ("not at limit (hysteresis)", 0),
        ("not does not fit", 0),
        ("not warm-up full", 0),
        ("not backlog full", 0),
    ]
    assert (result.queued, result.queue_topic, result.dead_letter_reason) == (None, None, None)


def test_a_decision_keeps_the_compared_candidates_and_counts_the_refused():
    view = fleet_of_one(io_ops_per_s=1000.1)  # Dom0 measures a1 over its limit
    for n in range(10):
        add_host(view, f"x{n}")
        add_vm(view, f"x{n}-vm", f"x{n}")
        add_state(view, f"x{n}-vm", f"x{n}", io_ops_per_s=2000.0, io_per_job=100.0, **FAST_VM)
    add_host(view, "h2")
    add_vm(view, "b1", "h2")
    add_state(view, "b1", "h2", io_ops_per_s=100.0, io_per_job=100.0, **FAST_VM)
    decision = dispatcher_for(view).decide(job(), NOW).decision
    assert decision.outcome is DecisionOutcome.DISPATCHED
    assert decision.vm_id == "b1"
    refused = [c for c in decision.candidates if not c.eligible]
    assert len(refused) <= 3  # examples only
    assert sum(decision.refused.values()) == 11  # every refused one is counted


def test_a_vm_whose_queue_topic_is_missing_is_not_sent_to():
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    dispatcher.queue_ready = lambda topic: topic != "custom.queue-for-a1"
    result = dispatcher.decide(job(), NOW)
    assert result.waiting
    assert result.decision.reason == "queue topic custom.queue-for-a1 of VM a1 is missing"
    snapshot = dispatcher.snapshots.get(NOW)
    assert snapshot.outstanding(snapshot.vm("a1")) == 0  # the policy's claim is taken back


def test_a_job_avoids_a_vm_when_another_serves_its_type():
    view = fleet_of_one()
    add_host(view, "h2")
    add_vm(view, "b1", "h2")
    add_state(view, "b1", "h2", io_ops_per_s=900.0, io_per_job=100.0, **FAST_VM)
    dispatcher = dispatcher_for(view)
    chosen = {
        dispatcher.decide(job(f"j{n}"), NOW, avoid=frozenset({"a1"})).decision.vm_id
        for n in range(5)
    }
    assert chosen == {"b1"}
    alone = dispatcher_for(fleet_of_one()).decide(job(), NOW, avoid=frozenset({"a1"}))
    assert alone.decision.vm_id == "a1"  # nothing else serves it: avoiding is only a preference


def test_an_expired_deadline_is_refused_before_the_policy_runs():
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    result = dispatcher.decide(job(submitted_at=NOW, deadline_s=10.0), NOW + 12.5, attempt=4)
    decision = result.decision
    assert decision.outcome is DecisionOutcome.EXPIRED
    assert decision.reason == "deadline passed: 2.5s after submitted_at + deadline_s"
    assert result.dead_letter_reason == decision.reason
    assert decision.attempt == 4
    assert (result.queued, decision.vm_id) == (None, None)


def test_a_deadline_is_checked_on_both_sides():
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    just_in_time = dispatcher.decide(job("a", submitted_at=NOW - 9.9, deadline_s=10.0), NOW)
    at_deadline = dispatcher.decide(job("b", submitted_at=NOW - 10.0, deadline_s=10.0), NOW)
    assert just_in_time.decision.outcome is DecisionOutcome.DISPATCHED
    assert at_deadline.decision.outcome is DecisionOutcome.EXPIRED


def test_an_unknown_job_type_is_rejected_with_a_dead_letter_reason():
    view = fleet_of_one()
    result = dispatcher_for(view).decide(job(job_type="gpu"), NOW)
    assert result.decision.outcome is DecisionOutcome.REJECTED
    assert result.dead_letter_reason == "no VM serves job type 'gpu'"
    assert result.queued is None
    assert not result.waiting


def test_not_ready_waits_and_never_rejects():
    view = FleetView()  # nothing read yet: every type is unknown
    dispatcher = dispatcher_for(view)
    result = dispatcher.not_ready(job(job_type="anything"), NOW)
    assert result.waiting
    assert result.decision.outcome is DecisionOutcome.WAITING
    assert result.decision.reason == "fleet view not caught up yet"
    assert result.decision.policy == "io-aware"
    assert (result.queued, result.dead_letter_reason) == (None, None)


def test_decide_requires_a_normalized_job():
    dispatcher = dispatcher_for(fleet_of_one())
    with pytest.raises(AssertionError, match="normalize"):
        dispatcher.decide(JobSubmission(job_type="io"), NOW)


def test_normalize_derives_a_stable_id_from_the_log_position():
    job = JobSubmission(job_type="io")
    first = normalize(job, "vmlb.jobs", 3, 42, 1000.5)
    again = normalize(job, "vmlb.jobs", 3, 42, 2000.0)  # re-delivered later
    assert first.job_id == again.job_id == "auto.vmlb.jobs.3.42"
    assert first.submitted_at == 1000.5


def test_normalize_keeps_what_the_submitter_gave():
    job = JobSubmission(job_id="mine", job_type="io", submitted_at=5.0)
    assert normalize(job, "t", 0, 1, 99.0) is job


def test_a_job_held_past_its_hold_goes_over_the_limit_by_the_dispatchers_clock():
    # h1 and h2 each run a job of another type asking 400 ops/s: a job of `io` (1000 ops/s)
    # fits on neither alone, while the fleet has 600 + 600 of room. io-aware holds it hold_s
    # (0.25 s by default), counted from its submission by the clock the dispatcher decides with.
    view = FleetView()
    for host_id, vm_id, other_id in (("h1", "a1", "o1"), ("h2", "b1", "o2")):
        add_host(view, host_id)
        add_vm(view, vm_id, host_id)
        add_state(view, vm_id, host_id, io_ops_per_s=0.0, io_per_job=100.0, **FAST_VM)
        add_vm(view, other_id, host_id, job_type="other")
        add_state(view, other_id, host_id, io_ops_per_s=0.0, io_per_job=40.0, **FAST_VM)
    dispatcher = dispatcher_for(view)
    for other_id in ("o1", "o2"):
        dispatcher.snapshots.placed(other_id)  # the dispatcher's own job runs there
    fresh = dispatcher.decide(job("young", submitted_at=NOW - 0.2), NOW)
    assert fresh.waiting
    assert fresh.decision.reason == "no eligible host among 2 candidates: 2 does not fit"
    held = dispatcher.decide(job("old", submitted_at=NOW - 0.25), NOW)
    assert held.decision.outcome is DecisionOutcome.DISPATCHED
    assert held.decision.reason.startswith("held 0.25s >= hold_s 0.25s")
