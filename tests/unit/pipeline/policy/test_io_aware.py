"""io-aware: the fit test on both sides of the limit, queues, hysteresis, the hold (strictness),
cold start, power-of-d sampling and the decision record."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from pipeline.events import CandidateView
from pipeline.policy.base import Candidate
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.io_aware import IoAwarePolicy, fit_candidate, headroom_after, random_order
from pipeline.policy.registry import build_policy
from pipeline.policy.snapshot import PolicyConfig, VmView
from pipeline.policy.testing import NOW, fleet, host, vm

JOB = JobRequest("j1", "t")


def runs(
    vm_id: str,
    rate: float,
    job_type: str = "t",
    *,
    outstanding: int = 0,
    service_s: float = 0.1,
    measured: float = 0.0,
) -> VmView:
    """A VM whose jobs take `service_s` and ask `rate` ops/s while they run (measured: load 1
    job/s at busy `service_s`, io_per_job = rate x service_s)."""
    return vm(
        vm_id,
        job_type,
        load=1.0,
        busy=service_s,
        io_per_job=rate * service_s,
        outstanding=outstanding,
        io_ops_per_s=measured,
    )


def decide(snapshot, job: JobRequest = JOB, seed: int = 1, policy: IoAwarePolicy | None = None):
    return (policy or IoAwarePolicy()).decide(snapshot, job, random.Random(seed))


def test_a_job_asking_more_than_any_limit_runs_alone_rather_than_never() -> None:
    # Its jobs ask 1250 ops/s while they run, over h1's whole limit of 1000: it fits nowhere by
    # the letter, so it counts as the whole limit and goes to a host that runs nothing else.
    idle = fleet(host("h1", limit=1000.0, vms=[runs("a", 1250.0), runs("o", 10.0, "o")]))
    decision = decide(idle)
    assert decision.dispatched and decision.vm_id == "a"
    busy = fleet(
        host("h1", limit=1000.0, vms=[runs("a", 1250.0), runs("o", 10.0, "o", outstanding=1)]),
        config=PolicyConfig(hold_s=math.inf),
    )
    assert decide(busy).outcome is Outcome.WAITING  # 10 + 1000 > 1000: not beside another job
    # Running alone, it fills its host (1000 of 1000, not over): the next one queues behind it.
    behind = fleet(
        host("h1", limit=1000.0, vms=[runs("a", 1250.0, outstanding=1)]),
        config=PolicyConfig(hold_s=math.inf, horizon_s=1.0),
    )
    queued = decide(behind)
    assert queued.dispatched and queued.vm_id == "a"


def test_random_order_is_a_permutation() -> None:
    rng = random.Random(3)
    assert sorted(random_order(50, rng)) == list(range(50))


def _randrange_order(n: int, rng: random.Random, count: int) -> list[int]:
    """The first `count` of the sparse Fisher-Yates shuffle as first written, with `randrange`."""
    swapped: dict[int, int] = {}
    order = []
    for i in range(min(n, count)):
        j = rng.randrange(i, n)
        order.append(swapped.get(j, j))
        swapped[j] = swapped.get(i, i)
    return order


@pytest.mark.parametrize("n", [1, 2, 3, 16, 32, 1000, 2**20 + 3])
def test_random_order_draws_what_randrange_draws(n: int) -> None:
    # The simulator's results rest on the same draws: `_randbelow` must stay randrange's.
    for seed in range(5):
        ours, theirs = random.Random(seed), random.Random(seed)
        drawn = list(itertools.islice(random_order(n, ours), 40))
        assert drawn == _randrange_order(n, theirs, 40)
        assert ours.random() == theirs.random()  # and the generator left where it would be


@pytest.mark.parametrize(("other_rate", "fits"), [(400.0, True), (400.1, False)])
def test_a_job_goes_only_where_it_fits_now_both_sides_of_the_limit(
    other_rate: float, fits: bool
) -> None:
    # h1 (limit 1000) runs another VM's job asking `other_rate`; the job would add 600.
    snap = fleet(
        host(
            "h1",
            limit=1000.0,
            vms=[runs("a", 600.0), runs("o", other_rate, "other", outstanding=1)],
        )
    )
    decision = decide(snap)
    [candidate] = [c for c in decision.candidates if c.vm_id == "a"]
    assert candidate.total_io_ops_per_s == pytest.approx(other_rate)
    assert candidate.job_io_ops_per_s == pytest.approx(600.0)
    if fits:
        assert decision.outcome is Outcome.DISPATCHED and decision.vm_id == "a"
        assert snap.claims("a") == 1
        assert "fits" in decision.reason
    else:
        assert decision.outcome is Outcome.WAITING
        assert decision.reason == "no eligible host among 1 candidate: 1 does not fit"
        assert candidate.rejected_by == "does not fit"
        assert snap.claims("a") == 0


def test_the_paper_asks_only_about_now_io_aware_asks_about_the_job_too() -> None:
    # The host is under its limit now (400 < 1000) but not with a job of 700 more.
    snap = fleet(host("h1", vms=[runs("a", 700.0), runs("o", 400.0, "other", outstanding=1)]))
    assert build_policy("paper").decide(snap, JOB, random.Random(0)).dispatched
    assert not decide(snap).dispatched


def test_queueing_behind_a_running_job_adds_nothing_now() -> None:
    # a runs a job (600) and o another (400): h1 is at its limit. A second idle VM of the type
    # would add 600; queued behind a's running job the job adds nothing.
    snap = fleet(
        host(
            "h1",
            vms=[
                runs("a", 600.0, outstanding=1),
                runs("a2", 600.0),
                runs("o", 400.0, "other", outstanding=1),
            ],
        )
    )
    decision = decide(snap)
    assert decision.vm_id == "a"
    chosen = next(c for c in decision.candidates if c.vm_id == "a")
    assert chosen.job_io_ops_per_s == 0.0 and chosen.expected_response_s == pytest.approx(0.2)
    refused = next(c for c in decision.candidates if c.vm_id == "a2")
    assert refused.rejected_by == "does not fit"
    assert "behind a running job" in decision.reason


def test_an_idle_vm_where_the_job_fits_beats_any_queue() -> None:
    for seed in range(5):
        snap = fleet(
            host("h1", vms=[runs("a", 600.0, outstanding=1)]),
            host("h2", vms=[runs("b", 600.0)]),
        )
        assert decide(snap, seed=seed).vm_id == "b"


def test_of_the_queues_the_soonest_done_wins() -> None:
    # No VM of the type is idle; a holds 3 jobs, b 1; both hosts are within their limits.
    snap = fleet(
        host("h1", vms=[runs("a", 600.0, outstanding=3), runs("o1", 300.0, "o", outstanding=1)]),
        host("h2", vms=[runs("b", 600.0, outstanding=1), runs("o2", 300.0, "o", outstanding=1)]),
        config=PolicyConfig(horizon_s=5.0),
    )
    decision = decide(snap)
    assert decision.vm_id == "b"
    compared = {c.vm_id: c.expected_response_s for c in decision.candidates}
    assert compared["b"] == pytest.approx(0.2)
    assert compared.get("a", 0.4) == pytest.approx(0.4)


def test_a_job_that_fits_nowhere_waits_its_hold_then_goes_where_it_overshoots_least() -> None:
    # h1: 800 + 600 on a 1000 limit is 40 % over; h2: 1700 + 600 on 2000 is 15 % over. The
    # fleet has 200 + 300 = 500 ops/s of room, less than the job's 600: it waits, however long.
    # With h3's 400 more (900 >= 600) the room is there, scattered: after its hold it goes to
    # the host it overshoots least.
    def snap(with_h3: bool):
        hosts = [
            host(
                "h1", limit=1000.0, vms=[runs("a", 600.0), runs("o1", 800.0, "o1", outstanding=1)]
            ),
            host(
                "h2", limit=2000.0, vms=[runs("b", 600.0), runs("o2", 1700.0, "o2", outstanding=1)]
            ),
        ]
        if with_h3:  # 600 + 600 > 1000: no room for the job alone either
            hosts.append(host("h3", vms=[runs("c", 600.0), runs("o3", 600.0, "o3", outstanding=1)]))
        return fleet(*hosts, config=PolicyConfig(hold_s=1.0))

    assert decide(snap(True), JobRequest("j", "t")).outcome is Outcome.WAITING  # never waited
    young = decide(snap(True), JobRequest("j", "t", waited_s=0.99))
    assert young.outcome is Outcome.WAITING and "3 does not fit" in young.reason
    full = decide(snap(False), JobRequest("j", "t", waited_s=100.0))
    assert full.outcome is Outcome.WAITING  # the fleet is full: more overload serves no one
    held = snap(True)
    decision = decide(held, JobRequest("j", "t", waited_s=1.0))
    assert decision.dispatched and decision.vm_id == "b"
    assert decision.reason.startswith("held 1.00s >= hold_s 1s")
    assert "the fleet 900 ops/s" in decision.reason and "15% over" in decision.reason
    assert held.claims("b") == 1


def test_a_strict_hold_never_sends_a_job_over_a_limit() -> None:
    snap = fleet(
        host("h1", vms=[runs("a", 600.0), runs("o", 800.0, "o", outstanding=1)]),
        host("h2", vms=[runs("b", 1.0, "b")]),  # room enough, for another type
        config=PolicyConfig(hold_s=math.inf),
    )
    assert decide(snap, JobRequest("j", "t", waited_s=1e6)).outcome is Outcome.WAITING


def test_hold_zero_sends_a_job_over_a_limit_at_once_where_it_overshoots_least() -> None:
    # h1 has 200 of room, h2 500: the fleet 700 >= 600, and h2 overshoots least (10 %).
    config = PolicyConfig(hold_s=0.0)
    snap = fleet(
        host("h1", vms=[runs("a", 600.0), runs("o", 800.0, "o", outstanding=1)]),
        host("h2", vms=[runs("b", 600.0), runs("p", 500.0, "p", outstanding=1)]),
        config=config,
    )
    assert decide(snap).vm_id == "b"


def test_a_job_nobody_has_measured_runs_alone_on_its_host() -> None:
    # Cold start: two VMs of the type, no completions yet. The first job may take the whole
    # limit; the second cannot start beside it, it queues behind it (warm-up backlog of 2).
    snap = fleet(host("h1", vms=[vm("a"), vm("b")]), config=PolicyConfig(hold_s=math.inf))
    policy, rng = IoAwarePolicy(), random.Random(2)
    first = policy.decide(snap, JobRequest("j1", "t"), rng)
    assert first.dispatched
    assert first.candidates[-1].job_io_ops_per_s == 1000.0  # counted as the whole limit
    second = policy.decide(snap, JobRequest("j2", "t"), rng)
    assert second.vm_id == first.vm_id
    third = policy.decide(snap, JobRequest("j3", "t"), rng)
    assert third.outcome is Outcome.WAITING
    assert third.reason == "no eligible host among 2 candidates: 1 backlog full, 1 does not fit"


def test_a_job_of_a_vm_that_has_not_run_asks_what_its_peers_were_metered_at() -> None:
    # Cold start, io_per_job not known anywhere: b, on h1 beside a running job of 400 ops/s,
    # has not run yet. Its peer a was metered at 400 ops/s per busy second, so b's job asks
    # 400 (400 + 400 <= 1000: it starts beside), not h1's whole limit; c asks 400 too.
    snap = fleet(
        host("h1", vms=[vm("a", busy=0.25, io_ops_per_s=100.0, outstanding=1), vm("b")]),
        config=PolicyConfig(hold_s=math.inf),
    )
    decision = IoAwarePolicy().decide(snap, JobRequest("j1", "t"), random.Random(1))
    assert decision.vm_id == "b"
    assert decision.candidates[-1].job_io_ops_per_s == pytest.approx(400.0)


def test_a_host_dom0_measures_over_its_limit_stays_closed_until_under_the_band() -> None:
    policy = IoAwarePolicy()
    config = PolicyConfig(hysteresis=0.1)

    def at(measured: float):
        return fleet(host("h1", vms=[runs("a", 100.0, measured=measured)]), config=config)

    over = decide(at(1000.1), policy=policy)
    assert over.outcome is Outcome.WAITING and "at limit (hysteresis)" in over.reason
    assert decide(at(950.0), policy=policy).outcome is Outcome.WAITING  # not under 900 yet
    assert decide(at(899.0), policy=policy).dispatched
    assert decide(at(950.0), policy=policy).dispatched  # open until over the limit again


def test_the_meter_of_a_job_that_just_ended_does_not_close_its_host() -> None:
    # Dom0's meter (newest sample 2 s old, a 5 s window) still shows 1100 ops/s, over the
    # limit: a1's job of 1100 ops/s, which this dispatcher ran there and which ended 3 s ago
    # (within the window). It asks nothing now; the host is open. The same meter with no
    # known job behind it is foreign I/O: closed.
    config = PolicyConfig(hysteresis=0.1, hold_s=math.inf, meter_window_s=5.0)

    def metered(ended_s_ago: float | None):
        vms = [runs("a1", 1100.0, "x", measured=1100.0), runs("b1", 100.0)]
        snapshot = fleet(host("h1", vms=vms, age_s=2.0), config=config)
        if ended_s_ago is not None:
            snapshot.job_ended("a1", NOW - ended_s_ago)
        return snapshot

    assert decide(metered(3.0)).dispatched
    closed = decide(metered(None))
    assert closed.outcome is Outcome.WAITING and "at limit (hysteresis)" in closed.reason
    assert decide(metered(7.5)).outcome is Outcome.WAITING  # ended before the window began


def test_stale_host_waits_both_sides_of_stale_after_s() -> None:
    # h1 is judged against h0, which reported just now (the fleet's telemetry watermark).
    config = PolicyConfig(stale_after_s=3.0)
    current = host("h0", vms=[vm("z", job_type="other")])
    fresh = fleet(current, host("h1", vms=[runs("a", 10.0)], age_s=3.0), config=config)
    stale = fleet(current, host("h1", vms=[runs("a", 10.0)], age_s=3.5), config=config)
    assert decide(fresh).outcome is Outcome.DISPATCHED
    decision = decide(stale)
    assert decision.outcome is Outcome.WAITING
    assert decision.candidates[0].rejected_by == "stale"
    assert decision.candidates[0].telemetry_age_s == pytest.approx(3.5)
    assert decision.candidates[0].telemetry_behind_s == pytest.approx(3.5)


def test_a_fleet_whose_telemetry_lags_alike_still_dispatches_up_to_the_lag_limit() -> None:
    config = PolicyConfig(stale_after_s=3.0, lag_limit_s=15.0)
    lagging = fleet(
        host("h1", vms=[runs("a", 10.0)], age_s=10.0),
        host("h2", vms=[runs("b", 10.0)], age_s=10.5),
        config=config,
    )
    assert decide(lagging).outcome is Outcome.DISPATCHED
    down = fleet(host("h1", vms=[runs("a", 10.0)], age_s=16.0), config=config)
    decision = decide(down)
    assert decision.outcome is Outcome.WAITING
    [candidate] = decision.candidates
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
        host("h1", vms=[runs("a", 600.0), runs("x", 800.0, "o", outstanding=1)]),  # no fit
        host("h2", vms=[runs("b", 600.0, measured=1200.0)]),  # Dom0: over its limit
        host("h3", vms=[runs("c", 600.0)], age_s=60.0),  # stale
        host("h4", limit=None, vms=[vm("d", outstanding=2)]),  # warm-up full
        host("h5", vms=[runs("e", 600.0, outstanding=10)]),  # backlog full (cap 2.5 -> 3)
        config=PolicyConfig(horizon_s=0.25),
    )
    decision = decide(snap, seed=7)
    assert decision.outcome is Outcome.WAITING
    assert decision.reason == (
        "no eligible host among 5 candidates: 1 at limit (hysteresis), 1 backlog full, "
        "1 does not fit, 1 stale, 1 warm-up full"
    )
    assert {c.vm_id: c.rejected_by for c in decision.candidates} == {
        "a": "does not fit",
        "b": "at limit (hysteresis)",
        "c": "stale",
        "d": "warm-up full",
        "e": "backlog full",
    }


def test_backlog_cap_holds_jobs_back_from_a_vm_far_under_its_limit() -> None:
    # Jobs of 0.25 s, negligible I/O, a 5 s horizon: the VM holds at most 20.
    snap = fleet(
        host("h1", vms=[runs("a", 1.0, service_s=0.25)]), config=PolicyConfig(horizon_s=5.0)
    )
    policy, rng = IoAwarePolicy(), random.Random(3)
    outcomes = [policy.decide(snap, JobRequest(f"j{i}", "t"), rng).outcome for i in range(25)]
    assert outcomes == [Outcome.DISPATCHED] * 20 + [Outcome.WAITING] * 5
    decision = policy.decide(snap, JOB, rng)
    assert decision.reason == "no eligible host among 1 candidate: 1 backlog full"
    assert decision.candidates[0].outstanding_jobs == 20


def test_a_burst_spreads_over_equally_free_hosts() -> None:
    snap = fleet(
        *(host(f"h{i}", vms=[runs(f"v{i}", 100.0)]) for i in range(4)),
        config=PolicyConfig(horizon_s=5.0),
    )
    policy, rng = IoAwarePolicy(), random.Random(5)
    for i in range(40):
        assert policy.decide(snap, JobRequest(f"j{i}", "t"), rng).dispatched
    # Idle VMs first, then the shortest queue: no VM runs ahead of another by more than one.
    counts = [snap.claims(f"v{i}") for i in range(4)]
    assert sum(counts) == 40
    assert max(counts) - min(counts) <= 1


def test_of_two_idle_fits_the_host_left_with_more_relative_room_wins() -> None:
    # big: (2000 - 1000 - 100) / 2000 = 45 % left; small: (500 - 0 - 100) / 500 = 80 % left.
    snap = fleet(
        host("big", limit=2000.0, vms=[runs("a", 100.0), runs("o", 1000.0, "o", outstanding=1)]),
        host("small", limit=500.0, vms=[runs("b", 100.0)]),
    )
    decision = decide(snap, seed=2)
    assert decision.vm_id == "b"
    assert {c.vm_id for c in decision.candidates} == {"a", "b"}
    assert all(c.eligible for c in decision.candidates)
    assert "p2c" in decision.reason


def test_large_fleet_examines_only_sampled_candidates() -> None:
    snap = fleet(*(host(f"h{i:05d}", vms=[runs(f"v{i:05d}", 10.0)]) for i in range(2000)))
    decision = decide(snap, seed=9)
    assert decision.outcome is Outcome.DISPATCHED
    assert len(decision.candidates) == 2


def test_falls_back_to_a_scan_to_find_the_one_host_with_room() -> None:
    full = [
        host(
            f"h{i:04d}",
            vms=[runs(f"v{i:04d}", 100.0), runs(f"o{i:04d}", 1000.0, "o", outstanding=1)],
        )
        for i in range(500)
    ]
    free = host("h9999", vms=[runs("free", 100.0)])
    snap = fleet(*full, free, config=PolicyConfig(probe_limit=8, max_recorded_candidates=10))
    decision = decide(snap, seed=4)
    assert decision.vm_id == "free"
    assert "after scanning 501" in decision.reason
    assert len(decision.candidates) == 10  # capped record, chosen one included
    assert decision.candidates[-1].vm_id == "free"


def test_same_seed_same_decisions() -> None:
    def run(seed: int) -> list[str | None]:
        snap = fleet(*(host(f"h{i}", vms=[runs(f"v{i}", 50.0)]) for i in range(30)))
        policy, rng = build_policy("io-aware"), random.Random(seed)
        return [policy.decide(snap, JobRequest(f"j{n}", "t"), rng).vm_id for n in range(100)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_unknown_type_is_rejected() -> None:
    decision = decide(fleet(host("h1")), JobRequest("j", "nope"))
    assert decision.outcome is Outcome.REJECTED
    assert "'nope'" in decision.reason


def test_candidates_are_the_wire_type_and_survive_a_round_trip() -> None:
    snap = fleet(host("h1", vms=[runs("a", 10.0)]))
    decision = decide(snap)
    [candidate] = decision.candidates
    assert isinstance(candidate, CandidateView)
    assert candidate.vm_id == "a" and candidate.eligible and candidate.limit_ops_per_s == 1000.0
    assert candidate.job_io_ops_per_s == pytest.approx(10.0)
    restored = CandidateView.model_validate_json(candidate.model_dump_json(exclude_none=True))
    assert restored == candidate


def test_a_candidate_keeps_what_is_derived_from_it_once_and_only_its_own() -> None:
    snap = fleet(host("h1", limit=1000.0, vms=[runs("a", 100.0), runs("b", 100.0, outstanding=1)]))
    a, b = (fit_candidate(snap, snap.vm(vm_id)) for vm_id in ("a", "b"))
    calls: list[str] = []

    def order(candidate: Candidate) -> tuple[float, str]:
        calls.append(candidate.vm.vm_id)
        return (headroom_after(candidate), candidate.vm.vm_id)

    assert a.memo("order", order) == (headroom_after(a), "a")
    assert a.memo("order", order) == (headroom_after(a), "a")  # kept
    assert b.memo("order", order) == (headroom_after(b), "b")  # its own
    assert calls == ["a", "b"]
    # An equal candidate (the same numbers, judged again) starts with nothing kept.
    again = fit_candidate(snap, snap.vm("a"))
    assert again == a and again.memo("order", order) == a.memo("order", order)
    assert calls == ["a", "b", "a"]
