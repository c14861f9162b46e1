"""io-aware: eligibility, claims against herding, power-of-two choices, the decision record."""

from __future__ import annotations

import random

import pytest

from pipeline.events import CandidateView
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.io_aware import IoAwarePolicy, random_order
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import PolicyConfig
from pipeline.policy.testing import fleet, host, vm

JOB = JobRequest("j1", "t")


def test_random_order_is_a_permutation() -> None:
    rng = random.Random(3)
    assert sorted(random_order(50, rng)) == list(range(50))


def test_host_below_limit_gets_the_job_and_claims_it() -> None:
    snap = fleet(host("h1", limit=1000.0, vms=[vm("a", load=9.999, io_per_job=100.0)]))  # 999.9
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(1))
    assert decision.outcome is Outcome.DISPATCHED
    assert (decision.vm_id, decision.host_id, decision.policy) == ("a", "h1", "io-aware")
    assert snap.claims("a") == 1
    assert "h1" in decision.reason


def test_host_at_limit_waits_with_reason() -> None:
    snap = fleet(host("h1", limit=1000.0, vms=[vm("a", load=10.0, io_per_job=100.0)]))  # 1000
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(1))
    assert decision.outcome is Outcome.WAITING
    assert decision.vm_id is None
    assert decision.reason == "no eligible host among 1 candidate: 1 over limit"
    (only,) = decision.candidates
    assert (only.eligible, only.rejected_by, only.total_io_ops_per_s) == (
        False,
        "over limit",
        1000.0,
    )
    assert only.headroom_ops_per_s == pytest.approx(0.0)
    assert snap.claims("a") == 0


def test_stale_host_waits_both_sides_of_stale_after_s() -> None:
    # h1 is judged against h0, which reported just now (the fleet's telemetry watermark).
    config = PolicyConfig(stale_after_s=3.0)
    current = host("h0", vms=[vm("z", job_type="other")])
    fresh = fleet(current, host("h1", vms=[vm("a", io_per_job=1.0)], age_s=3.0), config=config)
    stale = fleet(current, host("h1", vms=[vm("a", io_per_job=1.0)], age_s=3.5), config=config)
    assert IoAwarePolicy().decide(fresh, JOB, random.Random(1)).outcome is Outcome.DISPATCHED
    decision = IoAwarePolicy().decide(stale, JOB, random.Random(1))
    assert decision.outcome is Outcome.WAITING
    assert decision.candidates[0].rejected_by == "stale"
    assert decision.candidates[0].telemetry_age_s == pytest.approx(3.5)
    assert decision.candidates[0].telemetry_behind_s == pytest.approx(3.5)


def test_a_fleet_whose_telemetry_lags_alike_still_dispatches_up_to_the_lag_limit() -> None:
    # The pipeline is 10 s behind (every host equally): nobody went quiet, jobs still go out.
    config = PolicyConfig(stale_after_s=3.0, lag_limit_s=15.0)
    lagging = fleet(
        host("h1", vms=[vm("a", io_per_job=1.0)], age_s=10.0),
        host("h2", vms=[vm("b", io_per_job=1.0)], age_s=10.5),
        config=config,
    )
    assert IoAwarePolicy().decide(lagging, JOB, random.Random(1)).outcome is Outcome.DISPATCHED
    down = fleet(host("h1", vms=[vm("a", io_per_job=1.0)], age_s=16.0), config=config)
    decision = IoAwarePolicy().decide(down, JOB, random.Random(1))
    assert decision.outcome is Outcome.WAITING
    [candidate] = decision.candidates
    # Not behind anyone (it is the whole fleet), yet stale: the lag limit rejected it.
    assert (candidate.rejected_by, candidate.telemetry_behind_s) == ("stale", 0.0)


