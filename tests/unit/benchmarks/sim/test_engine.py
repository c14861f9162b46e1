"""The simulator's model on small cases with hand-checked answers: the channel, the definition of
overload, the dispatcher's view of completions, the per-type queue (the live `WaitingQueue`:
oldest first for one submitter, turns across submitters, priorities, deadlines), the results per
submitter, and the oracle."""

from __future__ import annotations

import math

import pytest

from benchmarks.sim.arrivals import Arrival
from benchmarks.sim.engine import Simulation, run, sweep_label
from benchmarks.sim.scenario import parse_scenario
from pipeline.dispatch.book import ANONYMOUS
from pipeline.dispatch.waiting import WaitingQueue
from pipeline.events import DEFAULT_PRIORITY
from pipeline.policy.registry import build_policy


def scenario(
    hosts: list[tuple[float, list[str]]],
    job_types: dict | None = None,
    collapse: float = 0.0,
    dispatcher: dict | None = None,
    duration_s: float = 10,
    drain_s: float = 20,
) -> dict:
    return {
        "name": "hand",
        "duration_s": duration_s,
        "drain_s": drain_s,
        "job_types": job_types or {"io": {"cpu_s": 1.0, "io_ops": 100, "size": "fixed"}},
        "hosts": [{"count": 1, "capacity_ops_per_s": c, "vms": vms} for c, vms in hosts],
        "channel": {"collapse": collapse},
        "arrivals": {"rate_per_s": 1.0},
        "dispatcher": dispatcher or {},
    }


def one_host(capacity: float, vms: list[str], collapse: float = 0.0) -> dict:
    return scenario([(capacity, vms)], collapse=collapse)


def simulate(
    data: dict,
    times: list[float],
    policy: str | None = "round-robin",
    job_type: str = "io",
    cpu_s: float = 1.0,
    io_ops: float = 100.0,
) -> Simulation:
    """`policy` None: the oracle."""
    parsed = parse_scenario(data, "test")
    arrivals = [Arrival(t, job_type, cpu_s, io_ops) for t in times]
    sim = Simulation(parsed, None if policy is None else build_policy(policy), arrivals)
    sim.result = sim.run()  # type: ignore[attr-defined]
    return sim


def responses(sim: Simulation) -> list[float]:
    return [
        round(job.finished_at - job.submitted_at, 9)
        for job in sim.jobs
        if job.finished_at is not None
    ]


def test_single_vm_under_capacity_fifo() -> None:
    # Jobs of 1 s (100 ops at 100 ops/s) on a 200 ops/s host: the second waits for the first.
    sim = simulate(one_host(200.0, ["io"]), [0.5, 0.7])
    assert responses(sim) == [1.0, 1.8]
    assert sim.result.overload_s == 0.0  # demand 100 < limit 180
    assert sim.hosts[0].io_ops_done == pytest.approx(200.0)


def test_overload_is_judged_per_telemetry_interval_on_the_io_asked() -> None:
    # Capacity 50 < demand 100: plain sharing runs the job at half speed, from 0.5 to 2.5 s.
    # Asked per 1 s interval: (0,1] 50, (1,2] 100, (2,3] 50 ops, each over the limit (45):
    # 3 s over. Served: 25, 50, 25 ops/s, over the limit only in (1,2]. Instantaneously the
    # demand was over it for the 2 s of the run.
    sim = simulate(one_host(50.0, ["io"]), [0.5])
    assert responses(sim) == [2.0]
    result = sim.result
    assert result.overload_s == pytest.approx(3.0)
    assert result.served_over_limit_s == pytest.approx(1.0)
    assert result.demand_over_limit_s == pytest.approx(2.0)
    assert result.lost_goodput_ops == 0.0  # no collapse: all the capacity was used


def test_collapse_stretches_the_job_and_its_lost_goodput_is_counted() -> None:
    # collapse 1: D/C = 2 -> C_eff = 50 / 2 = 25 ops/s -> speed 0.25 -> a 4 s run, during which
    # the channel could have served 50 ops/s and served 25: 100 ops lost. Served per interval
    # is 25 ops/s (never over the limit of 45): only the asked I/O shows the overload.
    sim = simulate(one_host(50.0, ["io"], collapse=1.0), [0.5])
    assert responses(sim) == [4.0]
    result = sim.result
    assert result.lost_goodput_ops == pytest.approx(100.0)
    assert result.served_over_limit_s == 0.0
    assert result.overload_s == pytest.approx(5.0)  # intervals (0,1] .. (4,5]


