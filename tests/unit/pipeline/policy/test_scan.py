"""The type scan: io-aware's look at every VM of a type, kept current by the snapshot's claims,
decides as a fresh look at every VM would."""

from __future__ import annotations

import random

import pytest

from pipeline.policy.decision import Decision, JobRequest, Outcome
from pipeline.policy.io_aware import IoAwarePolicy
from pipeline.policy.scan import Judged
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView
from pipeline.policy.testing import fleet, host, vm

STRICT = PolicyConfig(hold_s=float("inf"), horizon_s=0.1)


def runs(vm_id: str, rate: float, outstanding: int = 0, job_type: str = "t") -> VmView:
    """A VM whose jobs take 0.1 s and ask `rate` ops/s while they run."""
    return vm(vm_id, job_type, load=1.0, busy=0.1, io_per_job=rate * 0.1, outstanding=outstanding)


def full_host(host_id: str) -> HostView:
    # x runs a job asking 600 and holds a second (its backlog cap is 2): full; y is idle, but
    # its job would take the host to 1200 > 1000.
    return host(
        host_id, limit=1000.0, vms=[runs(f"{host_id}-x", 600.0, 2), runs(f"{host_id}-y", 600.0)]
    )


def test_a_release_on_one_host_opens_it_to_the_next_decision_over_the_same_snapshot() -> None:
    policy = IoAwarePolicy()
    snapshot = fleet(*(full_host(f"h{i}") for i in range(20)), config=STRICT)
    first = policy.decide(snapshot, JobRequest("j1", "t"), random.Random(1))
    assert first.outcome is Outcome.WAITING and first.tested == 40  # every VM judged
    snapshot.claim("h7-x", -2)  # h7's x finished both its jobs: h7 runs nothing
    second = policy.decide(snapshot, JobRequest("j2", "t"), random.Random(2))
    assert second.dispatched and second.host_id == "h7"
    # The placement is a claim too: h7 runs 600 now, no job fits beside it, one may queue
    # behind it (its VM's backlog cap is 2), and then h7 is full again.
    third = policy.decide(snapshot, JobRequest("j3", "t"), random.Random(3))
    assert third.dispatched and third.vm_id == second.vm_id
    fourth = policy.decide(snapshot, JobRequest("j4", "t"), random.Random(4))
    assert fourth.outcome is Outcome.WAITING


def test_a_job_that_ends_on_one_vm_changes_the_verdict_on_its_neighbour() -> None:
    # Dom0 meters 1,100 ops/s on x (over h1's limit), which runs another type; no job of this
    # dispatcher explains it, so h1 takes nothing. Then x's job ends: the meter is that job's
    # (up to its 600), the 500 left is under the limit, and y, x's neighbour, may take a job.
    x = vm("x", "other", load=1.0, busy=0.1, io_per_job=60.0, io_ops_per_s=1100.0)
    snapshot = fleet(host("h1", limit=1000.0, vms=[x, runs("y", 600.0)]), config=STRICT)
    policy = IoAwarePolicy()
    assert policy.decide(snapshot, JobRequest("j1", "t"), random.Random(1)).outcome is (
        Outcome.WAITING
    )
    snapshot.job_ended("x", snapshot.taken_at)  # y's verdict, kept, must go with it
    second = policy.decide(snapshot, JobRequest("j2", "t"), random.Random(2))
    assert second.dispatched and second.vm_id == "y"


def test_a_verdict_kept_by_state_is_not_taken_for_one_after_a_job_ended_in_the_meter() -> None:
    # h1 is closed (hysteresis 0.3: it opens at 0.7 x 950 = 665). Dom0 meters 690 ops/s on
    # x, which runs another type and has run no job of this dispatcher: all of it unexplained,
    # so h1 stays closed and y waits. Then x runs a job and it ends: h1's VMs hold no job, as
    # before, but the meter is now x's job's (330 of it), 360 is under 665, and y may start.
    x = vm("x", "other", load=1.0, busy=0.1, io_per_job=33.0, io_ops_per_s=690.0)
    snapshot = fleet(
        host("h1", limit=950.0, vms=[x, runs("y", 330.0)]),
        config=PolicyConfig(hold_s=float("inf"), horizon_s=0.1, hysteresis=0.3),
    )
    policy = IoAwarePolicy()
    policy.hysteresis.closed.add("h1")
    first = policy.decide(snapshot, JobRequest("j1", "t"), random.Random(1))
    assert first.outcome is Outcome.WAITING and dict(first.refused) == {"at limit (hysteresis)": 1}
    snapshot.claim("x")
    snapshot.claim("x", -1)
    snapshot.job_ended("x", snapshot.taken_at)
    second = policy.decide(snapshot, JobRequest("j2", "t"), random.Random(2))
    assert second.dispatched and second.vm_id == "y"


