"""The simulator's model on small cases with hand-checked answers."""

from __future__ import annotations

import pytest

from benchmarks.sim.arrivals import Arrival
from benchmarks.sim.channel import effective_capacity_ops_per_s, speed
from benchmarks.sim.engine import Simulation
from benchmarks.sim.scenario import parse_scenario
from pipeline.policy.registry import build_policy


def one_host(capacity: float, vms: list[str], collapse: float = 0.0) -> dict:
    return {
        "name": "hand",
        "duration_s": 10,
        "drain_s": 20,
        "job_types": {"io": {"cpu_s": 1.0, "io_ops": 100, "size": "fixed"}},
        "hosts": [{"count": 1, "capacity_ops_per_s": capacity, "vms": vms}],
        "channel": {"collapse": collapse},
        "arrivals": {"rate_per_s": 1.0},
    }


def simulate(scenario: dict, times: list[float], policy: str = "round-robin") -> Simulation:
    parsed = parse_scenario(scenario, "test")
    arrivals = [Arrival(t, "io", 1.0, 100.0) for t in times]
    sim = Simulation(parsed, build_policy(policy), arrivals)
    sim.result = sim.run()  # type: ignore[attr-defined]
    return sim


def responses(sim: Simulation) -> list[float]:
    return [
        round(job.finished_at - job.submitted_at, 9)
        for job in sim.jobs
        if job.finished_at is not None
    ]


def test_channel_under_capacity_runs_full_speed() -> None:
    assert speed(100.0, 200.0, collapse=0.5) == 1.0
    assert effective_capacity_ops_per_s(100.0, 200.0, collapse=0.5) == 100.0


def test_channel_over_capacity_shares_and_collapses() -> None:
    # Twice the capacity: plain sharing halves speed; collapse 0.5 delivers C / 1.5.
    assert speed(200.0, 100.0, collapse=0.0) == pytest.approx(0.5)
    assert effective_capacity_ops_per_s(200.0, 100.0, collapse=0.5) == pytest.approx(100.0 / 1.5)
    assert speed(200.0, 100.0, collapse=0.5) == pytest.approx(1 / 3)


def test_single_vm_under_capacity_fifo() -> None:
    # Jobs of 1 s (100 ops at 100 ops/s) on a 200 ops/s host: the second waits for the first.
    sim = simulate(one_host(200.0, ["io"]), [0.5, 0.7])
    assert responses(sim) == [1.0, 1.8]
    assert sim.result.overload_s == 0.0  # demand 100 < limit 180
    assert sim.hosts[0].io_ops_done == pytest.approx(200.0)


def test_single_vm_over_capacity_slows_down() -> None:
    # Capacity 50 < demand 100: plain sharing runs the job at half speed, 2 s; the host's
    # demand exceeds its limit (45) for those 2 s.
    sim = simulate(one_host(50.0, ["io"]), [0.5])
    assert responses(sim) == [2.0]
    assert sim.result.overload_s == pytest.approx(2.0)
    collapsed = simulate(one_host(50.0, ["io"], collapse=1.0), [0.5])
    # collapse 1: D/C = 2 -> C_eff = 50 / 2 = 25 ops/s -> speed 0.25 -> 4 s.
    assert responses(collapsed) == [4.0]


def test_two_vms_share_the_channel_and_speed_up_when_one_finishes() -> None:
    # Capacity 150, two jobs asking 100 each: speed 0.75 while both run. Job A starts at 0,
    # job B at 0.5. A alone for 0.5 s (0.5 done); both at 0.75 until A finishes at
    # 0.5 + 0.5/0.75 = 1.1667; B then has 1 - 0.6667*0.75 = 0.5 left at full speed -> 1.6667.
    sim = simulate(one_host(150.0, ["io", "io"]), [0.0, 0.5])
    a, b = responses(sim)
    assert a == pytest.approx(0.5 + 0.5 / 0.75)
    assert b == pytest.approx(1.6666667 - 0.5)


def test_every_job_is_accounted_for() -> None:
    sim = simulate(one_host(50.0, ["io"]), [0.1 * i for i in range(100)])
    result = sim.result
    assert result.lost == 0
    assert result.completed + result.in_flight + result.waiting + result.expired == 100
    assert result.in_flight > 0  # 100 jobs of 2 s cannot finish in 30 s on one VM