def test_a_brief_overlap_over_the_limit_is_no_overloaded_interval() -> None:
    # Two 0.1 s jobs asking 600 ops/s each on a 1300 ops/s host (limit 1170) overlap for 0.05 s:
    # demand 1200 for 0.05 s, but 120 ops asked in the second: far under the limit.
    fast = {"io": {"cpu_s": 0.1, "io_ops": 60, "size": "fixed"}}
    sim = simulate(
        scenario([(1300.0, ["io", "io"])], job_types=fast),
        [0.2, 0.25],
        cpu_s=0.1,
        io_ops=60.0,
    )
    result = sim.result
    assert result.demand_over_limit_s == pytest.approx(0.05)
    assert result.overload_s == 0.0


def test_two_vms_share_the_channel_and_speed_up_when_one_finishes() -> None:
    # Capacity 150, two jobs asking 100 each: speed 0.75 while both run. Job A starts at 0,
    # job B at 0.5. A alone for 0.5 s (0.5 done); both at 0.75 until A finishes at
    # 0.5 + 0.5/0.75 = 1.1667; B then has 1 - 0.6667*0.75 = 0.5 left at full speed -> 1.6667.
    sim = simulate(one_host(150.0, ["io", "io"]), [0.0, 0.5])
    a, b = responses(sim)
    assert a == pytest.approx(0.5 + 0.5 / 0.75)
    assert b == pytest.approx(1.6666667 - 0.5)


def capped(capacity: float, caps: object, vms: list[str] | None = None) -> dict:
    data = one_host(capacity, vms or ["io", "io"])
    data["hosts"][0]["device_ops_per_s"] = caps
    return data


def test_a_job_bound_by_its_vms_device_runs_at_the_cap_and_asks_the_cap() -> None:
    # 100 ops over 0.1 s of CPU would ask 1000 ops/s; the VM's device allows 250: the job paces
    # its I/O at 250 ops/s and runs 0.4 s. Demand 250 < limit 900: no overload.
    fast = {"io": {"cpu_s": 0.1, "io_ops": 100, "size": "fixed"}}
    data = capped(1000.0, 250.0, ["io"])
    data["job_types"] = fast
    sim = simulate(data, [0.5], cpu_s=0.1, io_ops=100.0)
    assert responses(sim) == pytest.approx([0.4])
    assert sim.jobs[0].run_s == pytest.approx(0.4)
    assert sim.jobs[0].io_rate_ops_per_s == pytest.approx(250.0)
    assert sim.hosts[0].io_ops_done == pytest.approx(100.0)
    assert sim.result.overload_s == 0.0


def test_a_cap_above_the_jobs_own_rate_changes_nothing() -> None:
    # The job asks 100 ops/s (100 ops over 1 s); a 400 ops/s device does not bind it.
    sim = simulate(capped(200.0, [400.0, None]), [0.5, 0.5])
    assert responses(sim) == pytest.approx([1.0, 1.0])
    assert [job.run_s for job in sim.jobs] == [1.0, 1.0]


def test_capped_vms_busy_together_overload_their_host_at_their_caps() -> None:
    # Two VMs capped at 60 ops/s on a 100 ops/s host (limit 90), jobs of 60 ops over 0.1 s of
    # CPU: each runs 1 s at its cap; together they ask 120 > 100: plain sharing (collapse 0)
    # serves each at 100/120 of its cap, so both take 1.2 s (0.5 to 1.7), asking 120 > 90 all
    # along; per 1 s interval that is 0.5 s x 120 = 60 ops in (0,1] and 0.7 s x 120 = 84 in
    # (1,2]: neither interval is over the limit, though demand was for 1.2 s.
    fast = {"io": {"cpu_s": 0.1, "io_ops": 60, "size": "fixed"}}
    data = capped(100.0, 60.0)
    data["job_types"] = fast
    sim = simulate(data, [0.5, 0.5], cpu_s=0.1, io_ops=60.0)
    assert responses(sim) == pytest.approx([1.2, 1.2])
    assert sim.hosts[0].io_ops_asked == pytest.approx(144.0)  # 120 ops/s for 1.2 s
    assert sim.result.demand_over_limit_s == pytest.approx(1.2)
    assert sim.result.overload_s == 0.0