def test_warmup_host_takes_jobs_until_cap() -> None:
    snap = fleet(
        host("h1", limit=None, vms=[vm("a")]), config=PolicyConfig(warmup_outstanding_per_vm=2)
    )
    policy = IoAwarePolicy()
    outcomes = [policy.decide(snap, JOB, random.Random(i)).outcome for i in range(3)]
    assert outcomes == [Outcome.DISPATCHED, Outcome.DISPATCHED, Outcome.WAITING]
    assert snap.claims("a") == 2


def test_waiting_reason_counts_each_cause() -> None:
    snap = fleet(
        host("h1", vms=[vm("a", load=20.0, io_per_job=100.0)]),  # over limit
        host("h2", vms=[vm("b", load=20.0, io_per_job=100.0)]),  # over limit
        host("h3", vms=[vm("c", io_per_job=1.0)], age_s=60.0),  # stale
        host("h4", limit=None, vms=[vm("d", outstanding=2)]),  # warm-up full
    )
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(7))
    assert decision.outcome is Outcome.WAITING
    assert (
        decision.reason
        == "no eligible host among 4 candidates: 2 over limit, 1 stale, 1 warm-up full"
    )
    assert {c.vm_id: c.rejected_by for c in decision.candidates} == {
        "a": "over limit",
        "b": "over limit",
        "c": "stale",
        "d": "warm-up full",
    }


def test_burst_on_one_free_host_stops_at_limit() -> None:
    # h1 looks idle (paper total 100 ops/s); it clears 100 jobs/s (load 1 / busy 0.01), so its
    # backlog cap (500) is far away. Each claim adds 100 ops spread over the 5 s horizon =
    # 20 ops/s, so max(100, 20 n) < 1000 for n < 50: 50 placements fit; the 51st waits.
    config = PolicyConfig(horizon_s=5.0)
    snap = fleet(
        host("h1", limit=1000.0, vms=[vm("a", load=1.0, busy=0.01, io_per_job=100.0)]),
        host("h2", limit=1000.0, vms=[vm("b", load=10.0, io_per_job=100.0)]),  # full
        config=config,
    )
    policy, rng = IoAwarePolicy(), random.Random(11)
    outcomes = [policy.decide(snap, JobRequest(f"j{i}", "t"), rng).outcome for i in range(80)]
    assert outcomes.count(Outcome.DISPATCHED) == 50
    assert outcomes[50:] == [Outcome.WAITING] * 30
    assert snap.claims("a") == 50


def test_backlog_cap_holds_jobs_back_from_a_vm_far_under_its_limit() -> None:
    # 2 jobs/s at busy 0.5 -> clears 4 jobs/s -> 4 * 5 s = 20 jobs; I/O is negligible.
    snap = fleet(host("h1", vms=[vm("a", load=2.0, busy=0.5, io_per_job=1.0)]))
    policy, rng = IoAwarePolicy(), random.Random(3)
    outcomes = [policy.decide(snap, JobRequest(f"j{i}", "t"), rng).outcome for i in range(25)]
    assert outcomes == [Outcome.DISPATCHED] * 20 + [Outcome.WAITING] * 5
    decision = policy.decide(snap, JOB, rng)
    assert decision.reason == "no eligible host among 1 candidate: 1 backlog full"
    assert decision.candidates[0].rejected_by == "backlog full"
    assert decision.candidates[0].outstanding_jobs == 20


def test_burst_spreads_over_equally_free_hosts() -> None:
    snap = fleet(
        *(host(f"h{i}", vms=[vm(f"v{i}", load=1.0, busy=0.01, io_per_job=100.0)]) for i in range(4))
    )
    policy, rng = IoAwarePolicy(), random.Random(5)
    for i in range(40):
        assert policy.decide(snap, JobRequest(f"j{i}", "t"), rng).dispatched
    # p2c with claims and the fewest-outstanding weigher: no VM can run ahead by much.
    counts = [snap.claims(f"v{i}") for i in range(4)]
    assert sum(counts) == 40
    assert max(counts) - min(counts) <= 2