def random_fleet(rng: random.Random) -> list[HostView]:
    hosts = []
    for h in range(24):
        vms = [
            runs(
                f"h{h}-v{i}", rng.choice((100.0, 300.0, 600.0)), rng.randrange(3), ("a", "b")[i % 2]
            )
            for i in range(4)
        ]
        hosts.append(host(f"h{h}", limit=rng.choice((800.0, 1000.0, 1500.0)), vms=vms))
    return hosts


class FreshLooks(IoAwarePolicy):
    """io-aware that never reuses a verdict: each decision judges every VM it looks at afresh
    (no scan kept, no probe's verdict remembered)."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0
        self.judged = 0

    def _scan_key(self, job_type: str) -> tuple[str, int, str]:
        self.looks += 1
        return ("fresh look", self.looks, job_type)

    def _judge(self, snapshot: FleetSnapshot, vm: VmView, config: PolicyConfig) -> Judged:
        self.judged += 1
        return self._judge_afresh(snapshot, vm, config)


class CountedLooks(IoAwarePolicy):
    """io-aware as it is, counting the VMs it judged afresh."""

    def __init__(self) -> None:
        super().__init__()
        self.judged = 0

    def _judge_afresh(self, snapshot: FleetSnapshot, vm: VmView, config: PolicyConfig) -> Judged:
        self.judged += 1
        return super()._judge_afresh(snapshot, vm, config)


def assert_same_decision(
    got: Decision, want: Decision, fresh: FleetSnapshot, fresh_policy: IoAwarePolicy
) -> None:
    assert (got.outcome, got.vm_id, got.tested) == (want.outcome, want.vm_id, want.tested)
    assert dict(got.refused) == dict(want.refused)
    assert got.reason == want.reason
    # The records too, field by field: the compared ones as the fresh look has them; each
    # refused example as a fresh look at that VM now (a scan keeps its refused VMs in no
    # particular order, so the two may pick other examples), but for the chosen host, on
    # which the decision has claimed since.
    assert [c for c in got.candidates if c.eligible] == [c for c in want.candidates if c.eligible]
    for example in (c for c in got.candidates if not c.eligible):
        if example.host_id == got.host_id:
            continue
        judged = fresh_policy._judge_afresh(fresh, fresh.vm(example.vm_id), fresh.config)
        assert example == judged.candidate.score(False, judged.verdict)


def test_decisions_over_verdicts_kept_by_claims_match_fresh_looks_at_the_fleet() -> None:
    # Two policies decide over two copies of one snapshot, the same claims and releases landing
    # on both in between: one keeps its verdicts (its probes' and its scans') current by the
    # claims, the other judges every VM afresh each time. Same inputs, same random draws: the same answers.
    rng = random.Random(11)
    hosts = random_fleet(rng)
    config = PolicyConfig(hold_s=0.25, horizon_s=0.3)
    kept_policy, fresh_policy = CountedLooks(), FreshLooks()
    kept = FleetSnapshot(hosts, taken_at=1_000.0, config=config)
    fresh = FleetSnapshot(hosts, taken_at=1_000.0, config=config)
    vm_ids = [v.vm_id for h in hosts for v in h.vms]
    outcomes = set()
    for step in range(400):
        if rng.random() < 0.5:  # a job ended somewhere, or another dispatcher's job started
            vm_id = rng.choice(vm_ids)
            count = -1 if kept.outstanding(kept.vm(vm_id)) and rng.random() < 0.7 else 1
            kept.claim(vm_id, count)
            fresh.claim(vm_id, count)
        job = JobRequest(f"j{step}", rng.choice(("a", "b")), waited_s=rng.choice((0.0, 1.0)))
        got = kept_policy.decide(kept, job, random.Random(step))
        want = fresh_policy.decide(fresh, job, random.Random(step))
        assert_same_decision(got, want, fresh, fresh_policy)
        outcomes.add((got.outcome, "over" in got.reason, "scanning" in got.reason))
    assert fresh_policy.looks > 0
    # ... at a fraction of the judging: a verdict is remembered until a claim lands on its host.
    assert kept_policy.judged < fresh_policy.judged / 2
    # The run went through every path: dispatched after probing and after a scan, waiting,
    # and sent over a limit after a hold.
    assert {
        (Outcome.DISPATCHED, False, False),
        (Outcome.DISPATCHED, False, True),
        (Outcome.WAITING, False, False),
        (Outcome.DISPATCHED, True, False),
    } <= outcomes


def metered_fleet(rng: random.Random) -> list[HostView]:
    """Hosts near their limits, with Dom0's meter reading I/O on some VMs: the hysteresis
    closes and opens hosts, job ends explain (or no longer explain) the meter. No sum of
    rooms equals a job's rate: a kept scan sums the fleet's room incrementally, a fresh one
    afresh, and the two may differ in the last bit (`TypeScan.room_ops_per_s`)."""
    hosts = []
    for h in range(10):
        vms = [
            vm(
                f"h{h}-v{i}",
                ("a", "b")[i % 2],
                load=1.0,
                busy=0.1,
                io_per_job=rng.choice((33.0, 47.0)),
                io_ops_per_s=rng.choice((0.0, 0.0, 310.0, 690.0)),
                outstanding=rng.randrange(2),
            )
            for i in range(3)
        ]
        hosts.append(host(f"h{h}", limit=rng.choice((950.0, 1130.0)), vms=vms))
    return hosts


@pytest.mark.parametrize("seed", [2, 3, 11])
def test_verdicts_kept_by_state_match_fresh_looks_through_job_ends_and_hysteresis(
    seed: int,
) -> None:
    # As above, over a fleet where jobs end (a release and the end the meter is explained by)
    # and start again: the kept verdicts come back by state (`IoAwarePolicy._judge_in_state`),
    # and must be what a fresh look says, the hysteresis filter's closed hosts included.
    rng = random.Random(seed)
    hosts = metered_fleet(rng)
    config = PolicyConfig(hold_s=0.25, horizon_s=0.3, hysteresis=0.3)
    kept_policy, fresh_policy = CountedLooks(), FreshLooks()
    kept = FleetSnapshot(hosts, taken_at=1_000.0, config=config)
    fresh = FleetSnapshot(hosts, taken_at=1_000.0, config=config)
    vm_ids = [v.vm_id for h in hosts for v in h.vms]
    outcomes, closed_seen = set(), set()
    for step in range(600):
        roll = rng.random()
        vm_id = rng.choice(vm_ids)
        if roll < 0.4 and kept.outstanding(kept.vm(vm_id)):  # a job of vm_id ended
            at = 1_000.0 - rng.choice((0.5, 8.0))  # within the meter's window, or before it
            for snapshot in (kept, fresh):
                snapshot.claim(vm_id, -1)
                snapshot.job_ended(vm_id, at)
        elif roll < 0.6:  # another dispatcher's job started there
            kept.claim(vm_id)
            fresh.claim(vm_id)
        job = JobRequest(f"j{step}", rng.choice(("a", "b")), waited_s=rng.choice((0.0, 1.0)))
        got = kept_policy.decide(kept, job, random.Random(step))
        want = fresh_policy.decide(fresh, job, random.Random(step))
        assert_same_decision(got, want, fresh, fresh_policy)
        outcomes.add(got.outcome)
        closed_seen |= kept_policy.hysteresis.closed
        if got.dispatched and rng.random() < 0.8:  # it ran, and ended at once
            for snapshot in (kept, fresh):
                snapshot.claim(got.vm_id or "", -1)
                snapshot.job_ended(got.vm_id or "", 1_000.0 - 0.1 * (step % 3))
    assert {Outcome.DISPATCHED, Outcome.WAITING} <= outcomes
    assert closed_seen  # the hysteresis closed hosts on the way
    assert kept_policy.judged < fresh_policy.judged / 2
