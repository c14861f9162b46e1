"""SnapshotSource caching and claims, and Dispatcher.decide's outcomes, on a fake clock."""

import random

import pytest

from pipeline.dispatcher import Dispatcher, SnapshotSource
from pipeline.events import (
    DecisionOutcome,
    HostRegistration,
    JobSubmission,
    VmRegistration,
    VmState,
    VmStatus,
)
from pipeline.fleet import FleetView
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import PolicyConfig

NOW = 1_000.0
CONFIG = PolicyConfig(stale_after_s=3.0, horizon_s=5.0)


def add_host(view: FleetView, host_id: str, io_limit: float | None = 1000.0) -> None:
    host = HostRegistration(host_id=host_id, io_limit_ops_per_s=io_limit, registered_at=NOW)
    view.apply("hosts", host.key(), host.to_bytes())


def add_vm(
    view: FleetView,
    vm_id: str,
    host_id: str,
    job_type: str = "io",
    queue_topic: str | None = None,
    status: VmStatus = VmStatus.RUNNING,
) -> None:
    vm = VmRegistration(
        vm_id=vm_id,
        host_id=host_id,
        job_type=job_type,
        queue_topic=queue_topic or f"t.queue.{vm_id}",
        status=status,
        registered_at=NOW,
    )
    view.apply("vms", vm.key(), vm.to_bytes())


def add_state(view: FleetView, vm_id: str, host_id: str, **fields: float | None) -> None:
    fields.setdefault("last_telemetry_at", NOW)
    state = VmState(vm_id=vm_id, host_id=host_id, updated_at=NOW, **fields)
    view.apply("vm-state", state.key(), state.to_bytes())


#: A VM that has proved it clears jobs fast: 1 job/s at 1% busy is 100 jobs/s while busy, so
#: io-aware's backlog cap (what it clears within the horizon) stays out of these tests' way.
FAST_VM = {"load_jobs_per_s": 1.0, "busy_fraction": 0.01}


def fleet_of_one(io_ops_per_s: float = 100.0) -> FleetView:
    """h1 (limit 1000 ops/s, fresh telemetry) with VM a1 serving `io` at 100 I/O per job."""
    view = FleetView()
    add_host(view, "h1")
    add_vm(view, "a1", "h1", queue_topic="custom.queue-for-a1")
    add_state(view, "a1", "h1", io_ops_per_s=io_ops_per_s, io_per_job=100.0, **FAST_VM)
    return view


def job(
    job_id: str = "j1",
    job_type: str = "io",
    submitted_at: float = NOW,
    deadline_s: float | None = None,
) -> JobSubmission:
    return JobSubmission(
        job_id=job_id,
        job_type=job_type,
        payload={"n": 7},
        submitted_at=submitted_at,
        deadline_s=deadline_s,
    )


def dispatcher_for(view: FleetView, **snapshot_options: float) -> Dispatcher:
    source = SnapshotSource(view, CONFIG, **snapshot_options)
    return Dispatcher(build_policy("io-aware", CONFIG), view, source, random.Random(1))


# --- SnapshotSource: caching ------------------------------------------------------------------


def test_snapshot_is_reused_while_the_view_is_unchanged_until_max_age():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    first = source.get(NOW)
    assert source.get(NOW + 9.9) is first
    rebuilt = source.get(NOW + 10.0)
    assert rebuilt is not first
    assert rebuilt.taken_at == NOW + 10.0


def test_an_expensive_rebuild_spaces_the_next_ones_to_its_share_of_the_time():
    view = fleet_of_one()
    ticks = iter([0.0, 0.02, 5.0, 5.02])  # each rebuild "takes" 20 ms
    source = SnapshotSource(
        view,
        CONFIG,
        min_rebuild_s=0.05,
        max_age_s=10.0,
        rebuild_share=0.1,
        timer=lambda: next(ticks),
    )
    first = source.get(NOW)
    assert source.rebuild_cost_s == pytest.approx(0.02)
    assert source.min_interval_s() == pytest.approx(0.2)  # 20 ms is 10 % of 200 ms
    add_state(view, "a1", "h1", io_ops_per_s=700.0, io_per_job=100.0)
    assert source.get(NOW + 0.1) is first  # changed, but 0.1 s < 0.2 s
    assert source.get(NOW + 0.2) is not first


def test_snapshot_is_rebuilt_on_a_view_change_but_not_sooner_than_min_rebuild():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    first = source.get(NOW)
    add_state(view, "a1", "h1", io_ops_per_s=700.0, io_per_job=100.0)
    cached = source.get(NOW + 0.9)
    assert cached is first
    assert cached.host("h1").measured_io_ops_per_s == 100.0
    rebuilt = source.get(NOW + 1.0)
    assert rebuilt is not first
    assert rebuilt.host("h1").measured_io_ops_per_s == 700.0
    assert source.get(NOW + 1.5) is rebuilt  # built from the current version: nothing new