def test_emptier_vm_beats_freer_host() -> None:
    # a: host 0.9 free but its VM holds 6 jobs; b: host 0.5 free, VM holds 1. Both eligible.
    snap = fleet(
        host("h1", vms=[vm("a", load=1.0, busy=0.1, io_per_job=100.0, outstanding=6)]),
        host("h2", vms=[vm("b", load=5.0, busy=0.5, io_per_job=100.0, outstanding=1)]),
    )
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(2))
    assert decision.vm_id == "b"
    assert {c.vm_id: c.eligible for c in decision.candidates} == {"a": True, "b": True}


def test_p2c_picks_larger_relative_headroom() -> None:
    # big: 1000 limit, 500 used -> 0.5 free; small: 100 limit, 10 used -> 0.9 free.
    snap = fleet(
        host("big", limit=1000.0, vms=[vm("a", load=5.0, io_per_job=100.0)]),
        host("small", limit=100.0, vms=[vm("b", load=0.1, io_per_job=100.0)]),
    )
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(2))
    assert decision.vm_id == "b"
    assert {c.vm_id for c in decision.candidates} == {"a", "b"}
    assert all(c.eligible and c.weight is not None for c in decision.candidates)
    assert "p2c of" in decision.reason


def test_ties_go_to_fewer_outstanding_then_vm_id() -> None:
    snap = fleet(host("h1", limit=None, vms=[vm("a", outstanding=1), vm("b")]))
    assert IoAwarePolicy().decide(snap, JOB, random.Random(0)).vm_id == "b"
    equal = fleet(host("h1", vms=[vm("b", io_per_job=1.0), vm("a", io_per_job=1.0)]))
    assert IoAwarePolicy().decide(equal, JOB, random.Random(0)).vm_id == "a"


def test_large_fleet_examines_only_sampled_candidates() -> None:
    snap = fleet(*(host(f"h{i:05d}", vms=[vm(f"v{i:05d}", io_per_job=10.0)]) for i in range(2000)))
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(9))
    assert decision.outcome is Outcome.DISPATCHED
    assert len(decision.candidates) == 2


def test_falls_back_to_a_scan_to_find_the_one_eligible_host() -> None:
    full = [
        host(f"h{i:04d}", vms=[vm(f"v{i:04d}", load=20.0, io_per_job=100.0)]) for i in range(500)
    ]
    free = host("h9999", vms=[vm("free", io_per_job=100.0)])
    snap = fleet(*full, free, config=PolicyConfig(probe_limit=8, max_recorded_candidates=10))
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(4))
    assert decision.vm_id == "free"
    assert "after scanning 501" in decision.reason
    assert len(decision.candidates) == 10  # capped record, chosen one included
    assert decision.candidates[-1].vm_id == "free"


def test_same_seed_same_decisions() -> None:
    def run(seed: int) -> list[str | None]:
        snap = fleet(*(host(f"h{i}", vms=[vm(f"v{i}", io_per_job=50.0)]) for i in range(30)))
        policy, rng = build_policy("io-aware"), random.Random(seed)
        return [policy.decide(snap, JobRequest(f"j{n}", "t"), rng).vm_id for n in range(100)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_unknown_type_is_rejected() -> None:
    snap = fleet(host("h1"))
    decision = IoAwarePolicy().decide(snap, JobRequest("j", "nope"), random.Random(0))
    assert decision.outcome is Outcome.REJECTED
    assert "'nope'" in decision.reason


def test_candidates_are_the_wire_type_and_survive_a_round_trip() -> None:
    snap = fleet(host("h1", vms=[vm("a", io_per_job=10.0)]))
    decision = IoAwarePolicy().decide(snap, JOB, random.Random(0))
    [candidate] = decision.candidates
    assert isinstance(candidate, CandidateView)
    assert candidate.vm_id == "a" and candidate.eligible and candidate.limit_ops_per_s == 1000.0
    restored = CandidateView.model_validate_json(candidate.model_dump_json(exclude_none=True))
    assert restored == candidate
