"""Fairness across submitters on a tiny fleet: a flood cannot push a victim's p99 far above what
it is alone (with fair turns; without them it can), and no victim job waits for more than one
flooder job per turn it waits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmarks.sim.arrivals import generate
from benchmarks.sim.engine import Simulation
from benchmarks.sim.fairness import compare, fairness_table, of_submitter, without_fair_queueing
from benchmarks.sim.fleet import Job, SimVm
from benchmarks.sim.scenario import Scenario, parse_scenario
from pipeline.cli.main import cli
from pipeline.policy.registry import build_policy

#: Two hosts (limits 900 and 1350 ops/s), three VMs each; jobs asking 500 ops/s, so at most three
#: run at once. The victim submits 2 jobs/s all along; the flooder 40/s for 10 s: about five
#: times what the fleet completes, so a backlog of hundreds waits at the dispatcher.
SMALL_FLOOD = {
    "name": "small-flood",
    "seed": 7,
    "duration_s": 30,
    "drain_s": 60,
    "job_types": {"io": {"cpu_s": 0.2, "io_ops": 100}},
    "hosts": [
        {"count": 1, "capacity_ops_per_s": 1000, "vms": ["io", "io", "io"]},
        {"count": 1, "capacity_ops_per_s": 1500, "vms": ["io", "io", "io"]},
    ],
    "telemetry": {"io_per_job": "calibrated"},
    "submitters": [
        {"name": "victim", "arrivals": {"rate_per_s": 2}},
        {"name": "flooder", "arrivals": {"rate_per_s": 40}, "from_s": 5, "to_s": 15},
    ],
    "policies": ["io-aware"],
    "hold_sweep_s": [],
}


def small_flood(seed: int = 7) -> Scenario:
    return parse_scenario(SMALL_FLOOD | {"seed": seed}, "small-flood")


@pytest.mark.parametrize("seed", [7, 8])
def test_a_flood_cannot_push_the_victims_p99_far_above_alone(seed: int) -> None:
    scenario = small_flood(seed)
    rows = {row.submitter: row for row in compare(scenario, ["io-aware"], generate(scenario))}
    victim = rows["victim"]
    assert victim.alone.submitted == victim.fair.submitted == victim.fifo.submitted > 40
    assert victim.alone.p99_wait_s < 0.05  # alone it hardly waits
    # Measured 2.3 (seed 7) and 2.6 (seed 8): the flood costs the victim one flooder job per
    # turn at the dispatcher and a fleet running at its limits; FIFO costs it the backlog.
    assert victim.fair_ratio < 4.0
    assert victim.fifo_ratio > 10.0
    assert victim.fifo.p99_wait_s > 5 * victim.fair.p99_wait_s
    assert "| io-aware | victim |" in fairness_table(list(rows.values()))


def dispatch_order(scenario: Scenario) -> tuple[Simulation, list[Job]]:
    sim = Simulation(scenario, build_policy("io-aware"))
    order: list[Job] = []
    place = sim._enqueue

    def recorded(vm: SimVm, job: Job) -> None:
        order.append(job)
        place(vm, job)

    sim._enqueue = recorded  # type: ignore[method-assign]
    sim.run()
    return sim, order


def overtaken(order: list[Job]) -> list[tuple[int, int]]:
    """Per victim job: (flooder jobs, victim jobs) dispatched while it waited, i.e. after it
    was submitted and before it was dispatched."""
    counts = []
    for position, job in enumerate(order):
        if job.submitter != "victim":
            continue
        ahead = [o for o in order[:position] if (o.dispatched_at or 0) >= job.submitted_at]
        flood = sum(1 for other in ahead if other.submitter == "flooder")
        counts.append((flood, len(ahead) - flood))
    return counts


def test_no_victim_job_waits_for_more_than_one_flooder_job_per_turn() -> None:
    _, fair = dispatch_order(small_flood())
    counts = overtaken(fair)
    assert sum(1 for flood, _ in counts if flood > 0) > 10  # the victim did wait, in the flood
    assert all(flood <= victim + 1 for flood, victim in counts), counts
    _, fifo = dispatch_order(without_fair_queueing(small_flood()))
    assert max(flood for flood, _ in overtaken(fifo)) > 100  # FIFO: behind the whole backlog


def test_of_submitter_keeps_only_its_jobs_unchanged() -> None:
    scenario = small_flood()
    arrivals = generate(scenario)
    victim = of_submitter(arrivals, "victim")
    assert victim and all(job.submitter == "victim" for job in victim)
    assert victim == [job for job in arrivals if job.submitter == "victim"]


def test_cli_fairness_prints_and_writes_the_comparison(tmp_path: Path) -> None:
    path = tmp_path / "small-flood.yaml"
    path.write_text(yaml.safe_dump(SMALL_FLOOD | {"duration_s": 12}))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["bench", "sim", "--scenario", str(path), "--fairness", "--no-plots", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "Per submitter" in result.output and "fair p99 / alone" in result.output
    assert "| io-aware | victim |" in (out / "fairness.md").read_text()
    assert "## Per submitter" in (out / "results.md").read_text()
    data = CliRunner().invoke(
        cli,
        [
            "bench",
            "sim",
            "--scenario",
            str(path),
            "--fairness",
            "--json",
            "--no-plots",
            "--out",
            str(out),
            "--seed",
            "8",
        ],
    )
    assert data.exit_code == 0, data.output
    numbers = json.loads(data.output)["io-aware"]
    assert set(numbers["submitters"]) == {"victim", "flooder"}
    assert numbers["fairness"]["victim"]["fair_ratio"] > 0