def test_the_oracle_counts_a_vms_device_cap() -> None:
    # Host A (1000, limit 900) whose VM's device allows 100 ops/s, host B (500, limit 450)
    # uncapped; a job of 40 ops over 0.1 s: 1 s on A's VM at 100 ops/s, 0.1 s on B's at 400.
    # The oracle expects each VM's own service: B, though A is the lower id.
    fast = {"io": {"cpu_s": 0.1, "io_ops": 40, "size": "fixed"}}
    data = scenario([(1000.0, ["io"]), (500.0, ["io"])], job_types=fast)
    data["hosts"][0]["device_ops_per_s"] = [100.0]
    sim = simulate(data, [1.0], policy=None, cpu_s=0.1, io_ops=40.0)
    assert sim.jobs[0].vm_id == "h001-v0"
    assert responses(sim) == pytest.approx([0.1])


def test_every_job_is_accounted_for() -> None:
    sim = simulate(one_host(50.0, ["io"]), [0.1 * i for i in range(100)])
    result = sim.result
    assert result.lost == 0
    assert result.completed + result.in_flight + result.waiting + result.expired == 100
    assert result.in_flight > 0  # 100 jobs of 2 s cannot finish in 30 s on one VM


def test_the_dispatcher_learns_of_a_completion_within_the_completion_delay() -> None:
    data = one_host(1000.0, ["io"])
    data["telemetry"] = {"completion_delay_s": 0.05, "delay_s": 0.5}
    parsed = parse_scenario(data, "test")
    sim = Simulation(parsed, build_policy("round-robin"), [Arrival(0.1, "io", 0.2, 20.0)])
    seen: list[tuple[float, int]] = []
    original = sim._on_notice

    def notice(vm: object, done: object) -> None:
        original(vm, done)
        seen.append((round(sim.now, 9), sim.view.snapshots.in_flight.count("h000-v0")))

    sim._handlers[max(sim._handlers)] = notice  # the notice handler (the last kind)
    sim.run()
    # Finished at 0.3; the dispatcher knows at 0.35, long before Dom0's sample (1.5 s).
    assert seen == [(0.35, 0)]


def hogged(hold_s: float) -> Simulation:
    """One host (limit 900): a hog job that runs all along on one VM, then two io jobs. Nobody
    has measured either type, so each counts as the host's whole limit: the io jobs fit only
    once they have been held `hold_s`."""
    types = {
        "hog": {"cpu_s": 100.0, "io_ops": 50_000, "size": "fixed"},
        "io": {"cpu_s": 1.0, "io_ops": 10, "size": "fixed"},
    }
    data = scenario([(1000.0, ["hog", "io"])], job_types=types, dispatcher={"hold_s": hold_s})
    parsed = parse_scenario(data, "test")
    arrivals = [
        Arrival(0.1, "hog", 100.0, 50_000.0),
        Arrival(0.5, "io", 1.0, 10.0),
        Arrival(0.6, "io", 1.0, 10.0),
    ]
    sim = Simulation(parsed, build_policy("io-aware"), arrivals)
    sim.result = sim.run()  # type: ignore[attr-defined]
    return sim


def test_a_job_whose_type_already_waits_waits_behind_it() -> None:
    sim = hogged(math.inf)
    assert sim.result.waiting == 2 and sim.result.lost == 0
    [queue] = [q for q in sim.waiting.values() if q]
    assert isinstance(queue, WaitingQueue)  # the live dispatcher's own queue
    assert [w.job_id for w in queue.ordered(sim.now)] == ["1", "2"]  # in the order they came
    assert queue.head(sim.now) == queue.get("1")
    assert {w.submitter for w in queue.ordered(sim.now)} == {ANONYMOUS}
    assert sim.jobs[1].dispatched_at is None


def test_a_refused_head_is_not_decided_again_over_the_same_snapshot() -> None:
    sim = hogged(math.inf)
    sim._retry_waiting()  # the snapshot may be rebuilt (it aged): one decision at most
    decided = sim.decisions
    sim._retry_waiting()
    sim._retry_waiting()
    assert sim.decisions == decided  # the fast path: same snapshot, same answer
    sim.now += 10.0  # the snapshot ages out: rebuilt, so the head is decided again
    sim._retry_waiting()
    assert sim.decisions == decided + 1


def test_a_waiting_job_past_its_deadline_expires_and_is_counted() -> None:
    types = {
        "hog": {"cpu_s": 100.0, "io_ops": 50_000, "size": "fixed"},
        "io": {"cpu_s": 1.0, "io_ops": 10, "size": "fixed"},
    }
    data = scenario(
        [(1000.0, ["hog", "io"])],
        job_types=types,
        dispatcher={"hold_s": math.inf, "deadline_s": 2.0},
    )
    arrivals = [
        Arrival(0.1, "hog", 100.0, 50_000.0),
        Arrival(0.5, "io", 1.0, 10.0),
        Arrival(0.6, "io", 1.0, 10.0),
    ]
    sim = Simulation(parse_scenario(data, "test"), build_policy("io-aware"), arrivals)
    result = sim.run()
    assert result.expired == 2 and result.waiting == 0 and result.lost == 0
    assert [job.expired for job in sim.jobs] == [False, True, True]


