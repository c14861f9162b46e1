"""Baselines: always dispatch when a candidate exists; reject unknown types."""

from __future__ import annotations

import random

import pytest

from pipeline.policy.baselines import (
    GuestUtilPolicy,
    LeastOutstandingPolicy,
    RandomPolicy,
    RoundRobinPolicy,
)
from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.registry import POLICY_NAMES, build_policy
from pipeline.policy.testing import fleet, host, vm

JOB = JobRequest("j1", "t")


def test_round_robin_cycles_per_type() -> None:
    snap = fleet(host("h1", vms=[vm("a"), vm("x", "u")]), host("h2", vms=[vm("b"), vm("y", "u")]))
    policy, rng = RoundRobinPolicy(), random.Random(0)
    picks = [policy.decide(snap, JobRequest(str(i), "t"), rng).vm_id for i in range(5)]
    assert picks == ["a", "b", "a", "b", "a"]
    assert policy.decide(snap, JobRequest("u1", "u"), rng).vm_id == "x"  # own cursor


def test_random_is_seeded_and_covers_candidates() -> None:
    snap = fleet(*(host(f"h{i}", vms=[vm(f"v{i}")]) for i in range(5)))

    def picks(seed: int) -> list[str | None]:
        rng = random.Random(seed)
        return [RandomPolicy().decide(snap, JOB, rng).vm_id for _ in range(200)]

    assert picks(1) == picks(1)
    assert set(picks(1)) == {f"v{i}" for i in range(5)}


def test_least_outstanding_counts_claims_and_ties_by_vm_id() -> None:
    snap = fleet(
        host("h1", vms=[vm("c", outstanding=1), vm("b", outstanding=2), vm("a", outstanding=1)])
    )
    policy, rng = LeastOutstandingPolicy(), random.Random(0)
    # a (1) and c (1) tie -> a; then a has 2 -> c; then all 2 -> a (vm_id).
    assert [policy.decide(snap, JOB, rng).vm_id for _ in range(3)] == ["a", "c", "a"]


def test_guest_util_prefers_idle_guest_even_over_a_saturated_host() -> None:
    # The guest on h1 looks idle but its host is far over its I/O limit: guest-util cannot tell.
    snap = fleet(
        host("h1", vms=[vm("a", busy=0.1, io_ops_per_s=5000.0)]),
        host("h2", vms=[vm("b", busy=0.4, io_ops_per_s=0.0)]),
    )
    decision = GuestUtilPolicy().decide(snap, JOB, random.Random(0))
    assert decision.vm_id == "a"
    assert decision.candidates[0].total_io_ops_per_s == 5000.0


def test_guest_util_ties_by_outstanding() -> None:
    snap = fleet(
        host("h1", vms=[vm("a", busy=0.2, outstanding=3), vm("b", busy=0.2, outstanding=1)])
    )
    assert GuestUtilPolicy().decide(snap, JOB, random.Random(0)).vm_id == "b"


@pytest.mark.parametrize("name", ["round-robin", "random", "least-outstanding", "guest-util"])
def test_baselines_never_wait(name: str) -> None:
    # Over limit, stale, limit unknown: a baseline dispatches anyway.
    snap = fleet(host("h1", limit=None, vms=[vm("a", load=99.0, io_per_job=100.0)], age_s=None))
    decision = build_policy(name).decide(snap, JOB, random.Random(0))
    assert decision.outcome is Outcome.DISPATCHED
    assert snap.claims("a") == 1
    assert len(decision.candidates) >= 1 and decision.candidates[0].vm_id == "a"


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_rejects_unserved_type(name: str) -> None:
    snap = fleet(host("h1"))
    decision = build_policy(name).decide(snap, JobRequest("j", "nobody"), random.Random(0))
    assert decision.outcome is Outcome.REJECTED
    assert decision.candidates == ()
    assert decision.policy == name
