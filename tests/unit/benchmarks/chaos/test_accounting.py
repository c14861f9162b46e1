"""The chaos accounting on hand-made records: each bucket, each defect, each fault time."""

from __future__ import annotations

import pytest

from benchmarks.chaos.accounting import (
    BACKLOG_GRACE_S,
    DecisionRecord,
    Fault,
    Observed,
    StatusRecord,
    account,
)
from pipeline.events import (
    DecisionOutcome,
    DispatchDecision,
    JobCompletion,
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
)

T0 = 1_700_000_000.0


def job(job_id: str, at: float = T0) -> JobSubmission:
    return JobSubmission(job_id=job_id, job_type="mixed", submitted_at=at)


def status(
    job_id: str,
    state: JobState,
    at: float,
    *,
    writer: StatusWriter = StatusWriter.DISPATCHER,
    vm_id: str | None = None,
    attempt: int = 1,
    reason: str | None = None,
    submitted_at: float = T0,
    partition: int = 0,
    appended_at: float | None = None,
) -> StatusRecord:
    fields = {}
    if state in (JobState.SUCCEEDED, JobState.FAILED):
        fields = {"started_at": at - 0.1, "finished_at": at, "dispatched_at": at - 0.2}
    return StatusRecord(
        JobStatus(
            job_id=job_id,
            state=state,
            at=at,
            writer=writer,
            job=job(job_id, submitted_at),
            attempt=attempt,
            vm_id=vm_id,
            host_id="h" if vm_id else None,
            reason=reason,
            error="boom" if state is JobState.FAILED else None,
            **fields,
        ),
        partition,
        appended_at if appended_at is not None else at,
    )


def guest(job_id: str, state: JobState, at: float, vm_id: str, **kw) -> StatusRecord:
    return status(job_id, state, at, writer=StatusWriter.GUEST, vm_id=vm_id, **kw)


def decision(
    job_id: str, at: float, vm_id: str = "vm1", attempt: int = 1, partition: int = 0
) -> DecisionRecord:
    return DecisionRecord(
        DispatchDecision(
            job_id=job_id,
            job_type="mixed",
            decided_at=at,
            policy="io-aware",
            outcome=DecisionOutcome.DISPATCHED,
            vm_id=vm_id,
            host_id="h",
            reason="eligible",
            attempt=attempt,
        ),
        partition,
    )


def queued(job_id: str, vm_id: str = "vm1", attempt: int = 1) -> QueuedJob:
    return QueuedJob(
        job_id=job_id,
        job_type="mixed",
        vm_id=vm_id,
        host_id="h",
        submitted_at=T0,
        dispatched_at=T0 + 0.1,
        policy="io-aware",
        attempt=attempt,
    )


def completion(job_id: str, vm_id: str = "vm1") -> JobCompletion:
    return JobCompletion(
        job_id=job_id,
        job_type="mixed",
        vm_id=vm_id,
        host_id="h",
        submitted_at=T0,
        dispatched_at=T0 + 0.1,
        started_at=T0 + 0.2,
        finished_at=T0 + 0.5,
        outcome="succeeded",
    )


def ran(job_id: str, vm_id: str = "vm1", at: float = T0 + 0.1) -> list[StatusRecord]:
    """A clean run: dispatched, running, succeeded."""
    return [
        status(job_id, JobState.DISPATCHED, at, vm_id=vm_id),
        guest(job_id, JobState.RUNNING, at + 0.1, vm_id),
        guest(job_id, JobState.SUCCEEDED, at + 0.4, vm_id),
    ]


def observed(**fields) -> Observed:
    base = {"submitted": [], "statuses": [], "decisions": [], "queued": [], "completions": []}
    return Observed(**{**base, **fields})