# --- submitters: turns, FIFO without them, priorities -----------------------------------------

FLOOD = {"io": {"cpu_s": 0.5, "io_ops": 250, "size": "fixed"}}


def flooded(fair: bool = True, victim_priority: int = DEFAULT_PRIORITY) -> tuple[Simulation, str]:
    """One host (capacity 1000, limit 900) with two VMs; jobs of 0.5 s asking 500 ops/s, so
    one runs at a time (two would ask 1000) and io-aware holds the rest at the dispatcher.
    The flooder submits 20 jobs in 0.2 s, the victim 3 at 1.0, 1.1 and 1.2 s. Returns the
    simulation and the submitters in dispatch order (f: flooder, V: victim)."""
    data = scenario([(1000.0, ["io", "io"])], job_types=FLOOD)
    data["telemetry"] = {"io_per_job": "calibrated"}
    data["dispatcher"] = {"fair_queueing": fair}
    del data["arrivals"]
    data["submitters"] = [
        {"name": "flooder", "arrivals": {"rate_per_s": 1.0}},
        {"name": "victim", "arrivals": {"rate_per_s": 1.0}, "priority": victim_priority},
    ]
    arrivals = [Arrival(0.01 * i, "io", 0.5, 250.0, "flooder") for i in range(20)]
    arrivals += [
        Arrival(1.0 + 0.1 * i, "io", 0.5, 250.0, "victim", victim_priority) for i in range(3)
    ]
    arrivals.sort(key=lambda job: job.at_s)
    sim = Simulation(parse_scenario(data, "test"), build_policy("io-aware"), arrivals)
    sim.result = sim.run()  # type: ignore[attr-defined]
    never = math.inf
    order = sorted(
        sim.jobs,
        key=lambda job: (never if job.dispatched_at is None else job.dispatched_at, job.job_id),
    )
    return sim, "".join("V" if job.submitter == "victim" else "f" for job in order)


def test_waiting_submitters_take_turns() -> None:
    # Two flooder jobs are placed at once (one runs, one queues behind it on the VM); the
    # next leaves the wait at 0.55 s: the flooder's first turn. The victim starts waiting at
    # 1.0 and joins the turns level with the flooder; the flooder's job is older, so it goes
    # first (1.05 s), then they alternate: one flooder job per victim turn, no more.
    sim, order = flooded()
    assert order == "fff" + "fVfVfV" + "f" * 14
    assert sim.result.lost == 0 and sim.result.completed == 23


def test_without_fair_queueing_the_victim_waits_behind_the_whole_flood() -> None:
    _, order = flooded(fair=False)
    assert order == "f" * 20 + "VVV"


def test_higher_priority_jobs_leave_the_wait_first() -> None:
    sim, order = flooded(victim_priority=DEFAULT_PRIORITY + 1)
    assert order == "fff" + "VVV" + "f" * 17
    victim = [job for job in sim.jobs if job.submitter == "victim"]
    # The first dispatch after each arrival goes to the victim: every 0.5 s from 1.05 s.
    assert [round(job.dispatched_at or 0, 6) for job in victim] == [1.05, 1.55, 2.05]


def test_results_per_submitter() -> None:
    sim, _ = flooded()
    figures = sim.result.submitters
    assert set(figures) == {"flooder", "victim"}
    victim = figures["victim"]
    assert victim.submitted == victim.completed == 3 and victim.expired == 0
    waits = sorted((job.dispatched_at or 0) - job.submitted_at for job in sim.jobs[20:])
    assert victim.p99_wait_s == pytest.approx(waits[-1])  # nearest rank of 3: the largest
    assert victim.p50_wait_s == pytest.approx(waits[1])
    responses_s = sorted((job.finished_at or 0) - job.submitted_at for job in sim.jobs[20:])
    assert victim.p99_response_s == pytest.approx(responses_s[-1])
    assert figures["flooder"].submitted == 20
    summary = sim.result.summary()
    assert summary["submitters"]["victim"]["p99_wait_s"] == pytest.approx(waits[-1])


def test_a_scenario_without_submitters_reports_none() -> None:
    sim = hogged(math.inf)
    assert sim.result.submitters == {}
    assert "submitters" not in sim.result.summary()


