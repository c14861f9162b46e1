"""The chaos scenarios' seeded fault plans, and the report's sums."""

from __future__ import annotations

import itertools
import random

import pytest

from benchmarks.chaos.report import defects, markdown_table, summarize
from benchmarks.chaos.scenarios import (
    FLEET,
    SCENARIOS,
    FaultKind,
    Once,
    Repeat,
    Scenario,
    fleet_limit_ops_per_s,
    select,
    vm_ids,
)
from pipeline.errors import ConfigError


def test_the_same_seed_gives_the_same_faults_and_another_seed_others():
    scenario = SCENARIOS["guest-kill"]
    first = scenario.plan(random.Random(7), 60.0)
    assert first == scenario.plan(random.Random(7), 60.0)
    assert first != scenario.plan(random.Random(8), 60.0)


def test_a_repeated_fault_comes_every_lo_to_hi_seconds_within_the_window():
    scenario = Scenario("s", "", (Repeat(FaultKind.WORKER_KILL, (8.0, 15.0)),))
    for seed in range(20):
        plan = scenario.plan(random.Random(seed), 50.0)
        offsets = [fault.offset_s for fault in plan]
        assert offsets == sorted(offsets)
        assert 8.0 <= offsets[0] <= 15.0
        assert all(8.0 <= b - a <= 15.0 for a, b in itertools.pairwise(offsets))
        assert offsets[-1] < 49.0
        assert len(plan) >= 3  # 50 s at most 15 s apart


def test_a_short_window_still_gets_a_fault_in_every_run():
    scenario = Scenario("s", "", (Repeat(FaultKind.WORKER_KILL, (8.0, 15.0)),))
    for seed in range(50):
        plan = scenario.plan(random.Random(seed), 15.0)
        assert plan and all(fault.offset_s <= 12.0 for fault in plan[:1])


def test_a_one_off_fault_lands_in_its_fraction_of_the_window_with_its_outage():
    scenario = Scenario(
        "s", "", (Once(FaultKind.BROKER_KILL, (0.25, 0.45), outage_s=(5.0, 10.0)),), nodes=3
    )
    for seed in range(20):
        (fault,) = scenario.plan(random.Random(seed), 100.0)
        assert 25.0 <= fault.offset_s <= 45.0
        assert 5.0 <= fault.outage_s <= 10.0
        assert fault.target in (0, 1, 2)  # one of the three nodes


def test_targets_are_the_fleets_own():
    for seed in range(10):
        rng = random.Random(seed)
        for fault in SCENARIOS["guest-kill"].plan(rng, 60.0):
            assert 0 <= fault.target < len(vm_ids())
        for fault in SCENARIOS["dom0-kill"].plan(rng, 60.0):
            assert 0 <= fault.target < len(FLEET)
        # "two workers, one killed repeatedly": always the second.
        assert {f.target for f in SCENARIOS["two-workers-kill"].plan(rng, 60.0)} == {1}


def test_every_fault_the_issue_names_has_a_scenario():
    kinds = {pattern.kind for s in SCENARIOS.values() for pattern in s.faults}
    assert kinds == set(FaultKind)
    assert SCENARIOS["replicated-broker-kill"].replication_factor == 3
    assert SCENARIOS["broker-outage-long"].faults[0].outage_s[0] > 15.0
    assert any(f.when_waiting for f in SCENARIOS["worker-kill-retrying"].faults)


def test_an_overloading_scenario_asks_its_multiple_of_the_fleets_limits_at_any_rate():
    scenario = SCENARIOS["worker-kill-retrying"]
    for rate in (10.0, 30.0):
        offered = rate * scenario.payload(rate)["io_ops"]
        assert offered == pytest.approx(1.6 * fleet_limit_ops_per_s(), rel=0.01)
    light = SCENARIOS["none"].payload(30.0)
    assert 30.0 * light["io_ops"] < 0.5 * fleet_limit_ops_per_s()


def test_unknown_scenarios_are_all_named_in_one_error():
    assert [s.name for s in select(["none", "scale"])] == ["none", "scale"]
    assert len(select([])) == len(SCENARIOS)
    with pytest.raises(ConfigError, match="nope, nada"):
        select(["none", "nope", "nada"])


def run(scenario: str, **counts) -> dict:
    base = {
        "scenario": scenario,
        "submitted": 10,
        "completed": 10,
        "lost": 0,
        "ran_on_two_vms": 0,
        "end_published_twice": 0,
        "completion_forwarded_twice": 0,
        "stranded": 0,
        "queued_without_decision": 0,
        "dead_lettered": 0,
        "moved": 0,
        "p99_response_s": 1.0,
        "faults": [],
        "unplanned_worker_exits": [],
        "drain": "every job ended",
    }
    return {**base, **counts}


def fault(kind: str, first: float | None, recovery: float | None, back=None) -> dict:
    return {
        "kind": kind,
        "first_dispatch_s": first,
        "backlog_recovery_s": recovery,
        "dom0s_back_s": back,
        "guests_back_s": back,
    }


def test_the_report_sums_runs_and_spreads_fault_times():
    rows = summarize(
        [
            run("worker-kill", lost=1, p99_response_s=3.0, faults=[fault("worker-kill", 2.0, 9.0)]),
            run(
                "worker-kill",
                p99_response_s=5.0,
                faults=[fault("worker-kill", 4.0, None), fault("worker-kill", 3.0, 12.0)],
            ),
            run("broker-stop", faults=[fault("broker-stop", 1.0, 2.0, back=3.5)]),
        ]
    )
    kill = rows["worker-kill"]
    assert (kill["runs"], kill["submitted"], kill["lost"], kill["faults"]) == (2, 20, 1, 3)
    assert kill["p99_response_s"] == 5.0
    assert kill["first_dispatch_s"] == {"median": 3.0, "max": 4.0, "faults": 3, "never": 0}
    assert kill["backlog_recovery_s"] == {"median": 9.0, "max": 12.0, "faults": 3, "never": 1}
    assert kill["dom0s_back_s"] is None  # measured after broker faults only
    assert rows["broker-stop"]["dom0s_back_s"]["max"] == 3.5
    assert defects(rows) == ["worker-kill: 1 lost"]
    table = markdown_table(rows)
    assert "| worker-kill | 2 | 20 | 20 | 1 |" in table  # runs, submitted, completed, lost
    assert "| 3.0 / 4.0 |" in table and "9.0 / 12.0 (1 never)" in table


def test_a_broker_fault_that_left_no_guest_a_job_has_no_guest_time_not_never():
    served = {**fault("broker-kill", None, 2.0, back=1.0), "guests_back_s": None}
    silent = {**served, "guests_with_work": 2}
    rows = summarize(
        [
            run("replicated-broker-kill", faults=[{**served, "guests_with_work": 0}]),
            run("broker-kill", faults=[silent]),
        ]
    )
    assert rows["replicated-broker-kill"]["guests_back_s"] is None  # "-" in the table
    assert rows["broker-kill"]["guests_back_s"]["never"] == 1
    table = markdown_table(rows)
    assert table.splitlines()[2].endswith("| 1.0 | - |")
    assert table.splitlines()[3].endswith("| 1.0 | never |")