def test_every_submitted_job_lands_in_exactly_one_bucket():
    ids = ["done", "dead", "held", "on-vm", "unseen"]
    records = [
        *ran("done"),
        status("dead", JobState.DEAD_LETTERED, T0 + 0.1, reason="no VM serves it"),
        status("held", JobState.WAITING, T0 + 0.1, reason="no eligible host"),
        status("on-vm", JobState.DISPATCHED, T0 + 0.1, vm_id="vm1"),
    ]
    counts = account(observed(submitted=[job(i) for i in ids], statuses=records))
    assert (counts.submitted, counts.completed, counts.dead_lettered) == (5, 1, 1)
    assert counts.stranded == 1
    # Nothing holds these: one never got a status, one sits on a VM that never ended it.
    assert counts.lost == 2
    assert {e["job_id"] for e in counts.evidence["lost"]} == {"unseen", "on-vm"}
    assert counts.evidence["stranded"][0]["reason"] == "no eligible host"


def test_the_latest_record_decides_a_jobs_bucket():
    records = [
        status("j", JobState.WAITING, T0 + 0.1, reason="no eligible host"),
        *ran("j", at=T0 + 1.0),
    ]
    counts = account(observed(submitted=[job("j")], statuses=records))
    assert (counts.completed, counts.stranded, counts.lost, counts.waited) == (1, 0, 0, 1)
    assert counts.wait_reasons == {"no eligible host": 1}


def test_records_of_jobs_not_submitted_in_the_run_are_ignored():
    counts = account(observed(submitted=[job("mine")], statuses=[*ran("mine"), *ran("other")]))
    assert (counts.submitted, counts.completed) == (1, 1)


def test_a_job_run_on_two_vms_in_one_attempt_is_a_defect():
    records = [
        status("j", JobState.DISPATCHED, T0 + 0.1, vm_id="vm1"),
        guest("j", JobState.RUNNING, T0 + 0.2, "vm1"),
        guest("j", JobState.RUNNING, T0 + 0.3, "vm2"),
        guest("j", JobState.SUCCEEDED, T0 + 0.5, "vm2"),
    ]
    counts = account(observed(submitted=[job("j")], statuses=records))
    assert counts.ran_on_two_vms == 1
    assert counts.evidence["ran_on_two_vms"][0]["vms"] == {1: ["vm1", "vm2"]}


def test_a_retry_on_another_vm_is_another_attempt_not_a_defect():
    records = [
        status("j", JobState.DISPATCHED, T0 + 0.1, vm_id="vm1"),
        guest("j", JobState.FAILED, T0 + 0.3, "vm1"),
        status("j", JobState.DISPATCHED, T0 + 1.0, vm_id="vm2", attempt=2),
        guest("j", JobState.SUCCEEDED, T0 + 1.5, "vm2", attempt=2),
    ]
    counts = account(observed(submitted=[job("j")], statuses=records))
    assert (counts.ran_on_two_vms, counts.completed) == (0, 1)


def test_a_job_moved_off_a_stopped_vm_counts_as_moved_unless_it_succeeded_on_both():
    moved = [
        status("j", JobState.DISPATCHED, T0 + 0.1, vm_id="vm1"),
        guest("j", JobState.RUNNING, T0 + 0.2, "vm1"),
        status("j", JobState.WAITING, T0 + 0.5, reason="moving: VM vm1 stopped"),
        status("j", JobState.DISPATCHED, T0 + 0.6, vm_id="vm2"),
        guest("j", JobState.RUNNING, T0 + 0.7, "vm2"),
        guest("j", JobState.SUCCEEDED, T0 + 0.9, "vm2"),
    ]
    counts = account(observed(submitted=[job("j")], statuses=moved))
    assert (counts.moved, counts.ran_on_two_vms, counts.end_published_twice) == (1, 0, 0)

    both = [*moved, guest("j", JobState.SUCCEEDED, T0 + 1.0, "vm1")]
    counts = account(observed(submitted=[job("j")], statuses=both))
    assert (counts.moved, counts.ran_on_two_vms, counts.end_published_twice) == (1, 1, 1)


