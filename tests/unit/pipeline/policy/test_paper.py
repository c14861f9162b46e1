"""paper: the literal Table 3 rule, first fit in host order, flaws included."""

from __future__ import annotations

import random

from pipeline.policy.decision import JobRequest, Outcome
from pipeline.policy.io_aware import IoAwarePolicy
from pipeline.policy.paper import PaperPolicy
from pipeline.policy.testing import fleet, host, vm

JOB = JobRequest("j1", "t")


def test_first_fit_in_host_order_skipping_hosts_at_limit() -> None:
    snap = fleet(
        host("h3", vms=[vm("c", io_per_job=1.0)]),
        host("h1", vms=[vm("a", load=10.0, io_per_job=100.0)]),  # total 1000: not < 1000
        host("h2", vms=[vm("b", load=9.999, io_per_job=100.0)]),  # total 999.9
    )
    decision = PaperPolicy().decide(snap, JOB, random.Random(0))
    assert (decision.outcome, decision.vm_id) == (Outcome.DISPATCHED, "b")
    assert [(c.vm_id, c.eligible, c.rejected_by) for c in decision.candidates] == [
        ("a", False, "over limit"),
        ("b", True, None),
    ]
    assert "first fit" in decision.reason


def test_unknown_limit_is_ineligible() -> None:
    snap = fleet(host("h1", limit=None, vms=[vm("a")]))
    decision = PaperPolicy().decide(snap, JOB, random.Random(0))
    assert decision.outcome is Outcome.WAITING
    assert decision.reason == "no eligible host among 1 candidate: 1 limit unknown"


def test_no_staleness_check() -> None:
    snap = fleet(host("h1", vms=[vm("a", io_per_job=1.0)], age_s=3600.0))
    assert PaperPolicy().decide(snap, JOB, random.Random(0)).outcome is Outcome.DISPATCHED


def test_burst_herds_on_the_host_that_looked_free() -> None:
    # The same burst that io-aware stops at 50 (see test_policy_io_aware): the paper's rule
    # never sees its own placements, so all 80 land on h1.
    snap = fleet(
        host("h1", vms=[vm("a", io_per_job=100.0)]),
        host("h2", vms=[vm("b", io_per_job=100.0)]),
    )
    policy, rng = PaperPolicy(), random.Random(0)
    for i in range(80):
        assert policy.decide(snap, JobRequest(f"j{i}", "t"), rng).vm_id == "a"
    assert snap.claims("a") == 80  # claimed, and ignored by the rule

    spread = fleet(
        host("h1", vms=[vm("a", io_per_job=100.0)]),
        host("h2", vms=[vm("b", io_per_job=100.0)]),
    )
    io_aware = IoAwarePolicy()
    for i in range(80):
        io_aware.decide(spread, JobRequest(f"j{i}", "t"), rng)
    assert spread.claims("a") < 80 and spread.claims("b") > 0


def test_waits_when_all_hosts_at_limit() -> None:
    snap = fleet(
        host("h1", vms=[vm("a", load=10.0, io_per_job=100.0)]),
        host("h2", vms=[vm("b", load=11.0, io_per_job=100.0)]),
    )
    decision = PaperPolicy().decide(snap, JOB, random.Random(0))
    assert decision.outcome is Outcome.WAITING
    assert decision.reason == "no eligible host among 2 candidates: 2 over limit"