def test_a_job_nobody_has_measured_is_not_sent_over_a_limit_however_long_it_waits() -> None:
    # Past its hold, a job goes over a limit only where the fleet has room for its rate: the
    # io jobs' rate is unknown (nobody has run one), so they wait behind the hog.
    sim = hogged(0.5)
    assert sim.jobs[1].dispatched_at is None and sim.jobs[2].dispatched_at is None
    assert sim.result.waiting == 2 and sim.result.lost == 0


def test_the_oracle_places_where_the_job_fits_soonest_done_else_holds() -> None:
    # Host A (capacity 1000, limit 900) with three VMs, host B (capacity 500, limit 450) with
    # one; jobs of 0.1 s asking 400 ops/s; four arrive at once.
    # j0: A and B both idle and fit, expected 0.1 s each: the lower vm_id, h000-v0.
    # j1: A's idle v1 fits (400 + 400 <= 900), expected 0.1: h000-v1 (before h001-v0).
    # j2: A's idle v2 would take A to 1200 > 900; queues on A expect 0.2; B idle: h001-v0.
    # j3: every idle VM is out; queues behind h000-v0, h000-v1 and h001-v0 expect 0.2: h000-v0.
    fast = {"io": {"cpu_s": 0.1, "io_ops": 40, "size": "fixed"}}
    data = scenario([(1000.0, ["io", "io", "io"]), (500.0, ["io"])], job_types=fast)
    sim = simulate(data, [1.0, 1.0, 1.0, 1.0], policy=None, cpu_s=0.1, io_ops=40.0)
    assert [job.vm_id for job in sim.jobs] == ["h000-v0", "h000-v1", "h001-v0", "h000-v0"]
    assert responses(sim) == pytest.approx([0.1, 0.1, 0.1, 0.2])
    assert sim.result.overload_s == 0.0 and sim.result.demand_over_limit_s == 0.0


def test_the_notice_bound_oracle_learns_of_an_end_as_late_as_an_online_policy() -> None:
    # One host (capacity 500, limit 450), a VM of each of two types whose jobs of 0.1 s ask
    # 400 ops/s: only one job fits at a time. `a` runs 1.0-1.1; `b` arrives at 1.12. The
    # oracle sees the host idle and starts `b` at once; the notice-bound one has not heard of
    # `a`'s end (0.05 s later, at 1.15): `b` fits nowhere until then, waits, and starts at the
    # notice.
    types = {
        "a": {"cpu_s": 0.1, "io_ops": 40, "size": "fixed"},
        "b": {"cpu_s": 0.1, "io_ops": 40, "size": "fixed"},
    }
    data = scenario([(500.0, ["a", "b"])], job_types=types)
    data["telemetry"] = {"completion_delay_s": 0.05}
    parsed = parse_scenario(data, "test")
    arrivals = [Arrival(1.0, "a", 0.1, 40.0), Arrival(1.12, "b", 0.1, 40.0)]
    for name, b_response in (("oracle", 0.1), ("oracle-notice", 0.13)):
        result = run(parsed, name, arrivals)
        assert result.policy == name and result.hold_s == math.inf
        assert result.responses_s == pytest.approx(sorted([0.1, b_response]))
        assert result.overload_s == 0.0 and result.demand_over_limit_s == 0.0


def test_the_strict_oracle_holds_a_job_that_fits_nowhere_and_never_overloads() -> None:
    # Jobs asking 500 ops/s on a host whose limit is 450: nowhere fits, ever.
    data = one_host(500.0, ["io"])
    data["dispatcher"] = {"hold_s": math.inf}
    sim = simulate(data, [0.5, 1.5], policy=None, cpu_s=1.0, io_ops=500.0)
    assert sim.result.completed == 0 and sim.result.waiting == 2
    assert sim.result.overload_s == 0.0 and sim.result.lost == 0


def test_run_labels_a_strictness_override_and_the_oracle_runs_strict() -> None:
    parsed = parse_scenario(one_host(500.0, ["io"]), "test")
    arrivals = [Arrival(0.5, "io", 1.0, 500.0)]
    held = run(parsed, "io-aware", arrivals, hold_s=2.0)
    assert held.policy == "io-aware hold=2s" and held.hold_s == 2.0 and held.completed == 1
    assert sweep_label("oracle", math.inf) == "oracle hold=inf"
    oracle = run(parsed, "oracle", arrivals)
    assert oracle.policy == "oracle" and oracle.hold_s == math.inf and oracle.completed == 0
    assert oracle.summary()["hold_s"] is None  # JSON has no infinity