def test_an_end_published_twice_and_a_completion_forwarded_twice_are_counted_apart():
    records = [*ran("j"), guest("j", JobState.SUCCEEDED, T0 + 0.6, "vm1")]
    counts = account(
        observed(
            submitted=[job("j"), job("k")],
            statuses=[*records, *ran("k")],
            completions=[completion("j"), completion("k"), completion("k")],
        )
    )
    assert counts.end_published_twice == 1  # j: the guest said succeeded twice
    assert counts.completion_forwarded_twice == 1  # k: forwarded twice
    (forwarded,) = counts.evidence["completion_forwarded_twice"]
    assert (forwarded["job_id"], forwarded["records"]) == ("k", 2)
    # The evidence carries the job's status records, in order.
    assert [line.split()[2:5] for line in forwarded["status_records"]] == [
        ["dispatched", "by", "dispatcher"],
        ["running", "by", "guest"],
        ["succeeded", "by", "guest"],
    ]


def test_a_queued_job_needs_a_dispatched_decision_for_its_attempt_and_vm():
    counts = account(
        observed(
            submitted=[job("a"), job("b"), job("c")],
            statuses=[*ran("a"), *ran("b"), *ran("c")],
            decisions=[decision("a", T0 + 0.1), decision("b", T0 + 0.1, vm_id="vm2")],
            queued=[queued("a"), queued("a"), queued("b"), queued("c")],
        )
    )
    # a: backed (twice queued, one key); b: decided for vm2, queued on vm1; c: no decision.
    assert counts.queued_without_decision == 2
    assert {e["job_id"] for e in counts.evidence["queued_without_decision"]} == {"b", "c"}


def test_response_times_are_submit_to_finish_of_completed_jobs():
    records = [*ran("a", at=T0 + 0.1), *ran("b", at=T0 + 1.6)]  # finish at +0.6 and +2.1
    counts = account(observed(submitted=[job("a"), job("b")], statuses=records))
    assert counts.p50_response_s == pytest.approx(0.5)
    assert counts.p99_response_s == pytest.approx(2.0)
    assert counts.stages_p50_s["running"] == pytest.approx(0.1)


def steady(
    count: int,
    every_s: float,
    dispatch_after_s: float,
    *,
    gap: tuple[float, float],
    gap_partitions: frozenset[int] = frozenset({0, 1}),
) -> Observed:
    """`count` jobs, one every `every_s` over partitions 0 and 1, each dispatched
    `dispatch_after_s` after submission, except that nothing of `gap_partitions` is dispatched
    in the `gap` (from, to): those jobs go at its end."""
    jobs, decisions, statuses = [], [], []
    for i in range(count):
        submitted = T0 + i * every_s
        decided = submitted + dispatch_after_s
        partition = i % 2
        if partition in gap_partitions and gap[0] <= decided < gap[1]:
            decided = gap[1] + 0.01 * (i % 10)
        job_id = f"j{i:03d}"
        jobs.append(job(job_id, submitted))
        decisions.append(decision(job_id, decided, partition=partition))
        statuses.append(guest(job_id, JobState.SUCCEEDED, decided + 0.3, "vm1",
                              submitted_at=submitted))  # fmt: skip
    return observed(submitted=jobs, decisions=decisions, statuses=statuses)


def test_first_dispatch_and_backlog_recovery_after_a_worker_kill():
    # 10 jobs/s, dispatched 0.1 s after submission; a kill at +20 s stops dispatch for 6 s.
    run = steady(400, 0.1, 0.1, gap=(T0 + 20.0, T0 + 26.0))
    kill = Fault("worker-kill", T0 + 20.0, T0 + 20.0, "worker 0")
    (times,) = account(run, [kill]).faults
    assert times.first_dispatch_s == pytest.approx(6.0)
    # The backlog (jobs older than the grace, not dispatched) is back to 0 when the held jobs
    # go at +26 s.
    assert times.backlog_recovery_s == pytest.approx(6.0, abs=0.1)


def test_first_dispatch_counts_only_the_partitions_the_fault_hit():
    # One of two workers killed: its partition 0 waits 6 s, partition 1 goes on.
    run = steady(400, 0.1, 0.1, gap=(T0 + 20.0, T0 + 26.0), gap_partitions=frozenset({0}))
    scoped = Fault("worker-kill", T0 + 20.0, T0 + 20.0, "worker 1", frozenset({0}))
    everywhere = Fault("worker-kill", T0 + 20.0, T0 + 20.0, "worker 1")
    first_scoped, first_any = (
        t.first_dispatch_s for t in account(run, [scoped, everywhere]).faults
    )
    assert first_scoped == pytest.approx(6.0)
    assert first_any is not None and first_any < 0.5


