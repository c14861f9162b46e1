"""DispatchCore: what the dispatcher writes for each input, in which phase, on a fake clock."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from pipeline.dispatch.core import DispatchCore, Outbox
from pipeline.dispatch.decide import Dispatcher
from pipeline.events import (
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    DispatchLoad,
    HostAdmin,
    HostMode,
    JobCompletion,
    JobControl,
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
    VmStatus,
)
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.registry import build_policy
from pipeline.settings import PipelineSettings
from pipeline.topics import load_topics
from tests.unit.pipeline.fleet_builders import CONFIG as BUILDERS_CONFIG
from tests.unit.pipeline.fleet_builders import FAST_VM, NOW, add_host, add_state, add_vm

#: A job waits while no host has room, however long (the strictness is the policy's business,
#: tested with it): the core's waiting paths are what these tests drive.
CONFIG = dataclasses.replace(BUILDERS_CONFIG, hold_s=math.inf)

TOPICS = load_topics(prefix="t.")
P = 3  # the jobs partition of every test job


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class World:
    """A fleet (two hosts, a VM of type io on each), a core, and what it wrote."""

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.view = FleetView()
        for host, vm in (("h1", "a1"), ("h2", "b1")):
            add_host(self.view, host)
            add_vm(self.view, vm, host)
            self.state(vm, host, 100.0)
        snapshots = SnapshotSource(
            self.view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0, timer=lambda: 0.0
        )
        dispatcher = Dispatcher(
            build_policy("io-aware", CONFIG), self.view, snapshots, random.Random(1)
        )
        self.settings = PipelineSettings(**settings)  # type: ignore[arg-type]
        self.core = DispatchCore(
            dispatcher, self.view, TOPICS, self.settings, self.clock, rng=random.Random(2)
        )
        self.core.assign(P)
        self.core.recovered(P)
        self.written = Outbox()
        self.offset = 0

    def state(self, vm: str, host: str, io_ops_per_s: float) -> None:
        add_state(
            self.view,
            vm,
            host,
            io_ops_per_s=io_ops_per_s,
            io_per_job=100.0,
            last_telemetry_at=self.clock.now,
            **FAST_VM,
        )

    # --- inputs -----------------------------------------------------------------------------

    def submit(
        self, job_id: str | None = "j1", key: bytes | None = None, **fields: object
    ) -> Outbox:
        job = JobSubmission(job_id=job_id, job_type="io", submitted_at=self.clock.now, **fields)
        self.offset += 1
        self.core.on_job(
            P, self.offset, key if key is not None else job.key(), job.to_bytes(), self.clock.now
        )
        return self.take()

    def guest(
        self, job_id: str, state: JobState, vm: str, attempt: int = 1, **fields: object
    ) -> Outbox:
        job = JobSubmission(job_id=job_id, job_type="io", submitted_at=NOW)
        status = JobStatus(
            job_id=job_id,
            state=state,
            at=self.clock.now,
            writer=StatusWriter.GUEST,
            job=job,
            attempt=attempt,
            vm_id=vm,
            host_id="h1" if vm == "a1" else "h2",
            started_at=self.clock.now,
            finished_at=self.clock.now if state is not JobState.RUNNING else None,
            **fields,
        )
        self.core.on_status(P, status.key(), status.to_bytes(), 0)
        return self.take()

    def cancel(self, job_id: str) -> Outbox:
        control = JobControl(job_id=job_id, requested_at=self.clock.now)
        self.core.on_control(control.key(), control.to_bytes(), 0, 0)
        return self.take()

    def tick(self, after_s: float = 0.0) -> Outbox:
        self.clock.now += after_s
        self.core.tick()
        return self.take()

    def take(self) -> Outbox:
        out = self.core.take()
        self.written.decisions.extend(out.decisions)
        self.written.first.extend(out.first)
        self.written.then.extend(out.then)
        return out

    # --- reading what was written ------------------------------------------------------------

    def latest(self, job_id: str) -> JobStatus:
        records = [
            r for r in self.written.first if r.topic == "t.job-status" and r.key == job_id.encode()
        ]
        assert records, f"no status for {job_id}"
        assert all(r.partition == P for r in records)
        return JobStatus.from_bytes(records[-1].value)


def statuses(out: Outbox) -> list[JobStatus]:
    return [
        JobStatus.from_bytes(r.value) for r in out.first if r.topic == "t.job-status" and r.value
    ]


def decisions(out: Outbox) -> list[DispatchDecision]:
    return [DispatchDecision.from_bytes(r.value) for r in out.decisions]


def queued(out: Outbox) -> list[tuple[str, QueuedJob]]:
    return [(r.topic, QueuedJob.from_bytes(r.value)) for r in out.then]


def dead_letters(out: Outbox) -> list[DeadLetter]:
    return [DeadLetter.from_bytes(r.value) for r in out.first if r.topic == "t.dead-letters"]


def forwarded(out: Outbox) -> list[bytes | None]:
    return [r.key for r in out.first if r.topic == "t.completions"]


# --- dispatching ----------------------------------------------------------------------------


def test_a_job_is_decided_then_recorded_as_dispatched_then_queued_and_counted_in_flight():
    # Three phases, each acknowledged before the next (the service): a status record that
    # says "dispatched" never stands without its decision, a queued job never without both.
    w = World()
    out = w.submit("j1")
    [status] = statuses(out)
    [decision] = decisions(out)
    [(topic, job)] = queued(out)
    assert [r.topic for r in out.decisions] == ["t.decisions"]
    assert [r.topic for r in out.first] == ["t.job-status"]
    assert status.state is JobState.DISPATCHED and status.vm_id == job.vm_id
    assert decision.outcome is DecisionOutcome.DISPATCHED and decision.vm_id == job.vm_id
    # The job's own partition:
    assert [r.partition for r in out.decisions + out.first] == [P, P]
    assert topic == f"t.queue.{job.vm_id}" and (job.attempt, job.status_partition) == (1, P)
    assert w.core.snapshots.in_flight.count(job.vm_id) == 1


def test_a_redelivered_job_is_sent_again_to_the_same_vm_and_never_decided_again():
    w = World()
    first = queued(w.submit("j1"))[0][1]
    w.state("a1", "h1", 950.0)  # the other VM now looks better: no matter
    again = w.submit("j1")
    assert decisions(again) == [] and statuses(again) == []
    assert [(j.vm_id, j.job_id) for _, j in queued(again)] == [(first.vm_id, "j1")]
    assert w.core.counts.duplicates == 1


def test_an_ended_job_resubmitted_within_the_horizon_does_nothing():
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    w.guest("j1", JobState.SUCCEEDED, vm, result={"ok": True})
    assert not w.submit("j1")


def test_a_key_that_is_not_the_job_id_is_refused_with_a_dead_letter():
    w = World()
    out = w.submit("j1", key=b"alias")
    [letter] = dead_letters(out)
    assert "not its job_id" in letter.reason and letter.source_partition == P
    assert queued(out) == []


def test_a_job_from_the_future_is_refused():
    w = World()
    job = JobSubmission(job_id="j1", job_type="io", submitted_at=NOW + 3600)  # an hour ahead
    w.core.on_job(P, 1, job.key(), job.to_bytes(), NOW)
    assert "in the future" in dead_letters(w.take())[0].reason


def test_an_unknown_job_type_is_dead_lettered_with_its_status():
    w = World()
    job = JobSubmission(job_id="g1", job_type="gpu", submitted_at=NOW)
    w.core.on_job(P, 1, job.key(), job.to_bytes(), NOW)
    out = w.take()
    assert statuses(out)[-1].state is JobState.DEAD_LETTERED
    assert "no VM serves job type 'gpu'" in dead_letters(out)[0].reason


# --- waiting --------------------------------------------------------------------------------


def saturate(w: World) -> None:
    """Dom0 measures both hosts over their limit (1000 ops/s) by more than one job of theirs
    explains (100 I/O per job in 0.1 s: 1000 ops/s): io-aware holds new jobs."""
    w.state("a1", "h1", 2000.1)
    w.state("b1", "h2", 2000.1)


def test_a_job_with_no_host_waits_with_its_funnel_and_goes_when_one_frees():
    w = World()
    saturate(w)
    out = w.submit("w1")
    [status] = statuses(out)
    assert status.state is JobState.WAITING
    assert [(s.rule, s.remaining) for s in status.funnel][:4] == [
        ("serve io", 2),
        ("not stale", 2),
        ("not at limit (hysteresis)", 0),
        ("not does not fit", 0),
    ]
    assert decisions(out)[0].outcome is DecisionOutcome.WAITING
    assert w.tick(0.25) == Outbox()  # still no host: nothing is written on each retry
    w.state("b1", "h2", 100.0)
    out = w.tick(0.25)
    assert statuses(out)[-1].state is JobState.DISPATCHED
    [decision] = decisions(out)
    assert (decision.vm_id, decision.decision_count) == ("b1", 3)


def test_a_waiting_job_past_its_deadline_expires_even_behind_a_blocked_one():
    w = World()
    saturate(w)
    w.submit("first")
    w.submit("late", deadline_s=2.0)
    out = w.tick(2.5)
    assert w.latest("late").state is JobState.EXPIRED
    assert dead_letters(out)[0].job_id == "late"
    assert w.latest("first").state is JobState.WAITING


def test_a_full_queue_refuses_new_jobs():
    w = World(max_waiting_per_partition=2)
    saturate(w)
    w.submit("w1")
    w.submit("w2")
    out = w.submit("w3")
    assert statuses(out)[-1].state is JobState.DEAD_LETTERED
    assert "queue full" in dead_letters(out)[0].reason


def test_higher_priority_waiting_jobs_go_first():
    w = World()
    saturate(w)
    w.submit("low", priority=1)
    w.submit("high", priority=9)
    w.state("a1", "h1", 100.0)  # room for one job (the backlog cap is the warm-up 2... )
    out = w.tick(0.25)
    assert next(s.job_id for s in statuses(out) if s.state is JobState.DISPATCHED) == "high"


def test_a_new_job_waits_behind_those_of_its_type_and_never_takes_their_room():
    w = World()
    saturate(w)
    w.submit("old")
    # Still blocked: the newcomer joins the wait, saying what it waits behind.
    [behind] = statuses(w.submit("new"))
    assert behind.state is JobState.WAITING
    assert behind.reason is not None and behind.reason.startswith(
        "behind waiting io jobs; the first: no eligible host"
    )
    assert behind.funnel == w.latest("old").funnel
    # Room frees between two retries and a third job arrives: the oldest goes first.
    w.state("a1", "h1", 100.0)
    out = w.submit("newest")
    dispatched = [s.job_id for s in statuses(out) if s.state is JobState.DISPATCHED]
    assert dispatched and dispatched == ["old", "new", "newest"][: len(dispatched)]


def test_a_job_behind_one_that_waits_behind_another_says_the_first_reason_once():
    w = World()
    saturate(w)
    w.submit("old", deadline_s=2.0)
    w.submit("new")
    w.tick(2.5)  # "old" expires: "new", which waited behind it, is now the first
    assert w.latest("old").state is JobState.EXPIRED
    [third] = statuses(w.submit("third"))
    assert third.state is JobState.WAITING
    assert third.reason is not None
    assert third.reason.count("behind waiting") == 1, third.reason
    assert third.reason.startswith("behind waiting io jobs; the first: no eligible host")


def test_submitters_take_turns_across_the_partitions_of_a_worker():
    w = World()
    w.core.assign(4)
    w.core.recovered(4)
    saturate(w)
    flood = [f"flood-{i}" for i in range(6)]
    for offset, job_id in enumerate(flood):  # all in partition 4, all older than the victim's
        job = JobSubmission(
            job_id=job_id, job_type="io", submitted_at=w.clock.now, submitter="flooder"
        )
        w.core.on_job(4, offset, job.key(), job.to_bytes(), w.clock.now)
        w.clock.now += 0.01
    w.submit("victim", submitter="victim")  # partition 3
    w.take()
    for vm, host in (("a1", "h1"), ("b1", "h2")):
        w.state(vm, host, 100.0)
    order = [
        JobStatus.from_bytes(r.value).job_id
        for r in w.core.take().first
        if r.topic == "t.job-status" and JobStatus.from_bytes(r.value).state is JobState.DISPATCHED
    ]
    w.core.tick()
    order += [
        JobStatus.from_bytes(r.value).job_id
        for r in w.core.take().first
        if r.topic == "t.job-status" and JobStatus.from_bytes(r.value).state is JobState.DISPATCHED
    ]
    # Turns shared by the partitions: the flooder's oldest, then the victim (not 7th, behind
    # every older flooder job, as when the heads were merged by age alone).
    assert order[:2] == ["flood-0", "victim"]


# --- guests' reports --------------------------------------------------------------------------


def test_a_guests_run_counts_and_is_forwarded_to_the_stats_once_checked():
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    assert w.guest("j1", JobState.RUNNING, vm) == Outbox()  # adopted, nothing to write
    out = w.guest("j1", JobState.SUCCEEDED, vm, result={"n": 1})
    assert forwarded(out) == [vm.encode()]
    assert w.core.snapshots.in_flight.count(vm) == 0
    assert w.core.find("j1") is None  # ended


def test_a_forwarded_run_is_a_valid_completion_and_one_out_of_order_is_not_forwarded():
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    out = w.guest("j1", JobState.FAILED, vm, error="disk full")
    [record] = [r for r in out.first if r.topic == "t.completions"]
    completion = JobCompletion.from_bytes(record.value)  # valid, read back as written
    assert record.value == completion.to_bytes()
    assert (completion.job_id, completion.vm_id, completion.outcome) == ("j1", vm, "failed")
    assert completion.error == "disk full" and completion.finished_at == w.clock.now
    # A guest's clock that says it finished before it started: the run is no completion.
    vm = queued(w.submit("j2"))[0][1].vm_id
    status = JobStatus(
        job_id="j2",
        state=JobState.SUCCEEDED,
        at=w.clock.now,
        writer=StatusWriter.GUEST,
        job=JobSubmission(job_id="j2", job_type="io", submitted_at=NOW),
        vm_id=vm,
        host_id="h1" if vm == "a1" else "h2",
        started_at=w.clock.now + 1.0,
        finished_at=w.clock.now,
    )
    w.core.on_status(P, status.key(), status.to_bytes(), 0)
    assert forwarded(w.take()) == [] and w.core.find("j2") is None  # it ended all the same


def test_a_forged_or_late_report_is_refused_and_the_true_status_reasserted():
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    other = "b1" if vm == "a1" else "a1"
    out = w.guest("j1", JobState.SUCCEEDED, other)  # another VM claims it
    [letter] = dead_letters(out)
    assert "but job j1 is dispatched" in letter.reason
    assert statuses(out)[-1].state is JobState.DISPATCHED  # the true record is the latest again
    assert forwarded(out) == []
    unknown = w.guest("nobody", JobState.SUCCEEDED, vm)
    assert "unknown here" in dead_letters(unknown)[0].reason
    assert w.core.snapshots.in_flight.count(vm) == 1


def test_a_failed_attempt_is_retried_after_a_backoff_on_another_vm_then_dead_lettered():
    w = World(retry_backoff_s=1.0)
    first = queued(w.submit("j1", max_attempts=2))[0][1]
    # A guest reports a failed attempt that is not the job's last as `retrying` (not final).
    out = w.guest("j1", JobState.RETRYING, first.vm_id, error="disk full")
    retrying = statuses(out)[-1]
    assert retrying.state is JobState.RETRYING and retrying.attempt == 2
    assert retrying.retry_at is not None and retrying.retry_at <= NOW + 1.0
    assert forwarded(out) == [first.vm_id.encode()]  # a failed run still counts as a run
    out = w.tick(1.0)
    [(_, second)] = queued(out)
    assert second.attempt == 2 and second.vm_id != first.vm_id
    out = w.guest("j1", JobState.FAILED, second.vm_id, attempt=2, error="disk full again")
    final = statuses(out)[-1]
    assert final.state is JobState.FAILED
    assert final.errors == ["disk full", "disk full again"]
    assert "failed after 2 attempt(s)" in dead_letters(out)[0].reason


# --- cancellation -----------------------------------------------------------------------------


def test_a_waiting_job_is_cancelled_at_once():
    w = World()
    saturate(w)
    w.submit("w1")
    out = w.cancel("w1")
    assert statuses(out)[-1].state is JobState.CANCELLED
    assert decisions(out)[-1].outcome is DecisionOutcome.CANCELLED
    assert dead_letters(out) == []
    w.state("a1", "h1", 100.0)
    assert queued(w.tick(0.25)) == []


def test_a_cancel_before_the_job_cancels_it_when_it_comes():
    w = World()
    w.cancel("early")
    out = w.submit("early")
    assert statuses(out)[-1].state is JobState.CANCELLED and queued(out) == []


def test_a_dispatched_job_cancelled_ends_as_its_guest_says():
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    out = w.cancel("j1")
    assert statuses(out)[-1].cancel_requested
    # The guest saw the cancel (before starting it, or while it ran): cancelled.
    w.guest("j1", JobState.CANCELLED, vm)
    assert w.core.find("j1") is None
    assert not forwarded(w.take())  # a skipped job is no run
    # A cancel that reached the guest only after the job had finished changes nothing.
    vm2 = queued(w.submit("j2"))[0][1].vm_id
    w.cancel("j2")
    out = w.guest("j2", JobState.SUCCEEDED, vm2, result={"done": True})
    assert forwarded(out) == [vm2.encode()]
    assert w.core.counts.by_outcome["succeeded"] == 1


# --- stranded jobs, drains --------------------------------------------------------------------


def test_jobs_on_a_vm_that_stopped_move_elsewhere_and_its_late_report_is_refused():
    w = World()
    first = queued(w.submit("j1"))[0][1]
    add_vm(w.view, first.vm_id, "h1" if first.vm_id == "a1" else "h2", status=VmStatus.STOPPED)
    out = w.tick(0.25)
    revoke = [JobControl.from_bytes(r.value) for r in out.first if r.topic == "t.job-control"]
    assert [(c.action, c.vm_id) for c in revoke] == [("revoke", first.vm_id)]
    [(_, moved)] = queued(out)
    assert moved.vm_id != first.vm_id and moved.attempt == 1
    late = w.guest("j1", JobState.SUCCEEDED, first.vm_id)
    assert dead_letters(late) and forwarded(late) == []
    assert w.core.counts.moved == 1


def test_a_draining_host_past_its_deadline_gives_up_its_unstarted_jobs_not_its_running_ones():
    w = World()
    saturate(w)
    w.state("a1", "h1", 100.0)
    unstarted = queued(w.submit("j1"))[0][1]
    running = queued(w.submit("j2"))[0][1]
    assert unstarted.vm_id == running.vm_id == "a1"
    w.guest("j2", JobState.RUNNING, "a1")
    w.view.put_admin(
        HostAdmin(host_id="h1", mode=HostMode.DRAINING, deadline_at=NOW + 10, set_at=NOW)
    )
    w.state("b1", "h2", 100.0)
    assert queued(w.tick(5.0)) == []  # before the deadline nothing moves
    w.state("b1", "h2", 100.0)
    out = w.tick(6.0)
    assert [(j.job_id, j.vm_id) for _, j in queued(out)] == [("j1", "b1")]
    assert w.core.find("j2").vm_id == "a1"


def test_unstarted_jobs_of_a_silent_vm_move_after_the_lease():
    w = World(lease_s=30.0)
    first = queued(w.submit("j1"))[0][1]
    # The fleet's telemetry keeps coming (the broker is up); only the guest says nothing.
    for _ in range(29):
        for vm, host in (("a1", "h1"), ("b1", "h2")):
            w.state(vm, host, 100.0)
        assert queued(w.tick(1.0)) == []
    for vm, host in (("a1", "h1"), ("b1", "h2")):
        w.state(vm, host, 100.0)
    out = w.tick(2.0)
    assert [j.vm_id for _, j in queued(out)] == ["b1" if first.vm_id == "a1" else "a1"]


def test_a_job_queued_later_on_a_silent_vm_waits_its_own_lease():
    w = World(lease_s=30.0)
    saturate(w)
    w.state("a1", "h1", 100.0)  # only a1 has room: both jobs go there
    early = queued(w.submit("j1"))[0][1]
    for _ in range(20):
        w.state("a1", "h1", 100.0)
        w.tick(1.0)
    late = queued(w.submit("j2"))[0][1]
    assert early.vm_id == late.vm_id == "a1"
    moved = []
    for _ in range(25):  # a1's guest stays silent; b1 opens to take what is moved
        for vm, host in (("a1", "h1"), ("b1", "h2")):
            w.state(vm, host, 100.0)
        moved += [(j.job_id, w.clock.now - NOW) for _, j in queued(w.tick(1.0))]
    # j1 moves once its 30 s in a1's queue are up; j2, queued 20 s later, is not moved yet.
    assert [job for job, _ in moved] == ["j1"], moved
    assert 30.0 < moved[0][1] <= 32.0


def test_a_broker_outage_does_not_count_against_a_vms_lease():
    # As measured (broker-kill, seed 1, lease 60 s): job 103 dispatched to chaos-b-1 0.3 s
    # before the broker was SIGKILLed; the broker served again 40 s later; chaos-b-1's guest
    # ran the job 17 s after that, its reports landed 3 s later still, and meanwhile
    # (60 s after its last report) the dispatcher moved the job to chaos-a-2, which ran it too:
    # both guests reported it succeeded. Scaled down: a 30 s lease, a 20 s outage.
    w = World(lease_s=30.0)
    first = queued(w.submit("j1"))[0][1]
    for _ in range(4):  # the outage: the dispatcher's clock goes on, nothing comes in
        assert queued(w.tick(5.0)) == []
    for _ in range(3):  # the broker is back: telemetry flows again; the guest is still slow
        for vm, host in (("a1", "h1"), ("b1", "h2")):
            w.state(vm, host, 100.0)
        out = w.tick(4.0)
        assert queued(out) == [], "moved 12 s after the outage, long before its lease"
    assert w.core.find("j1").vm_id == first.vm_id
    late = w.guest("j1", JobState.SUCCEEDED, first.vm_id)
    assert dead_letters(late) == [] and len(forwarded(late)) == 1


# --- recovery -----------------------------------------------------------------------------------


def test_a_new_owner_replays_the_status_log_and_resends_what_was_dispatched_unstarted():
    w = World()
    saturate(w)
    w.state("a1", "h1", 100.0)
    unstarted = queued(w.submit("j1"))[0][1]
    running = queued(w.submit("j2"))[0][1]
    w.guest("j2", JobState.RUNNING, running.vm_id)
    saturate(w)
    w.submit("w1")
    log = list(w.written.first)
    log.append(next(r for r in w.written.first if r.key == b"j2"))  # order preserved below
    guest_running = JobStatus(
        job_id="j2",
        state=JobState.RUNNING,
        at=NOW,
        writer=StatusWriter.GUEST,
        job=JobSubmission(job_id="j2", job_type="io", submitted_at=NOW),
        vm_id=running.vm_id,
        host_id="h1",
    )
    records = [r for r in w.written.first if r.topic == "t.job-status"]
    fresh = World()
    fresh.core.revoke(P)
    book = fresh.core.assign(P)
    for record in records:
        fresh.core.replay(P, record.value, record.key)
    fresh.core.replay(P, guest_running.to_bytes(), guest_running.key())
    fresh.core.recovered(P)
    out = fresh.take()
    assert [j.job_id for _, j in queued(out)] == [unstarted.job_id]  # j2 runs: not resent
    assert {job_id: t.state for job_id, t in book.jobs.items()} == {
        "j1": JobState.DISPATCHED,
        "j2": JobState.RUNNING,
        "w1": JobState.WAITING,
    }
    assert fresh.core.snapshots.in_flight.total() == 2


def guest_report(job_id: str, state: JobState, vm: str, attempt: int = 1) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        state=state,
        at=NOW,
        writer=StatusWriter.GUEST,
        job=JobSubmission(job_id=job_id, job_type="io", submitted_at=NOW),
        attempt=attempt,
        vm_id=vm,
        host_id="h1" if vm == "a1" else "h2",
    )


def test_a_refused_report_still_latest_in_replay_is_dead_lettered_and_overwritten():
    """A forged report written while no dispatcher owned the partition (or whose owner crashed
    before re-asserting) is judged by the next owner: dead-lettered, the true record back."""
    w = World()
    vm = queued(w.submit("j1"))[0][1].vm_id
    other = "b1" if vm == "a1" else "a1"
    log = [(r.value, r.key) for r in w.written.first if r.topic == "t.job-status"]
    forged_for_j1 = guest_report("j1", JobState.SUCCEEDED, other)
    forged_unknown = guest_report("never", JobState.SUCCEEDED, vm)
    refused_then_reasserted = guest_report("j1", JobState.FAILED, other, attempt=3)
    log += [
        (refused_then_reasserted.to_bytes(), b"j1"),
        (w.latest("j1").to_bytes(), b"j1"),  # its owner re-asserted the true record
        (forged_unknown.to_bytes(), b"never"),
        (forged_for_j1.to_bytes(), b"j1"),  # ... and crashed before re-asserting this time
    ]
    fresh = World()
    fresh.core.revoke(P)
    fresh.core.assign(P)
    for offset, (value, key) in enumerate(log):
        fresh.core.replay(P, value, key, offset)
    fresh.core.recovered(P)
    out = fresh.take()
    letters = {(d.job_id, d.source_offset) for d in dead_letters(out)}
    assert letters == {("never", len(log) - 2), ("j1", len(log) - 1)}
    assert [
        (r.key, r.value) for r in out.first if r.topic == "t.job-status" and r.value is None
    ] == [(b"never", None)]  # a job never submitted has no status
    assert fresh.latest("j1").state is JobState.DISPATCHED and fresh.latest("j1").vm_id == vm
    assert forwarded(out) == []


def test_a_report_for_a_job_never_submitted_is_tombstoned_live():
    w = World()
    out = w.guest("never", JobState.SUCCEEDED, "a1")
    assert "unknown here" in dead_letters(out)[0].reason
    assert [(r.key, r.value) for r in out.first if r.topic == "t.job-status"] == [(b"never", None)]


def test_dispatch_load_is_published_per_partition_when_it_changes():
    w = World(load_interval_s=0.25)
    vm = queued(w.submit("j1"))[0][1].vm_id
    out = w.tick(0.25)
    [load] = [DispatchLoad.from_bytes(r.value) for r in out.first if r.topic == "t.dispatch-load"]
    assert (load.partition, load.in_flight) == (P, {vm: 1})
    assert [r for r in w.tick(0.25).first if r.topic == "t.dispatch-load"] == []


def test_an_ended_job_is_tombstoned_after_the_horizon():
    w = World(dedupe_horizon_s=60.0)
    vm = queued(w.submit("j1"))[0][1].vm_id
    w.guest("j1", JobState.SUCCEEDED, vm)
    assert not [r for r in w.tick(30.0).first if r.value is None]
    tombstones = [r for r in w.tick(31.0).first if r.value is None]
    assert [(r.topic, r.key, r.partition) for r in tombstones] == [("t.job-status", b"j1", P)]
    assert not w.core.books[P].knows("j1")  # forgotten: a resubmission would run again


@pytest.mark.parametrize("value", [b"{", b"[]", b'{"job_id": "x"}'])
def test_an_unreadable_status_record_is_dead_lettered_live_and_skipped_in_replay(value):
    w = World()
    w.core.on_status(P, b"x", value, 9)
    assert dead_letters(w.take())[0].source_offset == 9
    w.core.replay(P, value, b"x")  # no exception, nothing adopted
    assert w.core.find("x") is None


def test_a_waiting_jobs_new_reason_is_rewritten_at_most_every_waiting_rewrite_s():
    w = World()  # VMLB_WAITING_REWRITE_S: 5 s
    saturate(w)
    assert statuses(w.submit("w1"))[0].reason == (
        "no eligible host among 2 candidates: 2 at limit (hysteresis)"
    )

    def b1_sampled_at(at: float) -> None:
        add_state(
            w.view,
            "b1",
            "h2",
            io_ops_per_s=2000.1,
            io_per_job=100.0,
            last_telemetry_at=at,
            **FAST_VM,
        )

    w.clock.now += 1.0
    b1_sampled_at(NOW - 60)  # h2 goes stale: a new reason, 1 s after the record
    assert statuses(w.tick(0.25)) == []
    [rewritten] = statuses(w.tick(3.75))  # 5 s after the record
    assert (
        rewritten.reason == "no eligible host among 2 candidates: 1 at limit (hysteresis), 1 stale"
    )
    b1_sampled_at(w.clock.now)  # the first reason again, 0.5 s after the rewrite: it waits
    w.state("a1", "h1", 2000.1)
    assert statuses(w.tick(0.5)) == []
    assert statuses(w.tick(4.0)) == []
    [again] = statuses(w.tick(0.5))  # 5 s after the rewrite
    assert again.reason == "no eligible host among 2 candidates: 2 at limit (hysteresis)"
    assert again.state is JobState.WAITING and again.at == w.clock.now