# --- SnapshotSource: claims -------------------------------------------------------------------


def test_claims_are_reapplied_to_a_rebuilt_snapshot():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a1", NOW + 0.1)
    snapshot = source.get(NOW + 0.2)
    assert snapshot.claims("a1") == 2
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    assert source.get(NOW + 0.3).claims("a1") == 2  # and again on the next rebuild
    assert source.pending_claims() == 2


def test_claims_are_dropped_once_the_vm_state_covers_them():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a1", NOW + 0.5)
    # vm_stats counted the first placement (its outstanding count includes it), not the second.
    add_state(view, "a1", "h1", io_per_job=100.0, outstanding_jobs=1, last_decision_at=NOW)
    snapshot = source.get(NOW + 1.0)
    assert snapshot.claims("a1") == 1
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    add_state(view, "a1", "h1", io_per_job=100.0, outstanding_jobs=2, last_decision_at=NOW + 0.5)
    snapshot = source.get(NOW + 1.1)
    assert snapshot.claims("a1") == 0
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    assert source.pending_claims() == 0


def test_a_state_of_another_vm_does_not_cover_a_claim():
    view = fleet_of_one()
    add_vm(view, "a2", "h1")
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    add_state(view, "a2", "h1", last_decision_at=NOW + 5)
    assert source.get(NOW + 1).claims("a1") == 1


def test_claims_older_than_four_stale_periods_are_dropped():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    assert source.get(NOW + 11.9).claims("a1") == 1  # 4 x stale_after_s = 12 s
    assert source.get(NOW + 12.0).claims("a1") == 0
    assert source.pending_claims() == 0


@pytest.mark.parametrize("how", ["tombstone", "stopped"])
def test_claims_on_a_vm_that_left_are_dropped(how):
    view = fleet_of_one()
    add_vm(view, "a2", "h1")
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a2", NOW)
    if how == "tombstone":
        view.apply("vms", b"a1", None)
    else:
        add_vm(view, "a1", "h1", status=VmStatus.STOPPED)
    snapshot = source.get(NOW + 0.1)
    assert snapshot.claims("a2") == 1
    assert source.pending_claims() == 1
    add_vm(view, "a1", "h1")  # back again: the old claim must not come back with it
    assert source.get(NOW + 0.2).claims("a1") == 0


# --- Dispatcher.decide ------------------------------------------------------------------------


def test_decide_dispatches_to_the_registrations_queue_topic():
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    result = dispatcher.decide(job(deadline_s=30.0), NOW + 1, attempt=3)
    decision = result.decision
    assert decision.outcome is DecisionOutcome.DISPATCHED
    assert (decision.vm_id, decision.host_id, decision.attempt) == ("a1", "h1", 3)
    assert decision.policy == "io-aware"
    assert decision.decided_at == NOW + 1
    assert decision.key() == b"a1"
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
    assert dispatcher.snapshots.pending_claims() == 1


def test_each_dispatch_is_claimed_so_a_burst_fills_the_host():
    # h1: a1 measures 100 ops/s (and load x io_per_job = 1 x 100); each claimed job commits 100 I/O
    # spread over the 5 s horizon (a1 drains 100 jobs/s, so its queue drains within it): 20 ops/s
    # per job. The VM counts as the worst of 100 and 20 * n, under the limit 1000 for n < 50:
    # 50 jobs go, the 51st waits.
    view = fleet_of_one()
    dispatcher = dispatcher_for(view)
    outcomes = [dispatcher.decide(job(f"j{n}"), NOW).decision.outcome for n in range(51)]
    assert outcomes[:50] == [DecisionOutcome.DISPATCHED] * 50
    assert outcomes[50] is DecisionOutcome.WAITING


def test_decide_goes_only_to_the_host_under_its_limit():
    view = fleet_of_one(io_ops_per_s=1000.0)  # h1 exactly at its limit: over (strict <)
    add_host(view, "h2")
    add_vm(view, "b1", "h2")
    add_state(view, "b1", "h2", io_ops_per_s=100.0, io_per_job=100.0, **FAST_VM)
    dispatcher = dispatcher_for(view)
    chosen = {dispatcher.decide(job(f"j{n}"), NOW).decision.vm_id for n in range(10)}
    assert chosen == {"b1"}


def test_decide_waits_when_no_host_is_eligible():
    view = fleet_of_one(io_ops_per_s=1000.0)
    result = dispatcher_for(view).decide(job(), NOW)
    assert result.waiting
    assert result.decision.outcome is DecisionOutcome.WAITING
    assert result.decision.reason == "no eligible host among 1 candidate: 1 over limit"
    assert result.decision.candidates[0].rejected_by == "over limit"
    assert (result.queued, result.queue_topic, result.dead_letter_reason) == (None, None, None)


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
    assert dispatcher.snapshots.pending_claims() == 0


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