def test_no_backlog_means_recovery_at_the_first_instant_measured():
    run = steady(200, 0.1, 0.1, gap=(0.0, 0.0))
    (times,) = account(run, [Fault("guest-kill", T0 + 5.0, T0 + 5.0, "guest vm1")]).faults
    assert times.backlog_recovery_s == pytest.approx(BACKLOG_GRACE_S)


def test_a_backlog_that_never_clears_has_no_recovery():
    run = steady(200, 0.1, 0.1, gap=(T0 + 10.0, T0 + 1e6))
    run.decisions = [d for d in run.decisions if d.decision.decided_at < T0 + 10.0]
    run.statuses = [r for r in run.statuses if r.status.at < T0 + 10.0]
    (times,) = account(run, [Fault("worker-kill", T0 + 10.0, T0 + 10.0, "worker 0")]).faults
    assert times.first_dispatch_s is None
    assert times.backlog_recovery_s is None


def test_after_a_broker_fault_the_slowest_dom0_and_guest_to_deliver_again():
    until = T0 + 30.0
    statuses = [
        guest("a", JobState.SUCCEEDED, T0 + 1, "vm1"),
        guest("a2", JobState.SUCCEEDED, T0 + 2, "vm2"),
        # vm1 held job b through the outage and reported it 1.5 s after the broker's return;
        # vm2 was given job c 2 s after the return and reported it 2 s later.
        guest("b", JobState.SUCCEEDED, until + 1.0, "vm1", appended_at=until + 1.5),
        guest("c", JobState.SUCCEEDED, until + 3.0, "vm2", appended_at=until + 4.0),
    ]
    held = queued("b", "vm1").model_copy(update={"dispatched_at": T0 + 5.0})
    given = queued("c", "vm2").model_copy(update={"dispatched_at": until + 2.0})
    # vm3 had nothing to run after the return: it does not count, however quiet.
    idle = queued("a3", "vm3").model_copy(update={"dispatched_at": T0 + 1.0})
    samples = [("h1", T0 + 1), ("h2", T0 + 1), ("h1", until + 0.5), ("h2", until + 2.5)]
    done_a3 = guest("a3", JobState.SUCCEEDED, T0 + 3, "vm3")
    run = observed(
        statuses=[*statuses, done_a3], samples=samples, queued=[held, given, idle, queued("a")]
    )
    broker = Fault("broker-stop", T0 + 10.0, until, "broker node 1")
    (times,) = account(run, [broker]).faults
    assert times.dom0s_back_s == pytest.approx(2.5)
    assert times.guests_back_s == pytest.approx(2.0)
    assert times.guests_with_work == 2

    # Every job ended before the broker's return: no guest had one to run, no time applies
    # (not "never": the replicated cluster served them all while the node was down).
    (times,) = account(observed(statuses=[*statuses[:2], done_a3], samples=samples,
                                queued=[idle, queued("a")]), [broker]).faults  # fmt: skip
    assert (times.guests_back_s, times.guests_with_work) == (None, 0)

    # A Dom0 that never delivered again, a guest that never ran its job: no time ("never").
    silent = observed(statuses=statuses[:2], samples=samples[:3], queued=[held])
    (times,) = account(silent, [broker]).faults
    assert times.dom0s_back_s is None
    assert times.guests_back_s is None
    assert times.guests_with_work == 1


def test_a_fault_after_every_job_was_dispatched_leaves_nothing_to_dispatch():
    run = steady(100, 0.1, 0.1, gap=(0.0, 0.0))  # the last job is dispatched at +10 s
    late, early = (
        account(run, [Fault("broker-kill", at, at + 5.0, "broker node 1")]).faults[0]
        for at in (T0 + 20.0, T0 + 2.0)
    )
    assert (late.first_dispatch_s, late.left_to_dispatch) == (None, 0)
    assert early.left_to_dispatch > 0 and early.first_dispatch_s is not None
